// The recording side of kn.profile: what the dispatcher, Module.call, the autograd tape, backward() and the
// optimizers call while a profile runs. While none runs, `activeRecorder` is null and each of those places pays
// one null check: no clock is read and nothing is allocated.
import { threadId } from 'node:worker_threads';
import type { Backend, BackendName, KernelOut, KernelView } from '../backends/backend.js';
import type { OpName } from '../ops/table.js';
import type { DType } from '../tensor/dtype.js';
import { estimateFlops } from './flops.js';

/** Where in a training step an op ran. */
export type Phase = 'forward' | 'backward' | 'optimizer';

/** One kernel call, as kn.profile records it. Times are microseconds; `startUs` counts from the profile's start. */
export interface OpEvent {
  op: OpName;
  backend: BackendName;
  /** the kernel that ran: the backend's variant (cpu: the ISA pass, e.g. 'cpu/avx512') */
  kernel: string;
  inputShapes: number[][];
  inputDtypes: DType[];
  outShape: number[];
  outDtype: DType;
  startUs: number;
  /** from entering the dispatcher to leaving it, nested kernels (input casts and copies) included */
  durUs: number;
  /** inside the backend's kernel (for asynchronous backends with `sync`, until the device finished it) */
  kernelUs: number;
  /** the dispatcher's own time: checks, conversions, allocation (durUs - kernelUs - nested kernels' durUs) */
  dispatchUs: number;
  /** bytes of the output buffer this call allocated */
  bytes: number;
  /** estimated floating-point operations (multiply-add = 2) */
  flops: number;
  /** dotted path of the innermost module that caused it ('' outside every module) */
  module: string;
  /** that module's class name ('' outside every module) */
  moduleType: string;
  phase: Phase;
  /** the JS thread (worker_threads threadId; 0 = main) */
  tid: number;
  /** nesting: 0 for a call the user's code made, 1 for a cast or copy the dispatcher made for it, ... */
  depth: number;
}

/** A span that is not a kernel: a module's forward, a backward pass, one node's vjp, an optimizer step. */
export interface SpanEvent {
  name: string;
  kind: 'module' | 'backward' | 'vjp' | 'optimizer';
  module: string;
  moduleType: string;
  startUs: number;
  durUs: number;
  tid: number;
}

interface Scope {
  path: string;
  type: string;
}
interface ModuleLike {
  constructor: { name: string };
  namedChildren(): [string, ModuleLike][];
}
interface Frame {
  start: number;
  kernelStart: number;
  kernelUs: number;
  childUs: number;
}

const NO_SCOPE: Scope = { path: '', type: '' };

export class Recorder {
  readonly ops: OpEvent[] = [];
  readonly spans: SpanEvent[] = [];
  readonly t0: number;
  private readonly frames: Frame[] = [];
  private readonly modules: { scope: Scope; start: number; module: ModuleLike }[] = [];
  private readonly nodeScopes = new WeakMap<object, Scope>();
  private phase: Phase = 'forward';
  private backwardScope: Scope | null = null;
  private readonly kernelNames = new Map<Backend, string>();

  constructor(
    /** block after each kernel on backends that run asynchronously, so kernel times are device times */
    readonly sync: boolean,
    private readonly kernelName: (b: Backend) => string,
  ) {
    this.t0 = performance.now();
  }

  now(): number {
    return performance.now();
  }
  private us(t: number): number {
    return (t - this.t0) * 1000;
  }
  private scope(): Scope {
    if (this.phase === 'backward') return this.backwardScope ?? NO_SCOPE;
    return this.modules[this.modules.length - 1]?.scope ?? NO_SCOPE;
  }

  // ---- the dispatcher ----
  enterKernel(): void {
    this.frames.push({ start: performance.now(), kernelStart: 0, kernelUs: 0, childUs: 0 });
  }
  beforeRun(): void {
    this.frames[this.frames.length - 1]!.kernelStart = performance.now();
  }
  afterRun(backend: Backend): void {
    if (this.sync && backend.syncNow) backend.syncNow();
    const f = this.frames[this.frames.length - 1]!;
    f.kernelUs = (performance.now() - f.kernelStart) * 1000;
  }
  /** Leaves a dispatcher call; `ok` false when it threw (nothing is recorded then). */
  exitKernel(ok: boolean, call: KernelCall): void {
    const f = this.frames.pop()!;
    const end = performance.now();
    const durUs = (end - f.start) * 1000;
    const parent = this.frames[this.frames.length - 1];
    if (parent) parent.childUs += durUs;
    if (!ok) return;
    const { op, backend, inputs, outShape, outDtype } = call;
    let kernel = this.kernelNames.get(backend);
    if (kernel === undefined) this.kernelNames.set(backend, (kernel = this.kernelName(backend)));
    const inputShapes = inputs.map((t) => [...t.shape]);
    const s = this.scope();
    this.ops.push({
      op,
      backend: backend.name,
      kernel,
      inputShapes,
      inputDtypes: inputs.map((t) => t.dtype),
      outShape: [...outShape],
      outDtype,
      startUs: this.us(f.start),
      durUs,
      kernelUs: f.kernelUs,
      dispatchUs: Math.max(0, durUs - f.kernelUs - f.childUs),
      bytes: call.bytes,
      flops: estimateFlops(op, inputShapes, outShape, call.attrs),
      module: s.path,
      moduleType: s.type,
      phase: this.phase,
      tid: threadId,
      depth: this.frames.length,
    });
  }

  // ---- modules ----
  enterModule(m: ModuleLike): void {
    const parent = this.modules[this.modules.length - 1];
    let path = m.constructor.name;
    if (parent) {
      const name = parent.module.namedChildren().find(([, c]) => c === m)?.[0];
      path = `${parent.scope.path}.${name ?? m.constructor.name}`;
    }
    this.modules.push({ scope: { path, type: m.constructor.name }, start: performance.now(), module: m });
  }
  exitModule(): void {
    const f = this.modules.pop()!;
    if (this.phase !== 'forward') return; // a module called inside backward or a step: its ops carry that phase
    this.spans.push({
      name: f.scope.path,
      kind: 'module',
      module: f.scope.path,
      moduleType: f.scope.type,
      startUs: this.us(f.start),
      durUs: (performance.now() - f.start) * 1000,
      tid: threadId,
    });
  }

  // ---- autograd ----
  /** Remembers which module was running when a graph node was recorded (backward ops are charged to it). */
  tagNode(node: object): void {
    this.nodeScopes.set(node, this.modules[this.modules.length - 1]?.scope ?? NO_SCOPE);
  }
  /** Runs `fn` as a phase (a backward pass or an optimizer step); returns its result. */
  phaseSpan<T>(phase: Phase, name: string, fn: () => T): T {
    const prev = this.phase,
      prevScope = this.backwardScope;
    this.phase = phase;
    const start = performance.now();
    try {
      return fn();
    } finally {
      this.spans.push({
        name,
        kind: phase === 'backward' ? 'backward' : 'optimizer',
        module: '',
        moduleType: '',
        startUs: this.us(start),
        durUs: (performance.now() - start) * 1000,
        tid: threadId,
      });
      this.phase = prev;
      this.backwardScope = prevScope;
    }
  }
  /** Runs one node's vjp with the module that recorded the node as the scope of its ops. */
  vjpSpan<T>(node: object, op: string, fn: () => T): T {
    const prevScope = this.backwardScope;
    const s = this.nodeScopes.get(node) ?? NO_SCOPE;
    this.backwardScope = s;
    const start = performance.now();
    try {
      return fn();
    } finally {
      this.spans.push({
        name: `${op} backward`,
        kind: 'vjp',
        module: s.path,
        moduleType: s.type,
        startUs: this.us(start),
        durUs: (performance.now() - start) * 1000,
        tid: threadId,
      });
      this.backwardScope = prevScope;
    }
  }
}

/** What the recorder keeps of one dispatcher call, known once the call has returned. */
export interface KernelCall {
  op: OpName;
  backend: Backend;
  inputs: readonly { shape: readonly number[]; dtype: DType }[];
  attrs: readonly number[];
  outShape: readonly number[];
  outDtype: DType;
  /** bytes of the result the call allocated; 0 when it wrote into existing storage */
  bytes: number;
}

/**
 * Runs `call` as one dispatcher call: inside a recorder frame when a profile runs (with `describe` telling the
 * recorder what ran, from the call's result; undefined when it threw), bare otherwise. Callers on the hot path
 * test `activeRecorder` themselves first, so that no closure is made while nothing is profiled.
 */
export function recordKernel<T>(call: () => T, describe: (out: T | undefined) => KernelCall): T {
  const rec = activeRecorder;
  if (rec === null) return call();
  rec.enterKernel();
  let ok = false,
    out: T | undefined;
  try {
    out = call();
    ok = true;
    return out;
  } finally {
    rec.exitKernel(ok, describe(out));
  }
}

/** `backend.run`, with the kernel's own time measured when a profile runs (the part of a call not dispatch). */
export function runBackend(
  backend: Backend,
  op: OpName,
  inputs: readonly KernelView[],
  out: KernelOut,
  attrs: readonly number[],
): void {
  const rec = activeRecorder;
  if (rec !== null) rec.beforeRun();
  backend.run(op, inputs, out, attrs);
  if (rec !== null) rec.afterRun(backend);
}

/** The recorder of the profile now running, or null. Read by the hooks; set only by kn.profile. */
export let activeRecorder: Recorder | null = null;

export function setActiveRecorder(r: Recorder | null): void {
  activeRecorder = r;
}
