// Host values and class labels from tensors or arrays: one reading and one check, shared by kn.metrics,
// kn.evaluate and kn.explain.
import { ArgumentError, ShapeError, ValidationError, describe } from '../errors.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';

/** Host copy of a tensor or array, with its shape ([n] for arrays). */
export function hostValues(
  x: Tensor | ArrayLike<number> | readonly ArrayLike<number>[],
  what: string,
): { v: Float64Array; shape: number[] } {
  if (isTensor(x)) {
    x.assertAlive(what);
    return { v: Float64Array.from(x.toArray() as ArrayLike<number>), shape: [...x.shape] };
  }
  if (x === null || typeof x !== 'object' || typeof (x as ArrayLike<unknown>).length !== 'number')
    throw new ArgumentError(`${what} must be a Tensor or an array of numbers, got ${describe(x)}`);
  const a = x as ArrayLike<number | ArrayLike<number>>;
  if (a.length > 0 && a[0] !== null && typeof a[0] === 'object') {
    const rows = a as ArrayLike<ArrayLike<number>>;
    const c = rows[0]!.length;
    if (!Number.isInteger(c) || c < 0)
      throw new ArgumentError(`${what} rows must be arrays of numbers, got ${describe(rows[0])} in row 0`);
    const v = new Float64Array(rows.length * c);
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      if (r === null || typeof r !== 'object' || r.length !== c)
        throw new ShapeError(
          `${what} must be rectangular: row ${i} has ${describe(r?.length)} entries, row 0 has ${c}`,
        );
      for (let j = 0; j < c; j++) v[i * c + j] = num(r[j], `${what}[${i}][${j}]`);
    }
    return { v, shape: [rows.length, c] };
  }
  const v = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) v[i] = num(a[i], `${what}[${i}]`);
  return { v, shape: [a.length] };
}

function num(x: unknown, what: string): number {
  if (typeof x !== 'number' || Number.isNaN(x))
    throw new ValidationError(`${what} must be a number, got ${describe(x)}`);
  return x;
}

/** The values as class indices (non-negative integers), or a ValidationError naming the first bad one. */
export function classIndices(v: ArrayLike<number>, what: string): Int32Array {
  const out = new Int32Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    if (!Number.isInteger(x) || x < 0)
      throw new ValidationError(`${what}[${i}] = ${x} is not a class index (a non-negative integer)`);
    out[i] = x;
  }
  return out;
}

/** Each row's first largest score, or its first NaN (as Tensor.argmax). */
function argmaxRows(v: Float64Array, n: number, c: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < c && !Number.isNaN(v[i * c + best]); j++) {
      const x = v[i * c + j]!;
      if (x > v[i * c + best]! || Number.isNaN(x)) best = j;
    }
    out[i] = best;
  }
  return out;
}

/**
 * Class labels from labels [N] or from scores [N, C] (a tensor, argmaxed on its backend, or rows of arrays: each
 * row's first largest score).
 */
export function labelsFrom(x: Tensor | ArrayLike<number> | readonly ArrayLike<number>[], what: string): Int32Array {
  if (isTensor(x) && x.ndim === 2) {
    x.assertAlive(what);
    const a = x.argmax(1);
    try {
      return Int32Array.from(a.toArray() as ArrayLike<number>);
    } finally {
      a.dispose();
    }
  }
  const { v, shape } = hostValues(x, what);
  if (shape.length === 2) {
    if (shape[1] === 0) throw new ShapeError(`${what} scores [N, C] need at least one class, got [${shape}]`);
    return argmaxRows(v, shape[0]!, shape[1]!);
  }
  if (shape.length !== 1) throw new ShapeError(`${what} must be 1-D labels or 2-D scores [N, C], got shape [${shape}]`);
  return classIndices(v, what);
}
