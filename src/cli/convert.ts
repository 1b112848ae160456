// `kiln convert`: a table file into another format (Parquet, Arrow IPC, CSV/TSV by extension), optionally only
// some columns, with the Parquet writer's row groups and codec: a CSV file becomes a Parquet file that
// StreamingDataset and kiln predict read a row group at a time.
import { parseArgs } from 'node:util';
import type { ParquetCompression } from '../data/parquet.js';
import { isArrowPath, isCsvPath, readTable, writeTable } from '../data/table.js';
import { ArgumentError, ValidationError } from '../errors.js';

export const CONVERT_HELP = `  convert IN.csv|.tsv|.parquet|.arrow OUT.parquet|.arrow|.csv|.tsv [--columns a,b,...] [--row-group-size N]
        [--compression snappy|zstd|gzip|brotli|lz4|none] [--json]
                  write a table in another format (by extension); --columns keeps only those, in that order;
                  the row group size and codec apply to a Parquet output
`;

export function convertCommand(argv: string[]): number {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      columns: { type: 'string' },
      'row-group-size': { type: 'string' },
      compression: { type: 'string' },
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
  let table = readTable(from, 'convert');
  if (values.columns !== undefined) {
    const cols = values.columns.split(',').map((c) => c.trim());
    const have = table.schema.fields.map((f) => f.name);
    for (const c of cols)
      if (!have.includes(c))
        throw new ValidationError(`convert: ${from} has no column '${c}'; it has ${have.join(', ')}`);
    table = table.select(cols);
  }
  // writeParquet checks the codec's name and the row group size
  writeTable(to, table, {
    ...(rowGroupSize !== undefined ? { rowGroupSize } : {}),
    ...(values.compression !== undefined ? { compression: values.compression as ParquetCompression } : {}),
  });
  const columns = table.schema.fields.map((f) => ({ name: f.name, type: String(f.type) }));
  if (values.json) process.stdout.write(JSON.stringify({ from, to, rows: table.numRows, columns }) + '\n');
  else
    process.stdout.write(
      `wrote ${table.numRows} rows to ${to} (${columns.map((c) => `${c.name}: ${c.type}`).join(', ')})\n`,
    );
  return 0;
}
