import type { OpName } from '../ops/table.js';
import type { DType, StorageArray } from '../tensor/dtype.js';

export type BackendName = 'js' | 'cpu' | 'webgpu' | 'cuda';
export const BACKEND_NAMES: readonly BackendName[] = ['cpu', 'js', 'webgpu', 'cuda'];

/** Opaque per-backend buffer handle. */
export type Handle = unknown;

/** A (possibly strided) view of a buffer, as kernels receive it. Strides and offset are in elements. */
export interface KernelView {
  handle: Handle;
  dtype: DType;
  shape: readonly number[];
  strides: readonly number[];
  offset: number;
}

/** The output of a kernel: a fresh contiguous buffer of exactly numel(shape) elements. */
export interface KernelOut {
  handle: Handle;
  dtype: DType;
  shape: readonly number[];
}

/**
 * A backend = storage (alloc/free/read/write/sync) + a kernel table keyed by op name.
 * A missing kernel is reported by `has()`; the dispatcher turns it into a BackendError, never a silent copy.
 */
export interface Backend {
  readonly name: BackendName;
  alloc(dtype: DType, numel: number): Handle;
  free(handle: Handle): void;
  /** Bytes a buffer of this size really occupies (for kn.memory()). */
  bytes(dtype: DType, numel: number): number;
  /** Bytes the backend keeps beyond live buffers for reuse (freed buffers, packed weights; kn.emptyCache()). */
  cachedBytes?(): number;
  write(handle: Handle, dtype: DType, data: StorageArray, offset: number): void;
  /** Reads `count` elements starting at `offset` (contiguous) into a storage array. */
  read(handle: Handle, dtype: DType, offset: number, count: number): StorageArray;
  readAsync(handle: Handle, dtype: DType, offset: number, count: number): Promise<StorageArray>;
  /** Reads `into.length` elements starting at `offset` into an existing array (no allocation), where supported. */
  readInto?(handle: Handle, dtype: DType, offset: number, into: StorageArray): void;
  /** Backends that store more than float32 precision (the js reference) move float32 values as exact float64. */
  writeFloat64?(handle: Handle, values: ArrayLike<number>, offset: number): void;
  readFloat64?(handle: Handle, offset: number, count: number): Float64Array;
  run(op: OpName, inputs: readonly KernelView[], out: KernelOut, attrs: readonly number[]): void;
  has(op: OpName): boolean;
  sync(): Promise<void>;
  /** Blocks until every queued kernel has finished (kn.profile's per-kernel timing on asynchronous backends). */
  syncNow?(): void;
}
