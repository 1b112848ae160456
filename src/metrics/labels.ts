// Class labels from host values: one check, shared by kn.metrics and kn.evaluate.
import { ValidationError } from '../errors.js';

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
