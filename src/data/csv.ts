// CSV and TSV files in and out as Arrow tables (csv-parse reads, csv-stringify writes). A column whose values all
// read as numbers becomes Int32 (integers in range) or Float64, any other a Utf8 string column; the null spellings
// become nulls. kiln train, kiln predict and the retraining pipeline read .csv/.tsv files through data/table.ts.
import { CsvError, parse } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';
import * as A from 'apache-arrow';
import { ArgumentError, FormatError, checkOptions, describe, optionKeys } from '../errors.js';
import { checkFilePath, readFileForSync, writeFileAtomicSync } from '../io/atomic.js';
import { nameRecord } from '../records.js';
import { columnNameProblem, ownTable } from './arrow.js';

/** Options of readCsv. */
export interface ReadCsvOptions {
  /** the field separator: one character (default ',', or a tab for a .tsv file) */
  delimiter?: string;
  /** the first row names the columns (default true); without one they are named c0, c1, ... */
  header?: boolean;
  /** spellings read as null (default '', 'NA', 'N/A', 'null', 'NULL', 'NaN') */
  nullValues?: readonly string[];
  /** columns to keep as strings even when every value reads as a number (ids, zip codes) */
  strings?: readonly string[];
}

/** Options of writeCsv. */
export interface WriteCsvOptions {
  /** the field separator: one character (default ',', or a tab for a .tsv file) */
  delimiter?: string;
  /** write the column names as the first row (default true) */
  header?: boolean;
}

const NULLS = ['', 'NA', 'N/A', 'null', 'NULL', 'NaN'];
// a decimal number as people write them: no hex, no underscores, no bare dots (Number() accepts more)
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

function delimiterOf(path: string, given: unknown, who: string): string {
  if (given === undefined) return /\.tsv$/i.test(path) ? '\t' : ',';
  if (typeof given !== 'string' || given.length !== 1 || given === '"' || given === '\n' || given === '\r')
    throw new ArgumentError(
      `${who} delimiter must be one character other than a quote or a line break, got ${describe(given)}`,
    );
  return given;
}

/** One column of strings as an Arrow vector: Int32, Float64 or Utf8 by what every non-null value reads as. */
function column(values: (string | null)[], asString: boolean): A.Vector {
  if (!asString) {
    const nums: (number | null)[] = new Array(values.length).fill(null);
    let integer = true,
      any = false;
    for (const [i, v] of values.entries()) {
      if (v === null) continue;
      const t = v.trim();
      if (!NUMBER.test(t)) return A.vectorFromArray(values, new A.Utf8());
      const x = Number(t);
      const decimal = /[.eE]/.test(t);
      // an integer a double cannot hold exactly (an id of 19 digits) stays text rather than change its value
      if (!decimal && !Number.isSafeInteger(x)) return A.vectorFromArray(values, new A.Utf8());
      integer &&= !decimal && x >= -(2 ** 31) && x < 2 ** 31;
      nums[i] = x;
      any = true;
    }
    if (any) return A.vectorFromArray(nums, integer ? new A.Int32() : new A.Float64());
  }
  return A.vectorFromArray(values, new A.Utf8());
}

/**
 * Reads a CSV (or TSV) file into an Arrow Table: RFC 4180 quoting (quoted separators, quotes and line breaks),
 * a byte-order mark, CRLF or LF line ends. A column whose every value reads as a decimal number is Int32 (all
 * integers in range) or Float64; others are strings (`strings` keeps named columns as strings), as is a column
 * holding an integer beyond 2^53, which a double would round. The null
 * spellings (`nullValues`) are nulls. A row with another number of fields than the header, an unclosed quote or
 * bytes that are not UTF-8 is a FormatError naming the line.
 * @example kn.data.writeCsv('.kiln-tmp-d.csv', kn.data.toArrow({ price: kn.tensor([1.5, 2]) })); [...kn.data.readCsv('.kiln-tmp-d.csv').getChild('price')] // [1.5, 2]
 */
export function readCsv(path: string, opts: ReadCsvOptions = {}): A.Table {
  checkOptions(
    opts,
    'readCsv',
    optionKeys<ReadCsvOptions>({ delimiter: true, header: true, nullValues: true, strings: true }),
  );
  const delimiter = delimiterOf(path, opts.delimiter, 'readCsv');
  if (
    opts.nullValues !== undefined &&
    (!Array.isArray(opts.nullValues) || opts.nullValues.some((v) => typeof v !== 'string'))
  )
    throw new ArgumentError(`readCsv nullValues must be an array of strings, got ${describe(opts.nullValues)}`);
  const nulls = new Set(opts.nullValues ?? NULLS);
  if (opts.strings !== undefined && (!Array.isArray(opts.strings) || opts.strings.some((v) => typeof v !== 'string')))
    throw new ArgumentError(`readCsv strings must be an array of column names, got ${describe(opts.strings)}`);
  const bytes = readFileForSync(path, 'readCsv');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new FormatError(`${path} is not a CSV file: it is not UTF-8 text`);
  }
  let rows: string[][];
  try {
    rows = parse(text, { delimiter, bom: true, skip_empty_lines: true, relax_column_count: false }) as string[][];
  } catch (e) {
    if (e instanceof CsvError) throw new FormatError(`${path}: ${e.message}`);
    throw e;
  }
  const header = opts.header ?? true;
  if (rows.length === 0) throw new FormatError(`${path} has no rows${header ? ' (not even a header)' : ''}`);
  const width = rows[0]!.length;
  const names = header ? rows[0]! : Array.from({ length: width }, (_, j) => `c${j}`);
  const empty = names.findIndex((n) => n.trim() === '');
  if (empty >= 0) throw new FormatError(`${path}: column ${empty + 1} of the header has no name`);
  const bad = columnNameProblem(names.map((name) => ({ name })));
  if (bad) throw new FormatError(`${path}: ${bad}`);
  for (const s of opts.strings ?? [])
    if (!names.includes(s))
      throw new ArgumentError(`readCsv strings: ${path} has no column '${s}'; it has ${names.join(', ')}`);
  const keep = new Set(opts.strings ?? []);
  const body = header ? rows.slice(1) : rows;
  const cols = nameRecord<A.Vector>();
  names.forEach((name, j) => {
    cols[name] = column(
      body.map((r) => (nulls.has(r[j]!) ? null : r[j]!)),
      keep.has(name),
    );
  });
  return new A.Table(cols);
}

/**
 * Writes a table as a CSV (or, for a .tsv path, TSV) file, atomically: a header row, then every row, quoted where
 * a value holds the separator, a quote or a line break; nulls as empty fields; numbers in the fewest digits that
 * read back as the same value (a float32 one as the same float32).
 */
export function writeCsv(path: string, table: A.Table, opts: WriteCsvOptions = {}): void {
  checkFilePath(path, 'writeCsv');
  checkOptions(opts, 'writeCsv', optionKeys<WriteCsvOptions>({ delimiter: true, header: true }));
  if (!(table instanceof A.Table))
    throw new ArgumentError(`writeCsv takes an apache-arrow Table, got ${describe(table)}`);
  const t = ownTable(table, 'writeCsv');
  const delimiter = delimiterOf(path, opts.delimiter, 'writeCsv');
  const names = t.schema.fields.map((f) => f.name);
  const cols = names.map((n) => t.getChild(n)!);
  // a float32 value as the shortest decimal that reads back as the same float32 (0.1, not 0.10000000149011612)
  const single = cols.map((c) => A.DataType.isFloat(c.type) && c.type.precision === A.Precision.SINGLE);
  const cell = (v: unknown, f32: boolean): string => {
    if (v === null || v === undefined) return '';
    if (typeof v !== 'number' || !f32 || !Number.isFinite(v)) return String(v);
    for (let p = 1; p < 9; p++) {
      const s = String(Number(v.toPrecision(p)));
      if (Math.fround(Number(s)) === v) return s;
    }
    return String(Number(v.toPrecision(9)));
  };
  const rows: string[][] = opts.header === false ? [] : [names];
  for (let i = 0; i < t.numRows; i++) rows.push(cols.map((c, j) => cell(c.get(i), single[j]!)));
  // with one column a null would be an empty line, which readers skip: it is written as "" there
  const text = stringify(rows, { delimiter, record_delimiter: 'unix', quoted_empty: names.length === 1 });
  writeFileAtomicSync(path, [Buffer.from(text, 'utf8')]);
}
