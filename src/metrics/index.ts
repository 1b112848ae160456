// Classification metrics on host arrays (labels are small next to the model). Inputs may be tensors or
// arrays; a 2-D float tensor/array of scores is turned into labels with argmax.
import { ArgumentError, ShapeError, ValidationError, checkOptions, describe } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { hostValues, labelsFrom } from './labels.js';

/** Labels or scores: a Tensor, a typed array, a number array, or rows of scores [N, C] as arrays. */
export type Labels = Tensor | ArrayLike<number> | readonly ArrayLike<number>[];
/** How per-class scores are combined. */
export type Average = 'macro' | 'micro' | 'weighted';

function pair(yTrue: Labels, yPred: Labels): [Int32Array, Int32Array] {
  const t = labelsFrom(yTrue, 'yTrue'),
    p = labelsFrom(yPred, 'yPred');
  if (t.length !== p.length) throw new ShapeError(`yTrue has ${t.length} labels but yPred has ${p.length}`);
  if (t.length === 0) throw new ValidationError('metrics need at least one sample');
  return [t, p];
}

function classCount(t: Int32Array, p: Int32Array, n?: number): number {
  let m = 0;
  for (let i = 0; i < t.length; i++) m = Math.max(m, t[i]! + 1, p[i]! + 1);
  if (n === undefined) return m;
  if (!Number.isInteger(n) || n < 1 || n > 65536)
    throw new ArgumentError(`numClasses must be an integer in [1, 65536], got ${describe(n)}`);
  if (m > n) throw new ValidationError(`a label is ${m - 1} but numClasses is ${n}`);
  return n;
}

/**
 * Fraction of samples whose predicted label equals the true one.
 * @example kn.metrics.accuracy([0, 1, 1, 2], [0, 1, 2, 2]) // 0.75
 */
export function accuracy(yTrue: Labels, yPred: Labels): number {
  const [t, p] = pair(yTrue, yPred);
  let c = 0;
  for (let i = 0; i < t.length; i++) if (t[i] === p[i]) c++;
  return c / t.length;
}

/**
 * Counts: row = true class, column = predicted class.
 * @example kn.metrics.confusionMatrix([0, 1, 1], [0, 0, 1]) // [[1, 0], [1, 1]]
 */
export function confusionMatrix(yTrue: Labels, yPred: Labels, opts: { numClasses?: number } = {}): number[][] {
  checkOptions(opts, 'confusionMatrix', ['numClasses']);
  const [t, p] = pair(yTrue, yPred);
  const n = classCount(t, p, opts.numClasses);
  const m = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let i = 0; i < t.length; i++) m[t[i]!]![p[i]!]!++;
  return m;
}

interface Counts {
  tp: number[];
  fp: number[];
  fn: number[];
  support: number[];
}
function counts(yTrue: Labels, yPred: Labels, numClasses?: number): Counts {
  const cm = confusionMatrix(yTrue, yPred, { numClasses });
  const n = cm.length;
  const tp = cm.map((r, i) => r[i]!);
  const support = cm.map((r) => r.reduce((a, b) => a + b, 0));
  const predicted = Array.from({ length: n }, (_, j) => cm.reduce((a, r) => a + r[j]!, 0));
  return { tp, fp: predicted.map((v, i) => v - tp[i]!), fn: support.map((v, i) => v - tp[i]!), support };
}

function average(per: number[], c: Counts, avg: Average, micro: () => number): number {
  if (avg === 'micro') return micro();
  // classes that appear neither in yTrue nor in yPred are left out, as scikit-learn does with explicit labels
  const present = per.map((_, i) => c.support[i]! + c.fp[i]! > 0);
  if (avg === 'macro') {
    const xs = per.filter((_, i) => present[i]);
    return xs.reduce((a, b) => a + b, 0) / xs.length;
  }
  const total = c.support.reduce((a, b) => a + b, 0);
  return per.reduce((a, v, i) => a + v * c.support[i]!, 0) / total;
}

function avgOpt(a: unknown): Average {
  const v = a ?? 'macro';
  if (v !== 'macro' && v !== 'micro' && v !== 'weighted')
    throw new ArgumentError(`average must be 'macro', 'micro' or 'weighted', got ${describe(a)}`);
  return v;
}
const safe = (n: number, d: number): number => (d === 0 ? 0 : n / d);

/** Options of precision, recall and f1. */
export interface AverageOptions {
  average?: Average;
  numClasses?: number;
}

/**
 * tp / (tp + fp) per class, averaged ('macro' default, 'micro', 'weighted' by support). 0 where undefined.
 * @example kn.metrics.precision([0, 1, 1, 1], [0, 1, 0, 1]) // (0.5 + 1) / 2 = 0.75
 */
export function precision(yTrue: Labels, yPred: Labels, opts: AverageOptions = {}): number {
  checkOptions(opts, 'precision', ['average', 'numClasses']);
  const c = counts(yTrue, yPred, opts.numClasses);
  const per = c.tp.map((tp, i) => safe(tp, tp + c.fp[i]!));
  return average(per, c, avgOpt(opts.average), () => safe(sum(c.tp), sum(c.tp) + sum(c.fp)));
}

/**
 * tp / (tp + fn) per class, averaged.
 * @example kn.metrics.recall([0, 1, 1, 1], [0, 1, 0, 1]) // (1 + 2/3) / 2 = 0.8333...
 */
export function recall(yTrue: Labels, yPred: Labels, opts: AverageOptions = {}): number {
  checkOptions(opts, 'recall', ['average', 'numClasses']);
  const c = counts(yTrue, yPred, opts.numClasses);
  const per = c.tp.map((tp, i) => safe(tp, tp + c.fn[i]!));
  return average(per, c, avgOpt(opts.average), () => safe(sum(c.tp), sum(c.tp) + sum(c.fn)));
}

/**
 * Harmonic mean of precision and recall per class, averaged.
 * @example kn.metrics.f1([0, 1, 1, 1], [0, 1, 0, 1], { average: 'micro' }) // 0.75
 */
export function f1(yTrue: Labels, yPred: Labels, opts: AverageOptions = {}): number {
  checkOptions(opts, 'f1', ['average', 'numClasses']);
  const c = counts(yTrue, yPred, opts.numClasses);
  const per = c.tp.map((tp, i) => safe(2 * tp, 2 * tp + c.fp[i]! + c.fn[i]!));
  const tp = sum(c.tp);
  return average(per, c, avgOpt(opts.average), () => safe(2 * tp, 2 * tp + sum(c.fp) + sum(c.fn)));
}

/** One class's row of classificationReport. */
export interface ClassReport {
  class: number;
  precision: number;
  recall: number;
  f1: number;
  /** samples whose true label is this class */
  support: number;
}

/**
 * Precision, recall, f1 and support for every class (0 where undefined), like scikit-learn's
 * classification_report.
 * @example kn.metrics.classificationReport([0, 1, 1, 1], [0, 1, 0, 1])[1].recall // 2/3 = 0.6666...
 */
export function classificationReport(yTrue: Labels, yPred: Labels, opts: { numClasses?: number } = {}): ClassReport[] {
  checkOptions(opts, 'classificationReport', ['numClasses']);
  const c = counts(yTrue, yPred, opts.numClasses);
  return c.tp.map((tp, i) => ({
    class: i,
    precision: safe(tp, tp + c.fp[i]!),
    recall: safe(tp, tp + c.fn[i]!),
    f1: safe(2 * tp, 2 * tp + c.fp[i]! + c.fn[i]!),
    support: c.support[i]!,
  }));
}

function sum(a: number[]): number {
  return a.reduce((x, y) => x + y, 0);
}

/** Binary AUC by the rank-sum (Mann-Whitney U) formula; tied scores get their average rank. */
function binaryAuc(pos: ArrayLike<boolean>, score: ArrayLike<number>): number {
  const n = score.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => score[a]! - score[b]!);
  let rankSum = 0,
    nPos = 0;
  for (let i = 0; i < n;) {
    let j = i;
    while (j + 1 < n && score[order[j + 1]!] === score[order[i]!]) j++;
    const r = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++)
      if (pos[order[k]!]) {
        rankSum += r;
        nPos++;
      }
    i = j + 1;
  }
  const nNeg = n - nPos;
  if (nPos === 0 || nNeg === 0)
    throw new ValidationError(
      `rocAuc is undefined when only one class is present (${nPos} positive, ${nNeg} negative)`,
    );
  return (rankSum - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
}

/**
 * Area under the ROC curve. Binary: `scores` [N] for the positive class (labels 0/1). Multi-class: scores
 * [N, C] (a tensor or rows of arrays; probabilities or logits) with labels in [0, C), one-vs-rest: each class's
 * AUC averaged 'macro' (default) or 'weighted' by support, or 'micro': one AUC over every (sample, class) pair
 * (scikit-learn's `roc_auc_score(multi_class='ovr')`).
 * @example kn.metrics.rocAuc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) // 0.75
 */
export function rocAuc(yTrue: Labels, scores: Labels, opts: { average?: Average } = {}): number {
  checkOptions(opts, 'rocAuc', ['average']);
  const t = labelsFrom(yTrue, 'yTrue');
  const { v: values, shape } = hostValues(scores, 'rocAuc scores');
  if (shape[0] !== t.length) throw new ShapeError(`yTrue has ${t.length} labels but scores has ${shape[0]} rows`);
  for (let i = 0; i < values.length; i++)
    if (Number.isNaN(values[i])) throw new ValidationError(`rocAuc score ${i} is NaN`);
  if (shape.length === 1) {
    for (let i = 0; i < t.length; i++)
      if (t[i]! > 1)
        throw new ValidationError(
          `binary rocAuc takes labels 0/1, got ${t[i]} (pass scores [N, C] for several classes)`,
        );
    return binaryAuc(
      Array.from(t, (v) => v === 1),
      values,
    );
  }
  if (shape.length !== 2) throw new ShapeError(`rocAuc scores must be [N] or [N, C], got [${shape}]`);
  const C = shape[1]!;
  const avg = avgOpt(opts.average);
  for (let i = 0; i < t.length; i++)
    if (t[i]! >= C)
      throw new ValidationError(
        `rocAuc: yTrue[${i}] = ${t[i]} but scores have ${C} classes (columns); expected [0, ${C})`,
      );
  if (avg === 'micro')
    return binaryAuc(
      Array.from({ length: t.length * C }, (_, k) => t[(k / C) | 0] === k % C),
      values,
    );
  let total = 0,
    weight = 0;
  for (let c = 0; c < C; c++) {
    const pos = Array.from(t, (v) => v === c);
    const support = pos.filter(Boolean).length;
    if (support === 0)
      throw new ValidationError(`rocAuc: class ${c} has no samples in yTrue, so its one-vs-rest AUC is undefined`);
    const col = Float64Array.from({ length: t.length }, (_, i) => values[i * C + c]!);
    const w = avg === 'macro' ? 1 : support;
    total += w * binaryAuc(pos, col);
    weight += w;
  }
  return total / weight;
}
