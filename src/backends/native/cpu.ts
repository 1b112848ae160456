// The `cpu` backend: buffers live in native memory (64-byte aligned), kernels are the C++ SIMD kernels.
import { BackendError } from '../../errors.js';
import { OP_IDS, type OpName } from '../../ops/table.js';
import { DTYPE_CODES, DTYPE_SIZE, storageArray, type DType, type StorageArray } from '../../tensor/dtype.js';
import type { Backend, Handle, KernelOut, KernelView } from '../backend.js';
import { mapNativeError, type Addon } from './binding.js';

export class CpuBackend implements Backend {
  readonly name = 'cpu' as const;
  private readonly supported: boolean[];

  constructor(readonly addon: Addon) {
    this.supported = Object.values(OP_IDS).map((id) => addon.supports(id));
  }

  alloc(dtype: DType, numel: number): Handle {
    try {
      return this.addon.alloc(DTYPE_CODES[dtype], numel);
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
  bytes(dtype: DType, numel: number): number { return numel * DTYPE_SIZE[dtype]; }
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
  async readAsync(h: Handle, dtype: DType, offset: number, count: number): Promise<StorageArray> {
    return this.read(h, dtype, offset, count);
  }
  run(op: OpName, inputs: readonly KernelView[], out: KernelOut, attrs: readonly number[]): void {
    let len = 1;
    for (const v of inputs) len += 4 + 2 * v.shape.length;
    const desc = new Float64Array(len);
    desc[0] = inputs.length;
    let p = 1;
    for (const v of inputs) {
      desc[p++] = v.handle as number;
      desc[p++] = DTYPE_CODES[v.dtype];
      desc[p++] = v.shape.length;
      desc[p++] = v.offset;
      for (const d of v.shape) desc[p++] = d;
      for (const s of v.strides) desc[p++] = s;
    }
    const od = new Float64Array(3 + out.shape.length);
    od[0] = out.handle as number;
    od[1] = DTYPE_CODES[out.dtype];
    od[2] = out.shape.length;
    out.shape.forEach((d, i) => { od[3 + i] = d; });
    try {
      this.addon.run(OP_IDS[op], desc, od, Float64Array.from(attrs));
    } catch (e) {
      throw mapNativeError(e);
    }
  }
  has(op: OpName): boolean { return this.supported[OP_IDS[op]] === true; }
  async sync(): Promise<void> { this.addon.sync(); }
}

export function cpuUnavailable(reason: string): BackendError {
  return new BackendError(`backend 'cpu' is not available: ${reason}`);
}
