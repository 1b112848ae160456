// kn.profile and kn.bench: where a model spends its time, and timing the way kiln's benchmarks do. The public
// surface (src/index.ts re-exports all of it at the top level: kn.profile, kn.bench, kn.estimateFlops).
export {
  profile,
  Profile,
  type ProfileOptions,
  type OpStats,
  type ModuleStats,
  type OpEvent,
  type SpanEvent,
  type Phase,
  type ChromeTrace,
  type TraceEvent,
} from './profile.js';
export { bench, type BenchOptions, type BenchResult, type BenchTiming } from './bench.js';
export { estimateFlops } from './flops.js';
