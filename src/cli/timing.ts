// Timing for benchmarks (used by `kiln bench` and by bench/): synchronise the backend before reading the
// clock, warm up, repeat until enough runs and time, report median and spread.
import { ready } from '../backends/registry.js';

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

function summary(times: number[]): Timing {
  times.sort((a, b) => a - b);
  return {
    medianMs: times[Math.floor(times.length / 2)]!,
    minMs: times[0]!,
    maxMs: times[times.length - 1]!,
    repeats: times.length,
  };
}

/** Times a synchronous step. */
export async function measure(fn: () => void, opts: MeasureOptions = {}): Promise<Timing> {
  for (let i = 0; i < (opts.warmup ?? 3); i++) fn();
  await ready();
  const times: number[] = [];
  const deadline = performance.now() + (opts.minTimeMs ?? 300);
  const maxRepeats = opts.repeats ?? 50;
  while (times.length < 5 || (times.length < maxRepeats && performance.now() < deadline)) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  return summary(times);
}

/** Times an async step (awaited each time). */
export async function measureAsync(fn: () => Promise<void>, opts: MeasureOptions = {}): Promise<Timing> {
  for (let i = 0; i < (opts.warmup ?? 3); i++) await fn();
  const times: number[] = [];
  const deadline = performance.now() + (opts.minTimeMs ?? 300);
  const maxRepeats = opts.repeats ?? 50;
  while (times.length < 5 || (times.length < maxRepeats && performance.now() < deadline)) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  return summary(times);
}
