// Deterministic memory: reference-counted storage, tidy() scopes, kn.memory() accounting.
import type { Backend, BackendName, Handle } from '../backends/backend.js';
import { ArgumentError, describe } from '../errors.js';
import type { DType } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';

interface Counts {
  buffers: number;
  bytes: number;
  tensors: number;
  peakBytes: number;
  /** the backend buffers were last made on, asked for its cache by memory() */
  backend?: Backend;
}
const perBackend = new Map<BackendName, Counts>();
let liveTensors = 0;
let totalBytes = 0,
  peakTotalBytes = 0;

function counts(b: BackendName): Counts {
  let c = perBackend.get(b);
  if (!c) perBackend.set(b, (c = { buffers: 0, bytes: 0, tensors: 0, peakBytes: 0 }));
  return c;
}

/** A backend buffer shared by a tensor and its views; freed when the last reference goes. */
export class Storage {
  private refs = 1;
  readonly bytes: number;
  /**
   * How many times the buffer was overwritten in place (assign, optimizer steps). Autograd notes it when it saves
   * a tensor and refuses a backward through values changed since (PyTorch's version counter).
   */
  version = 0;
  constructor(
    readonly backend: Backend,
    readonly handle: Handle,
    readonly dtype: DType,
    readonly numel: number,
  ) {
    this.bytes = backend.bytes(dtype, numel);
    const c = counts(backend.name);
    c.backend = backend;
    c.buffers++;
    c.bytes += this.bytes;
    if (c.bytes > c.peakBytes) c.peakBytes = c.bytes;
    totalBytes += this.bytes;
    if (totalBytes > peakTotalBytes) peakTotalBytes = totalBytes;
  }
  get alive(): boolean {
    return this.refs > 0;
  }
  /** How many tensors share this buffer. */
  get refCount(): number {
    return this.refs;
  }
  retain(): void {
    this.refs++;
  }
  release(): void {
    if (this.refs <= 0) return;
    if (--this.refs === 0) {
      const c = counts(this.backend.name);
      c.buffers--;
      c.bytes -= this.bytes;
      totalBytes -= this.bytes;
      this.backend.free(this.handle);
    }
  }
}

export function allocStorage(backend: Backend, dtype: DType, numel: number): Storage {
  return new Storage(backend, backend.alloc(dtype, numel), dtype, numel);
}

export function tensorCreated(b: BackendName): void {
  liveTensors++;
  counts(b).tensors++;
}
export function tensorReleased(b: BackendName): void {
  liveTensors--;
  counts(b).tensors--;
}

// ---------------- scopes ----------------
const scopes: Set<Tensor>[] = [];

// Tensors made outside every scope join the finalizer in batches: at the end of the current task (a microtask),
// or once PENDING_MAX / 2 live ones wait, whichever comes first. One disposed before then (the
// `a.matmul(b).dispose()` of a loop without tidy) never pays FinalizationRegistry's register and unregister
// (~0.4 us together, and the GC's bookkeeping of the cell). A batch is held strongly until it is registered, so
// a dropped tensor is collected that much later at most.
const PENDING_MAX = 64;
const pending: Tensor[] = [];
let flushQueued = false;
function registerPending(): void {
  for (const t of pending) t.ensureFinalizer(); // nothing for those disposed meanwhile
  pending.length = 0;
}

/**
 * Puts a tensor in the innermost tidy() scope. A tensor outside every scope gets the finalizer safety net
 * instead (in batches, above): temporaries that a tidy() disposes never pay for FinalizationRegistry bookkeeping.
 */
export function track(t: Tensor): void {
  const s = scopes[scopes.length - 1];
  if (s) {
    s.add(t);
    return;
  }
  pending.push(t);
  if (pending.length >= PENDING_MAX) {
    // drop the ones disposed already; register the rest when they still fill half a batch
    let n = 0;
    for (const p of pending) if (!p.isDisposed) pending[n++] = p;
    pending.length = n;
    if (n >= PENDING_MAX / 2) registerPending();
  }
  if (!flushQueued && pending.length > 0) {
    flushQueued = true; // one microtask per task, whatever a full batch registered meanwhile
    queueMicrotask(() => {
      flushQueued = false;
      registerPending();
    });
  }
}
/** Removes a tensor from every open scope (on dispose). */
export function forget(t: Tensor): void {
  for (const s of scopes) s.delete(t);
}
/** Removes a tensor from every open scope so tidy() will not dispose it (it now relies on dispose() or the finalizer). */
export function untrack(t: Tensor): void {
  forget(t);
  t.ensureFinalizer();
}

function collect(v: unknown, out: Set<Tensor>, seen: Set<unknown>, isTensor: (x: unknown) => x is Tensor): void {
  if (v === null || typeof v !== 'object' || seen.has(v)) return;
  seen.add(v);
  if (isTensor(v)) {
    out.add(v);
    return;
  }
  if (Array.isArray(v)) for (const x of v) collect(x, out, seen, isTensor);
  else if (v instanceof Map) for (const x of v.values()) collect(x, out, seen, isTensor);
  else if (Object.getPrototypeOf(v) === Object.prototype)
    for (const x of Object.values(v)) collect(x, out, seen, isTensor);
}

let tensorCheck: ((x: unknown) => x is Tensor) | null = null;
export function setTensorCheck(f: (x: unknown) => x is Tensor): void {
  tensorCheck = f;
}

/**
 * Runs `fn` and disposes every tensor it created, except the ones it returns (a tensor, or tensors inside
 * arrays / plain objects / Maps) and the ones passed to `kn.keep()`.
 * @example const x = kn.ones([2]); const y = kn.tidy(() => x.mul(2).add(1).relu()); y.toList() // [3, 3]
 */
export function tidy<T>(fn: () => T): T {
  if (typeof fn !== 'function') throw new ArgumentError('tidy(fn) takes a function');
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) {
    for (const t of scope) t.dispose();
    throw new ArgumentError(
      'tidy(fn) cannot take an async function: tensors would be disposed before the promise settles',
    );
  }
  const keepSet = new Set<Tensor>();
  collect(result, keepSet, new Set(), tensorCheck!);
  for (const t of scope) {
    if (keepSet.has(t)) track(t);
    else t.dispose();
  }
  return result;
}

/**
 * Keeps a tensor alive past the tidy() it was created in. Returns the tensor.
 * @example let k; kn.tidy(() => { k = kn.keep(kn.ones([2])); kn.zeros([2]); }); k.toList() // [1, 1]
 */
export function keep<T extends Tensor>(t: T): T {
  if (!tensorCheck?.(t)) throw new ArgumentError(`keep takes a Tensor, got ${describe(t)}`);
  untrack(t);
  return t;
}

export interface MemoryInfo {
  /** Live (not disposed) tensors, views included. */
  numTensors: number;
  /** Live backend buffers (several tensors may share one). */
  numBuffers: number;
  /** Bytes held by live buffers, all backends. */
  numBytes: number;
  /** The most bytes live buffers held at once since the process started or resetPeakMemory(), all backends. */
  peakBytes: number;
  /**
   * Bytes held beyond live buffers, kept for reuse: the cpu backend's freed buffers (KILN_CPU_CACHE_MB) and
   * weights it keeps packed (KILN_PACK_CACHE_MB). Not in numBytes; kn.emptyCache() returns them to the system.
   */
  cachedBytes: number;
  backends: Partial<
    Record<BackendName, { tensors: number; buffers: number; bytes: number; peakBytes: number; cachedBytes: number }>
  >;
}

/**
 * Live tensors, buffers and bytes per backend.
 * @example typeof kn.memory().numTensors // "number"
 */
export function memory(): MemoryInfo {
  let buffers = 0,
    bytes = 0,
    cached = 0;
  const backends: MemoryInfo['backends'] = {};
  for (const [name, c] of perBackend) {
    const cachedBytes = c.backend?.cachedBytes?.() ?? 0;
    buffers += c.buffers;
    bytes += c.bytes;
    cached += cachedBytes;
    backends[name] = { tensors: c.tensors, buffers: c.buffers, bytes: c.bytes, peakBytes: c.peakBytes, cachedBytes };
  }
  return {
    numTensors: liveTensors,
    numBuffers: buffers,
    numBytes: bytes,
    peakBytes: peakTotalBytes,
    cachedBytes: cached,
    backends,
  };
}

/**
 * Starts a new peak: kn.memory().peakBytes (and each backend's) becomes the bytes live now. Measure the peak
 * of one step by resetting before it and reading after.
 * @example kn.resetPeakMemory(); kn.tidy(() => kn.zeros([1024])); kn.memory().peakBytes >= 4096 // true
 */
export function resetPeakMemory(): void {
  peakTotalBytes = totalBytes;
  for (const c of perBackend.values()) c.peakBytes = c.bytes;
}
