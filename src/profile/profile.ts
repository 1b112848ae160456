// kn.profile: runs a function with the recorder on, then aggregates what it recorded per op and per module,
// prints a table, and exports Chrome trace-event JSON.
import { threadId } from 'node:worker_threads';
import type { Backend, BackendName } from '../backends/backend.js';
import { loadAddon } from '../backends/native/binding.js';
import { ArgumentError, checkOptions, describe, optionKeys } from '../errors.js';
import { checkFilePath, writeFileAtomicSync } from '../io/atomic.js';
import type { OpName } from '../ops/table.js';
import { activeRecorder, Recorder, setActiveRecorder, type OpEvent, type SpanEvent } from './recorder.js';

export type { OpEvent, SpanEvent, Phase } from './recorder.js';

/** kn.profile options. */
export interface ProfileOptions {
  /**
   * A path: write the Chrome trace-event JSON there when the function returns (atomically). `true` or `false`:
   * write no file (the profile's toChromeTrace() has the trace either way).
   */
  trace?: string | boolean;
  /**
   * On backends that run kernels asynchronously (webgpu, cuda), wait for each kernel to finish before reading
   * the clock, so each op's time is its device time (default true). False measures submission only.
   */
  sync?: boolean;
  /** the peak to compare achieved GFLOP/s with; default: measured on the cpu backend (float32 FMA, all threads) */
  peakGflops?: number;
}

/** Totals of one op type on one backend. */
export interface OpStats {
  op: OpName;
  backend: BackendName;
  kernel: string;
  count: number;
  /** inclusive time in the dispatcher, ms */
  totalMs: number;
  kernelMs: number;
  dispatchMs: number;
  flops: number;
  /** achieved GFLOP/s in the kernel (flops / kernel time); 0 for ops that count no FLOPs */
  gflops: number;
  bytes: number;
  /** share of the profile's total kernel time, 0..1 */
  share: number;
}

/** Totals of one module (by dotted path): its own ops, and with its descendants'. */
export interface ModuleStats {
  module: string;
  type: string;
  /** forward calls */
  calls: number;
  /** kernel time of the ops this module ran itself in forward, and of the ops charged to it in backward, ms */
  forwardMs: number;
  backwardMs: number;
  /** forwardMs + backwardMs of this module and every module under it */
  inclusiveMs: number;
  ops: number;
  flops: number;
  bytes: number;
}

const peakCache = new Map<string, number>();
/** The measured float32 FMA peak of the cpu backend at its current thread count (GFLOP/s), cached. */
function measuredCpuPeak(): number | null {
  const { addon } = loadAddon();
  if (!addon) return null;
  const info = addon.info();
  const key = `${info.isa}/${info.threads}`;
  let p = peakCache.get(key);
  if (p === undefined) peakCache.set(key, (p = addon.peakFlops(100).gflops));
  return p;
}

function kernelNameOf(b: Backend): string {
  if (b.name === 'cpu') {
    const { addon } = loadAddon();
    return addon ? `cpu/${addon.info().isa}` : 'cpu';
  }
  if (b.name === 'js') return 'js/float64';
  if (b.name === 'webgpu') return 'webgpu/wgsl';
  return 'cuda';
}

let overheadUs: number | null = null;
/** What the profiler costs per recorded op (µs): the clock reads and the record itself, timed once (warm). */
function calibrateOverheadUs(): number {
  if (overheadUs === null) {
    timeRecords(500); // warm the recorder's code up first
    // the best of a few short rounds: a garbage collection or a preempted time slice inflates one round
    overheadUs = Math.min(...[0, 1, 2, 3, 4].map(() => timeRecords(300)));
  }
  return overheadUs;
}
function timeRecords(n: number): number {
  const r = new Recorder(false, () => 'calibration');
  const fake = { name: 'js' } as Backend;
  const shape = [4, 4];
  const inputs = [{ shape, dtype: 'float32' as const }];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    r.enterKernel();
    r.beforeRun();
    r.afterRun(fake);
    r.exitKernel(true, {
      op: 'add',
      backend: fake,
      inputs,
      attrs: [],
      outShape: shape,
      outDtype: 'float32',
      bytes: 64,
    });
  }
  return ((performance.now() - t0) * 1000) / n;
}

/** The result of kn.profile. */
export class Profile<T = unknown> {
  /** every kernel call, in order */
  readonly events: readonly OpEvent[];
  /** module forward spans, backward passes, vjp spans and optimizer steps */
  readonly spans: readonly SpanEvent[];
  /** per op type and backend, by kernel time (largest first) */
  readonly ops: OpStats[];
  /** per module, by inclusive time (largest first) */
  readonly modules: ModuleStats[];
  /** wall time of the profiled function, ms */
  readonly wallMs: number;
  /** time inside kernels (ops at depth 0 and the casts they needed), ms */
  readonly kernelMs: number;
  /** the dispatcher's own time (checks, conversions, allocation), ms */
  readonly dispatchMs: number;
  /** the rest of the wall time: autograd bookkeeping, the user's own JS, the profiler itself */
  readonly otherMs: number;
  readonly flops: number;
  /** flops / kernelMs, GFLOP/s */
  readonly achievedGflops: number;
  /** the peak it is compared with (GFLOP/s), or null where none was measured (js, webgpu, cuda) */
  readonly peakGflops: number | null;
  /** the profiler's cost of recording kernel calls: per call (µs, the best of a few timed rounds of the clock
   * reads and the record) and in total (ms); spans and building this report come on top */
  readonly overhead: { perOpUs: number; totalMs: number };
  /** what the profiled function returned */
  readonly result: T;
  private readonly startEpochUs: number;

  /** @internal */
  constructor(rec: Recorder, wallMs: number, result: T, peak: number | null, perOpUs: number) {
    this.events = rec.ops;
    this.spans = rec.spans;
    this.wallMs = wallMs;
    this.result = result;
    this.peakGflops = peak;
    this.startEpochUs = (performance.timeOrigin + rec.t0) * 1000;
    let kernelUs = 0,
      dispatchUs = 0,
      flops = 0;
    const byOp = new Map<string, OpStats>();
    const mods = new Map<string, ModuleStats>();
    const mod = (path: string, type: string): ModuleStats => {
      let m = mods.get(path);
      if (!m) {
        m = { module: path, type, calls: 0, forwardMs: 0, backwardMs: 0, inclusiveMs: 0, ops: 0, flops: 0, bytes: 0 };
        mods.set(path, m);
      }
      return m;
    };
    for (const e of rec.ops) {
      kernelUs += e.kernelUs;
      dispatchUs += e.dispatchUs;
      flops += e.flops;
      const key = `${e.op}\u0000${e.backend}`;
      let s = byOp.get(key);
      if (!s) {
        s = {
          op: e.op,
          backend: e.backend,
          kernel: e.kernel,
          count: 0,
          totalMs: 0,
          kernelMs: 0,
          dispatchMs: 0,
          flops: 0,
          gflops: 0,
          bytes: 0,
          share: 0,
        };
        byOp.set(key, s);
      }
      s.count++;
      if (e.depth === 0) s.totalMs += e.durUs / 1000;
      s.kernelMs += e.kernelUs / 1000;
      s.dispatchMs += e.dispatchUs / 1000;
      s.flops += e.flops;
      s.bytes += e.bytes;
      const m = mod(e.module, e.moduleType);
      m.ops++;
      m.flops += e.flops;
      m.bytes += e.bytes;
      if (e.phase === 'backward') m.backwardMs += e.kernelUs / 1000;
      else m.forwardMs += e.kernelUs / 1000;
    }
    for (const sp of rec.spans) if (sp.kind === 'module') mod(sp.module, sp.moduleType).calls++;
    for (const s of byOp.values()) {
      s.gflops = s.kernelMs > 0 ? s.flops / (s.kernelMs * 1e6) : 0;
      s.share = kernelUs > 0 ? (s.kernelMs * 1000) / kernelUs : 0;
    }
    // inclusive: a module's own time plus every module whose path extends it
    const all = [...mods.values()];
    for (const m of all) {
      const own = m.forwardMs + m.backwardMs;
      if (m.module === '') {
        m.inclusiveMs = own;
        continue;
      }
      m.inclusiveMs = own;
      for (const o of all)
        if (o !== m && o.module.startsWith(`${m.module}.`)) m.inclusiveMs += o.forwardMs + o.backwardMs;
    }
    this.kernelMs = kernelUs / 1000;
    this.dispatchMs = dispatchUs / 1000;
    this.otherMs = Math.max(0, wallMs - this.kernelMs - this.dispatchMs);
    this.flops = flops;
    this.achievedGflops = kernelUs > 0 ? flops / (kernelUs * 1000) : 0;
    this.overhead = { perOpUs, totalMs: (perOpUs * rec.ops.length) / 1000 };
    this.ops = [...byOp.values()].sort((a, b) => b.kernelMs - a.kernelMs);
    this.modules = all.sort((a, b) => b.inclusiveMs - a.inclusiveMs);
  }

  /**
   * The top entries as text: ops by kernel time, then modules, then the totals (wall, kernel, dispatch, other),
   * achieved GFLOP/s against the peak, and the profiler's own overhead.
   */
  table(opts: { top?: number } = {}): string {
    checkOptions(opts, 'Profile.table', ['top']);
    const top = opts.top ?? 15;
    const ms = (v: number): string => v.toFixed(3).padStart(10);
    const lines: string[] = [];
    lines.push(
      `${'op'.padEnd(28)} ${'backend'.padEnd(12)} ${'calls'.padStart(6)} ${'kernel ms'.padStart(10)} ${'dispatch ms'.padStart(11)} ${'share'.padStart(6)} ${'GFLOP/s'.padStart(8)} ${'MB alloc'.padStart(9)}`,
    );
    for (const s of this.ops.slice(0, top)) {
      lines.push(
        `${s.op.padEnd(28)} ${s.kernel.padEnd(12)} ${String(s.count).padStart(6)} ${ms(s.kernelMs)} ${s.dispatchMs.toFixed(3).padStart(11)} ${(100 * s.share).toFixed(1).padStart(5)}% ${(s.gflops ? s.gflops.toFixed(1) : '-').padStart(8)} ${(s.bytes / 2 ** 20).toFixed(2).padStart(9)}`,
      );
    }
    if (this.ops.length > top) lines.push(`... ${this.ops.length - top} more op types`);
    if (this.modules.some((m) => m.module !== '')) {
      lines.push('');
      lines.push(
        `${'module'.padEnd(36)} ${'type'.padEnd(14)} ${'calls'.padStart(6)} ${'forward ms'.padStart(10)} ${'backward ms'.padStart(11)} ${'incl. ms'.padStart(10)}`,
      );
      for (const m of this.modules.slice(0, top)) {
        lines.push(
          `${(m.module || '(outside modules)').padEnd(36)} ${m.type.padEnd(14)} ${String(m.calls).padStart(6)} ${ms(m.forwardMs)} ${m.backwardMs.toFixed(3).padStart(11)} ${ms(m.inclusiveMs)}`,
        );
      }
    }
    lines.push('');
    lines.push(
      `wall ${this.wallMs.toFixed(3)} ms = kernels ${this.kernelMs.toFixed(3)} + dispatch ${this.dispatchMs.toFixed(3)} + other ${this.otherMs.toFixed(3)} (autograd, your code, profiler) | ${this.events.length} kernel calls`,
    );
    const peak =
      this.peakGflops !== null
        ? `, ${((100 * this.achievedGflops) / this.peakGflops).toFixed(1)}% of the measured peak ${this.peakGflops.toFixed(1)} GFLOP/s`
        : ' (no measured peak for this backend)';
    lines.push(`achieved ${this.achievedGflops.toFixed(2)} GFLOP/s in kernels${peak}`);
    lines.push(
      `profiler: recording ~${this.overhead.perOpUs.toFixed(2)} µs per kernel call (${this.overhead.totalMs.toFixed(3)} ms here), plus module/backward spans and this report; nothing when not profiling`,
    );
    return lines.join('\n');
  }

  /**
   * Chrome trace-event JSON (open in https://ui.perfetto.dev or chrome://tracing): one track per JS thread,
   * kernels nested in the module, backward and optimizer spans that caused them. Timestamps are µs since the
   * Unix epoch, so traces from several processes or workers line up.
   */
  toChromeTrace(): ChromeTrace {
    const pid = process.pid;
    const base = this.startEpochUs;
    const tids = new Set<number>([threadId]);
    const events: TraceEvent[] = [];
    for (const s of this.spans) {
      tids.add(s.tid);
      events.push({
        name: s.name,
        cat: s.kind,
        ph: 'X',
        ts: base + s.startUs,
        dur: s.durUs,
        pid,
        tid: s.tid,
        args: { module: s.module, type: s.moduleType },
      });
    }
    for (const e of this.events) {
      tids.add(e.tid);
      events.push({
        name: e.op,
        cat: `op,${e.phase}`,
        ph: 'X',
        ts: base + e.startUs,
        dur: e.durUs,
        pid,
        tid: e.tid,
        args: {
          backend: e.backend,
          kernel: e.kernel,
          inputs: e.inputShapes.map((s, i) => `${e.inputDtypes[i]}[${s.join(',')}]`).join(' '),
          output: `${e.outDtype}[${e.outShape.join(',')}]`,
          kernelUs: e.kernelUs,
          dispatchUs: e.dispatchUs,
          bytes: e.bytes,
          flops: e.flops,
          module: e.module,
          phase: e.phase,
        },
      });
    }
    // outer spans first at equal start times, so viewers nest them the way they were entered
    events.sort((a, b) => a.ts! - b.ts! || b.dur! - a.dur!);
    const meta: TraceEvent[] = [
      { name: 'process_name', ph: 'M', pid, tid: threadId, args: { name: `kiln (pid ${pid})` } },
      ...[...tids].map((t): TraceEvent => ({
        name: 'thread_name',
        ph: 'M',
        pid,
        tid: t,
        args: { name: t === 0 ? 'main thread' : `worker ${t}` },
      })),
    ];
    return {
      traceEvents: [...meta, ...events],
      displayTimeUnit: 'ms',
      otherData: {
        wallMs: this.wallMs,
        kernelMs: this.kernelMs,
        dispatchMs: this.dispatchMs,
        achievedGflops: this.achievedGflops,
        peakGflops: this.peakGflops,
      },
    };
  }

  /** Writes toChromeTrace() to `path` (atomically). */
  writeChromeTrace(path: string): void {
    checkFilePath(path, 'writeChromeTrace');
    writeFileAtomicSync(path, [new TextEncoder().encode(JSON.stringify(this.toChromeTrace()))]);
  }
}

/** One trace event (the Trace Event Format's 'X' complete events and 'M' metadata). */
export interface TraceEvent {
  name: string;
  cat?: string;
  ph: 'X' | 'M';
  ts?: number;
  dur?: number;
  pid: number;
  tid: number;
  args?: Record<string, string | number | null>;
}
export interface ChromeTrace {
  traceEvents: TraceEvent[];
  displayTimeUnit: 'ms';
  otherData: Record<string, number | null>;
}

function checkProfileOptions(opts: ProfileOptions): void {
  checkOptions(opts, 'profile', optionKeys<ProfileOptions>({ trace: true, sync: true, peakGflops: true }));
  if (
    opts.trace !== undefined &&
    typeof opts.trace !== 'boolean' &&
    (typeof opts.trace !== 'string' || opts.trace === '')
  )
    throw new ArgumentError(`profile: trace must be a file path or a boolean, got ${describe(opts.trace)}`);
  if (opts.sync !== undefined && typeof opts.sync !== 'boolean')
    throw new ArgumentError(`profile: sync must be true or false, got ${describe(opts.sync)}`);
  if (opts.peakGflops !== undefined && !(typeof opts.peakGflops === 'number' && opts.peakGflops > 0))
    throw new ArgumentError(`profile: peakGflops must be a positive number, got ${describe(opts.peakGflops)}`);
}

/** @internal Starts recording; returns the function that stops it and builds the Profile. */
export function startProfile(opts: ProfileOptions = {}): (result: unknown) => Profile {
  checkProfileOptions(opts);
  if (activeRecorder !== null)
    throw new ArgumentError('kn.profile: a profile is already running (profiles do not nest)');
  const perOpUs = calibrateOverheadUs();
  const rec = new Recorder(opts.sync ?? true, kernelNameOf);
  setActiveRecorder(rec);
  return (result) => {
    const wallMs = performance.now() - rec.t0;
    setActiveRecorder(null);
    const onCpu = rec.ops.some((e) => e.backend === 'cpu');
    const peak = opts.peakGflops ?? (onCpu ? measuredCpuPeak() : null);
    const p = new Profile(rec, wallMs, result, peak, perOpUs);
    if (typeof opts.trace === 'string') p.writeChromeTrace(opts.trace);
    return p;
  };
}

/**
 * Runs `fn` and records every kernel it causes: op, backend and kernel, input shapes and dtypes, time (kernel
 * and dispatcher separately), bytes allocated and estimated FLOPs, charged to the module (forward) or to the
 * module whose graph node it differentiates (backward). Returns a Profile (a Promise of one for an async fn).
 * @example const p = kn.profile(() => kn.ones([8, 8]).matmul(kn.ones([8, 8])).sum().item()); p.ops.some((o) => o.op === 'matmul') // true
 */
export function profile<T>(fn: () => Promise<T>, opts?: ProfileOptions): Promise<Profile<T>>;
export function profile<T>(fn: () => T, opts?: ProfileOptions): Profile<T>;
export function profile<T>(fn: () => T | Promise<T>, opts: ProfileOptions = {}): Profile<T> | Promise<Profile<T>> {
  if (typeof fn !== 'function') throw new ArgumentError(`profile(fn) takes a function, got ${describe(fn)}`);
  const stop = startProfile(opts);
  let value: T | Promise<T>;
  try {
    value = fn();
  } catch (e) {
    stop(undefined);
    throw e;
  }
  if (value instanceof Promise) {
    return value.then(
      (v) => stop(v) as Profile<T>,
      (e: unknown) => {
        stop(undefined);
        throw e;
      },
    );
  }
  return stop(value) as Profile<T>;
}
