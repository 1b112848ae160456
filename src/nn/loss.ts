// Losses. Cross-entropy is one fused kernel per direction (log-softmax + loss per row, and softmax - target
// for the gradient). The BCE losses run their forward without recording and carry a closed-form gradient
// (sigmoid - target), which is cheaper than differentiating the composite and exact where the composite is
// not (|x| at 0, log(0)).
import { noGrad, quiet, record } from '../autograd/tape.js';
import { tidy } from '../engine/memory.js';
import {
  ArgumentError,
  BackendError,
  DTypeError,
  ShapeError,
  ValidationError,
  checkOptions,
  describe,
} from '../errors.js';
import {
  abs,
  add,
  cast,
  clamp,
  div,
  exp,
  log,
  maximum,
  mul,
  ne,
  relu,
  sigmoid,
  sub,
  where,
} from '../ops/elementwise.js';
import { gather, stack } from '../ops/movement.js';
import { logSoftmax, mean, softmaxCrossEntropy, sum } from '../ops/reduce.js';
import { isFloat } from '../tensor/dtype.js';
import { shapeStr } from '../tensor/shape.js';
import { assertTensor, type Tensor } from '../tensor/tensor.js';

/** Runs without recording and frees every temporary the result does not hold. */

/** How per-sample losses are combined. */
export type Reduction = 'mean' | 'sum' | 'none';

function reduction(r: unknown, what: string): Reduction {
  const v = r ?? 'mean';
  if (v !== 'mean' && v !== 'sum' && v !== 'none')
    throw new ArgumentError(`${what}: reduction must be 'mean', 'sum' or 'none', got ${describe(r)}`);
  return v;
}

function floatInput(x: unknown, what: string): Tensor {
  const t = assertTensor(x, what);
  if (!isFloat(t.dtype)) throw new DTypeError(`${what} must be a floating-point tensor, got ${t.dtype}`);
  return t;
}

function sameShapeAs(a: Tensor, b: Tensor, what: string): void {
  if (a.ndim !== b.ndim || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new ShapeError(
      `${what}: target has shape ${shapeStr(b.shape)} but the input has ${shapeStr(a.shape)}; they must match exactly`,
    );
  }
}

/** Options of crossEntropy. */
export interface CrossEntropyOptions {
  /** per-class weights [C] (class imbalance); the mean divides by the summed weights of the targets, as in PyTorch */
  weight?: Tensor | null;
  /** in [0, 1): the target puts 1 - s on the label and s/C on every class */
  labelSmoothing?: number;
  /**
   * A label value whose rows are left out (padding tokens): they lose 0 and get no gradient, and the mean is over
   * the other rows (their summed weights), as PyTorch's `ignore_index` (which defaults to -100; kiln has no
   * default, so a -100 label is an error unless this is set). Class indices only. All rows ignored: the mean is
   * NaN, the sum 0.
   */
  ignoreIndex?: number | null;
  reduction?: Reduction;
}

/**
 * Softmax cross-entropy of logits [N, C] against integer labels [N]: a fused kernel computes the max-shifted
 * log-softmax and the loss of each row (stable for any logit size), and its backward kernel the gradient. Matches PyTorch's `F.cross_entropy` including `weight` and `label_smoothing`.
 * @example kn.nn.loss.crossEntropy(kn.zeros([2, 4]), kn.tensor(new Int32Array([0, 3]), [2])).item() // ln(4) = 1.386...
 */
export function crossEntropy(logits: Tensor, labels: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  floatInput(logits, 'crossEntropy logits');
  assertTensor(labels, 'crossEntropy labels');
  checkOptions(opts, 'crossEntropy', ['weight', 'labelSmoothing', 'ignoreIndex', 'reduction']);
  if (logits.ndim !== 2) throw new ShapeError(`crossEntropy logits must be [N, C], got ${shapeStr(logits.shape)}`);
  const [N, C] = logits.shape as [number, number];
  const soft = labels.ndim === 2 && labels.dtype === 'float32';
  if (soft && (labels.shape[0] !== N || labels.shape[1] !== C))
    throw new ShapeError(`crossEntropy probabilities must be [${N}, ${C}], got ${shapeStr(labels.shape)}`);
  if (!soft && (labels.ndim !== 1 || labels.shape[0] !== N))
    throw new ShapeError(
      `crossEntropy labels must be [${N}] class indices or [${N}, ${C}] class probabilities, got ${shapeStr(labels.shape)}`,
    );
  if (!soft && labels.dtype !== 'int32' && labels.dtype !== 'int8' && labels.dtype !== 'uint8') {
    throw new DTypeError(`crossEntropy labels must be integer class indices (int32), got ${labels.dtype}`);
  }
  const eps = opts.labelSmoothing ?? 0;
  if (typeof eps !== 'number' || !(eps >= 0 && eps < 1))
    throw new ArgumentError(`crossEntropy labelSmoothing must be in [0, 1), got ${describe(opts.labelSmoothing)}`);
  const red = reduction(opts.reduction, 'crossEntropy');
  const w = opts.weight ?? null;
  if (w !== null) {
    floatInput(w, 'crossEntropy weight');
    if (w.ndim !== 1 || w.shape[0] !== C)
      throw new ShapeError(`crossEntropy weight must be [${C}] (one per class), got ${shapeStr(w.shape)}`);
  }
  if (labels.backend !== logits.backend)
    throw new BackendError(`crossEntropy labels are on '${labels.backend}' but logits on '${logits.backend}'`);
  if (w && w.backend !== logits.backend)
    throw new BackendError(`crossEntropy weight is on '${w.backend}' but logits on '${logits.backend}'`);
  const ignore = opts.ignoreIndex ?? null;
  if (ignore !== null && !Number.isSafeInteger(ignore))
    throw new ArgumentError(`crossEntropy ignoreIndex must be an integer, got ${describe(opts.ignoreIndex)}`);
  if (soft && ignore !== null)
    throw new ArgumentError('crossEntropy ignoreIndex applies to class-index labels, not to class probabilities');
  if (soft) return softCrossEntropy(logits, labels, w, eps, red);
  return hardCrossEntropy(logits, labels, w, eps, red, ignore);
}

/**
 * crossEntropy against class indices: one fused kernel per direction gives the per-row losses (labels
 * range-checked in the kernel), then the reduction. Rows labelled `ignore` run the kernel as class 0 and their
 * losses (so their gradients) are masked to 0. The mean divides by the summed weights of the kept rows' targets
 * (their count without weights), as PyTorch does.
 */
function hardCrossEntropy(
  logits: Tensor,
  labels: Tensor,
  w: Tensor | null,
  eps: number,
  red: Reduction,
  ignore: number | null,
): Tensor {
  return tidy(() => {
    const keep = ignore === null ? null : ne(labels, ignore);
    const safe = keep ? where(keep, labels, 0) : labels;
    const losses = softmaxCrossEntropy(logits, safe, w, eps);
    const rows = keep ? where(keep, losses, 0) : losses;
    if (red === 'none') return rows;
    const total = sum(rows);
    if (red === 'sum') return total;
    const denom = noGrad(() => {
      if (!keep) return w ? sum(gather(w, labels, 0)) : labels.shape[0]!;
      return sum(w ? where(keep, gather(w, safe, 0), 0) : cast(keep, 'float32'));
    });
    return div(total, denom);
  });
}

/**
 * Cross-entropy against class probabilities [N, C] (soft targets, e.g. from mixup or distillation), as PyTorch's
 * `F.cross_entropy` with a probability target: -sum_c w_c * t_c * log_softmax(logits)_c per row, the mean over
 * rows; label smoothing mixes the target with the uniform distribution first.
 */
function softCrossEntropy(logits: Tensor, target: Tensor, w: Tensor | null, eps: number, red: Reduction): Tensor {
  const C = logits.shape[1]!;
  return tidy(() => {
    let t = eps > 0 ? target.mul(1 - eps).add(eps / C) : target;
    if (w) t = t.mul(w.reshape([1, C]));
    const rows = t.mul(logSoftmax(logits, 1)).sum(1).neg();
    return red === 'none' ? rows : red === 'sum' ? rows.sum() : rows.mean();
  });
}

/**
 * Mean squared error (pred and target must have the same shape).
 * @example kn.nn.loss.mse(kn.tensor([1, 2]), kn.tensor([1, 4])).item() // 2
 */
export function mse(pred: Tensor, target: Tensor, opts: { reduction?: Reduction } = {}): Tensor {
  checkOptions(opts, 'mse', ['reduction']);
  floatInput(pred, 'mse prediction');
  floatInput(target, 'mse target');
  sameShapeAs(pred, target, 'mse');
  const red = reduction(opts.reduction, 'mse');
  const d = sub(pred, target);
  const sq = mul(d, d);
  d.dispose();
  if (red === 'none') return sq;
  const r = red === 'mean' ? mean(sq) : sum(sq);
  sq.dispose();
  return r;
}

function reduceRows(per: Tensor, red: Reduction): Tensor {
  return red === 'none' ? per : red === 'mean' ? mean(per) : sum(per);
}

/**
 * Binary cross-entropy on probabilities in [0, 1]; log terms are clamped at -100 like PyTorch, so p = 0 or 1
 * gives a finite loss and gradient.
 * @example kn.nn.loss.bce(kn.tensor([0.5]), kn.tensor([1])).item() // ln(2) = 0.693...
 */
export function bce(
  probs: Tensor,
  target: Tensor,
  opts: { weight?: Tensor | null; reduction?: Reduction } = {},
): Tensor {
  checkOptions(opts, 'bce', ['weight', 'reduction']);
  floatInput(probs, 'bce input');
  floatInput(target, 'bce target');
  sameShapeAs(probs, target, 'bce');
  const red = reduction(opts.reduction, 'bce');
  const w = opts.weight ?? null;
  // the range in one read (one wait for an asynchronous device); an empty input has none and gives what mse does
  const [lo, hi] = probs.size > 0 ? quiet(() => stack([probs.min(), probs.max()]).toArray()) : [0, 1];
  if (!(lo! >= 0 && hi! <= 1)) {
    throw new ValidationError(
      `bce expects probabilities in [0, 1], got values in [${lo}, ${hi}]; use bceWithLogits for raw scores`,
    );
  }
  const [per, n] = quiet(() => {
    const lp = clamp(log(probs), -100);
    const l1p = clamp(log(sub(1, probs)), -100);
    let l = mul(add(mul(target, lp), mul(sub(1, target), l1p)), -1);
    if (w) l = mul(l, w);
    const r = reduceRows(l, red);
    return [r, l.size] as const;
  });
  return record('bce', per, [probs], [probs, target, ...(w ? [w] : [])], (g, s) => {
    const [p, t, ww] = s as [Tensor, Tensor, Tensor | undefined];
    let d = div(sub(p, t), maximum(mul(p, sub(1, p)), 1e-12));
    if (ww) d = mul(d, ww);
    return [mul(d, red === 'mean' ? div(g, n) : g)];
  });
}

/**
 * Binary cross-entropy on raw scores: sigmoid and log fused in the stable form
 * max(x, 0) - x t + log(1 + e^-|x|). `posWeight` multiplies the positive term (class imbalance).
 * @example kn.nn.loss.bceWithLogits(kn.tensor([0]), kn.tensor([1])).item() // ln(2) = 0.693...
 */
export function bceWithLogits(
  logits: Tensor,
  target: Tensor,
  opts: { weight?: Tensor | null; posWeight?: Tensor | number | null; reduction?: Reduction } = {},
): Tensor {
  checkOptions(opts, 'bceWithLogits', ['weight', 'posWeight', 'reduction']);
  floatInput(logits, 'bceWithLogits input');
  floatInput(target, 'bceWithLogits target');
  sameShapeAs(logits, target, 'bceWithLogits');
  const red = reduction(opts.reduction, 'bceWithLogits');
  const w = opts.weight ?? null;
  const pw = opts.posWeight ?? null;
  if (typeof pw === 'number' && !(Number.isFinite(pw) && pw > 0))
    throw new ArgumentError(`bceWithLogits posWeight must be a positive number, got ${pw}`);
  const [per, n] = quiet(() => {
    const softplusNeg = add(log(add(exp(mul(abs(logits), -1)), 1)), relu(mul(logits, -1))); // log(1 + e^-x)
    // (1 - t) x + (1 + (pw - 1) t) log(1 + e^-x)
    const coef = pw === null ? null : add(mul(target, typeof pw === 'number' ? pw - 1 : sub(pw, 1)), 1);
    let l = add(mul(sub(1, target), logits), coef ? mul(coef, softplusNeg) : softplusNeg);
    if (w) l = mul(l, w);
    return [reduceRows(l, red), l.size] as const;
  });
  const pwT = typeof pw === 'number' ? null : pw;
  return record('bceWithLogits', per, [logits], [logits, target, ...(w ? [w] : []), ...(pwT ? [pwT] : [])], (g, s) => {
    const [x, t] = s as [Tensor, Tensor];
    const ww = w ? s[2]! : null;
    const pwt = pwT ? s[w ? 3 : 2]! : null;
    const sg = sigmoid(x);
    // d/dx = sigmoid(x) (pw t + 1 - t) - pw t
    let d: Tensor;
    if (pw === null) d = sub(sg, t);
    else {
      const pt = pwt ? mul(t, pwt) : mul(t, pw as number);
      d = sub(mul(sg, add(sub(pt, t), 1)), pt);
    }
    if (ww) d = mul(d, ww);
    return [mul(d, red === 'mean' ? div(g, n) : g)];
  });
}
