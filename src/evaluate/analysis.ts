// Studying a classifier's mistakes and testing it before deployment: error analysis (confused class pairs, the
// highest-loss examples with their attributions), disagreement between two models, accuracy under FGSM and PGD
// attacks within an L-infinity budget, and metamorphic relations (transformations that must not, or must, change
// the prediction) with the examples that violate them.
import { hostRng } from '../data/loader.js';
import { ArgumentError, ShapeError, ValidationError, checkOptions, describe } from '../errors.js';
import { integratedGradients } from '../explain/index.js';
import { inputGrad, inputOf, outputsOf, positiveInt, rowArgmax } from '../explain/core.js';
import { crossEntropy } from '../nn/loss.js';
import { tensor } from '../ops/creation.js';
import type { Tensor } from '../tensor/tensor.js';
import { classIndices } from '../metrics/labels.js';
import { hostValues, type Predictor, type Values } from './host.js';

function labels(y: Values, n: number, what: string): Int32Array {
  const { v } = hostValues(y, what);
  if (v.length !== n) throw new ShapeError(`${what} has ${v.length} labels but x has ${n} rows`);
  return classIndices(v, what);
}

/** Logits [N, C] of host rows, with the predicted class and the cross-entropy of every row. */
function scored(model: Predictor, v: Float32Array, shape: number[], y: Int32Array | null) {
  const { o, c } = outputsOf(model, v, shape);
  if (c < 2) throw new ShapeError(`a classifier with C >= 2 output logits is needed, got ${c} output(s)`);
  const n = shape[0]!;
  const pred = new Int32Array(n);
  const loss = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const b = rowArgmax(o, c, i);
    const m = o[i * c + b]!;
    pred[i] = b;
    if (y) {
      if (y[i]! >= c) throw new ValidationError(`label ${y[i]} at row ${i} but the model has ${c} classes`);
      let s = 0;
      for (let j = 0; j < c; j++) s += Math.exp(o[i * c + j]! - m);
      loss[i] = m + Math.log(s) - o[i * c + y[i]!]!;
    }
  }
  return { o, c, pred, loss };
}

export interface ConfusedPair {
  trueClass: number;
  predictedClass: number;
  count: number;
  /** count / number of examples of trueClass */
  rate: number;
}

export interface HardExample {
  index: number;
  loss: number;
  trueClass: number;
  predictedClass: number;
  /** Integrated-gradients attributions towards the predicted class (the input's shape, flattened). */
  attributions?: number[];
}

/**
 * Where a classifier goes wrong: the most confused (true, predicted) class pairs, and the `top` highest-loss
 * examples with their integrated-gradients attributions (towards the wrongly predicted class), to see what the
 * model looked at.
 * @example kn.evaluate.errorAnalysis((x) => x, kn.tensor([[2, 0], [0, 2]]), [1, 1], { attributions: false }).confusedPairs[0].count // 1
 */
export function errorAnalysis(
  model: Predictor,
  x: Tensor,
  y: Values,
  opts: { top?: number; pairs?: number; attributions?: boolean; steps?: number } = {},
): { accuracy: number; confusedPairs: ConfusedPair[]; hardest: HardExample[] } {
  checkOptions(opts, 'errorAnalysis', ['top', 'pairs', 'attributions', 'steps']);
  const { v, n, shape } = inputOf(x, 'x');
  const t = labels(y, n, 'y');
  const { pred, loss } = scored(model, v, shape, t);
  const top = positiveInt(opts.top ?? 10, 'top', 1e6);
  const pairs = positiveInt(opts.pairs ?? 10, 'pairs', 1e6);
  const counts = new Map<number, Map<number, number>>();
  const perClass = new Map<number, number>();
  let right = 0;
  for (let i = 0; i < n; i++) {
    perClass.set(t[i]!, (perClass.get(t[i]!) ?? 0) + 1);
    if (pred[i] === t[i]) {
      right++;
      continue;
    }
    const row = counts.get(t[i]!) ?? new Map<number, number>();
    counts.set(t[i]!, row);
    row.set(pred[i]!, (row.get(pred[i]!) ?? 0) + 1);
  }
  const confusedPairs: ConfusedPair[] = [];
  for (const [tc, row] of counts)
    for (const [pc, count] of row)
      confusedPairs.push({ trueClass: tc, predictedClass: pc, count, rate: count / perClass.get(tc)! });
  confusedPairs.sort((a, b) => b.count - a.count || a.trueClass - b.trueClass || a.predictedClass - b.predictedClass);
  const idx = Array.from({ length: n }, (_, i) => i).sort((a, b) => loss[b]! - loss[a]! || a - b);
  const hardest: HardExample[] = idx.slice(0, Math.min(top, n)).map((i) => ({
    index: i,
    loss: loss[i]!,
    trueClass: t[i]!,
    predictedClass: pred[i]!,
  }));
  if (opts.attributions !== false && hardest.length) {
    const per = v.length / n;
    const rows = new Float32Array(hardest.length * per);
    hardest.forEach((h, k) => rows.set(v.subarray(h.index * per, (h.index + 1) * per), k * per));
    const xt = tensor(rows, [hardest.length, ...shape.slice(1)]);
    try {
      const ig = integratedGradients(model, xt, {
        target: hardest.map((h) => h.predictedClass),
        steps: opts.steps ?? 32,
      });
      const a = ig.attributions.toArray() as ArrayLike<number>;
      hardest.forEach((h, k) => (h.attributions = Array.from({ length: per }, (_, j) => a[k * per + j]!)));
      ig.attributions.dispose();
    } finally {
      xt.dispose();
    }
  }
  return { accuracy: right / n, confusedPairs: confusedPairs.slice(0, pairs), hardest };
}

/**
 * Where two models disagree, and who is right when they do (a new model against the current one).
 * @example kn.evaluate.disagreement((x) => x, (x) => x.mul(-1), kn.tensor([[1, 0]])).rate // 1
 */
export function disagreement(
  a: Predictor,
  b: Predictor,
  x: Tensor,
  y?: Values,
): { rate: number; indices: number[]; aRightBWrong: number; bRightAWrong: number; bothWrong: number } {
  const { v, n, shape } = inputOf(x, 'x');
  const t = y === undefined ? null : labels(y, n, 'y');
  const pa = scored(a, v, shape, null).pred,
    pb = scored(b, v, shape, null).pred;
  const indices: number[] = [];
  let ab = 0,
    ba = 0,
    both = 0;
  for (let i = 0; i < n; i++) {
    if (pa[i] !== pb[i]) indices.push(i);
    if (t) {
      const ra = pa[i] === t[i],
        rb = pb[i] === t[i];
      if (ra && !rb) ab++;
      else if (rb && !ra) ba++;
      else if (!ra && !rb) both++;
    }
  }
  return { rate: n ? indices.length / n : 0, indices, aRightBWrong: ab, bRightAWrong: ba, bothWrong: both };
}

/** d(cross-entropy)/d(input) of host rows. */
function lossGrad(model: Predictor, v: Float32Array, shape: number[], y: Int32Array): Float32Array {
  const lab = tensor(y, [y.length], { dtype: 'int32' });
  try {
    return inputGrad(model, v, shape, (out) => crossEntropy(out, lab));
  } finally {
    lab.dispose();
  }
}

export interface AdversarialResult {
  method: 'fgsm' | 'pgd';
  epsilon: number;
  cleanAccuracy: number;
  /** Accuracy on the attacked inputs. */
  accuracy: number;
  /** Indices of examples right before the attack and wrong after it. */
  flipped: number[];
  /** The attacked inputs (x's shape). */
  adversarial: Tensor;
}

/**
 * Robustness to adversarial inputs within an L-infinity budget `epsilon`: FGSM (one signed-gradient step,
 * Goodfellow et al. 2015) or PGD (`steps` projected steps of `stepSize` from a random start in the ball, Madry et
 * al. 2018), with inputs kept in `clip` (e.g. [0, 1] for images).
 * @example kn.evaluate.adversarial((x) => x, kn.tensor([[1, 0]]), [0], { epsilon: 0.1 }).accuracy // 1
 */
export function adversarial(
  model: Predictor,
  x: Tensor,
  y: Values,
  opts: {
    epsilon: number;
    method?: 'fgsm' | 'pgd';
    steps?: number;
    stepSize?: number;
    clip?: readonly [number, number];
    seed?: number;
    randomStart?: boolean;
  },
): AdversarialResult {
  if (opts === null || typeof opts !== 'object') throw new ArgumentError('adversarial needs options { epsilon }');
  checkOptions(opts, 'adversarial', ['epsilon', 'method', 'steps', 'stepSize', 'clip', 'seed', 'randomStart']);
  const eps = opts.epsilon;
  if (typeof eps !== 'number' || !(eps >= 0) || !Number.isFinite(eps))
    throw new ArgumentError(`epsilon must be a non-negative number, got ${describe(eps)}`);
  const method = opts.method ?? 'fgsm';
  if (method !== 'fgsm' && method !== 'pgd')
    throw new ArgumentError(`method must be 'fgsm' or 'pgd', got ${describe(method)}`);
  const { v, n, shape } = inputOf(x, 'x');
  const t = labels(y, n, 'y');
  const [lo, hi] = opts.clip ?? [-Infinity, Infinity];
  if (!(lo < hi)) throw new ArgumentError(`clip must be [lo, hi] with lo < hi, got ${describe(opts.clip)}`);
  const clean = scored(model, v, shape, null).pred;
  const adv = Float32Array.from(v);
  const project = (k: number, val: number): number =>
    Math.min(hi, Math.max(lo, Math.min(v[k]! + eps, Math.max(v[k]! - eps, val))));
  if (method === 'fgsm') {
    const g = lossGrad(model, v, shape, t);
    for (let k = 0; k < adv.length; k++) adv[k] = project(k, v[k]! + eps * Math.sign(g[k]!));
  } else {
    const steps = positiveInt(opts.steps ?? 10, 'steps', 1e5);
    const alpha = opts.stepSize ?? (2.5 * eps) / steps;
    if (opts.randomStart !== false) {
      const rng = hostRng(opts.seed ?? 0);
      for (let k = 0; k < adv.length; k++) adv[k] = project(k, v[k]! + eps * (2 * rng() - 1));
    }
    for (let s = 0; s < steps; s++) {
      const g = lossGrad(model, adv, shape, t);
      for (let k = 0; k < adv.length; k++) adv[k] = project(k, adv[k]! + alpha * Math.sign(g[k]!));
    }
  }
  const after = scored(model, adv, shape, null).pred;
  let c0 = 0,
    c1 = 0;
  const flipped: number[] = [];
  for (let i = 0; i < n; i++) {
    if (clean[i] === t[i]) c0++;
    if (after[i] === t[i]) c1++;
    if (clean[i] === t[i] && after[i] !== t[i]) flipped.push(i);
  }
  return { method, epsilon: eps, cleanAccuracy: c0 / n, accuracy: c1 / n, flipped, adversarial: tensor(adv, shape) };
}

/** A metamorphic relation: a transformation of the input and what it must do to the prediction. */
export interface MetamorphicRelation {
  name: string;
  transform: (x: Tensor) => Tensor;
  /**
   * 'same': the predicted class must not change; 'different': it must change; 'close': every output within
   * `tolerance`; or a check of (output before, output after) per example.
   */
  expect: 'same' | 'different' | 'close' | ((before: number[], after: number[]) => boolean);
  tolerance?: number;
}

/**
 * Checks metamorphic relations (a transformation of the input that must not, or must, change the output) and
 * reports the examples that violate each.
 * @example kn.evaluate.metamorphic((x) => x, kn.tensor([[1, 0]]), [{ name: 'scale', transform: (x) => x.mul(2), expect: 'same' }])[0].violations // []
 */
export function metamorphic(
  model: Predictor,
  x: Tensor,
  relations: readonly MetamorphicRelation[],
): { name: string; violations: number[]; rate: number }[] {
  const { v, n, shape } = inputOf(x, 'x');
  if (!Array.isArray(relations) || relations.length === 0)
    throw new ArgumentError(
      `relations must be a non-empty array of {name, transform, expect}, got ${describe(relations)}`,
    );
  const before = outputsOf(model, v, shape);
  return relations.map((r, k) => {
    if (!r || typeof r.name !== 'string' || typeof r.transform !== 'function')
      throw new ArgumentError(`relations[${k}] must be {name, transform, expect}, got ${describe(r)}`);
    const xt = tensor(v, shape);
    let tx: Tensor;
    try {
      tx = r.transform(xt);
    } finally {
      xt.dispose();
    }
    const after = (() => {
      try {
        const h = inputOf(tx, `relations[${k}].transform(x)`);
        if (h.n !== n) throw new ShapeError(`relation '${r.name}' changed the number of examples from ${n} to ${h.n}`);
        return outputsOf(model, h.v, h.shape);
      } finally {
        tx.dispose();
      }
    })();
    const c = before.c;
    const row = (o: Float64Array, i: number): number[] => Array.from(o.subarray(i * c, (i + 1) * c));
    const cls = (o: Float64Array, i: number): number => {
      const r2 = row(o, i);
      return c === 1 ? (r2[0]! > 0 ? 1 : 0) : r2.indexOf(Math.max(...r2));
    };
    const tol = r.tolerance ?? 1e-5;
    const violations: number[] = [];
    for (let i = 0; i < n; i++) {
      let ok: boolean;
      if (r.expect === 'same') ok = cls(before.o, i) === cls(after.o, i);
      else if (r.expect === 'different') ok = cls(before.o, i) !== cls(after.o, i);
      else if (r.expect === 'close') ok = row(before.o, i).every((b, j) => Math.abs(b - after.o[i * c + j]!) <= tol);
      else if (typeof r.expect === 'function') ok = r.expect(row(before.o, i), row(after.o, i)) === true;
      else throw new ArgumentError(`relations[${k}].expect must be 'same', 'different', 'close' or a function`);
      if (!ok) violations.push(i);
    }
    return { name: r.name, violations, rate: n ? violations.length / n : 0 };
  });
}
