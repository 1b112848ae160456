// A table file as training data: a Parquet, Arrow or CSV file by its extension, and its feature matrix and labels,
// checked row by row (kiln train and the retraining pipeline read their data through here; kiln predict and kiln
// convert read it in chunks through openTable and write with writeTableStream).
import { existsSync } from 'node:fs';
import type * as A from 'apache-arrow';
import { ValidationError, describe } from '../errors.js';
import { arrowToMatrix, readArrow, writeArrow, writeArrowStream, type WriteArrowStreamOptions } from './arrow.js';
import { ArrowSource } from './arrow_reader.js';
import { openCsv, readCsv, writeCsv, writeCsvStream } from './csv.js';
import { isArrowPath, isCsvPath } from './extensions.js';
import { ParquetSource, readParquet, writeParquet, writeParquetStream, type WriteParquetOptions } from './parquet.js';

/**
 * A Parquet file, an Arrow one (.arrow, .arrows, .feather, .ipc) or a CSV/TSV one (.csv, .tsv); `who` starts the
 * message of a missing file.
 */
export function readTable(path: string, who: string): A.Table {
  if (!existsSync(path)) throw new ValidationError(`${who}: data file ${path} does not exist`);
  return isArrowPath(path) ? readArrow(path) : isCsvPath(path) ? readCsv(path) : readParquet(path);
}

/** How writeTable and writeTableStream write each format: the Parquet writer's options, the Arrow writer's. */
export interface WriteTableOptions {
  parquet?: WriteParquetOptions;
  arrow?: WriteArrowStreamOptions;
}

/**
 * Writes a table as an Arrow IPC file (.arrow, .feather, .ipc; .arrows in the stream format), a CSV/TSV file or
 * else Parquet, atomically, with the options for its format.
 */
export function writeTable(path: string, t: A.Table, opts: WriteTableOptions = {}): void {
  if (isArrowPath(path)) writeArrow(path, t, opts.arrow);
  else if (isCsvPath(path)) writeCsv(path, t);
  else writeParquet(path, t, opts.parquet);
}

/**
 * Writes the tables an (async) iterable gives as one file by extension, atomically, a chunk at a time as they come
 * (writeParquetStream, writeArrowStream, writeCsvStream), with the options for its format.
 */
export async function writeTableStream(
  path: string,
  tables: AsyncIterable<A.Table>,
  opts: WriteTableOptions = {},
): Promise<void> {
  if (isCsvPath(path)) await writeCsvStream(path, tables);
  else if (isArrowPath(path)) await writeArrowStream(path, tables, opts.arrow);
  else await writeParquetStream(path, tables, opts.parquet);
}

/** A table file opened for reading in chunks: its row count and column names, known before any data is read. */
export interface TableChunks {
  rows: number;
  columns: string[];
  /**
   * The rows in file order, a chunk at a time (a Parquet row group, an Arrow file's record batch, 65,536 rows of a
   * CSV file), only `columns`.
   */
  chunks(columns: readonly string[]): AsyncGenerator<A.Table>;
  close(): void;
}

/**
 * Opens a table file to read in chunks. A Parquet file is read a row group at a time and an Arrow IPC file a record
 * batch at a time (the next one read ahead on a reader thread while the caller works on this one), so only a
 * chunk's rows are in memory at once; a CSV file is read twice (once for its row count and column types, then in
 * chunks of 65,536 rows). An Arrow IPC stream is indexed first (a pass over its message headers), then read the
 * same way.
 */
export async function openTable(path: string, who: string): Promise<TableChunks> {
  if (!existsSync(path)) throw new ValidationError(`${who}: data file ${path} does not exist`);
  if (isCsvPath(path)) {
    const csv = await openCsv(path);
    return {
      rows: csv.rows,
      columns: csv.schema.fields.map((f) => f.name),
      chunks: (columns) => csv.chunks({ columns }),
      close() {},
    };
  }
  // an Arrow file a record batch at a time, a Parquet file a row group at a time
  const src = isArrowPath(path) ? await ArrowSource.open(path) : await ParquetSource.open(path);
  return {
    rows: src.info.rows,
    columns: src.info.columns.map((c) => c.name),
    async *chunks(columns) {
      for await (const t of src.chunks({ columns })) if (t.numRows > 0) yield t;
    },
    close() {
      src.close();
    },
  };
}

/** Features [N, F] of a table: row-major float32, every value finite (a missing one is a ValidationError). */
export function tableX(
  t: A.Table,
  features: readonly string[],
  where: string,
  who: string,
  /** the file row of the table's first row, for messages about a chunk of a file */
  firstRow = 0,
): Float32Array {
  for (const f of features)
    if (!t.getChild(f)) throw new ValidationError(`${who}: ${where} has no feature column '${f}'`);
  const x = arrowToMatrix(t, { columns: features });
  const xa = x.toArray() as Float32Array;
  x.dispose();
  const bad = xa.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0)
    throw new ValidationError(
      `${who}: ${where}: feature '${features[bad % features.length]}' of row ${firstRow + Math.floor(bad / features.length)} is missing or not finite`,
    );
  return xa;
}

/**
 * Features [N, F] (row-major float32, every value finite) and labels [N] (class indices for classification,
 * finite numbers for regression) of a table; `where` names the file and `who` the caller in messages. String
 * labels are classes named by `classes`: a label's index there is its class index.
 */
export function tableXY(
  t: A.Table,
  features: readonly string[],
  label: string,
  task: 'classification' | 'regression',
  where: string,
  who: string,
  classes: readonly string[] = [],
): { x: Float32Array; y: Float32Array | Int32Array; n: number } {
  const fail = (msg: string): never => {
    throw new ValidationError(`${who}: ${msg}`);
  };
  const lab = t.getChild(label) ?? fail(`${where} has no label column '${label}'`);
  const xa = tableX(t, features, where, who);
  const n = t.numRows;
  const y = task === 'classification' ? new Int32Array(n) : new Float32Array(n);
  const index = new Map(classes.map((c, i) => [c, i]));
  for (let i = 0; i < n; i++) {
    const v = lab.get(i) as unknown;
    if (typeof v === 'string' && task === 'classification') {
      const c = index.get(v);
      if (c === undefined)
        fail(
          classes.length === 0
            ? `${where}: label of row ${i} is ${describe(v)}; expected a class index`
            : `${where}: label of row ${i} is ${describe(v)}, which is not one of the classes ${classes.map((x) => describe(x)).join(', ')}`,
        );
      y[i] = c!;
      continue;
    }
    const num = typeof v === 'bigint' ? Number(v) : typeof v === 'boolean' ? Number(v) : (v as number);
    if (typeof num !== 'number' || !Number.isFinite(num) || (task === 'classification' && !Number.isInteger(num)))
      fail(
        `${where}: label of row ${i} is ${describe(v)}; expected ${task === 'classification' ? 'a class index' : 'a number'}`,
      );
    y[i] = num;
  }
  return { x: xa, y, n };
}

/** The distinct string labels of a column, sorted (by code unit): the class names of a string label column. */
export function stringClasses(t: A.Table, label: string): string[] {
  const col = t.getChild(label);
  const seen = new Set<string>();
  if (col)
    for (let i = 0; i < col.length; i++) {
      const v = col.get(i) as unknown;
      if (typeof v === 'string') seen.add(v);
    }
  return [...seen].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}
