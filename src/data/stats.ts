// NaN-aware column statistics of a table [N, F], computed with kiln ops (native kernels on the cpu backend)
// and returned as float64 host arrays.
import { noGrad } from '../autograd/tape.js';
import { tidy } from '../engine/memory.js';
import { DTypeError, ShapeError } from '../errors.js';
import { tensor } from '../ops/creation.js';
import { nanColumnStats, nanQuantile, rowHash } from '../ops/reduce.js';
import { isFloat } from '../tensor/dtype.js';
import { shapeStr } from '../tensor/shape.js';
import { assertTensor, type Tensor } from '../tensor/tensor.js';

/** Checks a table [rows, features] of floats (NaN = missing), optionally with a given feature count. */
export function assertTable(x: unknown, what: string, features?: number): Tensor {
  const t = assertTensor(x, what);
  if (t.ndim !== 2) throw new ShapeError(`${what} must be a table [rows, features], got ${shapeStr(t.shape)}`);
  if (!isFloat(t.dtype))
    throw new DTypeError(`${what} must be floating point (NaN marks missing values), got ${t.dtype}`);
  if (features !== undefined && t.shape[1] !== features) {
    throw new ShapeError(`${what} has ${t.shape[1]} features but this was fitted on ${features}`);
  }
  return t;
}

const host = (t: Tensor): Float64Array => Float64Array.from(t.toArray() as ArrayLike<number>);

/** A [1, F] float32 tensor of `values` on `like`'s backend (for broadcasting against a table). */
export function asRow(values: ArrayLike<number>, like: Tensor): Tensor {
  return tensor(Float32Array.from(values), [1, values.length], { backend: like.backend });
}

/** Per column: count of non-NaN values, mean and population variance over them (NaN where count is 0). */
export function nanMoments(x: Tensor): { count: Float64Array; mean: Float64Array; variance: Float64Array } {
  const s = columnStats(x),
    F = x.shape[1]!;
  return { count: s.subarray(0, F), mean: s.subarray(F, 2 * F), variance: s.subarray(2 * F, 3 * F) };
}

/** Per column min and max ignoring NaN (NaN for an all-NaN column). */
export function nanMinMax(x: Tensor): { min: Float64Array; max: Float64Array } {
  const s = columnStats(x),
    F = x.shape[1]!;
  return { min: s.subarray(3 * F, 4 * F), max: s.subarray(4 * F, 5 * F) };
}

/** One native pass: [count, mean, variance, min, max] x F. */
function columnStats(x: Tensor): Float64Array {
  return noGrad(() => tidy(() => host(nanColumnStats(x))));
}

/** Per column quantile q in [0, 1], ignoring NaN. */
export function nanQuantiles(x: Tensor, q: number): Float64Array {
  return noGrad(() => tidy(() => host(nanQuantile(x, q))));
}

/** 52-bit fingerprints of each row's float32 bit patterns (the native rowHash kernel), for leakage checks. */
export function rowFingerprints(x: Tensor): Float64Array {
  const h = noGrad(() => tidy(() => rowHash(x).toArray())) as Int32Array;
  const out = new Float64Array(x.shape[0]!);
  for (let i = 0; i < out.length; i++) out[i] = (h[2 * i]! >>> 0) * 1048576 + ((h[2 * i + 1]! >>> 0) & 0xfffff);
  return out;
}
