// A table file as training data: a Parquet or Arrow file by its extension, and its feature matrix and labels,
// checked row by row (kiln train and the retraining pipeline read their data through here).
import { existsSync } from 'node:fs';
import type * as A from 'apache-arrow';
import { ValidationError, describe } from '../errors.js';
import { arrowToMatrix, readArrow } from './arrow.js';
import { readParquet } from './parquet.js';

/** A Parquet file, or an Arrow one (.arrow, .feather, .ipc); `who` starts the message of a missing file. */
export function readTable(path: string, who: string): A.Table {
  if (!existsSync(path)) throw new ValidationError(`${who}: data file ${path} does not exist`);
  return /\.(arrow|feather|ipc)$/i.test(path) ? readArrow(path) : readParquet(path);
}

/** Features [N, F] of a table: row-major float32, every value finite (a missing one is a ValidationError). */
export function tableX(t: A.Table, features: readonly string[], where: string, who: string): Float32Array {
  for (const f of features)
    if (!t.getChild(f)) throw new ValidationError(`${who}: ${where} has no feature column '${f}'`);
  const x = arrowToMatrix(t, { columns: features });
  const xa = x.toArray() as Float32Array;
  x.dispose();
  const bad = xa.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0)
    throw new ValidationError(
      `${who}: ${where}: feature '${features[bad % features.length]}' of row ${Math.floor(bad / features.length)} is missing or not finite`,
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
