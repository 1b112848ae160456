// CSV and TSV files in and out as Arrow tables (csv-parse reads, csv-stringify writes). A column whose values all
// read as numbers becomes Int32 (integers in range) or Float64, any other a Utf8 string column; the null spellings
// become nulls. kiln train, kiln predict and the retraining pipeline read .csv/.tsv files through data/table.ts.
import { createReadStream, statSync } from 'node:fs';
import { Readable } from 'node:stream';
import { CsvError, parse as parseStream } from 'csv-parse';
import { CsvError as CsvSyncError, parse as parseSync } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';
import * as A from 'apache-arrow';
import {
  ArgumentError,
  FormatError,
  ValidationError,
  checkOptions,
  describe,
  messageOf,
  optionKeys,
} from '../errors.js';
import {
  checkFilePath,
  checkReadableFile,
  readFileForSync,
  writeFileAtomic,
  writeFileAtomicSync,
} from '../io/atomic.js';
import { nameRecord } from '../records.js';
import { columnNameProblem, ownTable, tableStream } from './arrow.js';

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

/** What a column's values read as: no value yet, Int32, Float64 or text. A column only ever widens. */
export type Kind = 'none' | 'int' | 'float' | 'text';
const RANK: Record<Kind, number> = { none: 0, int: 1, float: 2, text: 3 };

/** What one value (trimmed, not a null spelling) reads as. */
function valueKind(t: string): Kind {
  if (!NUMBER.test(t)) return 'text';
  if (/[.eE]/.test(t)) return 'float';
  if (t.length < 10) return 'int'; // at most 9 digits: well inside int32
  const x = Number(t);
  // an integer a double cannot hold exactly (an id of 19 digits) stays text rather than change its value
  if (!Number.isSafeInteger(x)) return 'text';
  return x >= -(2 ** 31) && x < 2 ** 31 ? 'int' : 'float';
}

/** The kind of a column that read as `k` so far and holds `v` too (not a null spelling). */
function wider(k: Kind, v: string): Kind {
  const w = valueKind(v.trim());
  return RANK[w] > RANK[k] ? w : k;
}

/** The kind of a column holding `values` (nulls are null). */
function kindOf(values: readonly (string | null)[]): Kind {
  let k: Kind = 'none';
  for (const v of values) {
    if (k === 'text') break;
    if (v !== null) k = wider(k, v);
  }
  return k;
}

/**
 * One column of strings as an Arrow vector of its kind: Int32, Float64, or Utf8 (text, or nothing but nulls). Built
 * straight into its buffers (apache-arrow's vectorFromArray goes value by value through a builder: 2x slower for
 * numbers, 3x for strings). A Utf8 column's offsets are int32: a column of 2 GiB or more is refused before any copy.
 * Exported for its test.
 */
export function column(values: readonly (string | null)[], kind: Kind): A.Vector {
  const n = values.length;
  const valid = new Uint8Array((n + 7) >> 3);
  let nulls = 0;
  for (let i = 0; i < n; i++)
    if (values[i] === null) nulls++;
    else valid[i >> 3]! |= 1 << (i & 7);
  const base = { length: n, nullCount: nulls, nullBitmap: valid };
  if (kind === 'int' || kind === 'float') {
    const data = kind === 'int' ? new Int32Array(n) : new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const v = values[i];
      if (v !== null && v !== undefined) data[i] = Number(v.trim());
    }
    return kind === 'int'
      ? A.makeVector(A.makeData({ ...base, type: new A.Int32(), data: data as Int32Array }))
      : A.makeVector(A.makeData({ ...base, type: new A.Float64(), data: data as Float64Array }));
  }
  const offsets = new Int32Array(n + 1);
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v !== null && v !== undefined) bytes += Buffer.byteLength(v, 'utf8');
    if (bytes > 0x7fffffff)
      throw new ValidationError(
        `a text column holds 2 GiB or more in one table (Arrow's Utf8 offsets are int32: at most 2,147,483,647 bytes); read the file in chunks (kn.data.openCsv) instead`,
      );
    offsets[i + 1] = bytes;
  }
  // its own memory (not Buffer's shared pool): a vector's buffers may be transferred to a thread
  const data = new Uint8Array(bytes);
  const writer = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v) writer.write(v, offsets[i]!, 'utf8');
  }
  return A.makeVector(A.makeData({ ...base, type: new A.Utf8(), valueOffsets: offsets, data }));
}

/** readCsv's and openCsv's options, checked. */
interface CsvSettings {
  delimiter: string;
  header: boolean;
  nulls: ReadonlySet<string>;
  strings: ReadonlySet<string>;
}

function csvSettings(path: string, opts: ReadCsvOptions, who: string): CsvSettings {
  checkOptions(
    opts,
    who,
    optionKeys<ReadCsvOptions>({ delimiter: true, header: true, nullValues: true, strings: true }),
  );
  // the path before the delimiter, which its extension decides
  checkFilePath(path, who);
  const delimiter = delimiterOf(path, opts.delimiter, who);
  if (
    opts.nullValues !== undefined &&
    (!Array.isArray(opts.nullValues) || opts.nullValues.some((v) => typeof v !== 'string'))
  )
    throw new ArgumentError(`${who} nullValues must be an array of strings, got ${describe(opts.nullValues)}`);
  if (opts.strings !== undefined && (!Array.isArray(opts.strings) || opts.strings.some((v) => typeof v !== 'string')))
    throw new ArgumentError(`${who} strings must be an array of column names, got ${describe(opts.strings)}`);
  if (opts.header !== undefined && typeof opts.header !== 'boolean')
    throw new ArgumentError(`${who} header must be true or false, got ${describe(opts.header)}`);
  return {
    delimiter,
    header: opts.header ?? true,
    nulls: new Set(opts.nullValues ?? NULLS),
    strings: new Set(opts.strings ?? []),
  };
}

/** The column names from the first row (the header, or c0, c1, ... for as many fields), checked. */
function columnNames(path: string, first: readonly string[] | undefined, s: CsvSettings, who: string): string[] {
  if (first === undefined) throw new FormatError(`${path} has no rows${s.header ? ' (not even a header)' : ''}`);
  const names = s.header ? [...first] : first.map((_, j) => `c${j}`);
  const empty = names.findIndex((n) => n.trim() === '');
  if (empty >= 0) throw new FormatError(`${path}: column ${empty + 1} of the header has no name`);
  const bad = columnNameProblem(names.map((name) => ({ name })));
  if (bad) throw new FormatError(`${path}: ${bad}`);
  for (const c of s.strings)
    if (!names.includes(c))
      throw new ArgumentError(`${who} strings: ${path} has no column '${c}'; it has ${names.join(', ')}`);
  return names;
}

/** Field `j` of each row, null for a null spelling. */
function fieldValues(rows: readonly string[][], j: number, nulls: ReadonlySet<string>): (string | null)[] {
  return rows.map((r) => (nulls.has(r[j]!) ? null : r[j]!));
}

/** A table of named columns (names from a file never become keys of an ordinary object). */
function tableOf(columns: readonly (readonly [string, A.Vector])[]): A.Table {
  const r = nameRecord<A.Vector>();
  for (const [name, v] of columns) r[name] = v;
  return new A.Table(r);
}

const PARSE = { bom: true, skip_empty_lines: true, relax_column_count: false } as const;

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
  const s = csvSettings(path, opts, 'readCsv');
  const bytes = readFileForSync(path, 'readCsv');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new FormatError(`${path} is not a CSV file: it is not UTF-8 text`);
  }
  let rows: string[][];
  try {
    rows = parseSync(text, { ...PARSE, delimiter: s.delimiter }) as string[][];
  } catch (e) {
    if (e instanceof CsvSyncError) throw new FormatError(`${path}: ${e.message}`);
    throw e;
  }
  const names = columnNames(path, rows[0], s, 'readCsv');
  const body = s.header ? rows.slice(1) : rows;
  return tableOf(
    names.map((name, j) => {
      const values = fieldValues(body, j, s.nulls);
      return [name, column(values, s.strings.has(name) ? 'text' : kindOf(values))];
    }),
  );
}

/** The text of a file as UTF-8, a piece at a time; bytes that are not UTF-8 are a FormatError. */
async function* utf8Pieces(path: string): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const stream = createReadStream(path);
  let piece: string;
  try {
    for await (const bytes of stream) {
      piece = decoder.decode(bytes as Buffer, { stream: true });
      if (piece) yield piece;
    }
    piece = decoder.decode();
  } catch (e) {
    if (e instanceof TypeError) throw new FormatError(`${path} is not a CSV file: it is not UTF-8 text`);
    throw new ArgumentError(`cannot read ${path}: ${messageOf(e)}`);
  } finally {
    stream.destroy();
  }
  if (piece) yield piece;
}

/** The records of a CSV file in order, parsed as the file streams in (the header is the first). */
async function* csvRecords(path: string, delimiter: string): AsyncGenerator<string[]> {
  const parser = parseStream({ ...PARSE, delimiter });
  const source = Readable.from(utf8Pieces(path));
  source.on('error', (e) => parser.destroy(e));
  source.pipe(parser);
  try {
    for await (const r of parser) yield r as string[];
  } catch (e) {
    if (e instanceof CsvError) throw new FormatError(`${path}: ${e.message}`);
    throw e;
  } finally {
    source.destroy();
    parser.destroy();
  }
}

/** Options of CsvSource.chunks. */
export interface CsvChunkOptions {
  /** the columns to read, in this order (default: all) */
  columns?: readonly string[];
  /** rows in each chunk but the last (default 65,536) */
  rowsPerChunk?: number;
}

/** A CSV file opened by openCsv: its rows and schema known, its rows read on demand a chunk at a time. */
export interface CsvSource {
  readonly path: string;
  /** rows, not counting the header */
  readonly rows: number;
  /** the columns and their types, the same as readCsv gives for the whole file */
  readonly schema: A.Schema;
  /**
   * The rows in file order, `rowsPerChunk` at a time, as tables of `schema`'s types. A file that changed since
   * openCsv read it is a ValidationError.
   */
  chunks(opts?: CsvChunkOptions): AsyncGenerator<A.Table>;
}

/**
 * Opens a CSV (or TSV) file to read in chunks, so a file larger than memory can be scored or converted: one pass
 * over the file counts its rows and settles each column's type (the types readCsv would give, with the same
 * options and errors), then `chunks()` reads it again, a chunk of rows at a time. Only a chunk's rows are held.
 * @example kn.data.writeCsv('.kiln-tmp-o.csv', kn.data.toArrow({ v: kn.arange(0, 5) })); const src = await kn.data.openCsv('.kiln-tmp-o.csv'); const sizes = []; for await (const t of src.chunks({ rowsPerChunk: 2 })) sizes.push(t.numRows); sizes // [2, 2, 1]
 */
export async function openCsv(path: string, opts: ReadCsvOptions = {}): Promise<CsvSource> {
  const s = csvSettings(path, opts, 'openCsv');
  checkReadableFile(path, 'openCsv');
  // the file's size and time; a file that has gone since is 'gone', which no stamp equals
  const stamp = (): string => {
    try {
      const st = statSync(path);
      return `${st.size}:${st.mtimeMs}`;
    } catch {
      return 'gone';
    }
  };
  const opened = stamp();
  // the header is checked after the pass, as readCsv checks it after parsing: a file with a bad header and a
  // ragged row is refused for the same one of them by both
  let first: string[] | undefined;
  let kinds: Kind[] = [];
  let rows = 0;
  for await (const r of csvRecords(path, s.delimiter)) {
    if (first === undefined) {
      first = r;
      kinds = r.map((n, j) => (s.strings.has(s.header ? n : `c${j}`) ? 'text' : 'none'));
      if (s.header) continue;
    }
    rows++;
    for (let j = 0; j < kinds.length; j++)
      if (kinds[j] !== 'text' && !s.nulls.has(r[j]!)) kinds[j] = wider(kinds[j]!, r[j]!);
  }
  const cols = columnNames(path, first, s, 'openCsv');
  const schema = tableOf(cols.map((c, j) => [c, column([], kinds[j]!)])).schema;
  const changed = (): ValidationError =>
    new ValidationError(
      `${path} changed since openCsv read it (its size or time differs, or it is gone): open it again`,
    );
  return {
    path,
    rows,
    schema,
    async *chunks(chunkOpts: CsvChunkOptions = {}) {
      checkOptions(chunkOpts, 'CsvSource.chunks', optionKeys<CsvChunkOptions>({ columns: true, rowsPerChunk: true }));
      const want = chunkOpts.columns ?? cols;
      if (!Array.isArray(want) || want.some((c) => typeof c !== 'string'))
        throw new ArgumentError(`CsvSource.chunks columns must be an array of column names, got ${describe(want)}`);
      const at = want.map((c) => {
        const j = cols.indexOf(c);
        if (j < 0) throw new ArgumentError(`CsvSource.chunks: ${path} has no column '${c}'; it has ${cols.join(', ')}`);
        return j;
      });
      const per = chunkOpts.rowsPerChunk ?? 65_536;
      if (!Number.isInteger(per) || per < 1)
        throw new ArgumentError(`CsvSource.chunks rowsPerChunk must be a positive integer, got ${describe(per)}`);
      if (stamp() !== opened) throw changed();
      let held: string[][] = [];
      let seen = 0;
      let skip = s.header;
      const chunk = (): A.Table => {
        if (stamp() !== opened) throw changed();
        const t = tableOf(want.map((c, k) => [c, column(fieldValues(held, k, s.nulls), kinds[at[k]!]!)]));
        held = [];
        return t;
      };
      for await (const r of csvRecords(path, s.delimiter)) {
        if (skip) {
          skip = false;
          continue;
        }
        held.push(at.map((j) => r[j]!)); // only the columns asked for
        seen++;
        if (held.length === per) yield chunk();
      }
      if (seen !== rows) throw changed();
      if (held.length > 0) yield chunk();
    },
  };
}

/** A float32 value as the shortest decimal that reads back as the same float32 (0.1, not 0.10000000149011612). */
function cell(v: unknown, f32: boolean): string {
  if (v === null || v === undefined) return '';
  if (typeof v !== 'number' || !f32 || !Number.isFinite(v)) return String(v);
  for (let p = 1; p < 9; p++) {
    const s = String(Number(v.toPrecision(p)));
    if (Math.fround(Number(s)) === v) return s;
  }
  return String(Number(v.toPrecision(9)));
}

/** A table's rows as CSV text (with the header row first when `header`). */
function csvText(t: A.Table, delimiter: string, header: boolean): string {
  const names = t.schema.fields.map((f) => f.name);
  const cols = names.map((n) => t.getChild(n)!);
  const single = cols.map((c) => A.DataType.isFloat(c.type) && c.type.precision === A.Precision.SINGLE);
  const rows: string[][] = header ? [names] : [];
  for (let i = 0; i < t.numRows; i++) rows.push(cols.map((c, j) => cell(c.get(i), single[j]!)));
  // with one column a null would be an empty line, which readers skip: it is written as "" there
  return stringify(rows, { delimiter, record_delimiter: 'unix', quoted_empty: names.length === 1 });
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
  writeFileAtomicSync(path, [Buffer.from(csvText(t, delimiter, opts.header !== false), 'utf8')]);
}

/**
 * Writes the tables an (async) iterable gives, chunks with the same column names such as `openCsv` or a
 * `ParquetSource` reads, as one CSV file, atomically, as writeCsv would write them joined: the header once, then
 * each chunk's rows as it comes, so only a chunk is held. A chunk with other column names is a ValidationError and
 * an error from `tables` is thrown as it is; either way nothing is written.
 * @example const gen = function* () { for (let i = 0; i < 3; i++) yield kn.data.toArrow({ x: kn.full([2], i) }); }; await kn.data.writeCsvStream('.kiln-tmp-s.csv', gen()); [...kn.data.readCsv('.kiln-tmp-s.csv').getChild('x')] // [0, 0, 1, 1, 2, 2]
 */
export async function writeCsvStream(
  path: string,
  tables: AsyncIterable<A.Table> | Iterable<A.Table>,
  opts: WriteCsvOptions = {},
): Promise<{ bytes: number; rows: number }> {
  checkFilePath(path, 'writeCsvStream');
  checkOptions(opts, 'writeCsvStream', optionKeys<WriteCsvOptions>({ delimiter: true, header: true }));
  const delimiter = delimiterOf(path, opts.delimiter, 'writeCsvStream');
  const source = tableStream(tables, 'writeCsvStream');
  let bytes = 0,
    rows = 0;
  let names: string | null = null;
  const parts = async function* (): AsyncGenerator<Uint8Array> {
    let chunk = 0;
    for await (const table of source) {
      const these = table.schema.fields.map((f) => f.name).join(', ');
      if (names !== null && these !== names)
        throw new ValidationError(`writeCsvStream: chunk ${chunk} has columns ${these}; the first had ${names}`);
      const part = Buffer.from(csvText(table, delimiter, names === null && opts.header !== false), 'utf8');
      names ??= these;
      chunk++;
      rows += table.numRows;
      bytes += part.byteLength;
      yield part;
    }
    if (names === null)
      throw new ArgumentError('writeCsvStream: the iterable gave no tables (nothing to write, not even the columns)');
  };
  await writeFileAtomic(path, parts());
  return { bytes, rows };
}
