// Evaluation beyond accuracy: calibration (reliability bins, ECE/MCE, Brier), temperature scaling, class
// probabilities from any classifier, metrics per data slice with bootstrap confidence intervals, and group
// fairness metrics with a pass/fail report. Everything here works on host arrays: predictions are small next to
// the model. Slice and group names come from data, so they are values in the results, never object keys.
import { hostRng } from '../data/loader.js';
import { ArgumentError, ShapeError, ValidationError, checkOptions, describe } from '../errors.js';
import * as metrics from '../metrics/index.js';
import { classIndices, labelsFrom } from '../metrics/labels.js';
import { hostValues, runPredictor, type Predictor, type Values } from './host.js';

export type { Predictor, Values } from './host.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';

function labelsOf(y: Values, n: number, what: string): Int32Array {
  const { v, shape } = hostValues(y, what);
  if (shape.length !== 1 || v.length !== n)
    throw new ShapeError(`${what} must hold ${n} labels (one per sample), got shape [${shape}]`);
  return classIndices(v, what);
}

/** Probabilities [N, C] (rows sum to 1), or [N] probabilities of class 1 (binary), as rows of C values. */
function probabilityRows(probs: Values, what: string): { p: Float64Array; n: number; c: number } {
  const { v, shape } = hostValues(probs, what);
  if (shape.length === 1) {
    const p = new Float64Array(v.length * 2);
    for (let i = 0; i < v.length; i++) {
      if (!(v[i]! >= 0 && v[i]! <= 1))
        throw new ValidationError(`${what}[${i}] = ${v[i]} is not a probability in [0, 1]`);
      p[2 * i] = 1 - v[i]!;
      p[2 * i + 1] = v[i]!;
    }
    return { p, n: v.length, c: 2 };
  }
  if (shape.length !== 2 || shape[1]! < 2)
    throw new ShapeError(`${what} must be [N] (binary) or [N, C] probabilities with C >= 2, got shape [${shape}]`);
  const [n, c] = shape as [number, number];
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < c; j++) {
      const q = v[i * c + j]!;
      if (!(q >= 0 && q <= 1)) throw new ValidationError(`${what}[${i}][${j}] = ${q} is not a probability in [0, 1]`);
      s += q;
    }
    if (Math.abs(s - 1) > 1e-3)
      throw new ValidationError(
        `${what} row ${i} sums to ${s}, expected 1 (pass probabilities, e.g. softmax of logits)`,
      );
  }
  return { p: v, n, c };
}

/** One reliability bin: predictions whose confidence falls in [lo, hi). */
export interface CalibrationBin {
  lo: number;
  hi: number;
  count: number;
  /** Mean confidence (the top class's probability) in the bin; NaN when empty. */
  confidence: number;
  /** Fraction of the bin's predictions that are right; NaN when empty. */
  accuracy: number;
}

export interface CalibrationResult {
  /** Expected calibration error: sum over bins of (count / N) * |accuracy - confidence|. */
  ece: number;
  /** Maximum calibration error over non-empty bins. */
  mce: number;
  /** Brier score: mean over samples of sum over classes of (p_c - [y = c])^2 (binary [N] input: mean (p - y)^2). */
  brier: number;
  /** Mean negative log-likelihood of the true class. */
  nll: number;
  /** Reliability diagram data. */
  bins: CalibrationBin[];
}

/**
 * How far predicted probabilities can be trusted: reliability bins (equal width, or equal count with
 * `strategy: 'quantile'`), ECE, MCE, Brier score and NLL.
 * @example kn.evaluate.calibration([[0.9, 0.1], [0.2, 0.8]], [0, 1], { bins: 5 }).brier // 0.05
 */
export function calibration(
  probs: Values | readonly (readonly number[])[],
  yTrue: Values,
  opts: { bins?: number; strategy?: 'uniform' | 'quantile' } = {},
): CalibrationResult {
  checkOptions(opts, 'calibration', ['bins', 'strategy']);
  const nb = opts.bins ?? 15;
  if (!Number.isInteger(nb) || nb < 1 || nb > 10000)
    throw new ArgumentError(`bins must be an integer in [1, 10000], got ${describe(opts.bins)}`);
  const strategy = opts.strategy ?? 'uniform';
  if (strategy !== 'uniform' && strategy !== 'quantile')
    throw new ArgumentError(`strategy must be 'uniform' or 'quantile', got ${describe(opts.strategy)}`);
  const { p, n, c } = probabilityRows(probs as Values, 'probs');
  if (n === 0) throw new ValidationError('calibration needs at least one prediction');
  const y = labelsOf(yTrue, n, 'yTrue');
  const conf = new Float64Array(n);
  const right = new Uint8Array(n);
  let brier = 0,
    nll = 0;
  for (let i = 0; i < n; i++) {
    if (y[i]! >= c) throw new ValidationError(`yTrue[${i}] = ${y[i]} but the probabilities have ${c} classes`);
    let best = 0;
    for (let j = 0; j < c; j++) {
      const q = p[i * c + j]!;
      if (q > p[i * c + best]!) best = j;
      const d = q - (j === y[i] ? 1 : 0);
      brier += d * d;
    }
    conf[i] = p[i * c + best]!;
    right[i] = best === y[i] ? 1 : 0;
    nll -= Math.log(Math.max(p[i * c + y[i]!]!, 1e-15));
  }
  // the binary [N] form is the usual (p - y)^2: half the two-column sum
  if (!(isTensor(probs) ? probs.ndim === 2 : Array.isArray((probs as ArrayLike<unknown>)[0]))) brier /= 2;
  let edges: number[];
  if (strategy === 'uniform') edges = Array.from({ length: nb + 1 }, (_, b) => b / nb);
  else {
    const s = Float64Array.from(conf).sort();
    edges = Array.from({ length: nb + 1 }, (_, b) => (b === 0 ? 0 : b === nb ? 1 : s[Math.floor((b * n) / nb)]!));
  }
  const count = new Float64Array(nb),
    sumConf = new Float64Array(nb),
    sumRight = new Float64Array(nb);
  for (let i = 0; i < n; i++) {
    // bin b holds [edges[b], edges[b+1]); the last bin includes 1
    let b = 0;
    while (b < nb - 1 && conf[i]! >= edges[b + 1]!) b++;
    count[b]! += 1;
    sumConf[b]! += conf[i]!;
    sumRight[b]! += right[i]!;
  }
  let ece = 0,
    mce = 0;
  const bins: CalibrationBin[] = [];
  for (let b = 0; b < nb; b++) {
    const k = count[b]!;
    const cf = k ? sumConf[b]! / k : NaN,
      acc = k ? sumRight[b]! / k : NaN;
    if (k) {
      const gap = Math.abs(acc - cf);
      ece += (k / n) * gap;
      mce = Math.max(mce, gap);
    }
    bins.push({ lo: edges[b]!, hi: edges[b + 1]!, count: k, confidence: cf, accuracy: acc });
  }
  return { ece, mce, brier: brier / n, nll: nll / n, bins };
}

function logits2d(
  logits: Values | readonly (readonly number[])[],
  what: string,
): { z: Float64Array; n: number; c: number } {
  const { v, shape } = hostValues(logits as Values, what);
  if (shape.length !== 2 || shape[1]! < 2)
    throw new ShapeError(`${what} must be [N, C] logits with C >= 2, got shape [${shape}]`);
  for (let i = 0; i < v.length; i++)
    if (!Number.isFinite(v[i])) throw new ValidationError(`${what} has a non-finite value ${v[i]} at flat index ${i}`);
  return { z: v, n: shape[0]!, c: shape[1]! };
}

/** Mean NLL of softmax(z * beta) at the true labels. */
function nllAt(z: Float64Array, n: number, c: number, y: Int32Array, beta: number): number {
  let total = 0;
  for (let i = 0; i < n; i++) {
    let m = -Infinity;
    for (let j = 0; j < c; j++) m = Math.max(m, z[i * c + j]! * beta);
    let s = 0;
    for (let j = 0; j < c; j++) s += Math.exp(z[i * c + j]! * beta - m);
    total += m + Math.log(s) - z[i * c + y[i]!]! * beta;
  }
  return total / n;
}

export interface TemperatureScaling {
  /** The fitted temperature T: calibrated probabilities are softmax(logits / T). */
  temperature: number;
  nllBefore: number;
  nllAfter: number;
  /** softmax(logits / T) as a new [N, C] probability array (row-major). */
  apply(logits: Values | readonly (readonly number[])[]): Float64Array;
}

/**
 * Fits a temperature on held-out logits by minimising the negative log-likelihood (Guo et al. 2017). The NLL is
 * convex in 1/T, so a golden-section search over log(1/T) finds the optimum to 1e-6 without a learning rate.
 * @example kn.evaluate.temperatureScale([[4, 0], [0, 4], [4, 0], [0, 4]], [0, 1, 1, 0]).temperature > 1 // true
 */
export function temperatureScale(
  logits: Values | readonly (readonly number[])[],
  yTrue: Values,
  opts: { minT?: number; maxT?: number } = {},
): TemperatureScaling {
  checkOptions(opts, 'temperatureScale', ['minT', 'maxT']);
  const { z, n, c } = logits2d(logits, 'logits');
  if (n === 0) throw new ValidationError('temperatureScale needs at least one example');
  const y = labelsOf(yTrue, n, 'yTrue');
  for (let i = 0; i < n; i++)
    if (y[i]! >= c) throw new ValidationError(`yTrue[${i}] = ${y[i]} but the logits have ${c} classes`);
  const minT = opts.minT ?? 1e-2,
    maxT = opts.maxT ?? 1e2;
  if (!(minT > 0 && maxT > minT)) throw new ArgumentError(`need 0 < minT < maxT, got ${minT} and ${maxT}`);
  const f = (u: number): number => nllAt(z, n, c, y, Math.exp(u)); // u = log(1/T)
  let a = -Math.log(maxT),
    b = -Math.log(minT);
  const g = (Math.sqrt(5) - 1) / 2;
  let x1 = b - g * (b - a),
    x2 = a + g * (b - a);
  let f1 = f(x1),
    f2 = f(x2);
  while (b - a > 1e-7) {
    if (f1 <= f2) {
      b = x2;
      x2 = x1;
      f2 = f1;
      x1 = b - g * (b - a);
      f1 = f(x1);
    } else {
      a = x1;
      x1 = x2;
      f1 = f2;
      x2 = a + g * (b - a);
      f2 = f(x2);
    }
  }
  const beta = Math.exp((a + b) / 2);
  const temperature = 1 / beta;
  return {
    temperature,
    nllBefore: nllAt(z, n, c, y, 1),
    nllAfter: nllAt(z, n, c, y, beta),
    apply(l) {
      const t = logits2d(l, 'logits');
      const out = new Float64Array(t.z.length);
      for (let i = 0; i < t.n; i++) {
        let m = -Infinity;
        for (let j = 0; j < t.c; j++) m = Math.max(m, t.z[i * t.c + j]! * beta);
        let s = 0;
        for (let j = 0; j < t.c; j++) s += out[i * t.c + j] = Math.exp(t.z[i * t.c + j]! * beta - m);
        for (let j = 0; j < t.c; j++) out[i * t.c + j]! /= s;
      }
      return out;
    },
  };
}

/**
 * Class probabilities from any classifier: softmax of its logits [N, C] (divided by `temperature` when given, e.g.
 * from temperatureScale), or for a single output column [N, 1] / [N] the sigmoid as [N, 2] (class 0, class 1).
 * Returns the probability rows (ready for calibration) and each prediction's confidence (its top probability) and
 * class.
 * @example kn.evaluate.predictProba((x) => x, kn.tensor([[0, 0]])).probs // [[0.5, 0.5]]
 */
export function predictProba(
  model: Predictor,
  x: Tensor,
  opts: { temperature?: number } = {},
): { probs: number[][]; classes: number; confidence: Float64Array; predicted: Int32Array } {
  checkOptions(opts, 'predictProba', ['temperature']);
  const t = opts.temperature ?? 1;
  if (!(t > 0) || !Number.isFinite(t))
    throw new ArgumentError(`temperature must be a positive number, got ${describe(t)}`);
  const out = runPredictor(model, x);
  let v: Float64Array, shape: number[];
  try {
    ({ v, shape } = hostValues(out, 'the model output'));
  } finally {
    out.dispose();
  }
  const n = shape[0] ?? 0;
  const cols = shape.length === 1 ? 1 : shape.length === 2 ? shape[1]! : -1;
  if (cols < 1) throw new ShapeError(`predictProba needs outputs [N, C] or [N], got shape [${shape}]`);
  const c = cols === 1 ? 2 : cols;
  const probs = new Float64Array(n * c);
  const confidence = new Float64Array(n);
  const predicted = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    if (cols === 1) {
      const p1 = 1 / (1 + Math.exp(-v[i]! / t));
      probs[2 * i] = 1 - p1;
      probs[2 * i + 1] = p1;
    } else {
      let m = -Infinity;
      for (let j = 0; j < c; j++) m = Math.max(m, v[i * c + j]! / t);
      let s = 0;
      for (let j = 0; j < c; j++) s += probs[i * c + j] = Math.exp(v[i * c + j]! / t - m);
      for (let j = 0; j < c; j++) probs[i * c + j]! /= s;
    }
    let best = 0;
    for (let j = 1; j < c; j++) if (probs[i * c + j]! > probs[i * c + best]!) best = j;
    predicted[i] = best;
    confidence[i] = probs[i * c + best]!;
  }
  const rows = Array.from({ length: n }, (_, i) => Array.from(probs.subarray(i * c, (i + 1) * c)));
  return { probs: rows, classes: c, confidence, predicted };
}

/** A metric by name (kn.metrics) or as a function of (yTrue, yPred) labels. */
export type SliceMetric =
  'accuracy' | 'precision' | 'recall' | 'f1' | ((yTrue: Int32Array, yPred: Int32Array) => number);

const NAMED: Record<'accuracy' | 'precision' | 'recall' | 'f1', (t: Int32Array, p: Int32Array) => number> = {
  accuracy: (t, p) => metrics.accuracy(t, p),
  precision: (t, p) => metrics.precision(t, p, { average: 'macro' }),
  recall: (t, p) => metrics.recall(t, p, { average: 'macro' }),
  f1: (t, p) => metrics.f1(t, p, { average: 'macro' }),
};

function metricFn(m: SliceMetric, i: number): { name: string; fn: (t: Int32Array, p: Int32Array) => number } {
  if (typeof m === 'function') return { name: m.name || `metric${i}`, fn: m };
  if (typeof m === 'string' && Object.prototype.hasOwnProperty.call(NAMED, m)) return { name: m, fn: NAMED[m] };
  throw new ArgumentError(
    `metrics[${i}] must be 'accuracy', 'precision', 'recall', 'f1' or a function, got ${describe(m)}`,
  );
}

export interface MetricEstimate {
  metric: string;
  value: number;
  /** Bootstrap percentile interval (NaN when bootstrap is 0 or the slice is empty). */
  lo: number;
  hi: number;
}

export interface SliceRow {
  /** The slice's name: a value of the slicing column, or a predicate's name; 'all' for the whole set. */
  slice: string;
  count: number;
  metrics: MetricEstimate[];
}

/**
 * Every metric computed per slice of the data, with its count and a bootstrap confidence interval. `slices` is a
 * column (one group value per sample: every distinct value is a slice) or named predicates over the sample index.
 * The first row is the whole set.
 * @example kn.evaluate.bySlice([0, 1, 1, 0], [0, 1, 0, 0], ['a', 'a', 'b', 'b'], { bootstrap: 0 })[1].metrics[0].value // 1
 */
export function bySlice(
  yTrue: Values,
  yPred: Values | readonly (readonly number[])[],
  slices: ArrayLike<string | number> | readonly { name: string; where: (i: number) => boolean }[],
  opts: { metrics?: SliceMetric[]; bootstrap?: number; confidence?: number; seed?: number } = {},
): SliceRow[] {
  checkOptions(opts, 'bySlice', ['metrics', 'bootstrap', 'confidence', 'seed']);
  const t = labelsOf(yTrue, hostValues(yTrue, 'yTrue').v.length, 'yTrue');
  const p = labelsFrom(yPred, 'yPred');
  if (p.length !== t.length)
    throw new ShapeError(`yPred must hold ${t.length} labels or score rows (one per sample), got ${p.length}`);
  const n = t.length;
  const ms = (opts.metrics ?? ['accuracy']).map(metricFn);
  const reps = opts.bootstrap ?? 200;
  if (!Number.isInteger(reps) || reps < 0 || reps > 100000)
    throw new ArgumentError(`bootstrap must be an integer in [0, 100000], got ${describe(opts.bootstrap)}`);
  const level = opts.confidence ?? 0.95;
  if (!(level > 0 && level < 1))
    throw new ArgumentError(`confidence must be in (0, 1), got ${describe(opts.confidence)}`);
  const groups: { name: string; idx: number[] }[] = [{ name: 'all', idx: Array.from({ length: n }, (_, i) => i) }];
  if (slices === null || typeof slices !== 'object' || typeof (slices as ArrayLike<unknown>).length !== 'number')
    throw new ArgumentError(
      `slices must be a column of group values or an array of {name, where}, got ${describe(slices)}`,
    );
  const first = (slices as ArrayLike<unknown>)[0];
  if (first !== null && typeof first === 'object') {
    for (const [k, s] of Array.from(slices as ArrayLike<{ name: string; where: (i: number) => boolean }>).entries()) {
      if (typeof s?.name !== 'string' || typeof s.where !== 'function')
        throw new ArgumentError(`slices[${k}] must be {name: string, where: (i) => boolean}, got ${describe(s)}`);
      const idx: number[] = [];
      for (let i = 0; i < n; i++) if (s.where(i)) idx.push(i);
      groups.push({ name: s.name, idx });
    }
  } else {
    const col = slices as ArrayLike<string | number>;
    if (col.length !== n) throw new ShapeError(`slices has ${col.length} values but there are ${n} samples`);
    const byValue = new Map<string, number[]>();
    for (let i = 0; i < n; i++) {
      const key = String(col[i]);
      let list = byValue.get(key);
      if (!list) byValue.set(key, (list = []));
      list.push(i);
    }
    for (const [name, idx] of [...byValue].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)))
      groups.push({ name, idx });
  }
  const rng = hostRng(opts.seed ?? 0);
  return groups.map(({ name, idx }) => {
    const k = idx.length;
    const sub = (ix: ArrayLike<number>): [Int32Array, Int32Array] => [
      Int32Array.from(ix, (i) => t[i]!),
      Int32Array.from(ix, (i) => p[i]!),
    ];
    const [st, sp] = sub(idx);
    return {
      slice: name,
      count: k,
      metrics: ms.map(({ name: metric, fn }) => {
        const value = k ? fn(st, sp) : NaN;
        let lo = NaN,
          hi = NaN;
        if (k && reps > 0) {
          const draws = new Float64Array(reps);
          const ix = new Int32Array(k);
          for (let r = 0; r < reps; r++) {
            for (let j = 0; j < k; j++) ix[j] = idx[Math.floor(rng() * k)]!;
            const [bt, bp] = sub(ix);
            draws[r] = fn(bt, bp);
          }
          draws.sort();
          lo = quantile(draws, (1 - level) / 2);
          hi = quantile(draws, 1 - (1 - level) / 2);
        }
        return { metric, value, lo, hi };
      }),
    };
  });
}

function quantile(sorted: Float64Array, q: number): number {
  const pos = q * (sorted.length - 1);
  const i = Math.floor(pos);
  const f = pos - i;
  return i + 1 < sorted.length ? sorted[i]! * (1 - f) + sorted[i + 1]! * f : sorted[i]!;
}

export interface GroupRates {
  group: string;
  count: number;
  /** P(prediction = favorable | group). */
  selectionRate: number;
  /** True positive rate P(pred = favorable | true = favorable, group); NaN without positives. */
  tpr: number;
  /** False positive rate P(pred = favorable | true != favorable, group); NaN without negatives. */
  fpr: number;
}

export interface FairnessCheck {
  metric: string;
  value: number;
  threshold: number;
  pass: boolean;
}

export interface FairnessReport {
  groups: GroupRates[];
  /** max - min selection rate over groups. */
  demographicParityDifference: number;
  /** min / max selection rate over groups. */
  demographicParityRatio: number;
  /** max over (TPR, FPR) of the max - min difference over groups. */
  equalizedOddsDifference: number;
  /** max - min TPR over groups (equal opportunity). */
  equalOpportunityDifference: number;
  /** selection rate of the least favoured group / that of `privileged` (or min / max when none is named). */
  disparateImpact: number;
  checks: FairnessCheck[];
  pass: boolean;
}

/**
 * Group fairness of a classifier's decisions for a sensitive attribute: per-group selection rate, TPR and FPR;
 * demographic parity difference and ratio, equalized odds, equal opportunity and disparate impact, each checked
 * against a threshold (defaults: differences <= 0.1, disparate impact >= 0.8, the four-fifths rule).
 * @example kn.evaluate.fairness({ yTrue: [1, 0, 1, 0], yPred: [1, 0, 1, 1], sensitive: ['a', 'a', 'b', 'b'] }).demographicParityDifference // 0.5
 */
export function fairness(args: {
  yTrue: Values;
  yPred: Values;
  sensitive: ArrayLike<string | number>;
  favorable?: number;
  privileged?: string | number;
  thresholds?: {
    demographicParity?: number;
    equalizedOdds?: number;
    equalOpportunity?: number;
    disparateImpact?: number;
  };
}): FairnessReport {
  if (args === null || typeof args !== 'object')
    throw new ArgumentError(`fairness takes {yTrue, yPred, sensitive}, got ${describe(args)}`);
  checkOptions(args, 'fairness', ['yTrue', 'yPred', 'sensitive', 'favorable', 'privileged', 'thresholds']);
  checkOptions(args.thresholds, 'fairness thresholds', [
    'demographicParity',
    'equalizedOdds',
    'equalOpportunity',
    'disparateImpact',
  ]);
  const n = hostValues(args.yTrue, 'yTrue').v.length;
  const t = labelsOf(args.yTrue, n, 'yTrue');
  const p = labelsOf(args.yPred, n, 'yPred');
  const s = args.sensitive;
  if (s === null || typeof s !== 'object' || s.length !== n)
    throw new ShapeError(`sensitive must hold one group value per sample (${n}), got ${describe(s)}`);
  const fav = args.favorable ?? 1;
  const acc = new Map<string, { count: number; sel: number; pos: number; tp: number; neg: number; fp: number }>();
  for (let i = 0; i < n; i++) {
    const g = String(s[i]);
    let a = acc.get(g);
    if (!a) acc.set(g, (a = { count: 0, sel: 0, pos: 0, tp: 0, neg: 0, fp: 0 }));
    const yp = p[i] === fav,
      yt = t[i] === fav;
    a.count++;
    if (yp) a.sel++;
    if (yt) {
      a.pos++;
      if (yp) a.tp++;
    } else {
      a.neg++;
      if (yp) a.fp++;
    }
  }
  if (acc.size < 2) throw new ValidationError(`fairness needs at least two groups in sensitive, got ${acc.size}`);
  const groups: GroupRates[] = [...acc]
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([group, a]) => ({
      group,
      count: a.count,
      selectionRate: a.sel / a.count,
      tpr: a.pos ? a.tp / a.pos : NaN,
      fpr: a.neg ? a.fp / a.neg : NaN,
    }));
  const spread = (vals: number[]): number => {
    const f = vals.filter((v) => !Number.isNaN(v));
    return f.length ? Math.max(...f) - Math.min(...f) : NaN;
  };
  const sel = groups.map((g) => g.selectionRate);
  const dpd = spread(sel);
  const maxSel = Math.max(...sel),
    minSel = Math.min(...sel);
  const dpr = maxSel > 0 ? minSel / maxSel : NaN;
  const eop = spread(groups.map((g) => g.tpr));
  const eod = Math.max(eop, spread(groups.map((g) => g.fpr)));
  let di = dpr;
  if (args.privileged !== undefined) {
    const priv = groups.find((g) => g.group === String(args.privileged));
    if (!priv) throw new ValidationError(`privileged group ${describe(args.privileged)} does not occur in sensitive`);
    const others = groups.filter((g) => g !== priv).map((g) => g.selectionRate);
    di = priv.selectionRate > 0 ? Math.min(...others) / priv.selectionRate : NaN;
  }
  const th = args.thresholds ?? {};
  const checks: FairnessCheck[] = [
    { metric: 'demographicParityDifference', value: dpd, threshold: th.demographicParity ?? 0.1, pass: false },
    { metric: 'equalizedOddsDifference', value: eod, threshold: th.equalizedOdds ?? 0.1, pass: false },
    { metric: 'equalOpportunityDifference', value: eop, threshold: th.equalOpportunity ?? 0.1, pass: false },
    { metric: 'disparateImpact', value: di, threshold: th.disparateImpact ?? 0.8, pass: false },
  ];
  for (const c of checks) c.pass = c.metric === 'disparateImpact' ? c.value >= c.threshold : c.value <= c.threshold;
  return {
    groups,
    demographicParityDifference: dpd,
    demographicParityRatio: dpr,
    equalizedOddsDifference: eod,
    equalOpportunityDifference: eop,
    disparateImpact: di,
    checks,
    pass: checks.every((c) => c.pass),
  };
}

export {
  adversarial,
  disagreement,
  errorAnalysis,
  metamorphic,
  type AdversarialResult,
  type ConfusedPair,
  type HardExample,
  type MetamorphicRelation,
} from './analysis.js';
