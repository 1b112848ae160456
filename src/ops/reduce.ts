// Reductions, arg-reductions and (log)softmax. Kernels reduce one contiguous axis range; several ranges are
// reduced one after another.
import { isGradEnabled, record } from '../autograd/tape.js';
import { runKernel } from '../engine/dispatch.js';
import { ArgumentError, DTypeError, ShapeError, checkOptions, describe } from '../errors.js';
import { isFloat, type DType } from '../tensor/dtype.js';
import { normalizeAxes, normalizeAxis, sameShape, shapeStr } from '../tensor/shape.js';
import { assertTensor, type AxisArg, type Tensor } from '../tensor/tensor.js';
import { arange } from './creation.js';
import { add, cast, div, eq, exp, mul, sub } from './elementwise.js';
import { expand, reshape } from './movement.js';
import type { OpName } from './table.js';

/** Splits sorted axes into maximal runs of consecutive axes. */
function runs(axes: readonly number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const a of axes) {
    const last = out[out.length - 1];
    if (last && last[1] === a) last[1] = a + 1;
    else out.push([a, a + 1]);
  }
  return out;
}

function keptShape(shape: readonly number[], axes: readonly number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

function reduceRaw(op: OpName, x: Tensor, axes: readonly number[], outDtype: DType): Tensor {
  let cur = x;
  const rs = runs(axes);
  // reduce from the last run so earlier axis numbers stay valid
  for (let k = rs.length - 1; k >= 0; k--) {
    const [a0, a1] = rs[k]!;
    const shape = cur.shape.filter((_, i) => i < a0 || i >= a1);
    const next = runKernel(op, [cur], [a0, a1], shape, outDtype);
    if (cur !== x) cur.dispose();
    cur = next;
  }
  if (cur === x) return runKernel('copy', [x], [], x.shape, x.dtype);
  return cur;
}

function finish(y: Tensor, x: Tensor, axes: readonly number[], keepdims: boolean): Tensor {
  if (!keepdims) return y;
  const r = reshape(y, keptShape(x.shape, axes));
  y.dispose();
  return r;
}

function sumDType(d: DType): DType {
  if (isFloat(d)) return d;
  return 'int32';
}

/**
 * Sum over `axis` (all axes when omitted).
 * @example kn.tensor([[1, 2], [3, 4]]).sum(0) // [4, 6]
 */
export function sum(x: Tensor, axis?: AxisArg, keepdims = false): Tensor {
  assertTensor(x, 'sum');
  const axes = normalizeAxes(axis, x.ndim);
  const y = reduceRaw('sum', x, axes, sumDType(x.dtype));
  const out = finish(y, x, axes, keepdims);
  return record('sum', out, [x], [], (g) => [expand(reshape(g, keptShape(x.shape, axes)), x.shape)]);
}

/**
 * Mean over `axis` (all axes when omitted); integers average as float32.
 * @example kn.tensor([[1, 2], [3, 4]]).mean(1) // [1.5, 3.5]
 */
export function mean(x: Tensor, axis?: AxisArg, keepdims = false): Tensor {
  assertTensor(x, 'mean');
  const axes = normalizeAxes(axis, x.ndim);
  let count = 1;
  for (const a of axes) count *= x.shape[a]!;
  const xf = isFloat(x.dtype) ? x : cast(x, 'float32');
  const s = sum(xf, axes, keepdims);
  const m = div(s, count);
  s.dispose();
  if (xf !== x) xf.dispose();
  return m;
}

function extreme(op: 'max' | 'min', x: Tensor, axis: AxisArg | undefined, keepdims: boolean): Tensor {
  assertTensor(x, op);
  if (x.dtype === 'bool') throw new DTypeError(`${op} does not take bool tensors`);
  const axes = normalizeAxes(axis, x.ndim);
  const y = reduceRaw(op, x, axes, x.dtype);
  const out = finish(y, x, axes, keepdims);
  if (!isFloat(x.dtype)) return out;
  return record(op, out, [x], [x, out], (g, [xx, yy]) => {
    // gradient flows to every position equal to the extreme, split evenly among ties
    const yk = expand(reshape(yy!, keptShape(xx!.shape, axes)), xx!.shape);
    const mask = cast(eq(xx!, yk), g.dtype);
    const count = sum(mask, axes, true);
    const gk = expand(reshape(g, keptShape(xx!.shape, axes)), xx!.shape);
    return [div(mul(gk, mask), count)];
  });
}

/**
 * Maximum over `axis` (NaN propagates).
 * @example kn.tensor([[1, 5], [7, 2]]).max(1) // [5, 7]
 */
export function max(x: Tensor, axis?: AxisArg, keepdims = false): Tensor {
  return extreme('max', x, axis, keepdims);
}
/**
 * Minimum over `axis` (NaN propagates).
 * @example kn.tensor([[1, 5], [7, 2]]).min(0) // [1, 2]
 */
export function min(x: Tensor, axis?: AxisArg, keepdims = false): Tensor {
  return extreme('min', x, axis, keepdims);
}

function argReduce(op: 'argmax' | 'argmin', x: Tensor, axis: number | undefined, keepdims: boolean): Tensor {
  assertTensor(x, op);
  if (x.dtype === 'bool') throw new DTypeError(`${op} does not take bool tensors`);
  if (axis === undefined) {
    const flat = reshape(x, [x.size]);
    try {
      const r = runKernel(op, [flat], [0], [], 'int32');
      if (!keepdims) return r;
      const k = reshape(
        r,
        x.shape.map(() => 1),
      );
      r.dispose();
      return k;
    } finally {
      flat.dispose();
    }
  }
  const a = normalizeAxis(axis, x.ndim);
  const shape = x.shape.filter((_, i) => i !== a);
  const r = runKernel(op, [x], [a], shape, 'int32');
  return finish(r, x, [a], keepdims);
}

/**
 * Index of the first maximum along `axis` (of the flattened tensor when omitted), as int32.
 * @example kn.tensor([[3, 1], [0, 5]]).argmax(1) // [0, 1]
 */
export function argmax(x: Tensor, axis?: number, keepdims = false): Tensor {
  return argReduce('argmax', x, axis, keepdims);
}
/**
 * Index of the first minimum along `axis` (of the flattened tensor when omitted), as int32.
 * @example kn.tensor([[3, 1], [0, 5]]).argmin(1) // [1, 0]
 */
export function argmin(x: Tensor, axis?: number, keepdims = false): Tensor {
  return argReduce('argmin', x, axis, keepdims);
}

/**
 * Variance over `axis` with Bessel's `correction` (default 1, like PyTorch; 0 = population variance).
 * @example kn.tensor([1, 2, 3, 4]).var() // 1.6666666666666667
 */
export function variance(x: Tensor, axis?: AxisArg, opts: { correction?: number; keepdims?: boolean } = {}): Tensor {
  assertTensor(x, 'var');
  checkOptions(opts, 'var', ['correction', 'keepdims']);
  const correction = opts.correction ?? 1;
  if (typeof correction !== 'number' || !(correction >= 0))
    throw new ArgumentError(`var: correction must be a number >= 0, got ${describe(opts.correction)}`);
  const axes = normalizeAxes(axis, x.ndim);
  let n = 1;
  for (const a of axes) n *= x.shape[a]!;
  const m = mean(x, axes, true);
  const d = sub(x, m);
  const sq = mul(d, d);
  const s = sum(sq, axes, opts.keepdims ?? false);
  const v = div(s, Math.max(n - correction, 0));
  for (const t of [m, d, sq, s]) t.dispose();
  return v;
}

function softmaxLike(op: 'softmax' | 'logSoftmax', x: Tensor, axis: number): Tensor {
  assertTensor(x, op);
  const a = normalizeAxis(axis, x.ndim);
  const y = runKernel(op, [x], [a], x.shape, isFloat(x.dtype) ? x.dtype : 'float32');
  return record(op, y, [x], [y], (g, [yy]) => {
    if (op === 'softmax') return [mul(yy!, sub(g, sum(mul(g, yy!), a, true)))];
    return [sub(g, mul(exp(yy!), sum(g, a, true)))];
  });
}

/**
 * Softmax along `axis` (default last), computed stably.
 * @example kn.tensor([1, 1]).softmax() // [0.5, 0.5]
 */
export function softmax(x: Tensor, axis = -1): Tensor {
  return softmaxLike('softmax', x, axis);
}
/**
 * log(softmax(x)) along `axis`, computed stably (log-sum-exp).
 * @example kn.tensor([0, 0]).logSoftmax().exp() // [0.5, 0.5]
 */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  return softmaxLike('logSoftmax', x, axis);
}

/**
 * @internal Fused softmax cross-entropy per row: logits [N, C], int32 labels [N], optional class weights [C]
 * -> loss [N] (see kn.nn.loss.crossEntropy). Differentiable in the logits, by a fused backward kernel.
 */
export function softmaxCrossEntropy(
  logits: Tensor,
  labels: Tensor,
  weight: Tensor | null,
  labelSmoothing: number,
): Tensor {
  const N = logits.shape[0]!;
  const extra = weight ? [weight] : [];
  const y = runKernel('softmaxCrossEntropy', [logits, labels, ...extra], [labelSmoothing], [N], 'float32');
  return record('softmaxCrossEntropy', y, [logits], [logits, labels, ...extra], (g, [lg, lb, w]) => [
    isGradEnabled()
      ? crossEntropyGrad(lg!, lb!, g, w ?? null, labelSmoothing) // recording (createGraph): differentiable form
      : runKernel(
          'softmaxCrossEntropyBackward',
          [lg!, lb!, g, ...(w ? [w] : [])],
          [labelSmoothing],
          lg!.shape,
          'float32',
        ),
  ]);
}

/**
 * The fused backward kernel's formula in differentiable ops, for gradients of gradients:
 * dlogits = g * (softmax * (hard + s W / C) - hard * onehot(label) - (s / C) w), hard = (1 - s) w[label],
 * W = sum(w) (w = 1 without class weights).
 */
function crossEntropyGrad(lg: Tensor, lb: Tensor, g: Tensor, w: Tensor | null, s: number): Tensor {
  const [N, C] = lg.shape as [number, number];
  const onehot = cast(eq(reshape(lb, [N, 1]), reshape(arange(0, C, 1, { dtype: 'int32' }), [1, C])), 'float32');
  const wy = w ? reshape(sum(mul(onehot, reshape(w, [1, C])), 1), [N, 1]) : null; // w[label] per row
  const hard = wy ? mul(wy, 1 - s) : 1 - s;
  const coef = wy ? add(mul(wy, 1 - s), mul(sum(w!), s / C)) : 1;
  let d = sub(mul(softmax(lg, 1), coef), mul(onehot, hard));
  if (s !== 0) d = sub(d, w ? mul(reshape(w, [1, C]), s / C) : s / C);
  return mul(d, reshape(g, [N, 1]));
}

/**
 * Quantile `q` in [0, 1] of each column of x [N, F], ignoring NaN (linear interpolation, NumPy's default);
 * an all-NaN column gives NaN. Not differentiable.
 * @example kn.nanQuantile(kn.tensor([[1, 10], [NaN, 20], [3, 30]]), 0.5) // [2, 20]
 */
export function nanQuantile(x: Tensor, q: number): Tensor {
  assertTensor(x, 'nanQuantile');
  if (x.ndim !== 2) throw new ShapeError(`nanQuantile takes a table [N, F], got ${shapeStr(x.shape)}`);
  if (typeof q !== 'number' || !(q >= 0 && q <= 1))
    throw new ArgumentError(`nanQuantile: q must be a number in [0, 1], got ${describe(q)}`);
  return runKernel('nanQuantile', [x], [q], [x.shape[1]!], 'float32');
}

/**
 * Per-column statistics of x [N, F] ignoring NaN, in one pass: rows count, mean, population variance, min,
 * max (-> [5, F]; NaN for a column without values). Not differentiable.
 * @example kn.nanColumnStats(kn.tensor([[1], [NaN], [3]])).toList() // [[2], [2], [1], [1], [3]]
 */
export function nanColumnStats(x: Tensor): Tensor {
  assertTensor(x, 'nanColumnStats');
  if (x.ndim !== 2) throw new ShapeError(`nanColumnStats takes a table [N, F], got ${shapeStr(x.shape)}`);
  return runKernel('nanColumnStats', [x], [], [5, x.shape[1]!], 'float32');
}

/**
 * Two 32-bit hashes of each row of a float table [N, F] (its float32 bit patterns; every NaN hashes alike)
 * -> int32 [N, 2]. Equal rows give equal hashes on every backend; used to find rows shared between splits.
 * @example kn.rowHash(kn.tensor([[1, 2], [1, 2]])).toList()[0] // is the same pair as row 1
 */
export function rowHash(x: Tensor): Tensor {
  assertTensor(x, 'rowHash');
  if (x.ndim !== 2) throw new ShapeError(`rowHash takes a table [N, F], got ${shapeStr(x.shape)}`);
  return runKernel('rowHash', [x], [], [x.shape[0]!, 2], 'int32');
}

/** Sums a broadcast gradient back down to `shape`. */
export function sumTo(g: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.ndim - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.ndim; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  const s = axes.length ? sum(g, axes, true) : g;
  const r = reshape(s, shape);
  if (s !== g) s.dispose(); // r is then the only holder of the sum's buffer (a leaf can take it without a copy)
  return r;
}

/**
 * @internal Fused layer normalisation of x over its last axes, flattened to C values per row: (x - mean) /
 * sqrt(var + eps), then * weight + bias when both are given (each holding C values). One kernel each way; a
 * gradient of the gradient (createGraph) uses the same formulas in ops.
 */
export function layerNorm(x: Tensor, C: number, weight: Tensor | null, bias: Tensor | null, eps: number): Tensor {
  const R = C === 0 ? x.shape.slice(0, -1).reduce((a, b) => a * b, 1) : x.size / C;
  const x2 = reshape(x, [R, C]);
  const wb = weight && bias ? [reshape(weight, [C]), reshape(bias, [C])] : [];
  const y = runKernel('layerNorm', [x2, ...wb], [eps], [R, C], 'float32');
  const out = record('layerNorm', y, [x2, ...wb], [x2, ...wb.slice(0, 1)], (g, [xx, ww]) => {
    if (isGradEnabled()) return layerNormGradOps(xx!, g, ww ?? null, eps);
    const flat = runKernel('layerNormBackward', [xx!, g, ...(ww ? [ww] : [])], [eps], [R * C + 2 * C], 'float32');
    const part = (from: number, n: number): Tensor => flat.slice([from], [from + n]);
    const dx = reshape(part(0, R * C), [R, C]);
    return ww ? [dx, part(R * C, C), part(R * C + C, C)] : [dx];
  });
  return reshape(out, x.shape);
}

/** The layer-norm gradient written in ops (differentiable again). */
function layerNormGradOps(x: Tensor, g: Tensor, w: Tensor | null, eps: number): Tensor[] {
  const xc = sub(x, mean(x, -1, true));
  const rstd = div(1, mean(mul(xc, xc), -1, true).add(eps).sqrt());
  const xh = mul(xc, rstd);
  const dxh = w ? mul(g, w) : g;
  const dx = mul(rstd, sub(sub(dxh, mean(dxh, -1, true)), mul(xh, mean(mul(dxh, xh), -1, true))));
  return w ? [dx, sum(mul(g, xh), 0), sum(g, 0)] : [dx];
}
