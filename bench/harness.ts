// Benchmark harness: the timing helpers are shared with `kiln bench` (src/cli/timing.ts).
export { measure, measureAsync, type Timing, type MeasureOptions } from '../src/cli/timing.js';

export function fmt(n: number, digits = 1): string {
  return n.toFixed(digits).padStart(8);
}
