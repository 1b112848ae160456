// The op methods of Tensor (`x.add(y)`, `x.sum()`, ...), attached to its prototype from this module, the way
// tfjs attaches its chained ops: tensor.ts imports no op, the op modules depend on Tensor and never the
// other way, so src/ has no import cycle (test/codebase.test.ts keeps it so). The declarations merge into the
// Tensor class for the type checker; the implementations below attach them. Each method is the function of
// the same name in `kn` (see there for docs and examples). Imported for its effect by src/index.ts and
// src/ops/index.ts, so any entry into the ops has them.
import { backward, type BackwardOptions } from '../autograd/backward.js';
import {
  abs,
  add,
  cast,
  clamp,
  div,
  eq,
  exp,
  ge,
  gelu,
  gt,
  le,
  log,
  lt,
  maximum,
  minimum,
  mul,
  ne,
  neg,
  pow,
  relu,
  sigmoid,
  sign,
  silu,
  sqrt,
  sub,
  tanh,
  where,
} from '../ops/elementwise.js';
import { avgPool2d, conv2d, maxPool2d, type Conv2dOptions, type Pair, type Pool2dOptions } from '../ops/conv.js';
import { matmul } from '../ops/matmul.js';
import {
  clone,
  concat,
  contiguous,
  expand,
  flatten,
  gather,
  permute,
  reshape,
  slice,
  squeeze,
  stack,
  transpose,
  unsqueeze,
} from '../ops/movement.js';
import { argmax, argmin, logSoftmax, max, mean, min, softmax, sum, sumTo, variance } from '../ops/reduce.js';
import type { DType } from './dtype.js';
import { Tensor } from './tensor.js';

declare module './tensor.js' {
  interface Tensor {
    /**
     * Backpropagates from this tensor (a scalar unless `grad` is given) into the `.grad` of the leaves. Options
     * come after the gradient, or alone: `loss.backward({ retainGraph: true })`.
     */
    backward(grad?: Tensor | BackwardOptions, opts?: BackwardOptions): void;
    add(b: Tensor | number): Tensor;
    sub(b: Tensor | number): Tensor;
    mul(b: Tensor | number): Tensor;
    div(b: Tensor | number): Tensor;
    pow(b: Tensor | number): Tensor;
    maximum(b: Tensor | number): Tensor;
    minimum(b: Tensor | number): Tensor;
    eq(b: Tensor | number): Tensor;
    ne(b: Tensor | number): Tensor;
    lt(b: Tensor | number): Tensor;
    le(b: Tensor | number): Tensor;
    gt(b: Tensor | number): Tensor;
    ge(b: Tensor | number): Tensor;
    neg(): Tensor;
    abs(): Tensor;
    sign(): Tensor;
    exp(): Tensor;
    log(): Tensor;
    sqrt(): Tensor;
    tanh(): Tensor;
    sigmoid(): Tensor;
    relu(): Tensor;
    gelu(): Tensor;
    silu(): Tensor;
    clamp(min?: number | null, max?: number | null): Tensor;
    cast(dtype: DType): Tensor;
    softmax(axis?: number): Tensor;
    logSoftmax(axis?: number): Tensor;
    matmul(b: Tensor): Tensor;
    sum(axis?: AxisArg, keepdims?: boolean): Tensor;
    mean(axis?: AxisArg, keepdims?: boolean): Tensor;
    max(axis?: AxisArg, keepdims?: boolean): Tensor;
    min(axis?: AxisArg, keepdims?: boolean): Tensor;
    argmax(axis?: number, keepdims?: boolean): Tensor;
    argmin(axis?: number, keepdims?: boolean): Tensor;
    var(axis?: AxisArg, opts?: { correction?: number; keepdims?: boolean }): Tensor;
    /** @internal Sums a broadcast gradient back down to `shape` (the vjp of broadcasting). */
    sumTo(shape: readonly number[]): Tensor;
    reshape(shape: readonly number[]): Tensor;
    transpose(a0?: number, a1?: number): Tensor;
    permute(axes: readonly number[]): Tensor;
    slice(begin: readonly number[], end?: readonly (number | null)[], step?: readonly number[]): Tensor;
    expand(shape: readonly number[]): Tensor;
    squeeze(axis?: AxisArg): Tensor;
    unsqueeze(axis: number): Tensor;
    flatten(startAxis?: number, endAxis?: number): Tensor;
    gather(indices: Tensor, axis?: number): Tensor;
    /** This tensor where `cond` is true, else `other` (PyTorch's `x.where(cond, y)`; kn.where(cond, x, y)). */
    where(cond: Tensor, other: Tensor | number): Tensor;
    /** kn.concat([this, ...others], axis): `others` one tensor or a list. */
    concat(others: Tensor | readonly Tensor[], axis?: number): Tensor;
    /** kn.stack([this, ...others], axis): `others` one tensor or a list. */
    stack(others: Tensor | readonly Tensor[], axis?: number): Tensor;
    conv2d(weight: Tensor, bias?: Tensor | null, opts?: Conv2dOptions): Tensor;
    maxPool2d(kernel: Pair, opts?: Pool2dOptions): Tensor;
    avgPool2d(kernel: Pair, opts?: Pool2dOptions): Tensor;
    contiguous(): Tensor;
    clone(): Tensor;
  }
}

type Methods = {
  [K in keyof Tensor]?: Tensor[K] extends (...a: infer A) => infer R ? (this: Tensor, ...a: A) => R : never;
};

/** Every op method, by name (attached below; also what `kn` documents as methods). */
export const TENSOR_METHODS = {
  backward(grad, opts) {
    backward(this, grad, opts);
  },
  add(b) {
    return add(this, b);
  },
  sub(b) {
    return sub(this, b);
  },
  mul(b) {
    return mul(this, b);
  },
  div(b) {
    return div(this, b);
  },
  pow(b) {
    return pow(this, b);
  },
  maximum(b) {
    return maximum(this, b);
  },
  minimum(b) {
    return minimum(this, b);
  },
  eq(b) {
    return eq(this, b);
  },
  ne(b) {
    return ne(this, b);
  },
  lt(b) {
    return lt(this, b);
  },
  le(b) {
    return le(this, b);
  },
  gt(b) {
    return gt(this, b);
  },
  ge(b) {
    return ge(this, b);
  },
  neg() {
    return neg(this);
  },
  abs() {
    return abs(this);
  },
  sign() {
    return sign(this);
  },
  exp() {
    return exp(this);
  },
  log() {
    return log(this);
  },
  sqrt() {
    return sqrt(this);
  },
  tanh() {
    return tanh(this);
  },
  sigmoid() {
    return sigmoid(this);
  },
  relu() {
    return relu(this);
  },
  gelu() {
    return gelu(this);
  },
  silu() {
    return silu(this);
  },
  clamp(lo, hi) {
    return clamp(this, lo, hi);
  },
  cast(dtype) {
    return cast(this, dtype);
  },
  softmax(axis = -1) {
    return softmax(this, axis);
  },
  logSoftmax(axis = -1) {
    return logSoftmax(this, axis);
  },
  matmul(b) {
    return matmul(this, b);
  },
  sum(axis, keepdims = false) {
    return sum(this, axis, keepdims);
  },
  mean(axis, keepdims = false) {
    return mean(this, axis, keepdims);
  },
  max(axis, keepdims = false) {
    return max(this, axis, keepdims);
  },
  min(axis, keepdims = false) {
    return min(this, axis, keepdims);
  },
  argmax(axis, keepdims = false) {
    return argmax(this, axis, keepdims);
  },
  argmin(axis, keepdims = false) {
    return argmin(this, axis, keepdims);
  },
  var(axis, opts) {
    return variance(this, axis, opts);
  },
  sumTo(shape) {
    return sumTo(this, shape);
  },
  reshape(shape) {
    return reshape(this, shape);
  },
  transpose(a0, a1) {
    return transpose(this, a0, a1);
  },
  permute(axes) {
    return permute(this, axes);
  },
  slice(begin, end, step) {
    return slice(this, begin, end, step);
  },
  expand(shape) {
    return expand(this, shape);
  },
  squeeze(axis) {
    return squeeze(this, axis);
  },
  unsqueeze(axis) {
    return unsqueeze(this, axis);
  },
  flatten(startAxis = 0, endAxis = -1) {
    return flatten(this, startAxis, endAxis);
  },
  gather(indices, axis = 0) {
    return gather(this, indices, axis);
  },
  where(cond, other) {
    return where(cond, this, other);
  },
  concat(others, axis = 0) {
    return concat([this, ...(Array.isArray(others) ? others : [others as Tensor])], axis);
  },
  stack(others, axis = 0) {
    return stack([this, ...(Array.isArray(others) ? others : [others as Tensor])], axis);
  },
  conv2d(weight, bias, opts) {
    return conv2d(this, weight, bias, opts);
  },
  maxPool2d(kernel, opts) {
    return maxPool2d(this, kernel, opts);
  },
  avgPool2d(kernel, opts) {
    return avgPool2d(this, kernel, opts);
  },
  contiguous() {
    return contiguous(this);
  },
  clone() {
    return clone(this);
  },
} satisfies Methods;

// non-enumerable, like methods declared in the class body
for (const [name, fn] of Object.entries(TENSOR_METHODS)) {
  Object.defineProperty(Tensor.prototype, name, { value: fn, writable: true, configurable: true, enumerable: false });
}
