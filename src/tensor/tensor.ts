import type { Backend, BackendName, KernelView } from '../backends/backend.js';
import { getBackendInstance } from '../backends/registry.js';
import { noGrad, record, type Node } from '../autograd/tape.js';
import { ArgumentError, DTypeError, ShapeError, describe } from '../errors.js';
import type { OpName } from '../ops/table.js';
import { recordKernel, runBackend } from '../profile/recorder.js';
import {
  allocStorage,
  forget,
  setTensorCheck,
  Storage,
  tensorCreated,
  tensorReleased,
  track,
} from '../engine/memory.js';
import { encodeStorage, isFloat, toHostArray, type DType, type HostArray, type StorageArray } from './dtype.js';
import { contiguousStrides, isContiguous, numel, shapeStr, type Shape } from './shape.js';

/** What the finalizer needs to release a tensor nobody disposed (must not reference the tensor). */
interface Resources {
  storage: Storage;
  node: Node | null;
  backend: BackendName;
  released: boolean;
  registered: boolean;
}

function releaseResources(r: Resources): void {
  if (r.released) return;
  r.released = true;
  r.storage.release();
  r.node?.release();
  tensorReleased(r.backend);
}

const finalizer = new FinalizationRegistry<Resources>(releaseResources);

export type AxisArg = number | readonly number[];

/**
 * An n-dimensional array on one backend. Views (reshape of contiguous data, transpose, permute, slice,
 * expand) share storage with their source. Free memory with `dispose()` or `kn.tidy()`; a finalizer is the
 * safety net.
 */
export class Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** @internal element strides */
  readonly strides: readonly number[];
  /** @internal element offset into storage */
  readonly offset: number;
  private readonly res: Resources;
  private _requiresGrad = false;
  private _grad: Tensor | null = null;
  /** Gradient accumulated by `backward()` (leaf tensors only). Settable to a Tensor or null. */
  get grad(): Tensor | null {
    return this._grad;
  }
  set grad(g: Tensor | null) {
    if (g !== null && g !== undefined && !(g instanceof Tensor))
      throw new ArgumentError(`a gradient must be a Tensor or null, got ${describe(g)}`);
    this._grad = g ?? null;
  }

  private constructor(
    storage: Storage,
    shape: Shape,
    strides: readonly number[],
    offset: number,
    dtype: DType,
    tracked = true,
  ) {
    this.shape = Object.freeze(shape.slice());
    this.strides = Object.freeze(strides.slice());
    this.offset = offset;
    this.dtype = dtype;
    this.res = { storage, node: null, backend: storage.backend.name, released: false, registered: false };
    tensorCreated(storage.backend.name);
    // into the current tidy() scope, or under the finalizer when there is none
    if (tracked) track(this);
  }

  /** @internal wraps a freshly allocated storage (takes over its reference). */
  static fromStorage(storage: Storage, shape: Shape, dtype: DType): Tensor {
    return new Tensor(storage, shape, contiguousStrides(shape), 0, dtype);
  }

  /**
   * @internal a view sharing this tensor's storage. `temporary`: an op's own operand view that the op disposes
   * in a `finally` before it returns; it joins no tidy() scope and skips the finalizer (a FinalizationRegistry
   * entry made and removed per call cost ~0.7 µs, a third of a small matmul's dispatch outside tidy()).
   */
  view(shape: Shape, strides: readonly number[], offset: number, temporary = false): Tensor {
    this.assertAlive('view');
    this.res.storage.retain();
    return new Tensor(this.res.storage, shape, strides, offset, this.dtype, !temporary);
  }

  /** @internal uploads host data into a new tensor on a backend. */
  static fromHost(data: StorageArray, shape: Shape, dtype: DType, backend: Backend): Tensor {
    const storage = allocStorage(backend, dtype, data.length);
    try {
      backend.write(storage.handle, dtype, data, 0);
    } catch (e) {
      storage.release();
      throw e;
    }
    return Tensor.fromStorage(storage, shape, dtype);
  }

  /** @internal numbers -> tensor; exact float64 where the backend stores it (the js reference; used by gradcheck). */
  static fromHostNumbers(
    values: ArrayLike<number>,
    shape: Shape,
    backend: BackendName,
    dtype: DType = 'float32',
  ): Tensor {
    const b = getBackendInstance(backend);
    if (!b.writeFloat64 || dtype !== 'float32') return Tensor.fromHost(encodeStorage(values, dtype), shape, dtype, b);
    const storage = allocStorage(b, dtype, values.length);
    try {
      b.writeFloat64(storage.handle, values, 0);
    } catch (e) {
      storage.release();
      throw e;
    }
    return Tensor.fromStorage(storage, shape, dtype);
  }

  get size(): number {
    return numel(this.shape);
  }
  get ndim(): number {
    return this.shape.length;
  }
  get backend(): BackendName {
    return this.res.backend;
  }
  /** @internal */
  get backendInstance(): Backend {
    return this.res.storage.backend;
  }
  get isDisposed(): boolean {
    return this.res.released;
  }
  /** @internal autograd node that produced this tensor (null for leaves and constants). */
  get node(): Node | null {
    return this.res.node;
  }
  /** @internal */
  setNode(n: Node): void {
    if (this.res.node) this.res.node.release();
    n.retain();
    this.res.node = n;
    this._requiresGrad = true;
  }

  get requiresGrad(): boolean {
    return this._requiresGrad;
  }
  set requiresGrad(v: boolean) {
    if (typeof v !== 'boolean') throw new ArgumentError(`requiresGrad must be a boolean, got ${describe(v)}`);
    if (v && !isFloat(this.dtype))
      throw new DTypeError(`only floating-point tensors can require gradients, this one is ${this.dtype}`);
    if (!v && this.res.node)
      throw new ArgumentError('requiresGrad cannot be turned off on a non-leaf tensor; use t.detach()');
    this._requiresGrad = v;
  }

  /** True for tensors created by the user (not the result of a recorded op). */
  get isLeaf(): boolean {
    return this.res.node === null;
  }

  /** @internal True when no other tensor shares this one's buffer and it covers the buffer exactly (so it can
   * be handed over instead of copied). */
  ownsBuffer(): boolean {
    const st = this.res.storage;
    return (
      !this.res.released && st.refCount === 1 && this.offset === 0 && this.size === st.numel && this.isContiguous()
    );
  }

  isContiguous(): boolean {
    return isContiguous(this.shape, this.strides);
  }

  /** @internal */
  assertAlive(what = 'this operation'): void {
    if (this.res.released) {
      throw new ArgumentError(`${what}: tensor ${shapeStr(this.shape)} ${this.dtype} was disposed and cannot be used`);
    }
  }

  /** @internal */
  kernelView(): KernelView {
    this.assertAlive();
    return {
      handle: this.res.storage.handle,
      dtype: this.dtype,
      shape: this.shape,
      strides: this.strides,
      offset: this.offset,
    };
  }

  /** @internal registers the finalizer safety net (once), for tensors that outlive every tidy() scope. */
  ensureFinalizer(): void {
    if (this.res.registered || this.res.released) return;
    this.res.registered = true;
    finalizer.register(this, this.res, this.res);
  }

  /** Frees this tensor's memory (shared storage is freed when its last view goes). Idempotent. */
  dispose(): void {
    if (this.res.released) return;
    if (this.res.registered) finalizer.unregister(this.res);
    forget(this);
    releaseResources(this.res);
    if (this.grad) {
      this.grad.dispose();
      this.grad = null;
    }
  }

  private readStorage(): StorageArray {
    this.assertAlive('toArray');
    if (this.isContiguous()) {
      return this.backendInstance.read(this.res.storage.handle, this.dtype, this.offset, this.size);
    }
    const c = this.contiguous();
    try {
      return c.backendInstance.read(c.res.storage.handle, c.dtype, 0, c.size);
    } finally {
      c.dispose();
    }
  }

  /**
   * Copies the values to a typed array (row-major). float16/bfloat16 come back as Float32Array, bool as Uint8Array.
   * @example kn.tensor([[1, 2], [3, 4]]).toArray() // Float32Array [1, 2, 3, 4]
   */
  toArray(): HostArray {
    return toHostArray(this.readStorage(), this.dtype);
  }

  /** Values as float64. On the js backend this is the exact float64 reference value (no float32 rounding). */
  toFloat64Array(): Float64Array {
    this.assertAlive('toFloat64Array');
    const b = this.backendInstance;
    if (!b.readFloat64 || this.dtype !== 'float32') return Float64Array.from(this.toArray() as ArrayLike<number>);
    const c = this.contiguous();
    try {
      return b.readFloat64(c.res.storage.handle, c.offset, c.size);
    } finally {
      c.dispose();
    }
  }

  /** Async read (waits for the device on GPU backends). */
  async data(): Promise<HostArray> {
    this.assertAlive('data');
    await this.backendInstance.sync();
    return this.toArray();
  }

  /** The value of a one-element tensor. */
  item(): number {
    if (this.size !== 1)
      throw new ArgumentError(`item() needs a tensor with one element, this one has shape ${shapeStr(this.shape)}`);
    return this.toArray()[0]!;
  }

  /** Nested JS arrays of the values. */
  toList(): unknown {
    const flat = Array.from(this.toArray() as ArrayLike<number>);
    if (this.ndim === 0) return flat[0];
    const build = (d: number, off: number): unknown => {
      const n = this.shape[d]!;
      const stride = numel(this.shape.slice(d + 1));
      return Array.from({ length: n }, (_, i) =>
        d === this.ndim - 1 ? flat[off + i] : build(d + 1, off + i * stride),
      );
    };
    return build(0, 0);
  }

  toString(): string {
    if (this.isDisposed) return `Tensor(disposed, shape=${shapeStr(this.shape)}, dtype=${this.dtype})`;
    const body = this.size <= 100 ? JSON.stringify(this.toList()) : `<${this.size} values>`;
    return `Tensor(${body}, shape=${shapeStr(this.shape)}, dtype=${this.dtype}, backend=${this.backend})`;
  }

  /**
   * @internal Overwrites this tensor's values in place with `src`'s (same shape; cast to this dtype; any
   * backend). This tensor must be contiguous. Not recorded for autograd: it is how parameters and buffers are
   * loaded and updated outside the graph.
   */
  assign(src: Tensor): void {
    this.assertAlive('assign');
    src.assertAlive('assign');
    if (src.shape.length !== this.shape.length || src.shape.some((d, i) => d !== this.shape[i])) {
      throw new ShapeError(
        `cannot assign a tensor of shape ${shapeStr(src.shape)} to one of shape ${shapeStr(this.shape)}`,
      );
    }
    if (!this.isContiguous()) throw new ArgumentError('assign: the target tensor must be contiguous');
    this.bumpVersion();
    const b = this.backendInstance;
    if (b.writeFloat64 && src.backendInstance === b && this.dtype === 'float32' && src.dtype === 'float32') {
      b.writeFloat64(this.res.storage.handle, src.toFloat64Array(), this.offset);
      return;
    }
    if (copyOnDevice(this, src)) return; // the same backend: a kernel, no round trip through the host
    const c = src.dtype === this.dtype ? src : noGrad(() => src.cast(this.dtype));
    try {
      b.write(this.res.storage.handle, this.dtype, c.readStorage(), this.offset);
    } finally {
      if (c !== src) c.dispose();
    }
  }

  /**
   * @internal Copies the values into `dst` (row-major, `dst.length === size`) as float32, without allocating
   * on backends that can read into an existing array. Used by kn.distributed to fill gradient buckets.
   */
  copyToFloat32(dst: Float32Array): void {
    this.assertAlive('copyToFloat32');
    if (dst.length !== this.size)
      throw new ShapeError(`copyToFloat32: destination holds ${dst.length} values, the tensor ${this.size}`);
    const b = this.backendInstance;
    if (this.dtype === 'float32' && b.readInto && this.isContiguous()) {
      b.readInto(this.res.storage.handle, this.dtype, this.offset, dst);
      return;
    }
    dst.set(this.toArray() as ArrayLike<number>);
  }

  /**
   * @internal How many times this tensor's storage (shared by its views) was overwritten in place; autograd
   * compares it at backward with the count when an op saved the tensor.
   */
  get version(): number {
    return this.res.storage.version;
  }

  /** @internal Counts an in-place write into this tensor's storage by a kernel (optimizer steps). */
  bumpVersion(): void {
    this.res.storage.version++;
  }

  /** @internal The backend's handle of this tensor's storage (a native buffer id on cpu and cuda). */
  storageHandle(): unknown {
    this.assertAlive('storageHandle');
    return this.res.storage.handle;
  }

  /** @internal Overwrites this (contiguous) tensor's values in place from float32 `src` (cast to this dtype). */
  copyFromFloat32(src: Float32Array): void {
    this.assertAlive('copyFromFloat32');
    if (src.length !== this.size)
      throw new ShapeError(`copyFromFloat32: source holds ${src.length} values, the tensor ${this.size}`);
    if (!this.isContiguous()) throw new ArgumentError('copyFromFloat32: the target tensor must be contiguous');
    this.bumpVersion();
    if (this.dtype === 'float32') {
      this.backendInstance.write(this.res.storage.handle, this.dtype, src, this.offset);
      return;
    }
    const t = Tensor.fromHost(src, this.shape, 'float32', this.backendInstance);
    try {
      this.assign(t);
    } finally {
      t.dispose();
    }
  }

  /**
   * Copies this tensor to another backend (a clone on its own). Differentiable: the gradient goes back to this
   * tensor's backend, so one graph may span backends. The copy of a tensor that requires grad is not a leaf (as
   * in PyTorch): for a new parameter on the other backend, move `t.detach()` and set `requiresGrad` on it.
   */
  to(backend: BackendName): Tensor {
    this.assertAlive('to');
    const target = getBackendInstance(backend);
    if (target === this.backendInstance) return this.clone();
    const from = this.backend;
    const y = Tensor.fromHost(this.readStorage(), this.shape, this.dtype, target);
    return record('to', y, [this], [], (g) => [g.to(from)]);
  }

  // ---- autograd ----
  // backward() is attached with the op methods (src/tensor/methods.ts)
  /** A tensor sharing this storage, cut from the graph. */
  detach(): Tensor {
    return this.view(this.shape, this.strides, this.offset);
  }
}

setTensorCheck((x: unknown): x is Tensor => x instanceof Tensor);

/**
 * True for kiln tensors.
 * @example kn.isTensor(kn.ones([1])) // true
 */
export function isTensor(x: unknown): x is Tensor {
  return x instanceof Tensor;
}

export function assertTensor(x: unknown, what: string): Tensor {
  if (!(x instanceof Tensor)) throw new ArgumentError(`${what} must be a kiln Tensor, got ${describe(x)}`);
  x.assertAlive(what);
  return x;
}

/**
 * Overwrites `dst` with `src`'s values on the device, by the copy kernel (or cast, when the dtypes differ) writing
 * straight into `dst`'s buffer: no host round trip, so no wait for the device. Returns false, doing nothing, where
 * that cannot be done (another backend, `dst` not contiguous from the start of its buffer, `src` in the same
 * buffer, or no kernel), for the caller's host copy. Shapes must already match. Nothing is recorded for autograd.
 */
function copyOnDevice(dst: Tensor, src: Tensor): boolean {
  const backend = dst.backendInstance;
  const op: OpName = src.dtype === dst.dtype ? 'copy' : 'cast';
  const target = dst.kernelView(),
    from = src.kernelView();
  if (src.backendInstance !== backend || !backend.has(op) || target.offset !== 0 || !dst.isContiguous()) return false;
  if (from.handle === target.handle) return false;
  if (dst.size === 0) return true;
  const out = { handle: target.handle, dtype: dst.dtype, shape: dst.shape };
  recordKernel(
    () => runBackend(backend, op, [from], out, []),
    () => ({ op, backend, inputs: [src], attrs: [], outShape: dst.shape, outDtype: dst.dtype, bytes: 0 }),
  );
  return true;
}
