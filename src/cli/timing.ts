// Timing for `kiln bench` and bench/: thin wrappers over kn.bench (src/profile/bench.ts) with the options the
// kernel benchmarks use (`repeats` caps the runs, at least 5 are timed).
import { bench } from '../profile/bench.js';

export interface Timing {
  medianMs: number;
  minMs: number;
  maxMs: number;
  repeats: number;
}
export interface MeasureOptions {
  warmup?: number;
  repeats?: number;
  minTimeMs?: number;
}

async function run(fn: () => unknown, opts: MeasureOptions): Promise<Timing> {
  const maxRepeats = Math.max(5, opts.repeats ?? 50);
  const r = await bench(fn, {
    warmup: opts.warmup ?? 3,
    minRepeats: 5,
    maxRepeats,
    minTimeMs: opts.minTimeMs ?? 300,
  });
  return { medianMs: r.medianMs, minMs: r.minMs, maxMs: r.maxMs, repeats: r.repeats };
}

/** Times a synchronous step. */
export function measure(fn: () => void, opts: MeasureOptions = {}): Promise<Timing> {
  return run(fn, opts);
}

/** Times an async step (awaited each time). */
export function measureAsync(fn: () => Promise<void>, opts: MeasureOptions = {}): Promise<Timing> {
  return run(fn, opts);
}
