// kn.bench: the benchmark harness kiln's own benchmarks use. Warm up, then repeat until both a minimum number of
// runs and a time budget are reached, waiting for the backend after each run so asynchronous work is counted;
// report median, min, max, mean and spread, with outliers (beyond the Tukey fences) counted and, by default,
// left out of mean and spread. An optional comparison function runs interleaved with the measured one, so both
// see the same machine noise, and the result carries the ratio of their medians.
import { currentBackend } from '../backends/registry.js';
import { ArgumentError, checkOptions, describe, optionKeys } from '../errors.js';

/** kn.bench options. */
export interface BenchOptions {
  /** runs before timing starts (default 3) */
  warmup?: number;
  /** keep repeating until this much time was spent measuring (default 300 ms) */
  minTimeMs?: number;
  /** at least this many timed runs (default 5) */
  minRepeats?: number;
  /** at most this many timed runs (default 1000) */
  maxRepeats?: number;
  /** 'drop' (default): leave runs outside [Q1 - 1.5 IQR, Q3 + 1.5 IQR] out of mean and std; 'keep': use all */
  outliers?: 'drop' | 'keep';
  /** wait for the current backend's queued work after each run (default true) */
  sync?: boolean;
  /** a second function timed the same way, interleaved run by run; its result goes in `compare` */
  compare?: () => unknown;
}

/** Timing of one function. */
export interface BenchTiming {
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** mean and standard deviation, outliers left out unless `outliers: 'keep'` */
  meanMs: number;
  stdMs: number;
  /** 90th percentile */
  p90Ms: number;
  repeats: number;
  /** runs outside the Tukey fences */
  outliers: number;
  /** every timed run, in order */
  samplesMs: number[];
}

/** What kn.bench returns. */
export interface BenchResult extends BenchTiming {
  /** the comparison function's timing, and `speedup` = its median / this median (> 1: fn is faster) */
  compare?: BenchTiming & { speedup: number };
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 1) return sorted[0]!;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos),
    hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/** Median, min, max, mean, spread and outliers of a set of times. */
export function summarize(samplesMs: readonly number[], outliers: 'drop' | 'keep' = 'drop'): BenchTiming {
  if (samplesMs.length === 0) throw new ArgumentError('summarize needs at least one sample');
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const q1 = quantile(sorted, 0.25),
    q3 = quantile(sorted, 0.75);
  const lo = q1 - 1.5 * (q3 - q1),
    hi = q3 + 1.5 * (q3 - q1);
  const inliers = sorted.filter((t) => t >= lo && t <= hi);
  const used = outliers === 'keep' || inliers.length === 0 ? sorted : inliers;
  const mean = used.reduce((a, b) => a + b, 0) / used.length;
  const variance = used.length > 1 ? used.reduce((a, b) => a + (b - mean) ** 2, 0) / (used.length - 1) : 0;
  return {
    medianMs: quantile(sorted, 0.5),
    minMs: sorted[0]!,
    maxMs: sorted[sorted.length - 1]!,
    meanMs: mean,
    stdMs: Math.sqrt(variance),
    p90Ms: quantile(sorted, 0.9),
    repeats: sorted.length,
    outliers: sorted.length - inliers.length,
    samplesMs: [...samplesMs],
  };
}

function count(v: number | undefined, name: string, def: number, min: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min)
    throw new ArgumentError(`bench: ${name} must be an integer >= ${min}, got ${describe(v)}`);
  return v;
}

/**
 * Times `fn` (sync or async): warm-up runs, then timed runs until `minRepeats` and `minTimeMs` are both
 * reached (or `maxRepeats`), each followed by a wait for the backend. Returns median/min/max/mean/std in ms.
 * @example const r = await kn.bench(() => kn.tidy(() => kn.ones([64, 64]).matmul(kn.ones([64, 64])).sum().item()), { minTimeMs: 20 }); r.medianMs > 0 // true
 */
export async function bench(fn: () => unknown, opts: BenchOptions = {}): Promise<BenchResult> {
  if (typeof fn !== 'function') throw new ArgumentError(`bench(fn) takes a function, got ${describe(fn)}`);
  checkOptions(
    opts,
    'bench',
    optionKeys<BenchOptions>({
      warmup: true,
      minTimeMs: true,
      minRepeats: true,
      maxRepeats: true,
      outliers: true,
      sync: true,
      compare: true,
    }),
  );
  const warmup = count(opts.warmup, 'warmup', 3, 0);
  const minRepeats = count(opts.minRepeats, 'minRepeats', 5, 1);
  const maxRepeats = count(opts.maxRepeats, 'maxRepeats', 1000, 1);
  if (maxRepeats < minRepeats)
    throw new ArgumentError(`bench: maxRepeats (${maxRepeats}) is below minRepeats (${minRepeats})`);
  const minTimeMs = opts.minTimeMs ?? 300;
  if (typeof minTimeMs !== 'number' || !(minTimeMs >= 0) || !Number.isFinite(minTimeMs))
    throw new ArgumentError(`bench: minTimeMs must be a non-negative number, got ${describe(minTimeMs)}`);
  const outliers = opts.outliers ?? 'drop';
  if (outliers !== 'drop' && outliers !== 'keep')
    throw new ArgumentError(`bench: outliers must be 'drop' or 'keep', got ${describe(outliers)}`);
  const cmp = opts.compare;
  if (cmp !== undefined && typeof cmp !== 'function')
    throw new ArgumentError(`bench: compare must be a function, got ${describe(cmp)}`);
  const sync = opts.sync ?? true;

  const once = async (f: () => unknown): Promise<number> => {
    const t0 = performance.now();
    const v = f();
    if (v instanceof Promise) await v;
    if (sync) {
      const be = currentBackend();
      if (be.syncNow) be.syncNow();
      else await be.sync();
    }
    return performance.now() - t0;
  };
  for (let i = 0; i < warmup; i++) {
    await once(fn);
    if (cmp) await once(cmp);
  }
  const a: number[] = [],
    b: number[] = [];
  const start = performance.now();
  while (a.length < minRepeats || (a.length < maxRepeats && performance.now() - start < minTimeMs)) {
    // alternate which runs first, so neither always follows the other's cache or thread-pool state
    if (cmp && a.length % 2 === 1) {
      b.push(await once(cmp));
      a.push(await once(fn));
    } else {
      a.push(await once(fn));
      if (cmp) b.push(await once(cmp));
    }
  }
  const r: BenchResult = summarize(a, outliers);
  if (cmp) {
    const c = summarize(b, outliers);
    r.compare = { ...c, speedup: c.medianMs / r.medianMs };
  }
  return r;
}
