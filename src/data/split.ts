// Splits without leakage: seeded train/test splits (optionally stratified), k-fold, stratified k-fold and
// group k-fold, and a report of rows shared between splits or seen by a fitted scaler.
import { ArgumentError, ValidationError, checkOptions, describe } from '../errors.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';
import { Dataset, hostRng, permutation } from './loader.js';
import { assertTable, rowFingerprints } from './stats.js';
import type { Transformer } from './scalers.js';
import { columnsOf, type TableLike } from './columns.js';
import { tableRowFingerprints } from './hash.js';
import { ColumnPipeline } from './pipeline.js';

/** Train and test row indices. */
export interface Split {
  train: Int32Array;
  test: Int32Array;
}

/** Labels (or group keys) as numbers on the host: a tensor's values, or the array itself. */
export function labelsOf(y: Tensor | ArrayLike<number>, what: string): ArrayLike<number> {
  if (isTensor(y)) return y.toArray() as ArrayLike<number>;
  if (y === null || typeof y !== 'object' || typeof y.length !== 'number')
    throw new ArgumentError(`${what} must be a Tensor or an array, got ${describe(y)}`);
  return y;
}

function countOf(n: unknown): number {
  if (n instanceof Dataset) return n.length;
  if (!Number.isInteger(n) || (n as number) < 0 || (n as number) > 2 ** 31 - 1)
    throw new ArgumentError(`expected a row count (an integer in [0, 2^31 - 1]) or a Dataset, got ${describe(n)}`);
  return n as number;
}

/** Rows grouped by label, in first-seen label order (so the result does not depend on label values). */
function byLabel(y: ArrayLike<number>): number[][] {
  const groups = new Map<number, number[]>();
  for (let i = 0; i < y.length; i++) {
    let g = groups.get(y[i]!);
    if (!g) groups.set(y[i]!, (g = []));
    g.push(i);
  }
  return [...groups.values()];
}

function shuffled(idx: number[], rnd: () => number): number[] {
  const p = permutation(idx.length, rnd);
  return Array.from(p, (k) => idx[k]!);
}

/** Options of trainTestSplit. */
export interface TrainTestOptions {
  /** fraction (0, 1) or a row count (default 0.25) */
  testSize?: number;
  seed?: number;
  shuffle?: boolean;
  /** labels whose class proportions both parts keep */
  stratify?: Tensor | ArrayLike<number> | null;
}

/**
 * A seeded split into train and test rows (indices, or Datasets when given a Dataset).
 * @example kn.data.trainTestSplit(10, { testSize: 0.3, seed: 1 }).test.length // 3
 */
export function trainTestSplit(n: number, opts?: TrainTestOptions): Split;
export function trainTestSplit(ds: Dataset, opts?: TrainTestOptions): { train: Dataset; test: Dataset };
export function trainTestSplit(
  nOrDs: number | Dataset,
  opts: TrainTestOptions = {},
): Split | { train: Dataset; test: Dataset } {
  checkOptions(opts, 'trainTestSplit', ['testSize', 'seed', 'shuffle', 'stratify']);
  const n = countOf(nOrDs);
  const ts = opts.testSize ?? 0.25;
  const nTest = ts > 0 && ts < 1 ? Math.ceil(ts * n) : ts;
  if (!Number.isInteger(nTest) || nTest < 1 || nTest >= n) {
    throw new ArgumentError(
      `testSize must be a fraction in (0, 1) or a row count in [1, ${n - 1}] for ${n} rows, got ${describe(opts.testSize)}`,
    );
  }
  const rnd = hostRng(opts.seed ?? 0);
  let test: number[] = [],
    train: number[] = [];
  if (opts.stratify != null) {
    const y = labelsOf(opts.stratify, 'stratify');
    if (y.length !== n) throw new ValidationError(`stratify has ${y.length} labels for ${n} rows`);
    const groups = byLabel(y);
    if (groups.some((g) => g.length < 2))
      throw new ValidationError('stratified split: every class needs at least 2 rows');
    // largest-remainder allocation of the test rows over the classes
    const exact = groups.map((g) => (g.length * nTest) / n);
    const take = exact.map(Math.floor);
    const order = exact.map((e, i) => [e - take[i]!, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
    for (let k = 0; take.reduce((a, b) => a + b, 0) < nTest; k++) take[order[k % order.length]![1]]!++;
    groups.forEach((g, i) => {
      const s = opts.shuffle === false ? g : shuffled(g, rnd);
      test.push(...s.slice(0, take[i]));
      train.push(...s.slice(take[i]));
    });
  } else {
    const all = Array.from({ length: n }, (_, i) => i);
    const s = opts.shuffle === false ? all : shuffled(all, rnd);
    test = s.slice(n - nTest);
    train = s.slice(0, n - nTest);
  }
  const split = {
    train: Int32Array.from(train.sort((a, b) => a - b)),
    test: Int32Array.from(test.sort((a, b) => a - b)),
  };
  if (nOrDs instanceof Dataset) return { train: nOrDs.subset(split.train), test: nOrDs.subset(split.test) };
  return split;
}

function checkK(k: unknown, n: number): number {
  if (!Number.isInteger(k) || (k as number) < 2)
    throw new ArgumentError(`k must be an integer >= 2, got ${describe(k)}`);
  if ((k as number) > n) throw new ValidationError(`cannot make ${k} folds from ${n} rows`);
  return k as number;
}

function folds(assign: Int32Array, k: number): Split[] {
  return Array.from({ length: k }, (_, f) => {
    const test: number[] = [],
      train: number[] = [];
    assign.forEach((a, i) => (a === f ? test : train).push(i));
    return { train: Int32Array.from(train), test: Int32Array.from(test) };
  });
}

/**
 * k folds of (nearly) equal size; every row is in exactly one test fold.
 * @example kn.data.kFold(10, 3).map((f) => f.test.length) // [4, 3, 3]
 */
export function kFold(n: number, k: number, opts: { shuffle?: boolean; seed?: number } = {}): Split[] {
  checkOptions(opts, 'kFold', ['shuffle', 'seed']);
  const N = countOf(n);
  checkK(k, N);
  const order = opts.shuffle
    ? Array.from(permutation(N, hostRng(opts.seed ?? 0)))
    : Array.from({ length: N }, (_, i) => i);
  const assign = new Int32Array(N);
  let pos = 0;
  for (let f = 0; f < k; f++) {
    const size = Math.floor(N / k) + (f < N % k ? 1 : 0);
    for (let j = 0; j < size; j++) assign[order[pos++]!] = f;
  }
  return folds(assign, k);
}

/**
 * k folds that each keep the class proportions of `labels` (each class dealt round-robin over the folds).
 * @example kn.data.stratifiedKFold([0, 0, 0, 0, 1, 1], 2).map((f) => f.test.length) // [3, 3]
 */
export function stratifiedKFold(
  labels: Tensor | ArrayLike<number>,
  k: number,
  opts: { shuffle?: boolean; seed?: number } = {},
): Split[] {
  checkOptions(opts, 'stratifiedKFold', ['shuffle', 'seed']);
  const y = labelsOf(labels, 'labels');
  checkK(k, y.length);
  const rnd = hostRng(opts.seed ?? 0);
  const assign = new Int32Array(y.length);
  let next = 0;
  for (const g of byLabel(y)) {
    const s = opts.shuffle ? shuffled(g, rnd) : g;
    for (const i of s) assign[i] = next++ % k;
  }
  return folds(assign, k);
}

/**
 * k folds in which no group (patient, user, session...) is split: the largest groups go first, each to the
 * fold with the fewest rows so far.
 * @example kn.data.groupKFold([1, 1, 2, 2, 3, 3], 3).map((f) => f.test.length) // [2, 2, 2]
 */
export function groupKFold(groups: Tensor | ArrayLike<number>, k: number): Split[] {
  const g = labelsOf(groups, 'groups');
  const members = byLabel(g);
  if (members.length < k) throw new ValidationError(`groupKFold: ${members.length} groups cannot fill ${k} folds`);
  checkK(k, g.length);
  const sizes = new Array<number>(k).fill(0);
  const assign = new Int32Array(g.length);
  for (const m of [...members].sort((a, b) => b.length - a.length || a[0]! - b[0]!)) {
    const f = sizes.indexOf(Math.min(...sizes));
    for (const i of m) assign[i] = f;
    sizes[f]! += m.length;
  }
  return folds(assign, k);
}

function sortedHas(a: Float64Array, v: number): boolean {
  let lo = 0,
    hi = a.length;
  while (lo < hi) {
    const m = (lo + hi) >> 1;
    if (a[m]! < v) lo = m + 1;
    else hi = m;
  }
  return lo < a.length && a[lo] === v;
}

/** A leakage finding. */
export interface Leak {
  kind: 'duplicate-rows' | 'scaler-saw-rows';
  /** the two splits (or scaler and split) involved */
  between: [string, string];
  /** rows of the second split affected */
  rows: number[];
  message: string;
}

/** Row fingerprints of a split: a table tensor's rows, or a raw table's rows over all its columns. */
function splitPrints(t: Tensor | TableLike, name: string): Float64Array {
  if (isTensor(t)) return rowFingerprints(assertTable(t, `split '${name}'`));
  const cols = columnsOf(t, `split '${name}'`);
  return tableRowFingerprints(cols, cols[0]?.values.length ?? 0);
}

/**
 * Reports leakage: rows that appear (exactly) in two splits, and fitted transformers (scalers, imputers) or column
 * pipelines whose fit data included rows of a split other than `fitSplit` (default 'train'). Splits are table
 * tensors, or raw tables (Arrow, named columns) for pipelines, which compare rows over their input columns.
 * @example kn.data.leakageReport({ splits: { train: kn.tensor([[1], [2]]), test: kn.tensor([[2], [3]]) } }).leaks[0].rows // [0]
 */
export function leakageReport(opts: {
  splits: Record<string, Tensor | TableLike>;
  transformers?: Record<string, Transformer | ColumnPipeline>;
  fitSplit?: string;
}): { ok: boolean; leaks: Leak[] } {
  if (!opts || typeof opts.splits !== 'object')
    throw new ArgumentError('leakageReport takes { splits: { name: table } }');
  checkOptions(opts, 'leakageReport', ['splits', 'transformers', 'fitSplit']);
  const names = Object.keys(opts.splits);
  const prints = new Map(names.map((n) => [n, splitPrints(opts.splits[n]!, n)]));
  const leaks: Leak[] = [];
  for (let a = 0; a < names.length; a++) {
    const seen = new Set(prints.get(names[a]!)!);
    for (let b = a + 1; b < names.length; b++) {
      const rows: number[] = [];
      prints.get(names[b]!)!.forEach((h, i) => {
        if (seen.has(h)) rows.push(i);
      });
      if (rows.length) {
        leaks.push({
          kind: 'duplicate-rows',
          between: [names[a]!, names[b]!],
          rows,
          message: `${rows.length} row(s) of '${names[b]}' also appear in '${names[a]}' (first: row ${rows[0]})`,
        });
      }
    }
  }
  const fitSplit = opts.fitSplit ?? 'train';
  for (const [tn, t] of Object.entries(opts.transformers ?? {})) {
    const fitted = t.sortedFingerprints();
    if (!fitted) throw new ValidationError(`transformer '${tn}' is not fitted`);
    for (const n of names) {
      if (n === fitSplit) continue;
      const rows: number[] = [];
      const split = opts.splits[n]!;
      if (t instanceof ColumnPipeline && isTensor(split))
        throw new ValidationError(`pipeline '${tn}' reads raw columns: give split '${n}' as a table, not a tensor`);
      const p = t instanceof ColumnPipeline ? t.rowFingerprints(split as TableLike) : prints.get(n)!;
      p.forEach((h, i) => {
        if (sortedHas(fitted, h)) rows.push(i);
      });
      if (rows.length) {
        leaks.push({
          kind: 'scaler-saw-rows',
          between: [tn, n],
          rows,
          message: `${t instanceof ColumnPipeline ? 'ColumnPipeline' : t.kind} '${tn}' was fitted on data that includes ${rows.length} row(s) of '${n}'; fit it on '${fitSplit}' only`,
        });
      }
    }
  }
  return { ok: leaks.length === 0, leaks };
}
