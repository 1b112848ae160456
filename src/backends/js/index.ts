// The `js` backend: every op in plain TypeScript, computing in float64. It is the reference every other
// backend is checked against, and it is always available.
import { BackendError, ShapeError } from '../../errors.js';
import type { OpFamily, OpName } from '../../ops/table.js';
import { decodeStorage, encodeStorage, type DType, type StorageArray } from '../../tensor/dtype.js';
import type { Backend, Handle, KernelOut, KernelView } from '../backend.js';
import { convKernels } from './conv.js';
import { elementwiseKernels } from './elementwise.js';
import type { KernelFn } from './kernels.js';
import { matmulKernels } from './matmul.js';
import { movementKernels } from './movement.js';
import { optimKernels } from './optim.js';
import { quantKernels } from './quant.js';
import { randomKernels } from './random.js';
import { reduceKernels } from './reduce.js';
import { buf, type JsHandle } from './util.js';

/** Each family's kernels, from the file of the same stem (every family of the op table must be here). */
export const FAMILY_KERNELS: { readonly [F in OpFamily]: Readonly<Record<string, KernelFn>> } = {
  elementwise: elementwiseKernels,
  reduce: reduceKernels,
  matmul: matmulKernels,
  conv: convKernels,
  movement: movementKernels,
  random: randomKernels,
  optim: optimKernels,
  quant: quantKernels,
};
const KERNELS = new Map<string, KernelFn>(Object.values(FAMILY_KERNELS).flatMap((k) => Object.entries(k)));

export class JsBackend implements Backend {
  readonly name = 'js' as const;

  alloc(dtype: DType, numel: number): Handle {
    try {
      return { data: new Float64Array(numel) } satisfies JsHandle;
    } catch {
      throw new BackendError(`out of memory: the js backend could not allocate ${numel} ${dtype} elements`);
    }
  }
  free(_h: Handle): void {
    /* garbage collected */
  }
  bytes(_d: DType, numel: number): number {
    return numel * 8;
  }
  write(h: Handle, dtype: DType, data: StorageArray, offset: number): void {
    const dst = buf(h);
    if (offset + data.length > dst.length)
      throw new ShapeError(`write of ${data.length} at ${offset} overruns ${dst.length}`);
    dst.set(decodeStorage(data, dtype), offset);
  }
  read(h: Handle, dtype: DType, offset: number, count: number): StorageArray {
    return encodeStorage(buf(h).subarray(offset, offset + count), dtype);
  }
  async readAsync(h: Handle, dtype: DType, offset: number, count: number): Promise<StorageArray> {
    return this.read(h, dtype, offset, count);
  }
  writeFloat64(h: Handle, values: ArrayLike<number>, offset: number): void {
    const dst = buf(h);
    if (offset + values.length > dst.length)
      throw new ShapeError(`write of ${values.length} at ${offset} overruns ${dst.length}`);
    dst.set(values, offset);
  }
  readFloat64(h: Handle, offset: number, count: number): Float64Array {
    return buf(h).slice(offset, offset + count);
  }
  run(op: OpName, inputs: readonly KernelView[], out: KernelOut, attrs: readonly number[]): void {
    const k = KERNELS.get(op);
    if (!k) throw new BackendError(`op '${op}' has no kernel on backend 'js'`);
    k(inputs, out, attrs);
  }
  has(op: OpName): boolean {
    return KERNELS.has(op);
  }
  async sync(): Promise<void> {
    /* synchronous */
  }
}
