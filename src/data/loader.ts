// Dataset (named tensors that share their first dimension) and DataLoader (seeded shuffling, batching,
// optional weighted sampling). The order of epoch e depends only on (seed, e), never on kiln's global
// generator, so a resumed run sees exactly the batches the uninterrupted one would have.
import { tidy } from '../engine/memory.js';
import { ArgumentError, ShapeError, ValidationError, checkOptions, describe, optionKeys } from '../errors.js';
import { tensor } from '../ops/creation.js';
import { gather } from '../ops/movement.js';
import { shapeStr } from '../tensor/shape.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';

/** A batch: the dataset's tensors, gathered at the batch's indices, under the same names. */
export type Batch = Record<string, Tensor>;

/**
 * Named tensors with a common first dimension (samples).
 * @example new kn.data.Dataset({ x: kn.zeros([10, 3]), y: kn.zeros([10], { dtype: 'int32' }) }).length // 10
 */
export class Dataset {
  readonly tensors: Readonly<Record<string, Tensor>>;
  readonly length: number;
  constructor(tensors: Record<string, Tensor>) {
    if (tensors === null || typeof tensors !== 'object' || isTensor(tensors)) {
      throw new ArgumentError(`Dataset takes named tensors, e.g. { x, y }, got ${describe(tensors)}`);
    }
    const entries = Object.entries(tensors);
    if (entries.length === 0) throw new ArgumentError('Dataset needs at least one tensor');
    let n = -1;
    for (const [k, t] of entries) {
      if (!isTensor(t)) throw new ArgumentError(`Dataset entry '${k}' is not a Tensor: ${describe(t)}`);
      t.assertAlive(`Dataset entry '${k}'`);
      if (t.ndim === 0)
        throw new ShapeError(`Dataset entry '${k}' is a scalar; every entry needs a first (sample) dimension`);
      if (n < 0) n = t.shape[0]!;
      else if (t.shape[0] !== n)
        throw new ShapeError(
          `Dataset entry '${k}' has ${t.shape[0]} samples (shape ${shapeStr(t.shape)}) but '${entries[0]![0]}' has ${n}`,
        );
    }
    this.tensors = Object.freeze({ ...tensors });
    this.length = n;
  }
  /** The samples at `indices`, as new tensors. */
  take(indices: ArrayLike<number>): Batch {
    if (indices === null || typeof indices !== 'object' || typeof (indices as { length?: unknown }).length !== 'number')
      throw new ArgumentError(`take needs a list of sample indices, got ${describe(indices)}`);
    const idx = Int32Array.from(indices as ArrayLike<number>);
    for (let i = 0; i < idx.length; i++) {
      if (!(idx[i]! >= 0 && idx[i]! < this.length))
        throw new ValidationError(`sample index ${idx[i]} is out of range [0, ${this.length})`);
    }
    const first = Object.values(this.tensors)[0]!;
    return tidy(() => {
      const it = tensor(idx, [idx.length], { dtype: 'int32', backend: first.backend });
      const out: Batch = {};
      for (const [k, t] of Object.entries(this.tensors)) out[k] = gather(t, it, 0);
      return out;
    });
  }
  /** A dataset of the samples at `indices` (copies). */
  subset(indices: ArrayLike<number>): Dataset {
    return new Dataset(this.take(indices));
  }
  /** Frees the tensors. */
  dispose(): void {
    for (const t of Object.values(this.tensors)) t.dispose();
  }
}

/** A small, fast seeded generator (splitmix32) for host-side shuffles and sampling. */
export function hostRng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  };
}

/** Fisher-Yates permutation of 0..n-1 from a seeded generator. */
export function permutation(n: number, rnd: () => number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}

/**
 * The shuffled order of epoch `epoch` for a dataset of `n` samples: depends only on (seed, epoch). DataLoader and
 * kn.distributed.DistributedSampler share it, so a sharded run sees the same global batches as a one-process one.
 */
export function epochPermutation(n: number, seed: number, epoch: number): Int32Array {
  return permutation(n, epochRng(seed, epoch));
}

/** The host generator of epoch `epoch` under `seed` (shuffles and weighted draws). */
function epochRng(seed: number, epoch: number): () => number {
  return hostRng((seed * 0x01000193) ^ Math.imul(epoch + 1, 0x9e3779b1));
}

/** Where a loader's batch transform gets its randomness: one generator per (seed, epoch, batch). */
export interface TransformContext {
  epoch: number;
  index: number;
  rng: () => number;
}

/** A function a DataLoader or StreamingDataset applies to each batch (`transform` option; see kn.data.augment). */
export type BatchTransform = (batch: Batch, ctx: TransformContext) => Batch;

/** The generator of batch `index` of epoch `epoch` under `seed` (independent of kiln's global generator). */
export function batchRng(seed: number, epoch: number, index: number): () => number {
  return hostRng(
    Math.imul(seed ^ 0x6a09e667, 0x01000193) ^ Math.imul(epoch + 1, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b),
  );
}

/** Checks a `transform` option. */
export function transformOption(t: unknown): BatchTransform | null {
  if (t === undefined || t === null) return null;
  if (typeof t !== 'function')
    throw new ArgumentError(
      `transform must be a function (batch, ctx) => batch, e.g. kn.data.augment.compose(...), got ${describe(t)}`,
    );
  return t as BatchTransform;
}

/** Runs a batch transform, disposing what it drops and checking what it returns. */
export function applyTransform(t: BatchTransform, b: Batch, seed: number, epoch: number, index: number): Batch {
  const out = t(b, { epoch, index, rng: batchRng(seed, epoch, index) });
  if (out === null || typeof out !== 'object' || Object.values(out).some((v) => !isTensor(v)))
    throw new ArgumentError(`a batch transform must return named tensors, got ${describe(out)}`);
  return out;
}

/** Chooses which samples an epoch visits, in order (kn.distributed.DistributedSampler is one). */
export interface Sampler {
  /** number of indices per epoch */
  readonly length: number;
  setEpoch(epoch: number): void;
  indices(): Int32Array;
}

/** DataLoader options. */
const LOADER_OPTIONS = optionKeys<DataLoaderOptions>({
  batchSize: true,
  shuffle: true,
  seed: true,
  dropLast: true,
  sampleWeights: true,
  sampler: true,
  transform: true,
});

export interface DataLoaderOptions {
  batchSize?: number;
  shuffle?: boolean;
  seed?: number;
  /** drop the last incomplete batch */
  dropLast?: boolean;
  /**
   * Per-sample weights: each epoch draws `length` samples with replacement in proportion to them (class
   * imbalance; see balancedSampleWeights). Replaces shuffling.
   */
  sampleWeights?: ArrayLike<number> | null;
  /** Chooses the indices of each epoch (e.g. a DistributedSampler: this rank's shard). Replaces shuffling. */
  sampler?: Sampler | null;
  /** applied to each batch as it is yielded, seeded per (seed, epoch, batch): e.g. kn.data.augment.compose(...) */
  transform?: BatchTransform | null;
}

/**
 * Batches of a Dataset. `batches(epoch)` yields the batches of that epoch; iterating the loader itself walks
 * epochs 0, 1, 2... in turn.
 * @example
 * const ds = new kn.data.Dataset({ x: kn.arange(0, 10).reshape([10, 1]) });
 * const dl = new kn.data.DataLoader(ds, { batchSize: 4, shuffle: true, seed: 1 });
 * dl.length // 3
 */
export class DataLoader {
  readonly dataset: Dataset;
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  readonly sampler: Sampler | null;
  readonly transform: BatchTransform | null;
  private readonly cdf: Float64Array | null;
  private epoch = 0;

  constructor(dataset: Dataset | (DataLoaderOptions & { dataset: Dataset }), opts: DataLoaderOptions = {}) {
    let known = LOADER_OPTIONS;
    if (!(dataset instanceof Dataset)) {
      if (dataset && typeof dataset === 'object' && (dataset as { dataset?: unknown }).dataset instanceof Dataset) {
        known = [...LOADER_OPTIONS, 'dataset']; // new DataLoader({ dataset, ...options })
        opts = dataset;
        dataset = (dataset as { dataset: Dataset }).dataset;
      } else {
        throw new ArgumentError(`DataLoader takes a kn.data.Dataset, got ${describe(dataset)}`);
      }
    }
    this.dataset = dataset as Dataset;
    checkOptions(opts, 'DataLoader', known);
    const bs = opts.batchSize ?? 32;
    if (!Number.isInteger(bs) || bs < 1)
      throw new ArgumentError(`batchSize must be a positive integer, got ${describe(opts.batchSize)}`);
    this.batchSize = bs;
    this.shuffle = opts.shuffle ?? false;
    this.seed = opts.seed ?? 0;
    if (!Number.isInteger(this.seed)) throw new ArgumentError(`seed must be an integer, got ${describe(opts.seed)}`);
    this.dropLast = opts.dropLast ?? false;
    const w = opts.sampleWeights ?? null;
    if (w) {
      if (w.length !== this.dataset.length)
        throw new ShapeError(
          `sampleWeights has ${w.length} entries but the dataset has ${this.dataset.length} samples`,
        );
      const cdf = new Float64Array(w.length);
      let s = 0;
      for (let i = 0; i < w.length; i++) {
        const v = w[i]!;
        if (!(v >= 0) || !Number.isFinite(v))
          throw new ValidationError(`sampleWeights[${i}] = ${v}; weights must be finite and >= 0`);
        s += v;
        cdf[i] = s;
      }
      if (!(s > 0)) throw new ValidationError('sampleWeights are all zero');
      for (let i = 0; i < cdf.length; i++) cdf[i]! /= s;
      this.cdf = cdf;
    } else this.cdf = null;
    const sp = opts.sampler ?? null;
    if (sp !== null) {
      if (typeof sp !== 'object' || typeof sp.indices !== 'function' || typeof sp.setEpoch !== 'function')
        throw new ArgumentError(`sampler must have setEpoch(epoch) and indices(), got ${describe(sp)}`);
      if (w) throw new ArgumentError('a DataLoader takes sampleWeights or a sampler, not both');
      if (opts.shuffle) throw new ArgumentError('a DataLoader with a sampler does not shuffle: the sampler does');
    }
    this.sampler = sp;
    this.transform = transformOption(opts.transform);
  }

  /** Batches per epoch. */
  get length(): number {
    const n = this.sampler ? this.sampler.length : this.dataset.length;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /** Sample indices of an epoch, in order. */
  order(epoch: number): Int32Array {
    if (!Number.isInteger(epoch) || epoch < 0)
      throw new ArgumentError(`epoch must be a non-negative integer, got ${describe(epoch)}`);
    if (this.sampler) {
      this.sampler.setEpoch(epoch);
      const idx = this.sampler.indices();
      for (let i = 0; i < idx.length; i++)
        if (!(idx[i]! >= 0 && idx[i]! < this.dataset.length))
          throw new ValidationError(
            `the sampler gave index ${idx[i]}, outside the dataset [0, ${this.dataset.length})`,
          );
      return idx;
    }
    const n = this.dataset.length;
    if (this.cdf) {
      const cdf = this.cdf;
      const rnd = epochRng(this.seed, epoch);
      return Int32Array.from({ length: n }, () => {
        const u = rnd();
        let lo = 0,
          hi = n - 1;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (cdf[mid]! > u) hi = mid;
          else lo = mid + 1;
        }
        return lo;
      });
    }
    if (!this.shuffle) return Int32Array.from({ length: n }, (_, i) => i);
    return epochPermutation(n, this.seed, epoch);
  }

  /** The batches of one epoch (each a Record of new tensors; dispose them or run inside kn.tidy). */
  *batches(epoch = 0): Generator<Batch> {
    const ord = this.order(epoch);
    for (let b = 0; b < this.length; b++) {
      const batch = this.dataset.take(ord.subarray(b * this.batchSize, Math.min(ord.length, (b + 1) * this.batchSize)));
      yield this.transform ? applyTransform(this.transform, batch, this.seed, epoch, b) : batch;
    }
  }

  [Symbol.iterator](): Generator<Batch> {
    return this.batches(this.epoch++);
  }
}

/**
 * Per-sample weights 1 / count(class), so every class is drawn equally often by a weighted DataLoader.
 * @example kn.data.balancedSampleWeights([0, 0, 0, 1]) // [1/3, 1/3, 1/3, 1]
 */
export function balancedSampleWeights(labels: Tensor | ArrayLike<number>): Float64Array {
  const y = isTensor(labels) ? (labels.toArray() as ArrayLike<number>) : labels;
  const counts = new Map<number, number>();
  for (let i = 0; i < y.length; i++) counts.set(y[i]!, (counts.get(y[i]!) ?? 0) + 1);
  return Float64Array.from({ length: y.length }, (_, i) => 1 / counts.get(y[i]!)!);
}

/**
 * Per-class weights n / (C * count(c)) ("balanced", as scikit-learn computes them), for crossEntropy's `weight`.
 * A class with no samples gets weight 0.
 * @example kn.data.classWeights([0, 0, 0, 1], 2).toList() // [0.666..., 2]
 */
export function classWeights(labels: Tensor | ArrayLike<number>, numClasses: number): Tensor {
  if (!Number.isInteger(numClasses) || numClasses < 1)
    throw new ArgumentError(`numClasses must be a positive integer, got ${describe(numClasses)}`);
  const y = isTensor(labels) ? (labels.toArray() as ArrayLike<number>) : labels;
  const counts = new Float64Array(numClasses);
  for (let i = 0; i < y.length; i++) {
    const c = y[i]!;
    if (!Number.isInteger(c) || c < 0 || c >= numClasses)
      throw new ValidationError(`label ${c} at index ${i} is not in [0, ${numClasses})`);
    counts[c]!++;
  }
  return tensor(
    Array.from(counts, (c) => (c ? y.length / (numClasses * c) : 0)),
    [numClasses],
  );
}
