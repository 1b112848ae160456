// The native backends: `cpu` (buffers in host memory, 64-byte aligned; the C++ SIMD kernels) and `cuda` (buffers
// in device memory; kernels/cuda/). Both talk to the addon the same way: buffer ids, view descriptors, op ids.
import { BackendError } from '../../errors.js';
import { OP_IDS, type OpName } from '../../ops/table.js';
import { DTYPE_CODES, DTYPE_SIZE, storageArray, type DType, type StorageArray } from '../../tensor/dtype.js';
import type { Backend, Handle, KernelOut, KernelView } from '../backend.js';
import { mapNativeError, type Addon } from './binding.js';

export class NativeBackend implements Backend {
  private readonly supported: boolean[];

  constructor(
    readonly addon: Addon,
    readonly name: 'cpu' | 'cuda',
  ) {
    this.supported = Object.values(OP_IDS).map((id) => (name === 'cuda' ? addon.cudaSupports(id) : addon.supports(id)));
  }

  cachedBytes(): number {
    if (this.name !== 'cpu') return 0;
    // freed host buffers kept for reuse and weights kept packed (both returned by kn.emptyCache())
    const s = this.addon.stats();
    return s.cachedBytes + s.packedBytes;
  }

  alloc(dtype: DType, numel: number): Handle {
    try {
      return this.name === 'cuda'
        ? this.addon.cudaAlloc(DTYPE_CODES[dtype], numel)
        : this.addon.alloc(DTYPE_CODES[dtype], numel);
    } catch (e) {
      throw mapNativeError(e);
    }
  }
  free(h: Handle): void {
    try {
      this.addon.free(h as number);
    } catch (e) {
      throw mapNativeError(e);
    }
  }
  bytes(dtype: DType, numel: number): number {
    return numel * DTYPE_SIZE[dtype];
  }
  write(h: Handle, _dtype: DType, data: StorageArray, offset: number): void {
    try {
      this.addon.write(h as number, data, offset);
    } catch (e) {
      throw mapNativeError(e);
    }
  }
  read(h: Handle, dtype: DType, offset: number, count: number): StorageArray {
    const out = storageArray(dtype, count);
    try {
      this.addon.read(h as number, out, offset);
    } catch (e) {
      throw mapNativeError(e);
    }
    return out;
  }
  readInto(h: Handle, _dtype: DType, offset: number, into: StorageArray): void {
    try {
      this.addon.read(h as number, into, offset);
    } catch (e) {
      throw mapNativeError(e);
    }
  }
  async readAsync(h: Handle, dtype: DType, offset: number, count: number): Promise<StorageArray> {
    return this.read(h, dtype, offset, count);
  }
  // Descriptor scratch, reused across calls (kernels run synchronously, so one set is enough).
  private scratch = new Float64Array(256);
  private outScratch = new Float64Array(3 + 12);
  private readonly attrScratch: Float64Array[] = Array.from({ length: 16 }, (_, n) => new Float64Array(n));

  run(op: OpName, inputs: readonly KernelView[], out: KernelOut, attrs: readonly number[]): void {
    let len = 1;
    for (const v of inputs) len += 4 + 2 * v.shape.length;
    if (len > this.scratch.length) this.scratch = new Float64Array(len * 2);
    const desc = this.scratch;
    desc[0] = inputs.length;
    let p = 1;
    for (const v of inputs) {
      desc[p++] = v.handle as number;
      desc[p++] = DTYPE_CODES[v.dtype];
      desc[p++] = v.shape.length;
      desc[p++] = v.offset;
      for (const d of v.shape) desc[p++] = d;
      for (const st of v.strides) desc[p++] = st;
    }
    const olen = 3 + out.shape.length;
    if (olen > this.outScratch.length) this.outScratch = new Float64Array(olen);
    const od = this.outScratch;
    od[0] = out.handle as number;
    od[1] = DTYPE_CODES[out.dtype];
    od[2] = out.shape.length;
    for (let i = 0; i < out.shape.length; i++) od[3 + i] = out.shape[i]!;
    const at =
      attrs.length < this.attrScratch.length ? this.attrScratch[attrs.length]! : new Float64Array(attrs.length);
    for (let i = 0; i < attrs.length; i++) at[i] = attrs[i]!;
    try {
      this.addon.run(OP_IDS[op], desc.subarray(0, len), od.subarray(0, olen), at);
    } catch (e) {
      throw mapNativeError(e);
    }
  }
  has(op: OpName): boolean {
    return this.supported[OP_IDS[op]] === true;
  }
  async sync(): Promise<void> {
    this.syncNow();
  }
  syncNow(): void {
    try {
      this.addon.sync();
    } catch (e) {
      throw mapNativeError(e);
    }
  }
}

export class CpuBackend extends NativeBackend {
  constructor(addon: Addon) {
    super(addon, 'cpu');
  }
}

/** Device memory and the CUDA kernels of the same addon; reads wait for the device (and report device errors). */
export class CudaBackend extends NativeBackend {
  constructor(addon: Addon) {
    super(addon, 'cuda');
  }
}

export function cpuUnavailable(reason: string): BackendError {
  return new BackendError(`backend 'cpu' is not available: ${reason}`);
}
