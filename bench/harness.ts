// Benchmark harness: synchronise the backend before reading the clock, warm up, repeat, report median and spread.
import * as kn from '../src/index.js';

export interface Timing { medianMs: number; minMs: number; maxMs: number; repeats: number }

export async function measure(fn: () => void, opts: { warmup?: number; repeats?: number; minTimeMs?: number } = {}): Promise<Timing> {
  const warmup = opts.warmup ?? 3;
  for (let i = 0; i < warmup; i++) fn();
  await kn.ready();
  const times: number[] = [];
  const deadline = performance.now() + (opts.minTimeMs ?? 300);
  const maxRepeats = opts.repeats ?? 50;
  while (times.length < 5 || (times.length < maxRepeats && performance.now() < deadline)) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { medianMs: times[Math.floor(times.length / 2)]!, minMs: times[0]!, maxMs: times[times.length - 1]!, repeats: times.length };
}

export function fmt(n: number, digits = 1): string {
  return n.toFixed(digits).padStart(8);
}

/** measure() for an async step (awaited each time). */
export async function measureAsync(fn: () => Promise<void>, opts: { warmup?: number; repeats?: number; minTimeMs?: number } = {}): Promise<Timing> {
  for (let i = 0; i < (opts.warmup ?? 3); i++) await fn();
  const times: number[] = [];
  const deadline = performance.now() + (opts.minTimeMs ?? 300);
  const maxRepeats = opts.repeats ?? 50;
  while (times.length < 5 || (times.length < maxRepeats && performance.now() < deadline)) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { medianMs: times[Math.floor(times.length / 2)]!, minMs: times[0]!, maxMs: times[times.length - 1]!, repeats: times.length };
}
