// Counterfactual explanations for tabular classifiers (after Wachter et al. 2017, searched by steepest steps in the
// scaled L1 geometry, then a sparsity pass and a bisection back towards x): the smallest
// change to an example that makes the model predict another class. Distances are measured per feature in units
// of its scale (the background's median absolute deviation, or 1), immutable features never move, and every
// feature stays inside its range.
import { ArgumentError, ShapeError, checkOptions, describe } from '../errors.js';
import type { Predictor, Values } from '../evaluate/host.js';
import { gradMaskRows, outputsOf, positiveInt, rowArgmax, tabular } from './core.js';

export interface CounterfactualChange {
  feature: number;
  /** The feature's name when featureNames was given, else 'x<i>'. */
  name: string;
  from: number;
  to: number;
}

export interface CounterfactualResult {
  /** True when a point predicted as the target class was found. */
  found: boolean;
  /** The counterfactual example (equal to x when none was found). */
  x: number[];
  /** The features that changed, in order of index. */
  changes: CounterfactualChange[];
  /** The class the model predicts at x and at the counterfactual. */
  originalClass: number;
  predictedClass: number;
  targetClass: number;
  /** Sum over features of |change| / scale (the L1 distance in scaled units). */
  distance: number;
  iterations: number;
}

/**
 * The smallest (L1, per-feature scaled) change to one example `x` that makes a classifier predict `target` (default:
 * its runner-up class): steepest steps on the target's logit margin under the scaled L1 distance (only the features
 * that buy the most margin per unit move), then a pass that undoes every change not needed to keep the new class,
 * and a bisection to the nearest flipping point on the way back to x. `immutable` features never move; `bounds`
 * keeps each feature in [lo, hi].
 * @example kn.explain.counterfactual((x) => kn.concat([x.mul(-1), x], 1), [-1]).predictedClass // 1
 */
export function counterfactual(
  model: Predictor,
  x: Values | readonly number[],
  opts: {
    target?: number;
    immutable?: readonly number[];
    bounds?: readonly (readonly [number, number] | null)[];
    background?: Values | readonly (readonly number[])[];
    featureNames?: readonly string[];
    maxIter?: number;
    stepSize?: number;
    margin?: number;
  } = {},
): CounterfactualResult {
  checkOptions(opts, 'counterfactual', [
    'target',
    'immutable',
    'bounds',
    'background',
    'featureNames',
    'maxIter',
    'stepSize',
    'margin',
  ]);
  const X = tabular(x as Values, 'x');
  if (X.n !== 1) throw new ShapeError(`counterfactual explains one example [F] or [1, F], got ${X.n} rows`);
  const f = X.f;
  const x0 = Array.from(X.v);
  const names = opts.featureNames;
  if (names !== undefined && (!Array.isArray(names) || names.length !== f))
    throw new ArgumentError(`featureNames must name all ${f} features, got ${describe(names)}`);
  const frozen = new Uint8Array(f);
  for (const j of opts.immutable ?? []) {
    if (!Number.isInteger(j) || j < 0 || j >= f) throw new ArgumentError(`immutable names feature ${j}; x has ${f}`);
    frozen[j] = 1;
  }
  const lo = new Float64Array(f).fill(-Infinity),
    hi = new Float64Array(f).fill(Infinity);
  if (opts.bounds !== undefined) {
    if (!Array.isArray(opts.bounds) || opts.bounds.length !== f)
      throw new ArgumentError(
        `bounds must give [lo, hi] (or null) for all ${f} features, got ${describe(opts.bounds)}`,
      );
    opts.bounds.forEach((b, j) => {
      if (b === null) return;
      if (!Array.isArray(b) || b.length !== 2 || !(b[0] <= b[1]))
        throw new ArgumentError(`bounds[${j}] must be [lo, hi] with lo <= hi, got ${describe(b)}`);
      if (x0[j]! < b[0] || x0[j]! > b[1]) throw new ArgumentError(`x[${j}] = ${x0[j]} is outside bounds[${j}]`);
      lo[j] = b[0];
      hi[j] = b[1];
    });
  }
  const scale = new Float64Array(f).fill(1);
  if (opts.background !== undefined) {
    const B = tabular(opts.background, 'background');
    if (B.f !== f) throw new ShapeError(`background has ${B.f} features but x has ${f}`);
    for (let j = 0; j < f; j++) {
      const col = Array.from({ length: B.n }, (_, i) => B.v[i * f + j]!).sort((a, b) => a - b);
      const med = col[Math.floor(col.length / 2)]!;
      const dev = col.map((v) => Math.abs(v - med)).sort((a, b) => a - b);
      scale[j] = dev[Math.floor(dev.length / 2)]! || 1;
    }
  }
  const maxIter = positiveInt(opts.maxIter ?? 1000, 'maxIter', 1e6);
  const step = opts.stepSize ?? 0.05;
  const margin = opts.margin ?? 0;
  if (!(step > 0) || !(margin >= 0))
    throw new ArgumentError(`need stepSize > 0 and margin >= 0, got ${describe(step)} and ${describe(margin)}`);
  const predict = (v: number[]): { o: Float64Array; c: number } => outputsOf(model, Float32Array.from(v), [1, f]);
  const start = predict(x0);
  if (start.c < 2) throw new ShapeError('counterfactual needs a classifier with at least two output classes');
  const original = rowArgmax(start.o, start.c);
  let target = opts.target;
  if (target === undefined) {
    target = original === 0 ? 1 : 0;
    for (let j = 0; j < start.c; j++) if (j !== original && start.o[j]! > start.o[target]!) target = j;
  }
  if (!Number.isInteger(target) || target < 0 || target >= start.c || target === original)
    throw new ArgumentError(
      `target must be a class other than the predicted ${original}, in [0, ${start.c}), got ${describe(opts.target)}`,
    );
  const t = target;
  /** target logit minus the best other one */
  const marginOf = (o: Float64Array, c: number): { m: number; rival: number } => {
    let rival = t === 0 ? 1 : 0;
    for (let j = 0; j < c; j++) if (j !== t && o[j]! > o[rival]!) rival = j;
    return { m: o[t]! - o[rival]!, rival };
  };
  const cur = [...x0];
  let it = 0,
    found = false;
  for (; it < maxIter; it++) {
    const { o, c } = predict(cur);
    const { m, rival } = marginOf(o, c);
    if (m > margin) {
      found = true;
      break;
    }
    const g = gradMaskRows(model, Float32Array.from(cur), [1, f], (_rows, cols) => {
      const mask = new Float32Array(cols);
      mask[t] = 1;
      mask[rival] = -1;
      return mask;
    });
    // the steepest step under the scaled L1 distance: only the feature(s) that buy the most margin per unit of
    // change move (ties move together), each in its own units; this keeps counterfactuals sparse
    let norm = 0;
    for (let j = 0; j < f; j++) if (!frozen[j]) norm = Math.max(norm, Math.abs(g[j]! * scale[j]!));
    if (norm === 0) break; // the margin does not depend on any movable feature
    let moved = false;
    for (let j = 0; j < f; j++) {
      if (frozen[j] || Math.abs(g[j]! * scale[j]!) < norm * (1 - 1e-6)) continue;
      const v = Math.min(hi[j]!, Math.max(lo[j]!, cur[j]! + step * scale[j]! * Math.sign(g[j]!)));
      if (v !== cur[j]) moved = true;
      cur[j] = v;
    }
    if (!moved) {
      // the best features are pinned at their bounds: let the others move, still steepest first
      let next = 0;
      for (let j = 0; j < f; j++) {
        if (frozen[j]) continue;
        const v = cur[j]! + step * scale[j]! * Math.sign(g[j]!);
        if (Math.min(hi[j]!, Math.max(lo[j]!, v)) !== cur[j]) next = Math.max(next, Math.abs(g[j]! * scale[j]!));
      }
      if (next === 0) break; // every useful feature is at a bound
      for (let j = 0; j < f; j++) {
        if (frozen[j] || Math.abs(g[j]! * scale[j]!) < next * (1 - 1e-6)) continue;
        cur[j] = Math.min(hi[j]!, Math.max(lo[j]!, cur[j]! + step * scale[j]! * Math.sign(g[j]!)));
      }
    }
  }
  const flips = (v: number[]): boolean => {
    const { o, c } = predict(v);
    return marginOf(o, c).m > margin;
  };
  if (found) {
    // sparsity: undo the smallest changes first while the class still flips
    const order = Array.from({ length: f }, (_, j) => j)
      .filter((j) => cur[j] !== x0[j])
      .sort((a, b) => Math.abs(cur[a]! - x0[a]!) / scale[a]! - Math.abs(cur[b]! - x0[b]!) / scale[b]!);
    for (const j of order) {
      const keep = cur[j]!;
      cur[j] = x0[j]!;
      if (!flips(cur)) cur[j] = keep;
    }
    // closeness: the nearest flipping point on the segment from x (bisection; the steps overshoot by up to one)
    let a = 0,
      b = 1;
    const at = (u: number): number[] => x0.map((v, j) => v + u * (cur[j]! - v));
    for (let k = 0; k < 40; k++) {
      const mid = (a + b) / 2;
      if (flips(at(mid))) b = mid;
      else a = mid;
    }
    const best = at(b);
    for (let j = 0; j < f; j++) cur[j] = best[j]!;
  }
  const final = found ? cur : x0;
  const end = predict(final);
  const changes: CounterfactualChange[] = [];
  let distance = 0;
  for (let j = 0; j < f; j++) {
    if (final[j] === x0[j]) continue;
    changes.push({ feature: j, name: names?.[j] ?? `x${j}`, from: x0[j]!, to: final[j]! });
    distance += Math.abs(final[j]! - x0[j]!) / scale[j]!;
  }
  return {
    found,
    x: final,
    changes,
    originalClass: original,
    predictedClass: rowArgmax(end.o, end.c),
    targetClass: t,
    distance,
    iterations: it,
  };
}
