// `kiln convert`: a table file into another format (Parquet, Arrow IPC, CSV/TSV by extension), optionally only
// some columns, with the Parquet writer's row groups and codec: a CSV file becomes a Parquet file that
// StreamingDataset and kiln predict read a row group at a time. Every format streams through, a chunk at a time.
import { parseArgs } from 'node:util';
import type * as A from 'apache-arrow';
import { PARQUET_CODECS, type ParquetCompression } from '../data/parquet.js';
import { isArrowPath, isCsvPath } from '../data/extensions.js';
import { openTable, readTable, writeTable, writeTableStream } from '../data/table.js';
import { ArgumentError, ValidationError } from '../errors.js';

export const CONVERT_HELP = `  convert IN.csv|.tsv|.parquet|.arrow OUT.parquet|.arrow|.arrows|.csv|.tsv [--columns a,b,...]
        [--row-group-size N] [--compression snappy|zstd|gzip|brotli|lz4|none] [--max-batch-rows N] [--json]
                  write a table in another format (by extension: .arrows is the Arrow IPC stream format);
                  --columns keeps only those, in that order;
                  the row group size and codec apply to a Parquet output, --max-batch-rows (split longer
                  record batches) to an Arrow one; the rows stream through a chunk at a time (a row group, a
                  record batch, 65,536 CSV rows), so a file larger than memory converts
`;

export async function convertCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      columns: { type: 'string' },
      'row-group-size': { type: 'string' },
      compression: { type: 'string' },
      'max-batch-rows': { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  if (positionals.length !== 2)
    throw new ArgumentError(`convert takes an input and an output file, got ${positionals.length} arguments`);
  const [from, to] = positionals as [string, string];
  const rowGroup = values['row-group-size'];
  const rowGroupSize = rowGroup === undefined ? undefined : Number(rowGroup);
  if (rowGroupSize !== undefined && (!Number.isInteger(rowGroupSize) || rowGroupSize < 1))
    throw new ArgumentError(`--row-group-size must be a positive integer, got '${rowGroup}'`);
  if ((isArrowPath(to) || isCsvPath(to)) && (rowGroup !== undefined || values.compression !== undefined))
    throw new ArgumentError(`--row-group-size and --compression apply to a Parquet output, not ${to}`);
  const maxRows = values['max-batch-rows'];
  const maxBatchRows = maxRows === undefined ? undefined : Number(maxRows);
  if (maxRows !== undefined && !isArrowPath(to))
    throw new ArgumentError(`--max-batch-rows applies to an Arrow output (.arrow, .arrows, .feather, .ipc), not ${to}`);
  if (maxBatchRows !== undefined && !(Number.isSafeInteger(maxBatchRows) && maxBatchRows >= 1))
    throw new ArgumentError(`--max-batch-rows must be a positive integer, got '${maxRows}'`);
  // checked before a large input is read
  if (values.compression !== undefined && !(PARQUET_CODECS as readonly string[]).includes(values.compression))
    throw new ArgumentError(`compression must be one of ${PARQUET_CODECS.join(', ')}, got '${values.compression}'`);
  const writeOpts = {
    parquet: {
      ...(rowGroupSize !== undefined ? { rowGroupSize } : {}),
      ...(values.compression !== undefined ? { compression: values.compression as ParquetCompression } : {}),
    },
    arrow: maxBatchRows !== undefined ? { maxBatchRows } : {},
  };
  const src = await openTable(from, 'convert');
  let schema: A.Schema;
  let rows = 0;
  try {
    const cols = values.columns?.split(',').map((c) => c.trim()) ?? src.columns;
    for (const c of cols)
      if (!src.columns.includes(c))
        throw new ValidationError(`convert: ${from} has no column '${c}'; it has ${src.columns.join(', ')}`);
    if (src.rows > 0) {
      // a chunk at a time (a CSV file 65,536 rows, a Parquet one a row group, an Arrow one a record batch): memory
      // holds a chunk and what is being written, however large the file
      const seen: A.Schema[] = [];
      const chunks = async function* (): AsyncGenerator<A.Table> {
        for await (const t of src.chunks(cols)) {
          if (seen.length === 0) seen.push(t.schema);
          rows += t.numRows;
          yield t;
        }
      };
      await writeTableStream(to, chunks(), writeOpts);
      schema = seen[0]!;
    } else {
      const table = readTable(from, 'convert').select(cols);
      writeTable(to, table, writeOpts);
      schema = table.schema;
    }
  } finally {
    src.close();
  }
  const columns = schema.fields.map((f) => ({ name: f.name, type: String(f.type) }));
  if (values.json) process.stdout.write(JSON.stringify({ from, to, rows, columns }) + '\n');
  else process.stdout.write(`wrote ${rows} rows to ${to} (${columns.map((c) => `${c.name}: ${c.type}`).join(', ')})\n`);
  return 0;
}
