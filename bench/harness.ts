// Benchmark harness: timing is kn.bench (src/profile/bench.ts, a public API), shared with `kiln bench`.
import { cpus } from 'node:os';
import * as kn from '../src/index.js';
import { loadAddon } from '../src/backends/native/binding.js';
export { measure, measureAsync, type Timing, type MeasureOptions } from '../src/cli/timing.js';
export { bench, summarize, type BenchResult } from '../src/profile/bench.js';

type Addon = NonNullable<ReturnType<typeof loadAddon>['addon']>;

/** The cpu backend for a kernel bench: selected, with its addon and info, and the machine line printed. */
export function cpuBench(note = ''): { addon: Addon; info: ReturnType<Addon['info']> } {
  const { addon } = loadAddon();
  if (!addon) throw new Error('cpu backend unavailable');
  kn.setBackend('cpu');
  const info = addon.info();
  console.log(
    `# cpu: ${cpus()[0]?.model} | kiln kernels ${info.isa} | threads up to ${info.threads}${note ? ` | ${note}` : ''}`,
  );
  return { addon, info };
}

export function fmt(n: number, digits = 1): string {
  return n.toFixed(digits).padStart(8);
}
