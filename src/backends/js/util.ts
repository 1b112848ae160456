// Helpers shared by the js reference kernels. Storage is a Float64Array for every dtype; values are kept
// canonical for their dtype (see castValue).
import { ShapeError } from '../../errors.js';
import type { KernelOut, KernelView } from '../backend.js';
import { castValue, type DType } from '../../tensor/dtype.js';
import { numel } from '../../tensor/shape.js';

export interface JsHandle {
  data: Float64Array;
}

export function buf(h: unknown): Float64Array {
  return (h as JsHandle).data;
}

/** Reads a strided view into a contiguous Float64Array (row-major over its shape). */
export function gatherView(v: KernelView): Float64Array {
  const src = buf(v.handle);
  const n = numel(v.shape);
  const out = new Float64Array(n);
  const nd = v.shape.length;
  if (n === 0) return out;
  if (nd === 0) {
    out[0] = src[v.offset]!;
    return out;
  }
  const idx = new Array<number>(nd).fill(0);
  let off = v.offset;
  const last = nd - 1;
  const sl = v.strides[last]!;
  const dl = v.shape[last]!;
  for (let i = 0; i < n; i += dl) {
    for (let j = 0; j < dl; j++) out[i + j] = src[off + j * sl]!;
    for (let d = last - 1; d >= 0; d--) {
      idx[d]!++;
      off += v.strides[d]!;
      if (idx[d]! < v.shape[d]!) break;
      off -= idx[d]! * v.strides[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

export function outBuf(o: KernelOut): Float64Array {
  return buf(o.handle);
}

export function writeCanon(o: KernelOut, values: ArrayLike<number>): void {
  const dst = outBuf(o);
  const d: DType = o.dtype;
  if (values.length !== dst.length)
    throw new ShapeError(`internal: kernel produced ${values.length} values for ${dst.length}`);
  if (d === 'float32') dst.set(values);
  else for (let i = 0; i < dst.length; i++) dst[i] = castValue(values[i]!, d);
}

export function prod(a: readonly number[], from = 0, to = a.length): number {
  let p = 1;
  for (let i = from; i < to; i++) p *= a[i]!;
  return p;
}

/** erf in double precision (series for |x| < 3, continued fraction for erfc beyond): |error| < 1e-13. */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = ax,
      sum = ax;
    const x2 = ax * ax;
    for (let n = 1; n < 200; n++) {
      term *= -x2 / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    const r = (2 / Math.sqrt(Math.PI)) * sum;
    return x < 0 ? -r : r;
  }
  const r = 1 - erfcLarge(ax);
  return x < 0 ? -r : r;
}

/** erfc(x) for x >= 3 by Lentz's continued fraction. */
function erfcLarge(x: number): number {
  if (x > 27) return 0;
  // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + 2/(x + ...)))))
  const tiny = 1e-300;
  let f = x,
    C = x,
    D = 0;
  for (let n = 1; n < 300; n++) {
    const an = n / 2;
    D = x + an * D;
    D = D === 0 ? tiny : 1 / D;
    C = x + an / C;
    if (C === 0) C = tiny;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / f;
}

export function erfc(x: number): number {
  if (x >= 3) return erfcLarge(x);
  if (x <= -3) return 2 - erfcLarge(-x);
  return 1 - erf(x);
}
