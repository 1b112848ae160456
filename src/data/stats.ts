// NaN-aware column statistics of a table [N, F], computed with kiln ops (native kernels on the cpu backend)
// and returned as float64 host arrays.
import { noGrad } from '../autograd/tape.js';
import { tidy } from '../engine/memory.js';
import { DTypeError, ShapeError } from '../errors.js';
import { tensor } from '../ops/creation.js';
import { cast, mul, sub, where } from '../ops/elementwise.js';
import { max, min, nanQuantile, sum } from '../ops/reduce.js';
import { isFloat } from '../tensor/dtype.js';
import { shapeStr } from '../tensor/shape.js';
import { assertTensor, type Tensor } from '../tensor/tensor.js';

/** Checks a table [rows, features] of floats (NaN = missing), optionally with a given feature count. */
export function assertTable(x: unknown, what: string, features?: number): Tensor {
  const t = assertTensor(x, what);
  if (t.ndim !== 2) throw new ShapeError(`${what} must be a table [rows, features], got ${shapeStr(t.shape)}`);
  if (!isFloat(t.dtype)) throw new DTypeError(`${what} must be floating point (NaN marks missing values), got ${t.dtype}`);
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
  return noGrad(() => tidy(() => {
    const missing = x.ne(x);
    const clean = where(missing, 0, x);
    const count = host(sum(cast(missing.eq(0), 'float32'), 0));
    const mean = host(sum(clean, 0)).map((v, j) => (count[j]! > 0 ? v / count[j]! : NaN));
    const centred = where(missing, 0, sub(clean, asRow(mean.map((m) => (Number.isNaN(m) ? 0 : m)), x)));
    const variance = host(sum(mul(centred, centred), 0)).map((v, j) => (count[j]! > 0 ? v / count[j]! : NaN));
    return { count, mean, variance };
  }));
}

/** Per column min and max ignoring NaN (NaN for an all-NaN column). */
export function nanMinMax(x: Tensor): { min: Float64Array; max: Float64Array } {
  return noGrad(() => tidy(() => {
    const missing = x.ne(x);
    const any = host(sum(cast(missing.eq(0), 'float32'), 0));
    const lo = host(min(where(missing, Infinity, x), 0)).map((v, j) => (any[j]! > 0 ? v : NaN));
    const hi = host(max(where(missing, -Infinity, x), 0)).map((v, j) => (any[j]! > 0 ? v : NaN));
    return { min: lo, max: hi };
  }));
}

/** Per column quantile q in [0, 1], ignoring NaN. */
export function nanQuantiles(x: Tensor, q: number): Float64Array {
  return noGrad(() => tidy(() => host(nanQuantile(x, q))));
}

/** 52-bit fingerprints of each row's float32 values (two FNV-1a hashes), for leakage checks. */
export function rowFingerprints(x: Tensor): Float64Array {
  const a = Float32Array.from(x.toArray() as ArrayLike<number>);
  const bytes = new Uint8Array(a.buffer);
  const n = x.shape[0]!, rowBytes = (x.shape[1]! * 4);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let h1 = 0x811c9dc5, h2 = 0x01000193 ^ rowBytes;
    for (let k = i * rowBytes; k < (i + 1) * rowBytes; k++) {
      h1 = Math.imul(h1 ^ bytes[k]!, 0x01000193);
      h2 = Math.imul(h2 ^ bytes[k]!, 0x5bd1e995) ^ (h2 >>> 15);
    }
    out[i] = (h1 >>> 0) * 1048576 + ((h2 >>> 0) & 0xfffff);
  }
  return out;
}
