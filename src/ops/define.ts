// Helpers shared by the op definitions: scalar promotion, broadcasting, and reducing gradients back to
// an input's shape.
import { commonBackend, runKernel } from '../engine/dispatch.js';
import { ArgumentError, describe } from '../errors.js';
import { isFloat, type DType } from '../tensor/dtype.js';
import { broadcastShapes, sameShape } from '../tensor/shape.js';
import { Tensor } from '../tensor/tensor.js';
import type { OpName } from './table.js';

export type TensorLike = Tensor | number | boolean;

/** Converts the second operand of a binary op to a tensor next to `a`. */
export function asTensor(x: TensorLike, like: Tensor, what: string): Tensor {
  if (x instanceof Tensor) {
    x.assertAlive(what);
    return x;
  }
  if (typeof x === 'boolean') x = x ? 1 : 0;
  if (typeof x !== 'number') throw new ArgumentError(`${what} must be a Tensor or a number, got ${describe(x)}`);
  let dtype: DType = like.dtype;
  if (!isFloat(dtype) && !Number.isInteger(x)) dtype = 'float32';
  if (dtype === 'bool') dtype = Number.isInteger(x) ? 'int32' : 'float32';
  return runKernel('fill', [], [x], [], dtype, like.backendInstance);
}

/**
 * A stride-0 view of t broadcast to `shape` (t's shape must broadcast to it). `temporary`: a kernel operand the
 * caller disposes in a `finally` (see Tensor.view).
 */
export function expandView(t: Tensor, shape: readonly number[], temporary = false): Tensor {
  const nd = shape.length;
  const strides = new Array<number>(nd).fill(0);
  for (let i = 0; i < t.ndim; i++) {
    const j = nd - t.ndim + i;
    strides[j] = t.shape[i] === 1 && shape[j] !== 1 ? 0 : t.strides[i]!;
  }
  return t.view(shape, strides, t.offset, temporary);
}

/**
 * t as a kernel operand of `shape`: t itself when its shape fits, else a temporary broadcast view, which the caller
 * disposes in a `finally` when it is not t.
 */
export function operandAs(t: Tensor, shape: readonly number[]): Tensor {
  return sameShape(t.shape, shape) ? t : expandView(t, shape, true);
}

/** Runs a kernel on operands that are broadcast first (views only where a shape differs). */
export function runBroadcast(op: OpName, a: Tensor, b: Tensor, outDtype: DType, attrs: number[] = []): Tensor {
  commonBackend([a, b], op);
  const shape = broadcastShapes(a.shape, b.shape, op);
  const va = operandAs(a, shape);
  const vb = operandAs(b, shape);
  try {
    return runKernel(op, [va, vb], attrs, shape, outDtype);
  } finally {
    if (va !== a) va.dispose();
    if (vb !== b) vb.dispose();
  }
}
