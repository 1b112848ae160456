import type { Backend, BackendName } from '../backends/backend.js';
import { currentBackend, getBackendInstance } from '../backends/registry.js';
import { runKernel } from '../engine/dispatch.js';
import { ArgumentError, ShapeError, checkOptions, describe, optionKeys } from '../errors.js';
import { assertDType, dtypeOfTypedArray, encodeStorage, type DType } from '../tensor/dtype.js';
import { numel, shapeStr, validateShape } from '../tensor/shape.js';
import { assertTensor, Tensor } from '../tensor/tensor.js';

export interface TensorOptions {
  dtype?: DType;
  requiresGrad?: boolean;
  /** where to create it (default: the current backend, see kn.setBackend) */
  backend?: BackendName;
}

const TENSOR_OPTIONS = optionKeys<TensorOptions>({ dtype: true, requiresGrad: true, backend: true });

function target(opts: TensorOptions): Backend | undefined {
  return opts.backend === undefined ? undefined : getBackendInstance(opts.backend);
}

/** Nested arrays of numbers or booleans, as accepted by kn.tensor. */
export type NestedArray = number | boolean | readonly NestedArray[];
type Nested = NestedArray;

function inferShape(data: Nested): number[] {
  const shape: number[] = [];
  let cur: Nested = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0] as Nested;
  }
  return shape;
}

function flatten(data: Nested, shape: readonly number[], out: number[], depth: number, path: string): void {
  if (depth === shape.length) {
    if (typeof data === 'number') out.push(data);
    else if (typeof data === 'boolean') out.push(data ? 1 : 0);
    else
      throw new ArgumentError(
        `tensor data at ${path || 'the top level'} must be a number or boolean, got ${describe(data)}`,
      );
    return;
  }
  if (!Array.isArray(data) || data.length !== shape[depth]) {
    throw new ShapeError(
      `tensor data is ragged: at ${path || 'the top level'} expected an array of length ${shape[depth]}, got ${describe(data)}`,
    );
  }
  for (let i = 0; i < data.length; i++) flatten(data[i] as Nested, shape, out, depth + 1, `${path}[${i}]`);
}

/**
 * Creates a tensor from nested arrays, a typed array or a number. The dtype is inferred (float32 for
 * numbers and Float32/Float64Array, int32 for Int32Array, bool for booleans) unless given.
 * @example kn.tensor([[1, 2], [3, 4]]) // float32 [2, 2]
 * @example kn.tensor(new Int32Array([1, 2, 3]), [3]) // int32
 */
export function tensor(data: Nested | ArrayBufferView, shape?: readonly number[], opts: TensorOptions = {}): Tensor {
  checkOptions(opts, 'tensor', TENSOR_OPTIONS);
  let values: ArrayLike<number>;
  let inferred: number[];
  let dtype: DType | undefined = opts.dtype === undefined ? undefined : assertDType(opts.dtype);
  if (ArrayBuffer.isView(data)) {
    if (data instanceof DataView || data instanceof BigInt64Array || data instanceof BigUint64Array) {
      throw new ArgumentError(
        `tensor data cannot be a ${data.constructor.name}; use a Float32Array, Int32Array, Uint8Array or Int8Array`,
      );
    }
    values = data as unknown as ArrayLike<number>;
    inferred = [values.length];
    dtype ??= dtypeOfTypedArray(data) ?? 'float32';
  } else if (typeof data === 'number' || typeof data === 'boolean') {
    values = [typeof data === 'boolean' ? +data : data];
    inferred = [];
    dtype ??= typeof data === 'boolean' ? 'bool' : 'float32';
  } else if (Array.isArray(data)) {
    inferred = inferShape(data);
    validateShape(inferred, 'inferred shape');
    const flat: number[] = [];
    flatten(data, inferred, flat, 0, '');
    values = flat;
    let first: Nested = data;
    while (Array.isArray(first) && first.length) first = first[0] as Nested;
    dtype ??= typeof first === 'boolean' ? 'bool' : 'float32';
  } else {
    throw new ArgumentError(
      `tensor data must be a number, a nested array of numbers, or a typed array; got ${describe(data)}`,
    );
  }
  let s = inferred;
  if (shape !== undefined) {
    s = validateShape(shape);
    if (numel(s) !== values.length) {
      throw new ShapeError(`tensor: shape ${shapeStr(s)} needs ${numel(s)} values, but the data has ${values.length}`);
    }
  }
  const t = Tensor.fromHost(encodeStorage(values, dtype), s, dtype, target(opts) ?? currentBackend());
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

/**
 * A tensor filled with `value`.
 * @example kn.full([2], 7) // [7, 7]
 */
export function full(shape: readonly number[], value: number, opts: TensorOptions = {}): Tensor {
  return filled('full', shape, value, opts);
}
/**
 * A tensor of zeros.
 * @example kn.zeros([2]) // [0, 0]
 */
export function zeros(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  return filled('zeros', shape, 0, opts);
}
/**
 * A tensor of ones.
 * @example kn.ones([2, 2]) // [[1, 1], [1, 1]]
 */
export function ones(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  return filled('ones', shape, 1, opts);
}

function filled(fn: string, shape: readonly number[], value: number, opts: TensorOptions): Tensor {
  const s = validateShape(shape);
  checkOptions(opts, fn, TENSOR_OPTIONS);
  if (typeof value !== 'number' && typeof value !== 'boolean')
    throw new ArgumentError(`full: value must be a number, got ${describe(value)}`);
  const t = runKernel('fill', [], [+value], s, assertDType(opts.dtype ?? 'float32'), target(opts));
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

function like(x: Tensor, value: number): Tensor {
  assertTensor(x, 'like');
  return runKernel('fill', [], [value], x.shape, x.dtype, x.backendInstance);
}
/**
 * Zeros with the shape, dtype and backend of `x`.
 * @example kn.zerosLike(kn.ones([2])) // [0, 0]
 */
export function zerosLike(x: Tensor): Tensor {
  return like(x, 0);
}
/**
 * Ones with the shape, dtype and backend of `x`.
 * @example kn.onesLike(kn.zeros([2])) // [1, 1]
 */
export function onesLike(x: Tensor): Tensor {
  return like(x, 1);
}

/**
 * Evenly spaced values in [start, stop). With one argument: [0, start).
 * @example kn.arange(5) // [0, 1, 2, 3, 4]
 */
export function arange(start: number, stop?: number, step = 1, opts: { dtype?: DType } = {}): Tensor {
  checkOptions(opts, 'arange', ['dtype']);
  let a = start,
    b = stop;
  if (b === undefined) {
    b = a;
    a = 0;
  }
  for (const [k, v] of Object.entries({ start: a, stop: b, step })) {
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw new ArgumentError(`arange: ${k} must be a finite number, got ${describe(v)}`);
  }
  if (step === 0) throw new ArgumentError('arange: step must not be 0');
  const n = Math.max(0, Math.ceil((b - a) / step));
  return runKernel('arange', [], [a, step], [n], assertDType(opts.dtype ?? 'float32'), currentBackend());
}
