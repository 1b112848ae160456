// DistributedSampler: each rank's share of a dataset, with PyTorch's semantics (torch.utils.data.distributed):
// one order of the whole dataset per epoch, the same on every rank (seed + epoch), padded with its head to a
// multiple of the world size (or cut, with dropLast), of which rank r takes positions r, r + size, r + 2 size...
// Its shuffled order is DataLoader's, so the union of the ranks' batch b is the one-process run's batch b.
import { ArgumentError, checkOptions, describe, optionKeys } from '../errors.js';
import { epochPermutation, type Sampler } from '../data/loader.js';
import { rank as worldRank, size as worldSize } from './comm.js';

/** Options of DistributedSampler. */
export interface DistributedSamplerOptions {
  /** this process's rank (default: kn.distributed.rank()) */
  rank?: number;
  /** number of shards (default: kn.distributed.size()) */
  size?: number;
  /** a new order each epoch (default true) */
  shuffle?: boolean;
  /** the order depends only on (seed, epoch); every rank must use the same seed (default 0) */
  seed?: number;
  /** drop the tail that does not divide evenly, instead of padding with the head (default false) */
  dropLast?: boolean;
  /**
   * pad so every rank gets the same number of samples (default true, as PyTorch; the collectives of training
   * need it). `false` gives shards that differ by one, with no sample repeated: what evaluation wants.
   */
  pad?: boolean;
  /** the order of the whole dataset in an epoch (default: a seeded permutation, or 0..n-1 without shuffle) */
  order?: (epoch: number) => Int32Array;
}

function nonNegInt(v: unknown, what: string): number {
  if (!Number.isInteger(v) || (v as number) < 0)
    throw new ArgumentError(`DistributedSampler ${what} must be a non-negative integer, got ${describe(v)}`);
  return v as number;
}

/**
 * This rank's indices of a dataset of `n` samples, per epoch. Call setEpoch(e) before each epoch (DataLoader
 * does when given it as `sampler`): without it every epoch has the same order.
 * @example
 * const s = new kn.distributed.DistributedSampler(10, { rank: 1, size: 4, shuffle: false });
 * s.indices() // Int32Array [1, 5, 9]
 */
export class DistributedSampler implements Sampler {
  readonly n: number;
  readonly rank: number;
  readonly size: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  readonly pad: boolean;
  private readonly order: ((epoch: number) => Int32Array) | null;
  private epoch = 0;

  constructor(n: number, opts: DistributedSamplerOptions = {}) {
    this.n = nonNegInt(n, 'n');
    checkOptions(
      opts,
      'DistributedSampler',
      optionKeys<DistributedSamplerOptions>({
        rank: true,
        size: true,
        shuffle: true,
        seed: true,
        dropLast: true,
        pad: true,
        order: true,
      }),
    );
    this.size = opts.size === undefined ? worldSize() : nonNegInt(opts.size, 'size');
    if (this.size < 1) throw new ArgumentError('DistributedSampler size must be at least 1');
    this.rank = opts.rank === undefined ? worldRank() : nonNegInt(opts.rank, 'rank');
    if (this.rank >= this.size)
      throw new ArgumentError(`DistributedSampler rank ${this.rank} is not in [0, ${this.size})`);
    this.shuffle = opts.shuffle ?? true;
    this.seed = opts.seed ?? 0;
    if (!Number.isInteger(this.seed)) throw new ArgumentError(`seed must be an integer, got ${describe(opts.seed)}`);
    this.dropLast = opts.dropLast ?? false;
    this.pad = opts.pad ?? true;
    if (opts.order !== undefined && typeof opts.order !== 'function')
      throw new ArgumentError(`order must be a function (epoch) => Int32Array, got ${describe(opts.order)}`);
    this.order = opts.order ?? null;
  }

  /** Indices per epoch on this rank. */
  get length(): number {
    if (this.dropLast) return Math.floor(this.n / this.size);
    if (this.pad) return Math.ceil(this.n / this.size);
    return Math.floor(this.n / this.size) + (this.rank < this.n % this.size ? 1 : 0);
  }

  /** Selects the epoch whose order indices() returns. */
  setEpoch(epoch: number): void {
    this.epoch = nonNegInt(epoch, 'epoch');
  }

  /** This rank's indices for the current epoch. */
  indices(): Int32Array {
    let all: Int32Array;
    if (this.order) {
      all = this.order(this.epoch);
      if (!(all instanceof Int32Array) || all.length !== this.n)
        throw new ArgumentError(`the order function must return an Int32Array of ${this.n} indices`);
    } else if (this.shuffle) all = epochPermutation(this.n, this.seed, this.epoch);
    else all = Int32Array.from({ length: this.n }, (_, i) => i);
    let total: number;
    if (this.dropLast) total = Math.floor(this.n / this.size) * this.size;
    else if (this.pad) total = Math.ceil(this.n / this.size) * this.size;
    else total = this.n;
    if (total > all.length) {
      // pad with the head of the order, repeated if the padding is longer than the dataset (as PyTorch)
      const padded = new Int32Array(total);
      padded.set(all);
      for (let i = all.length; i < total; i++) padded[i] = all[(i - all.length) % all.length]!;
      all = padded;
    }
    const out = new Int32Array(this.length);
    for (let i = 0, j = this.rank; i < out.length; i++, j += this.size) out[i] = all[j]!;
    return out;
  }
}
