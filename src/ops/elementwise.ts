// Elementwise ops with NumPy broadcasting. Each vjp is written in other ops and reduces the gradient back
// to its input's shape (sumTo).
import { record, type Vjp } from '../autograd/tape.js';
import { runKernel } from '../engine/dispatch.js';
import { ArgumentError, DTypeError, describe } from '../errors.js';
import { assertDType, isFloat, promote, type DType } from '../tensor/dtype.js';
import { broadcastShapes } from '../tensor/shape.js';
import { assertTensor, Tensor } from '../tensor/tensor.js';
import { asTensor, operandAs, runBroadcast, type TensorLike } from './define.js';
import type { OpName } from './table.js';

// reductions come through Tensor methods (src/tensor/methods.ts), so this module does not import reduce.ts
const sumTo = (g: Tensor, shape: readonly number[]): Tensor => g.sumTo(shape);

function floatOut(d: DType): DType {
  return isFloat(d) ? d : 'float32';
}

/**
 * Casts to dtype: a copy, or, when x already has that dtype, a view of x's storage (as PyTorch's `.to`), which
 * stays in the graph. Differentiable for float -> float.
 * @example kn.tensor([1.7, -1.7]).cast('int32') // [1, -1]
 */
export function cast(x: Tensor, dtype: DType): Tensor {
  assertTensor(x, 'cast');
  const d = assertDType(dtype);
  if (d === x.dtype) return record('cast', x.view(x.shape, x.strides, x.offset), [x], [], (g) => [g]);
  const y = runKernel('cast', [x], [], x.shape, d);
  if (!isFloat(d) || !isFloat(x.dtype)) return y;
  return record('cast', y, [x], [], (g) => [cast(g, x.dtype)]);
}

function unaryF(op: OpName, x: Tensor): Tensor {
  assertTensor(x, op);
  return runKernel(op, [x], [], x.shape, floatOut(x.dtype));
}
function unaryN(op: OpName, x: Tensor): Tensor {
  assertTensor(x, op);
  if (x.dtype === 'bool') throw new DTypeError(`${op} does not take bool tensors; cast to int32 or float32 first`);
  return runKernel(op, [x], [], x.shape, x.dtype);
}

/**
 * Elementwise e^x.
 * @example kn.tensor([0]).exp() // [1]
 */
export function exp(x: Tensor): Tensor {
  const y = unaryF('exp', x);
  return record('exp', y, [x], [y], (g, [yy]) => [mul(g, yy!)]);
}
/**
 * Natural logarithm (log(0) = -inf, log(<0) = NaN).
 * @example kn.tensor([1]).log() // [0]
 */
export function log(x: Tensor): Tensor {
  const y = unaryF('log', x);
  return record('log', y, [x], [x], (g, [xx]) => [div(g, xx!)]);
}
/**
 * Elementwise square root (NaN below 0).
 * @example kn.tensor([4, 9]).sqrt() // [2, 3]
 */
export function sqrt(x: Tensor): Tensor {
  const y = unaryF('sqrt', x);
  return record('sqrt', y, [x], [y], (g, [yy]) => [div(g, mul(yy!, 2))]);
}
/**
 * Hyperbolic tangent.
 * @example kn.tensor([0]).tanh() // [0]
 */
export function tanh(x: Tensor): Tensor {
  const y = unaryF('tanh', x);
  return record('tanh', y, [x], [y], (g, [yy]) => [mul(g, sub(1, mul(yy!, yy!)))]);
}
/**
 * 1 / (1 + e^-x).
 * @example kn.tensor([0]).sigmoid() // [0.5]
 */
export function sigmoid(x: Tensor): Tensor {
  const y = unaryF('sigmoid', x);
  return record('sigmoid', y, [x], [y], (g, [yy]) => [mul(g, mul(yy!, sub(1, yy!)))]);
}
/**
 * GELU, exact form x * Phi(x) (erf), like PyTorch's default.
 * @example kn.tensor([0]).gelu() // [0]
 */
export function gelu(x: Tensor): Tensor {
  const y = unaryF('gelu', x);
  return record('gelu', y, [x], [x], (g, [xx]) => [geluBackward(xx!, g)]);
}

/**
 * @internal gelu'(x) * g by the fused kernel, as a differentiable op (for gradients of gradients):
 * d/dx = g gelu''(x) with gelu''(x) = phi(x) (2 - x^2), d/dg = gelu'(x).
 */
export function geluBackward(x: Tensor, g: Tensor): Tensor {
  const y = runBroadcast('geluGrad', x, g, floatOut(x.dtype));
  return record('geluGrad', y, [x, g], [x, g], (u, [xx, gg], needs) => {
    const x2 = mul(xx!, xx!);
    const phi = mul(exp(mul(x2, -0.5)), 1 / Math.sqrt(2 * Math.PI));
    return [
      needs[0] ? sumTo(mul(mul(u, gg!), mul(phi, sub(2, x2))), xx!.shape) : null,
      needs[1] ? sumTo(geluBackward(xx!, u), gg!.shape) : null,
    ];
  });
}
/**
 * SiLU (swish), x * sigmoid(x), the activation of many transformer MLPs.
 * @example kn.tensor([0, 1]).silu() // [0, 0.7310585786]
 */
export function silu(x: Tensor): Tensor {
  const y = unaryF('silu', x);
  // d/dx x*s(x) = s * (1 + x * (1 - s)), with s = sigmoid(x)
  return record('silu', y, [x], [x], (g, [xx]) => {
    const s = sigmoid(xx!);
    return [mul(g, mul(s, add(mul(xx!, sub(1, s)), 1)))];
  });
}
/**
 * Elementwise -x.
 * @example kn.tensor([1, -2]).neg() // [-1, 2]
 */
export function neg(x: Tensor): Tensor {
  const y = unaryN('neg', x);
  return record('neg', y, [x], [], (g) => [neg(g)]);
}
/**
 * Elementwise |x|.
 * @example kn.tensor([-2, 3]).abs() // [2, 3]
 */
export function abs(x: Tensor): Tensor {
  const y = unaryN('abs', x);
  return record('abs', y, [x], [x], (g, [xx]) => [mul(g, sign(xx!))]);
}
/**
 * -1, 0 or 1 (NaN stays NaN).
 * @example kn.tensor([-3, 0, 2]).sign() // [-1, 0, 1]
 */
export function sign(x: Tensor): Tensor {
  return unaryN('sign', x);
}
/**
 * max(x, 0).
 * @example kn.tensor([-1, 2]).relu() // [0, 2]
 */
export function relu(x: Tensor): Tensor {
  const y = unaryN('relu', x);
  return record('relu', y, [x], [x], (g, [xx]) => [reluBackward(xx!, g)]);
}
/**
 * @internal relu's gradient g * [x > 0] by one fused kernel (x: relu's input, or its output, which is positive
 * exactly where the input is), as a differentiable op: d/dg = [x > 0], d/dx = 0 almost everywhere.
 */
export function reluBackward(x: Tensor, g: Tensor): Tensor {
  const y = runBroadcast('reluGrad', x, g, floatOut(x.dtype));
  return record('reluGrad', y, [x, g], [x], (u, [xx], needs) => [
    null,
    needs[1] ? sumTo(reluBackward(xx!, u), g.shape) : null,
  ]);
}

/** Activations biasAct fuses. */
export type FusedActivation = 'none' | 'relu' | 'gelu';
const ACT_CODES: Record<FusedActivation, number> = { none: 0, relu: 1, gelu: 2 };

/**
 * act(x + bias) with bias over the last dim, in one pass (a Linear layer's bias and activation).
 * @example kn.biasAct(kn.tensor([[-1, 2]]), kn.tensor([0.5, 0.5]), 'relu') // [[0, 2.5]]
 */
export function biasAct(x: Tensor, bias: Tensor, act: FusedActivation = 'none'): Tensor {
  assertTensor(x, 'biasAct: x');
  assertTensor(bias, 'biasAct: bias');
  const code = ACT_CODES[act];
  if (code === undefined)
    throw new ArgumentError(`biasAct: act must be 'none', 'relu' or 'gelu', got ${describe(act)}`);
  const N = x.shape[x.ndim - 1];
  if (x.ndim < 1 || bias.size !== N)
    throw new ArgumentError(
      `biasAct: bias must have one value per last-dim entry of x (${N ?? 'none'}), got ${bias.size}`,
    );
  const b1 = bias.ndim === 1 ? bias : bias.reshape([N!]);
  try {
    const y = runKernel('biasAct', [x, b1], [code], x.shape, floatOut(x.dtype));
    const bshape = [...bias.shape];
    if (act === 'relu')
      return record('biasAct', y, [x, bias], [y], (g, [yy], needs) => {
        const gp = reluBackward(yy!, g);
        return [gp, needs[1] ? sumTo(gp, bshape) : null];
      });
    if (act === 'gelu') {
      return record('biasAct', y, [x, bias], [x, b1], (g, [xx, bb], needs) => {
        const gp = geluBackward(add(xx!, bb!), g);
        return [gp, needs[1] ? sumTo(gp, bshape) : null];
      });
    }
    return record('biasAct', y, [x, bias], [], (g, _s, needs) => [g, needs[1] ? sumTo(g, bshape) : null]);
  } finally {
    if (b1 !== bias) b1.dispose();
  }
}

/**
 * Clamps to [min, max]; either bound may be null/undefined (unbounded).
 * @example kn.tensor([-2, 0.5, 3]).clamp(0, 1) // [0, 0.5, 1]
 */
export function clamp(x: Tensor, min?: number | null, max?: number | null): Tensor {
  assertTensor(x, 'clamp');
  const lo = min ?? -Infinity,
    hi = max ?? Infinity;
  if (typeof lo !== 'number' || Number.isNaN(lo))
    throw new ArgumentError(`clamp: min must be a number, got ${describe(min)}`);
  if (typeof hi !== 'number' || Number.isNaN(hi))
    throw new ArgumentError(`clamp: max must be a number, got ${describe(max)}`);
  if (lo > hi) throw new ArgumentError(`clamp: min (${lo}) must not exceed max (${hi})`);
  if (x.dtype === 'bool') throw new DTypeError('clamp does not take bool tensors');
  const y = runKernel('clamp', [x], [lo, hi], x.shape, x.dtype);
  return record('clamp', y, [x], [x], (g, [xx]) => [
    mul(g, mul(cast(ge(xx!, lo), g.dtype), cast(le(xx!, hi), g.dtype))),
  ]);
}

/** A binary elementwise op: tensors or numbers, broadcast like NumPy. */
export type BinaryOp = (a: TensorLike, b: TensorLike) => Tensor;

function operands(a: TensorLike, b: TensorLike, op: string, fallback?: Tensor): [Tensor, Tensor, DType] {
  let ta: Tensor, tb: Tensor;
  if (!(a instanceof Tensor) && !(b instanceof Tensor) && fallback) {
    // two scalars (where's branches): build them next to the condition
    ta = asTensor(a, fallback, `${op}: first operand`);
    tb = asTensor(b, fallback, `${op}: second operand`);
  } else if (a instanceof Tensor) {
    ta = assertTensor(a, `${op}: first operand`);
    tb = asTensor(b, ta, `${op}: second operand`);
  } else if (b instanceof Tensor) {
    tb = assertTensor(b, `${op}: second operand`);
    ta = asTensor(a, tb, `${op}: first operand`);
  } else {
    throw new ArgumentError(`${op} needs at least one Tensor operand, got ${describe(a)} and ${describe(b)}`);
  }
  return [ta, tb, promote(ta.dtype, tb.dtype)];
}

/** Runs a binary kernel after promoting both operands to `dt`; temporaries are disposed. */
function binaryRaw(op: OpName, ta: Tensor, tb: Tensor, dt: DType, out: DType): Tensor {
  const ca = ta.dtype === dt ? ta : runKernel('cast', [ta], [], ta.shape, dt);
  const cb = tb.dtype === dt ? tb : runKernel('cast', [tb], [], tb.shape, dt);
  try {
    return runBroadcast(op, ca, cb, out);
  } finally {
    if (ca !== ta) ca.dispose();
    if (cb !== tb) cb.dispose();
  }
}

function cleanup(ta: Tensor, tb: Tensor, a: TensorLike, b: TensorLike): void {
  if (ta !== a) ta.dispose();
  if (tb !== b) tb.dispose();
}

/** One operand's gradient of a binary op, from the incoming gradient g and the saved [a, b(, y)]. */
type OperandGrad = (g: Tensor, s: readonly Tensor[]) => Tensor;
/** A binary op's vjp that computes only the gradients the graph needs: a constant operand (a scale, a mask, a
 * divisor) costs no kernels in backward. */
const perOperand =
  (ga: OperandGrad, gb: OperandGrad): Vjp =>
  (g, s, needs) => [needs[0] ? ga(g, s) : null, needs[1] ? gb(g, s) : null];

function numericBinary(op: OpName, vjp: Vjp | null, saveOut = false): BinaryOp {
  return (a, b) => {
    const [ta, tb, dt] = operands(a, b, op);
    try {
      if (dt === 'bool') throw new DTypeError(`${op} does not take two bool tensors; cast to int32 or float32 first`);
      const y = binaryRaw(op, ta, tb, dt, dt);
      if (!vjp) return y;
      return record(op, y, [ta, tb], saveOut ? [ta, tb, y] : [ta, tb], vjp);
    } finally {
      cleanup(ta, tb, a, b);
    }
  };
}

function floatBinary(op: OpName, vjp: Vjp, saveOut = false): BinaryOp {
  return (a, b) => {
    const [ta, tb, dt0] = operands(a, b, op);
    try {
      const dt = floatOut(dt0);
      const y = binaryRaw(op, ta, tb, dt, dt);
      return record(op, y, [ta, tb], saveOut ? [ta, tb, y] : [ta, tb], vjp);
    } finally {
      cleanup(ta, tb, a, b);
    }
  };
}

function compareOp(op: OpName): BinaryOp {
  return (a, b) => {
    const [ta, tb, dt] = operands(a, b, op);
    try {
      return binaryRaw(op, ta, tb, dt === 'bool' ? 'int32' : dt, 'bool');
    } finally {
      cleanup(ta, tb, a, b);
    }
  };
}

/** a + b with broadcasting. @example kn.tensor([1, 2]).add(1) // [2, 3] */
export const add: BinaryOp = numericBinary(
  'add',
  perOperand(
    (g, [a]) => sumTo(g, a!.shape),
    (g, [, b]) => sumTo(g, b!.shape),
  ),
);
/**
 * a - b with broadcasting.
 * @example kn.tensor([5, 7]).sub(2) // [3, 5]
 */
export const sub: BinaryOp = numericBinary(
  'sub',
  perOperand(
    (g, [a]) => sumTo(g, a!.shape),
    (g, [, b]) => sumTo(neg(g), b!.shape),
  ),
);
/**
 * a * b with broadcasting.
 * @example kn.tensor([[1], [2]]).mul(kn.tensor([3, 4])) // [[3, 4], [6, 8]]
 */
export const mul: BinaryOp = numericBinary(
  'mul',
  perOperand(
    (g, [a, b]) => sumTo(mul(g, b!), a!.shape),
    (g, [a, b]) => sumTo(mul(g, a!), b!.shape),
  ),
);
/**
 * True division (integers divide as float32).
 * @example kn.tensor([1, 3]).div(2) // [0.5, 1.5]
 */
export const div: BinaryOp = floatBinary(
  'div',
  perOperand(
    (g, [a, b]) => sumTo(div(g, b!), a!.shape),
    (g, [, b, y]) => sumTo(neg(div(mul(g, y!), b!)), b!.shape),
  ),
  true,
);
/**
 * a ** b, with C's special cases (1 ** b = a ** 0 = 1, NaN included). The gradient for a is b a^(b-1), and 0 where
 * b is 0 (as PyTorch: 0 * 0^-1 would be NaN at a = 0); for b it uses log(a) where a > 0 and 0 elsewhere.
 * @example kn.tensor([2, 3]).pow(2) // [4, 9]
 */
export const pow: BinaryOp = floatBinary(
  'pow',
  perOperand(
    (g, [a, b]) => sumTo(mul(g, where(eq(b!, 0), 0, mul(b!, pow(a!, sub(b!, 1))))), a!.shape),
    (g, [a, b, y]) => sumTo(mul(g, mul(y!, where(gt(a!, 0), log(where(gt(a!, 0), a!, 1)), 0))), b!.shape),
  ),
  true,
);
/**
 * Elementwise maximum (NaN propagates; ties split the gradient evenly).
 * @example kn.tensor([1, 5]).maximum(kn.tensor([3, 2])) // [3, 5]
 */
export const maximum: BinaryOp = numericBinary('maximum', (g, [a, b], needs) => {
  const wa = add(cast(gt(a!, b!), g.dtype), mul(cast(eq(a!, b!), g.dtype), 0.5));
  return [needs[0] ? sumTo(mul(g, wa), a!.shape) : null, needs[1] ? sumTo(mul(g, sub(1, wa)), b!.shape) : null];
});
/**
 * Elementwise minimum (NaN propagates; ties split the gradient evenly).
 * @example kn.tensor([1, 5]).minimum(kn.tensor([3, 2])) // [1, 2]
 */
export const minimum: BinaryOp = numericBinary('minimum', (g, [a, b], needs) => {
  const wa = add(cast(lt(a!, b!), g.dtype), mul(cast(eq(a!, b!), g.dtype), 0.5));
  return [needs[0] ? sumTo(mul(g, wa), a!.shape) : null, needs[1] ? sumTo(mul(g, sub(1, wa)), b!.shape) : null];
});
/**
 * Elementwise a == b (bool).
 * @example kn.tensor([1, 2]).eq(kn.tensor([1, 3])) // [1, 0]
 */
export const eq: BinaryOp = compareOp('eq');
/**
 * Elementwise a != b (bool).
 * @example kn.tensor([1, 2]).ne(2) // [1, 0]
 */
export const ne: BinaryOp = compareOp('ne');
/**
 * Elementwise a < b (bool).
 * @example kn.tensor([1, 2]).lt(2) // [1, 0]
 */
export const lt: BinaryOp = compareOp('lt');
/**
 * Elementwise a <= b (bool).
 * @example kn.tensor([1, 2]).le(1) // [1, 0]
 */
export const le: BinaryOp = compareOp('le');
/**
 * Elementwise a > b (bool).
 * @example kn.tensor([1, 2]).gt(1) // [0, 1]
 */
export const gt: BinaryOp = compareOp('gt');
/**
 * Elementwise a >= b (bool).
 * @example kn.tensor([1, 2]).ge(2) // [0, 1]
 */
export const ge: BinaryOp = compareOp('ge');

/**
 * Picks a where cond is true, else b (all three broadcast).
 * @example kn.where(kn.tensor([1, -1]).gt(0), 10, -10) // [10, -10]
 */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  assertTensor(cond, 'where: condition');
  const [ta, tb, dt] = operands(a, b, 'where', cond);
  const ca = ta.dtype === dt ? ta : runKernel('cast', [ta], [], ta.shape, dt);
  const cb = tb.dtype === dt ? tb : runKernel('cast', [tb], [], tb.shape, dt);
  try {
    let shape = cond.shape as readonly number[];
    for (const t of [ca, cb]) shape = broadcastShapes(shape, t.shape, 'where');
    const srcs = [cond, ca, cb];
    const vs = srcs.map((t) => operandAs(t, shape));
    let y: Tensor;
    try {
      y = runKernel('where', vs, [], shape, dt);
    } finally {
      vs.forEach((v, i) => {
        if (v !== srcs[i]) v.dispose();
      });
    }
    if (!isFloat(dt)) return y;
    return record('where', y, [cond, ta, tb], [cond], (g, [cc], needs) => [
      null,
      needs[1] ? sumTo(where(cc!, g, 0), ta.shape) : null,
      needs[2] ? sumTo(where(cc!, 0, g), tb.shape) : null,
    ]);
  } finally {
    if (ca !== ta) ca.dispose();
    if (cb !== tb) cb.dispose();
    cleanup(ta, tb, a, b);
  }
}
