// Sampling for large and imbalanced data: stratified samples that keep class proportions, reservoir samples over
// a stream of unknown length (uniform, or weighted by Efraimidis-Spirakis keys), random under- and over-sampling
// to balance classes, and SMOTE's synthetic minority rows. Seeded: the same seed gives the same rows.
import { ArgumentError, ShapeError, ValidationError, checkOptions, describe } from '../errors.js';
import { tensor } from '../ops/creation.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';
import { hostRng, permutation } from './loader.js';
import { labelsOf } from './split.js';

/** Labels as host numbers (split.ts's labelsOf), every one finite. */
function finiteLabels(y: Tensor | ArrayLike<number>, what: string): ArrayLike<number> {
  const v = labelsOf(y, what);
  for (let i = 0; i < v.length; i++)
    if (!Number.isFinite(v[i]!)) throw new ValidationError(`${what}: label ${i} is ${v[i]}, not a number`);
  return v;
}

/** Rows of each class, classes in ascending label order. */
function classes(y: ArrayLike<number>): [number, number[]][] {
  const m = new Map<number, number[]>();
  for (let i = 0; i < y.length; i++) {
    let g = m.get(y[i]!);
    if (!g) m.set(y[i]!, (g = []));
    g.push(i);
  }
  return [...m.entries()].sort((a, b) => a[0] - b[0]);
}

function seedOf(v: unknown): number {
  const s = v ?? 0;
  if (!Number.isInteger(s)) throw new ArgumentError(`seed must be an integer, got ${describe(v)}`);
  return s as number;
}

/**
 * A sample of `size` rows (or `fraction` of them) whose class proportions match the labels' (largest-remainder
 * rounding, every present class keeps at least one row when size allows). Returns sorted row indices.
 * @example kn.data.stratifiedSample([0, 0, 0, 0, 1, 1], { size: 3, seed: 1 }).length // 3
 */
export function stratifiedSample(
  labels: Tensor | ArrayLike<number>,
  opts: { size?: number; fraction?: number; seed?: number },
): Int32Array {
  const y = finiteLabels(labels, 'stratifiedSample');
  const n = y.length;
  if (opts === null || typeof opts !== 'object')
    throw new ArgumentError('stratifiedSample needs { size } or { fraction }');
  checkOptions(opts, 'stratifiedSample', ['size', 'fraction', 'seed']);
  let size: number;
  if (opts.size !== undefined) {
    if (!Number.isInteger(opts.size) || opts.size < 0 || opts.size > n)
      throw new ArgumentError(`size must be an integer in [0, ${n}], got ${describe(opts.size)}`);
    size = opts.size;
  } else if (opts.fraction !== undefined) {
    if (!(opts.fraction >= 0 && opts.fraction <= 1))
      throw new ArgumentError(`fraction must be in [0, 1], got ${describe(opts.fraction)}`);
    size = Math.round(opts.fraction * n);
  } else throw new ArgumentError('stratifiedSample needs { size } or { fraction }');
  const groups = classes(y);
  const quota = groups.map(([, rows]) => (rows.length * size) / n);
  const take = quota.map(Math.floor);
  // a class that would get nothing gets one row first, when there is room
  let left = size - take.reduce((a, b) => a + b, 0);
  for (let g = 0; g < take.length && left > 0; g++)
    if (take[g] === 0 && groups[g]![1].length > 0 && size >= groups.length) {
      take[g] = 1;
      left--;
    }
  const order = quota.map((q, g) => [q - Math.floor(q), g] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (const [, g] of order) {
    if (left <= 0) break;
    if (take[g]! < groups[g]![1].length) {
      take[g]!++;
      left--;
    }
  }
  // take from the largest classes when rounding left rows over
  while (left < 0) {
    const g = take.indexOf(Math.max(...take));
    take[g]!--;
    left++;
  }
  const rnd = hostRng(seedOf(opts.seed));
  const out: number[] = [];
  groups.forEach(([, rows], g) => {
    const p = permutation(rows.length, rnd);
    for (let k = 0; k < take[g]!; k++) out.push(rows[p[k]!]!);
  });
  return Int32Array.from(out.sort((a, b) => a - b));
}

/**
 * A uniform (or weighted) random sample of k items from a stream of unknown length, in one pass and O(k) memory:
 * Vitter's algorithm R, or Efraimidis-Spirakis A-Res when items carry weights (keys u^(1/w)).
 * `reservoir.add(item, weight?)` per item; `reservoir.items` is the sample so far; `seen` counts the stream.
 * @example const r = new kn.data.Reservoir(2, { seed: 1 }); for (let i = 0; i < 100; i++) r.add(i); r.items.length // 2
 */
export class Reservoir<T> {
  readonly k: number;
  private readonly rnd: () => number;
  private readonly sample: T[] = [];
  private keys: number[] = [];
  private weighted: boolean | null = null;
  private n = 0;
  constructor(k: number, opts: { seed?: number } = {}) {
    checkOptions(opts, 'Reservoir', ['seed']);
    if (!Number.isInteger(k) || k < 1) throw new ArgumentError(`a reservoir holds k >= 1 items, got ${describe(k)}`);
    this.k = k;
    this.rnd = hostRng(seedOf(opts.seed) ^ 0x3c6ef372);
  }
  /** Items seen so far. */
  get seen(): number {
    return this.n;
  }
  /** The sample so far (at most k items). */
  get items(): readonly T[] {
    return this.sample;
  }
  /** Offers one item (with a positive weight, for a weighted sample: then every item needs one). */
  add(item: T, weight?: number): void {
    const w = weight !== undefined;
    if (this.weighted === null) this.weighted = w;
    else if (this.weighted !== w)
      throw new ArgumentError('a reservoir samples with weights for every item or for none');
    this.n++;
    if (!w) {
      if (this.sample.length < this.k) this.sample.push(item);
      else {
        const j = Math.floor(this.rnd() * this.n);
        if (j < this.k) this.sample[j] = item;
      }
      return;
    }
    if (!(weight! > 0 && Number.isFinite(weight)))
      throw new ValidationError(`reservoir weight of item ${this.n - 1} is ${weight}; weights must be finite and > 0`);
    const key = Math.log(Math.max(this.rnd(), 1e-300)) / weight!; // log(u^(1/w)): larger is kept
    if (this.sample.length < this.k) {
      this.sample.push(item);
      this.keys.push(key);
      return;
    }
    let min = 0;
    for (let i = 1; i < this.k; i++) if (this.keys[i]! < this.keys[min]!) min = i;
    if (key > this.keys[min]!) {
      this.sample[min] = item;
      this.keys[min] = key;
    }
  }
}

/**
 * Reservoir-samples k items from any iterable or async iterable (e.g. a StreamingDataset's rows, a file's lines).
 * `weight(item)` gives weighted sampling.
 * @example (await kn.data.reservoirSample([1, 2, 3, 4, 5], 2, { seed: 3 })).length // 2
 */
export async function reservoirSample<T>(
  source: Iterable<T> | AsyncIterable<T>,
  k: number,
  opts: { seed?: number; weight?: (item: T) => number } = {},
): Promise<T[]> {
  checkOptions(opts, 'reservoirSample', ['seed', 'weight']);
  if (opts.weight !== undefined && typeof opts.weight !== 'function')
    throw new ArgumentError(`reservoirSample: weight must be a function of an item, got ${describe(opts.weight)}`);
  const r = new Reservoir<T>(k, opts);
  if (source === null || typeof source !== 'object')
    throw new ArgumentError(`reservoirSample takes an iterable, got ${describe(source)}`);
  for await (const item of source as AsyncIterable<T>) r.add(item, opts.weight ? opts.weight(item) : undefined);
  return [...r.items];
}

/**
 * Random under-sampling: every class cut to the smallest class's count (times `ratio`, per class at most its
 * own count). Returns sorted row indices.
 * @example kn.data.undersample([0, 0, 0, 1], { seed: 1 }).length // 2
 */
export function undersample(
  labels: Tensor | ArrayLike<number>,
  opts: { seed?: number; ratio?: number } = {},
): Int32Array {
  checkOptions(opts, 'undersample', ['seed', 'ratio']);
  const y = finiteLabels(labels, 'undersample');
  const ratio = opts.ratio ?? 1;
  if (!(ratio >= 1) || !Number.isFinite(ratio))
    throw new ArgumentError(`ratio must be >= 1, got ${describe(opts.ratio)}`);
  const groups = classes(y);
  if (groups.length === 0) return new Int32Array(0);
  const keep = Math.floor(Math.min(...groups.map(([, r]) => r.length)) * ratio);
  const rnd = hostRng(seedOf(opts.seed));
  const out: number[] = [];
  for (const [, rows] of groups) {
    const p = permutation(rows.length, rnd);
    for (let k = 0; k < Math.min(keep, rows.length); k++) out.push(rows[p[k]!]!);
  }
  return Int32Array.from(out.sort((a, b) => a - b));
}

/**
 * Random over-sampling: every class raised to the largest class's count by drawing its rows again with
 * replacement. Returns row indices (each original row once, then the draws), to gather from a Dataset.
 * @example kn.data.oversample([0, 0, 0, 1], { seed: 1 }).length // 6
 */
export function oversample(labels: Tensor | ArrayLike<number>, opts: { seed?: number } = {}): Int32Array {
  checkOptions(opts, 'oversample', ['seed']);
  const y = finiteLabels(labels, 'oversample');
  const groups = classes(y);
  const target = Math.max(0, ...groups.map(([, r]) => r.length));
  const rnd = hostRng(seedOf(opts.seed));
  const out = Array.from({ length: y.length }, (_, i) => i);
  for (const [, rows] of groups)
    for (let k = rows.length; k < target; k++) out.push(rows[Math.floor(rnd() * rows.length)]!);
  return Int32Array.from(out);
}

/**
 * SMOTE (Chawla et al. 2002): new rows for each minority class on segments between a row and one of its k nearest
 * same-class neighbours (Euclidean), until every class has the majority's count (or `perClass` rows more).
 * Returns only the new rows and their labels; append them to the training split (never to validation data).
 * @example kn.data.smote(kn.tensor([[0, 0], [0, 1], [5, 5], [5, 6], [6, 5], [6, 6]]), [0, 0, 1, 1, 1, 1], { k: 1, seed: 1 }).x.shape // [2, 2]
 */
export function smote(
  x: Tensor,
  labels: Tensor | ArrayLike<number>,
  opts: { k?: number; seed?: number; perClass?: number } = {},
): { x: Tensor; y: Tensor } {
  checkOptions(opts, 'smote', ['k', 'seed', 'perClass']);
  if (!isTensor(x) || x.ndim !== 2) throw new ShapeError(`smote takes features [rows, F], got ${describe(x)}`);
  const y = finiteLabels(labels, 'smote');
  const [n, F] = x.shape as [number, number];
  if (y.length !== n) throw new ShapeError(`smote: ${y.length} labels for ${n} rows`);
  const k = opts.k ?? 5;
  if (!Number.isInteger(k) || k < 1) throw new ArgumentError(`k must be a positive integer, got ${describe(opts.k)}`);
  const data = x.toFloat64Array();
  for (let i = 0; i < data.length; i++)
    if (!Number.isFinite(data[i]!))
      throw new ValidationError(`smote: row ${Math.floor(i / F)} has ${data[i]}; impute missing values first`);
  const groups = classes(y);
  const target = Math.max(0, ...groups.map(([, r]) => r.length));
  const rnd = hostRng(seedOf(opts.seed) ^ 0x27d4eb2f);
  const outX: number[] = [],
    outY: number[] = [];
  for (const [label, rows] of groups) {
    const need = opts.perClass ?? target - rows.length;
    if (!Number.isInteger(need) || need < 0)
      throw new ArgumentError(`perClass must be an integer >= 0, got ${describe(opts.perClass)}`);
    if (need === 0) continue;
    if (rows.length < 2)
      throw new ValidationError(`smote: class ${label} has ${rows.length} row; SMOTE needs at least 2 rows of a class`);
    const kk = Math.min(k, rows.length - 1);
    // k nearest same-class neighbours of each row (exact; the minority classes are the small ones)
    const nn = rows.map((i) => {
      const d = rows
        .filter((j) => j !== i)
        .map((j) => {
          let s = 0;
          for (let f = 0; f < F; f++) s += (data[i * F + f]! - data[j * F + f]!) ** 2;
          return [s, j] as const;
        })
        .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      return d.slice(0, kk).map((p) => p[1]);
    });
    for (let s = 0; s < need; s++) {
      const a = Math.floor(rnd() * rows.length);
      const i = rows[a]!,
        j = nn[a]![Math.floor(rnd() * kk)]!;
      const gap = rnd();
      for (let f = 0; f < F; f++) outX.push(data[i * F + f]! + gap * (data[j * F + f]! - data[i * F + f]!));
      outY.push(label);
    }
  }
  const m = outY.length;
  return {
    x: tensor(Float32Array.from(outX), [m, F], { backend: x.backend }),
    y: tensor(Int32Array.from(outY), [m], { dtype: 'int32', backend: x.backend }),
  };
}
