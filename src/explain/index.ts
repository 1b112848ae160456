// Why a model predicts what it does: gradient attributions (integrated gradients with a completeness check,
// gradient x input, SmoothGrad), permutation importance, KernelSHAP and LIME for tabular data. Attributions are
// batched: all interpolation steps (or noisy copies, or masked coalitions) of a chunk of examples go through one
// forward and one backward. Inputs are built on the host in float32; the model runs on kiln's default backend.
import { hostRng } from '../data/loader.js';
import { ArgumentError, ShapeError, ValidationError, checkOptions, describe } from '../errors.js';
import { hostValues, type Predictor, type Values } from '../evaluate/host.js';
import { tensor } from '../ops/creation.js';
import type { Tensor } from '../tensor/tensor.js';
import {
  DEFAULT_MAX_ROWS,
  forwardRows,
  gradRows,
  inputOf,
  normals,
  outputsOf,
  positiveInt,
  predictedClasses,
  solve,
  tabular,
  targetsOf,
  type Target,
} from './core.js';

export type { Target } from './core.js';

/** Gauss-Legendre nodes and weights on [0, 1] (Newton iteration on the Legendre polynomial). */
export function gaussLegendre(n: number): { nodes: number[]; weights: number[] } {
  const nodes: number[] = [],
    weights: number[] = [];
  for (let i = 1; i <= n; i++) {
    let x = Math.cos((Math.PI * (i - 0.25)) / (n + 0.5));
    let dp = 0;
    for (let it = 0; it < 100; it++) {
      let p0 = 1,
        p1 = x;
      for (let k = 2; k <= n; k++) {
        const p2 = ((2 * k - 1) * x * p1 - (k - 1) * p0) / k;
        p0 = p1;
        p1 = p2;
      }
      const pn = n === 1 ? x : p1;
      const pnm1 = n === 1 ? 1 : p0;
      dp = (n * (x * pn - pnm1)) / (x * x - 1);
      const dx = pn / dp;
      x -= dx;
      if (Math.abs(dx) < 1e-15) break;
    }
    nodes.push((1 - x) / 2);
    weights.push(1 / ((1 - x * x) * dp * dp));
  }
  return { nodes, weights };
}

/** Integration rule of integrated gradients. */
export type IgMethod = 'gaussLegendre' | 'riemannLeft' | 'riemannRight' | 'riemannMiddle' | 'riemannTrapezoid';

function igRule(steps: number, method: IgMethod): { alphas: number[]; weights: number[] } {
  switch (method) {
    case 'gaussLegendre': {
      const g = gaussLegendre(steps);
      return { alphas: g.nodes, weights: g.weights };
    }
    case 'riemannLeft':
      return { alphas: Array.from({ length: steps }, (_, k) => k / steps), weights: Array(steps).fill(1 / steps) };
    case 'riemannRight':
      return {
        alphas: Array.from({ length: steps }, (_, k) => (k + 1) / steps),
        weights: Array(steps).fill(1 / steps),
      };
    case 'riemannMiddle':
      return {
        alphas: Array.from({ length: steps }, (_, k) => (k + 0.5) / steps),
        weights: Array(steps).fill(1 / steps),
      };
    case 'riemannTrapezoid': {
      if (steps < 2) throw new ArgumentError('riemannTrapezoid needs at least 2 steps');
      const w = Array(steps).fill(1 / (steps - 1));
      w[0] /= 2;
      w[steps - 1] /= 2;
      return { alphas: Array.from({ length: steps }, (_, k) => k / (steps - 1)), weights: w };
    }
    default:
      throw new ArgumentError(
        `method must be 'gaussLegendre', 'riemannLeft', 'riemannRight', 'riemannMiddle' or 'riemannTrapezoid', got ${describe(method)}`,
      );
  }
}

export interface IntegratedGradientsResult {
  /** Attributions, the shape of x: (x - baseline) times the path-averaged gradient. */
  attributions: Tensor;
  /** Completeness gap per example: sum(attributions) - (f(x) - f(baseline)); near 0 when the steps suffice. */
  delta: number[];
  /** The class explained for each example. */
  target: Int32Array;
}

/**
 * Integrated gradients (Sundararajan et al. 2017): attributions that sum to f(x) - f(baseline), computed along the
 * straight path from the baseline (default zeros) with Gauss-Legendre (default) or Riemann steps. `target` is the
 * class to explain (default: the predicted class). All steps of a chunk of examples run in one forward/backward.
 * @example kn.explain.integratedGradients(new kn.nn.Linear(3, 1), kn.ones([2, 3])).attributions.shape // [2, 3]
 */
export function integratedGradients(
  model: Predictor,
  x: Tensor,
  opts: { baseline?: Tensor; steps?: number; target?: Target; method?: IgMethod; maxRows?: number } = {},
): IntegratedGradientsResult {
  checkOptions(opts, 'integratedGradients', ['baseline', 'steps', 'target', 'method', 'maxRows']);
  const { v, n, shape, per } = inputOf(x, 'x');
  const steps = positiveInt(opts.steps ?? 50, 'steps', 10000);
  const { alphas, weights } = igRule(steps, opts.method ?? 'gaussLegendre');
  let base = new Float32Array(per);
  let baseRows = false;
  if (opts.baseline !== undefined) {
    const b = hostValues(opts.baseline, 'baseline');
    const same = b.shape.length === shape.length && b.shape.every((d, i) => d === shape[i]);
    const one = b.shape.length === shape.length - 1 && b.shape.every((d, i) => d === shape[i + 1]);
    if (!same && !one)
      throw new ShapeError(
        `baseline must have the shape of x [${shape}] or of one example [${shape.slice(1)}], got [${b.shape}]`,
      );
    base = Float32Array.from(b.v);
    baseRows = same;
  }
  const bAt = (i: number, j: number): number => base[(baseRows ? i * per : 0) + j]!;
  const t = targetsOf(opts.target, n, () => predictedClasses(model, v, shape));
  const maxRows = positiveInt(opts.maxRows ?? DEFAULT_MAX_ROWS, 'maxRows', 1 << 24);
  const chunk = Math.max(1, Math.floor(maxRows / steps));
  const attr = new Float32Array(v.length);
  // endpoints for the completeness gap
  const baseFull = new Float32Array(v.length);
  for (let i = 0; i < n; i++) for (let j = 0; j < per; j++) baseFull[i * per + j] = bAt(i, j);
  const fx = forwardRows(model, v, shape, t);
  const fb = forwardRows(model, baseFull, shape, t);
  for (let i0 = 0; i0 < n; i0 += chunk) {
    const m = Math.min(chunk, n - i0);
    const rows = new Float32Array(steps * m * per);
    const tt = new Int32Array(steps * m);
    for (let s = 0; s < steps; s++)
      for (let i = 0; i < m; i++) {
        const o = (s * m + i) * per;
        tt[s * m + i] = t[i0 + i]!;
        for (let j = 0; j < per; j++) {
          const b = bAt(i0 + i, j);
          rows[o + j] = b + alphas[s]! * (v[(i0 + i) * per + j]! - b);
        }
      }
    const g = gradRows(model, rows, [steps * m, ...shape.slice(1)], tt);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < per; j++) {
        let acc = 0;
        for (let s = 0; s < steps; s++) acc += weights[s]! * g[(s * m + i) * per + j]!;
        const k = (i0 + i) * per + j;
        attr[k] = acc * (v[k]! - bAt(i0 + i, j));
      }
  }
  const delta: number[] = [];
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < per; j++) s += attr[i * per + j]!;
    delta.push(s - (fx[i]! - fb[i]!));
  }
  return { attributions: tensor(attr, shape), delta, target: t };
}

/**
 * Gradient x input: the first-order attribution of each input to the target output.
 * @example kn.explain.gradientXInput(new kn.nn.Linear(3, 2), kn.ones([1, 3]), { target: 1 }).shape // [1, 3]
 */
export function gradientXInput(model: Predictor, x: Tensor, opts: { target?: Target } = {}): Tensor {
  checkOptions(opts, 'gradientXInput', ['target']);
  const { v, n, shape } = inputOf(x, 'x');
  const t = targetsOf(opts.target, n, () => predictedClasses(model, v, shape));
  const g = gradRows(model, v, shape, t);
  for (let k = 0; k < g.length; k++) g[k]! *= v[k]!;
  return tensor(g, shape);
}

/**
 * SmoothGrad (Smilkov et al. 2017): the gradient averaged over noisy copies of each input, with noise
 * N(0, (noise * (max - min of the example))^2); `squared` averages squared gradients (SmoothGrad-squared), and
 * `timesInput` multiplies by the input. Seeded and batched (all copies of a chunk in one backward).
 * @example kn.explain.smoothGrad(new kn.nn.Linear(4, 1), kn.ones([2, 4]), { samples: 8 }).shape // [2, 4]
 */
export function smoothGrad(
  model: Predictor,
  x: Tensor,
  opts: {
    samples?: number;
    noise?: number;
    target?: Target;
    seed?: number;
    squared?: boolean;
    timesInput?: boolean;
    maxRows?: number;
  } = {},
): Tensor {
  checkOptions(opts, 'smoothGrad', ['samples', 'noise', 'target', 'seed', 'squared', 'timesInput', 'maxRows']);
  const { v, n, shape, per } = inputOf(x, 'x');
  const samples = positiveInt(opts.samples ?? 25, 'samples', 100000);
  const noise = opts.noise ?? 0.15;
  if (!(noise >= 0) || !Number.isFinite(noise))
    throw new ArgumentError(`noise must be a non-negative number, got ${describe(noise)}`);
  const t = targetsOf(opts.target, n, () => predictedClasses(model, v, shape));
  const rng = hostRng(opts.seed ?? 0);
  const maxRows = positiveInt(opts.maxRows ?? DEFAULT_MAX_ROWS, 'maxRows', 1 << 24);
  const chunk = Math.max(1, Math.floor(maxRows / samples));
  const out = new Float32Array(v.length);
  for (let i0 = 0; i0 < n; i0 += chunk) {
    const m = Math.min(chunk, n - i0);
    const rows = new Float32Array(samples * m * per);
    const tt = new Int32Array(samples * m);
    const eps = normals(rows.length, rng);
    for (let i = 0; i < m; i++) {
      let lo = Infinity,
        hi = -Infinity;
      for (let j = 0; j < per; j++) {
        lo = Math.min(lo, v[(i0 + i) * per + j]!);
        hi = Math.max(hi, v[(i0 + i) * per + j]!);
      }
      const sigma = noise * (hi - lo);
      for (let s = 0; s < samples; s++) {
        tt[s * m + i] = t[i0 + i]!;
        const o = (s * m + i) * per;
        for (let j = 0; j < per; j++) rows[o + j] = v[(i0 + i) * per + j]! + sigma * eps[o + j]!;
      }
    }
    const g = gradRows(model, rows, [samples * m, ...shape.slice(1)], tt);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < per; j++) {
        let acc = 0;
        for (let s = 0; s < samples; s++) {
          const d = g[(s * m + i) * per + j]!;
          acc += opts.squared ? d * d : d;
        }
        const k = (i0 + i) * per + j;
        out[k] = (acc / samples) * (opts.timesInput ? v[k]! : 1);
      }
  }
  return tensor(out, shape);
}

/** A score of predictions: a name, or a function of (true values, model outputs [N] or [N, C]) with its sense. */
export type ImportanceMetric =
  | 'accuracy'
  | 'mse'
  | 'mae'
  | 'r2'
  | {
      score: (yTrue: Float64Array, output: Float64Array, outputCols: number) => number;
      greaterIsBetter: boolean;
      name?: string;
    };

function scorer(m: ImportanceMetric | undefined): {
  name: string;
  greaterIsBetter: boolean;
  score: (y: Float64Array, o: Float64Array, c: number) => number;
} {
  const metric = m ?? 'accuracy';
  if (typeof metric === 'object' && metric !== null && typeof metric.score === 'function')
    return { name: metric.name ?? 'custom', greaterIsBetter: metric.greaterIsBetter !== false, score: metric.score };
  switch (metric) {
    case 'accuracy':
      return {
        name: 'accuracy',
        greaterIsBetter: true,
        score: (y, o, c) => {
          let right = 0;
          for (let i = 0; i < y.length; i++) {
            let p: number;
            if (c === 1) p = o[i]! > 0 ? 1 : 0;
            else {
              p = 0;
              for (let j = 1; j < c; j++) if (o[i * c + j]! > o[i * c + p]!) p = j;
            }
            if (p === y[i]) right++;
          }
          return right / y.length;
        },
      };
    case 'mse':
    case 'mae':
      return {
        name: metric,
        greaterIsBetter: false,
        score: (y, o) => {
          let s = 0;
          for (let i = 0; i < y.length; i++) s += metric === 'mse' ? (o[i]! - y[i]!) ** 2 : Math.abs(o[i]! - y[i]!);
          return s / y.length;
        },
      };
    case 'r2':
      return {
        name: 'r2',
        greaterIsBetter: true,
        score: (y, o) => {
          let mean = 0;
          for (let i = 0; i < y.length; i++) mean += y[i]!;
          mean /= y.length;
          let ssr = 0,
            sst = 0;
          for (let i = 0; i < y.length; i++) {
            ssr += (o[i]! - y[i]!) ** 2;
            sst += (y[i]! - mean) ** 2;
          }
          return 1 - ssr / sst;
        },
      };
    default:
      throw new ArgumentError(
        `metric must be 'accuracy', 'mse', 'mae', 'r2' or {score, greaterIsBetter}, got ${describe(metric)}`,
      );
  }
}

export interface FeatureImportance {
  /** The feature's (or group's) name: featureNames[i], the group's name, or 'x<i>'. */
  feature: string;
  /** Column indices permuted together. */
  columns: number[];
  /** Mean drop in the score (rise for lower-is-better metrics) over the repeats: larger = more important. */
  mean: number;
  std: number;
  /** The score after each permutation. */
  scores: number[];
}

/**
 * Permutation importance (Breiman 2001): how much the score drops when one column (or a group of columns) is
 * shuffled, breaking its link to the target. All repeats of one column run in one forward.
 * @example kn.explain.permutationImportance(new kn.nn.Linear(2, 1), kn.randn([8, 2]), kn.zeros([8]), { metric: 'mse' }).importances.length // 2
 */
export function permutationImportance(
  model: Predictor,
  x: Tensor,
  y: Values,
  opts: {
    metric?: ImportanceMetric;
    repeats?: number;
    seed?: number;
    featureNames?: readonly string[];
    groups?: readonly { name: string; columns: readonly number[] }[];
  } = {},
): { metric: string; baseline: number; importances: FeatureImportance[] } {
  checkOptions(opts, 'permutationImportance', ['metric', 'repeats', 'seed', 'featureNames', 'groups']);
  const { v, n, shape } = inputOf(x, 'x');
  if (shape.length !== 2) throw new ShapeError(`permutationImportance needs tabular x [N, F], got shape [${shape}]`);
  const f = shape[1]!;
  const yv = hostValues(y, 'y').v;
  if (yv.length !== n) throw new ShapeError(`y has ${yv.length} values but x has ${n} rows`);
  const repeats = positiveInt(opts.repeats ?? 5, 'repeats', 10000);
  const sc = scorer(opts.metric);
  const names = opts.featureNames;
  if (names !== undefined && (!Array.isArray(names) || names.length !== f))
    throw new ArgumentError(`featureNames must name all ${f} columns, got ${describe(names)}`);
  const groups = (
    opts.groups ?? Array.from({ length: f }, (_, j) => ({ name: names?.[j] ?? `x${j}`, columns: [j] }))
  ).map((g, k) => {
    if (!g || typeof g.name !== 'string' || !Array.isArray(g.columns) || g.columns.length === 0)
      throw new ArgumentError(`groups[${k}] must be {name, columns: number[]}, got ${describe(g)}`);
    for (const c of g.columns)
      if (!Number.isInteger(c) || c < 0 || c >= f)
        throw new ArgumentError(`groups[${k}] names column ${c}; x has ${f}`);
    return { name: g.name, columns: [...g.columns] };
  });
  const base = outputsOf(model, v, shape);
  const baseline = sc.score(yv, base.o, base.c);
  const rng = hostRng(opts.seed ?? 0);
  const importances = groups.map(({ name, columns }) => {
    const rows = new Float32Array(repeats * n * f);
    for (let r = 0; r < repeats; r++) {
      rows.set(v, r * n * f);
      // one shuffle of the rows, applied to every column of the group (they move together)
      const perm = Int32Array.from({ length: n }, (_, i) => i);
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(rng() * (i + 1));
        const tmp = perm[i]!;
        perm[i] = perm[j]!;
        perm[j] = tmp;
      }
      for (let i = 0; i < n; i++) for (const c of columns) rows[(r * n + i) * f + c] = v[perm[i]! * f + c]!;
    }
    const { o, c } = outputsOf(model, rows, [repeats * n, f]);
    const scores: number[] = [];
    for (let r = 0; r < repeats; r++) scores.push(sc.score(yv, o.subarray(r * n * c, (r + 1) * n * c), c));
    const drops = scores.map((s) => (sc.greaterIsBetter ? baseline - s : s - baseline));
    const mean = drops.reduce((a, b) => a + b, 0) / repeats;
    const std = Math.sqrt(drops.reduce((a, b) => a + (b - mean) ** 2, 0) / repeats);
    return { feature: name, columns, mean, std, scores };
  });
  return { metric: sc.name, baseline, importances };
}

/**
 * Drop-column importance: the score lost when the model is retrained without each column (or group), which
 * permutation importance only approximates when features are correlated. `fitAndScore(columns)` trains a fresh
 * model on the given columns and returns its validation score; it is called once with every column and once per
 * feature or group left out (await-able, so training may be asynchronous).
 * @example (await kn.explain.dropColumnImportance((cols) => cols.length, 3)).importances[0].mean // 1
 */
export async function dropColumnImportance(
  fitAndScore: (columns: number[]) => number | Promise<number>,
  nFeatures: number,
  opts: {
    greaterIsBetter?: boolean;
    featureNames?: readonly string[];
    groups?: readonly { name: string; columns: readonly number[] }[];
  } = {},
): Promise<{ baseline: number; importances: FeatureImportance[] }> {
  checkOptions(opts, 'dropColumnImportance', ['greaterIsBetter', 'featureNames', 'groups']);
  if (typeof fitAndScore !== 'function')
    throw new ArgumentError(`fitAndScore must be a function (columns) => score, got ${describe(fitAndScore)}`);
  const f = positiveInt(nFeatures, 'nFeatures', 1 << 20);
  const names = opts.featureNames;
  if (names !== undefined && (!Array.isArray(names) || names.length !== f))
    throw new ArgumentError(`featureNames must name all ${f} columns, got ${describe(names)}`);
  const groups = opts.groups ?? Array.from({ length: f }, (_, j) => ({ name: names?.[j] ?? `x${j}`, columns: [j] }));
  const all = Array.from({ length: f }, (_, j) => j);
  const score = async (cols: number[], what: string): Promise<number> => {
    const v = await fitAndScore(cols);
    if (typeof v !== 'number' || Number.isNaN(v))
      throw new ValidationError(`fitAndScore(${what}) returned ${describe(v)}, not a score`);
    return v;
  };
  const baseline = await score(all, 'all columns');
  const sign = opts.greaterIsBetter === false ? -1 : 1;
  const importances: FeatureImportance[] = [];
  for (const [k, g] of groups.entries()) {
    if (!g || typeof g.name !== 'string' || !Array.isArray(g.columns) || g.columns.length === 0)
      throw new ArgumentError(`groups[${k}] must be {name, columns: number[]}, got ${describe(g)}`);
    const drop = new Set(g.columns);
    for (const c of drop)
      if (!Number.isInteger(c) || c < 0 || c >= f)
        throw new ArgumentError(`groups[${k}] names column ${c}; there are ${f}`);
    const s = await score(
      all.filter((j) => !drop.has(j)),
      `without ${g.name}`,
    );
    importances.push({ feature: g.name, columns: [...g.columns], mean: sign * (baseline - s), std: 0, scores: [s] });
  }
  return { baseline, importances };
}

function binom(n: number, k: number): number {
  let r = 1;
  for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
  return r;
}

export interface KernelShapResult {
  /** Shapley values, one row per example, one value per feature: each row sums to f(x) - expected exactly. */
  values: number[][];
  /** E[f] over the background rows (the value of the empty coalition). */
  expected: number;
  /** f(x) per example. */
  predictions: number[];
  /** True when every coalition was evaluated (exact Shapley values), false when they were sampled. */
  exact: boolean;
}

/**
 * KernelSHAP (Lundberg and Lee 2017) for tabular data: Shapley values of each feature, with features outside a
 * coalition taken from background rows (interventional). Every coalition is evaluated when 2^F - 2 <= samples
 * (exact Shapley values), else coalitions are drawn from the Shapley kernel in complementary pairs; the
 * efficiency constraint (values sum to f(x) - E[f]) holds exactly either way. For a linear model the values are
 * w_i (x_i - E[x_i]).
 * @example kn.explain.kernelShap((x) => x.sum(1), [[1, 2]], [[0, 0]]).values[0] // [1, 2]
 */
export function kernelShap(
  model: Predictor,
  x: Tensor | ArrayLike<number> | readonly (readonly number[])[],
  background: Tensor | readonly (readonly number[])[],
  opts: { samples?: number; target?: number; seed?: number; maxRows?: number } = {},
): KernelShapResult {
  checkOptions(opts, 'kernelShap', ['samples', 'target', 'seed', 'maxRows']);
  const X = tabular(x, 'x');
  const B = tabular(background, 'background');
  if (B.f !== X.f) throw new ShapeError(`background has ${B.f} features but x has ${X.f}`);
  if (B.n < 1) throw new ValidationError('kernelShap needs at least one background row');
  const f = X.f;
  const samples = positiveInt(opts.samples ?? 2 * f + 2048, 'samples', 1 << 20);
  const target = opts.target ?? 0;
  if (!Number.isInteger(target) || target < 0)
    throw new ArgumentError(`target must be a class index, got ${describe(target)}`);
  const t = new Int32Array([target]);
  const maxRows = positiveInt(opts.maxRows ?? 65536, 'maxRows', 1 << 24);
  const eval32 = (rows: Float64Array, count: number): Float64Array => {
    const out = new Float64Array(count);
    const per = Math.max(1, Math.floor(maxRows));
    for (let r0 = 0; r0 < count; r0 += per) {
      const m = Math.min(per, count - r0);
      out.set(forwardRows(model, Float32Array.from(rows.subarray(r0 * f, (r0 + m) * f)), [m, f], t), r0);
    }
    return out;
  };
  const bg = eval32(B.v, B.n);
  const expected = bg.reduce((a, b) => a + b, 0) / B.n;
  const predictions = Array.from(eval32(X.v, X.n));
  // coalitions (rows of z) and their regression weights
  const coalitions: Uint8Array[] = [];
  const w: number[] = [];
  const exact = f <= 30 && 2 ** f - 2 <= samples;
  if (exact) {
    for (let mask = 1; mask < 2 ** f - 1; mask++) {
      const z = new Uint8Array(f);
      let s = 0;
      for (let j = 0; j < f; j++)
        if (mask & (1 << j)) {
          z[j] = 1;
          s++;
        }
      coalitions.push(z);
      w.push((f - 1) / (binom(f, s) * s * (f - s)));
    }
  } else {
    const rng = hostRng(opts.seed ?? 0);
    const sizeW = Array.from({ length: f - 1 }, (_, i) => (f - 1) / ((i + 1) * (f - i - 1)));
    const total = sizeW.reduce((a, b) => a + b, 0);
    for (let k = 0; k + 1 < samples; k += 2) {
      let u = rng() * total,
        s = 1;
      while (s < f - 1 && u > sizeW[s - 1]!) {
        u -= sizeW[s - 1]!;
        s++;
      }
      const idx = Int32Array.from({ length: f }, (_, i) => i);
      for (let i = 0; i < s; i++) {
        const j = i + Math.floor(rng() * (f - i));
        [idx[i], idx[j]] = [idx[j]!, idx[i]!];
      }
      const z = new Uint8Array(f);
      for (let i = 0; i < s; i++) z[idx[i]!] = 1;
      const comp = z.map((b) => 1 - b);
      coalitions.push(z, comp);
      w.push(1, 1);
    }
  }
  const K = coalitions.length;
  const values: number[][] = [];
  for (let e = 0; e < X.n; e++) {
    const xe = X.v.subarray(e * f, (e + 1) * f);
    const delta = predictions[e]! - expected;
    if (f === 1) {
      values.push([delta]);
      continue;
    }
    // v(z) = mean over background rows of f(x on z, background elsewhere)
    const rows = new Float64Array(K * B.n * f);
    for (let k = 0; k < K; k++)
      for (let b = 0; b < B.n; b++) {
        const o = (k * B.n + b) * f;
        for (let j = 0; j < f; j++) rows[o + j] = coalitions[k]![j] ? xe[j]! : B.v[b * f + j]!;
      }
    const out = eval32(rows, K * B.n);
    // constrained weighted least squares: phi_last = delta - sum(others)
    const d = f - 1;
    const ata = new Float64Array(d * d),
      aty = new Float64Array(d);
    for (let k = 0; k < K; k++) {
      let vz = 0;
      for (let b = 0; b < B.n; b++) vz += out[k * B.n + b]!;
      vz /= B.n;
      const z = coalitions[k]!;
      const yk = vz - expected - z[d]! * delta;
      const wk = w[k]!;
      for (let i = 0; i < d; i++) {
        const ai = z[i]! - z[d]!;
        if (ai === 0) continue;
        aty[i]! += wk * ai * yk;
        for (let j = 0; j < d; j++) ata[i * d + j]! += wk * ai * (z[j]! - z[d]!);
      }
    }
    const phi = Array.from(solve(ata, aty, d));
    phi.push(delta - phi.reduce((a, b) => a + b, 0));
    values.push(phi);
  }
  return { values, expected, predictions, exact };
}

export interface LimeResult {
  /** Local linear weights per feature (in the input's units). */
  weights: number[];
  intercept: number;
  /** Weighted R^2 of the local fit: how well a line explains the model near x. */
  score: number;
  /** f(x) and the local model's value at x. */
  prediction: number;
  localPrediction: number;
}

/**
 * LIME for tabular data (Ribeiro et al. 2016): samples around x (each feature perturbed by the background's
 * standard deviation, or 1 without a background), weights samples by an exponential kernel on the standardised
 * distance, and fits a weighted linear model. For a linear model the weights are its coefficients.
 * @example kn.explain.lime((x) => x.sum(1), [1, 2], { samples: 200 }).weights.map(Math.round) // [1, 1]
 */
export function lime(
  model: Predictor,
  x: Tensor | ArrayLike<number> | readonly (readonly number[])[],
  opts: {
    background?: Tensor | readonly (readonly number[])[];
    samples?: number;
    kernelWidth?: number;
    target?: number;
    seed?: number;
    ridge?: number;
  } = {},
): LimeResult {
  checkOptions(opts, 'lime', ['background', 'samples', 'kernelWidth', 'target', 'seed', 'ridge']);
  const X = tabular(x as Values, 'x');
  if (X.n !== 1) throw new ShapeError(`lime explains one example [F] or [1, F], got ${X.n} rows`);
  const f = X.f;
  const samples = positiveInt(opts.samples ?? 1000, 'samples', 1 << 20);
  const sigma = new Float64Array(f).fill(1);
  if (opts.background !== undefined) {
    const B = tabular(opts.background, 'background');
    if (B.f !== f) throw new ShapeError(`background has ${B.f} features but x has ${f}`);
    for (let j = 0; j < f; j++) {
      let m = 0,
        s = 0;
      for (let i = 0; i < B.n; i++) m += B.v[i * f + j]!;
      m /= B.n;
      for (let i = 0; i < B.n; i++) s += (B.v[i * f + j]! - m) ** 2;
      sigma[j] = Math.sqrt(s / B.n) || 1;
    }
  }
  const width = opts.kernelWidth ?? 0.75 * Math.sqrt(f);
  if (!(width > 0)) throw new ArgumentError(`kernelWidth must be positive, got ${describe(opts.kernelWidth)}`);
  const ridge = opts.ridge ?? 1e-6;
  const target = opts.target ?? 0;
  const rng = hostRng(opts.seed ?? 0);
  const eps = normals(samples * f, rng);
  const rows = new Float32Array(samples * f);
  const kw = new Float64Array(samples);
  for (let s = 0; s < samples; s++) {
    let d2 = 0;
    for (let j = 0; j < f; j++) {
      const e = s === 0 ? 0 : eps[s * f + j]!; // the first sample is x itself, as LIME does
      rows[s * f + j] = X.v[j]! + e * sigma[j]!;
      d2 += e * e;
    }
    kw[s] = Math.exp(-d2 / (width * width));
  }
  const y = forwardRows(model, rows, [samples, f], new Int32Array([target]));
  // weighted least squares on [1, z]: (A^T W A + ridge I) beta = A^T W y, features centred at x for conditioning
  const k = f + 1;
  const ata = new Float64Array(k * k),
    aty = new Float64Array(k);
  const row = new Float64Array(k);
  for (let s = 0; s < samples; s++) {
    row[0] = 1;
    for (let j = 0; j < f; j++) row[j + 1] = rows[s * f + j]! - X.v[j]!;
    for (let i = 0; i < k; i++) {
      aty[i]! += kw[s]! * row[i]! * y[s]!;
      for (let j = 0; j < k; j++) ata[i * k + j]! += kw[s]! * row[i]! * row[j]!;
    }
  }
  for (let i = 1; i < k; i++) ata[i * k + i]! += ridge;
  const beta = solve(ata, aty, k);
  const weights = Array.from(beta.subarray(1));
  let wsum = 0,
    mean = 0;
  for (let s = 0; s < samples; s++) {
    wsum += kw[s]!;
    mean += kw[s]! * y[s]!;
  }
  mean /= wsum;
  let ssr = 0,
    sst = 0;
  for (let s = 0; s < samples; s++) {
    let pred = beta[0]!;
    for (let j = 0; j < f; j++) pred += beta[j + 1]! * (rows[s * f + j]! - X.v[j]!);
    ssr += kw[s]! * (y[s]! - pred) ** 2;
    sst += kw[s]! * (y[s]! - mean) ** 2;
  }
  // the intercept in the input's coordinates: beta0 - w . x
  let intercept = beta[0]!;
  for (let j = 0; j < f; j++) intercept -= weights[j]! * X.v[j]!;
  return {
    weights,
    intercept,
    score: sst > 0 ? 1 - ssr / sst : 1,
    prediction: y[0]!,
    localPrediction: beta[0]!,
  };
}

export { counterfactual, type CounterfactualChange, type CounterfactualResult } from './counterfactual.js';
