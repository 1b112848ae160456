import { ArgumentError, ShapeError, describe } from '../errors.js';

export type Shape = readonly number[];

/** Largest element count kiln accepts for one tensor (2^53 - 1 is where integer indexing stops being exact). */
export const MAX_NUMEL = Number.MAX_SAFE_INTEGER;
export const MAX_DIMS = 12;

export function validateShape(shape: unknown, what = 'shape'): number[] {
  if (!Array.isArray(shape))
    throw new ArgumentError(`${what} must be an array of non-negative integers, got ${describe(shape)}`);
  if (shape.length > MAX_DIMS)
    throw new ShapeError(`${what} has ${shape.length} dims; kiln supports at most ${MAX_DIMS}`);
  let n = 1;
  for (let i = 0; i < shape.length; i++) {
    const d: unknown = shape[i];
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 0) {
      throw new ArgumentError(`${what}[${i}] must be a non-negative integer, got ${describe(d)} in ${describe(shape)}`);
    }
    n *= d;
  }
  if (n > MAX_NUMEL)
    throw new ShapeError(`${what} ${describe(shape)} has ${n} elements, more than the maximum ${MAX_NUMEL}`);
  return shape.slice() as number[];
}

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function contiguousStrides(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= Math.max(shape[i]!, 1);
  }
  return s;
}

export function isContiguous(shape: Shape, strides: readonly number[]): boolean {
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && strides[i] !== acc) return false;
    acc *= shape[i]!;
  }
  return true;
}

export function shapeStr(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** NumPy broadcasting of two shapes. */
export function broadcastShapes(a: Shape, b: Shape, what = 'broadcast'): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new ShapeError(
        `${what}: shapes ${shapeStr(a)} and ${shapeStr(b)} cannot be broadcast (dim ${i}: ${da} vs ${db})`,
      );
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

export function normalizeAxis(axis: unknown, ndim: number, what = 'axis'): number {
  if (typeof axis !== 'number' || !Number.isInteger(axis)) {
    throw new ArgumentError(`${what} must be an integer, got ${describe(axis)}`);
  }
  const a = axis < 0 ? axis + ndim : axis;
  if (a < 0 || a >= ndim)
    throw new ArgumentError(`${what} ${axis} is out of range for a ${ndim}-d tensor (valid: ${-ndim}..${ndim - 1})`);
  return a;
}

/** Normalises undefined | number | number[] to sorted unique axes. */
export function normalizeAxes(axes: unknown, ndim: number, what = 'axis'): number[] {
  if (axes === undefined || axes === null) return Array.from({ length: ndim }, (_, i) => i);
  const list = Array.isArray(axes) ? axes : [axes];
  const out = [...new Set(list.map((a) => normalizeAxis(a, ndim, what)))].sort((x, y) => x - y);
  if (out.length !== list.length) throw new ArgumentError(`${what} ${describe(axes)} repeats an axis`);
  return out;
}

/** Output size along one axis (0 when the dilated kernel does not fit the padded input). */
export function convOutSize(n: number, k: number, s: number, p: number, d: number): number {
  const span = d * (k - 1) + 1;
  return n + 2 * p < span ? 0 : Math.floor((n + 2 * p - span) / s) + 1;
}
