// Data drift between a reference sample (training data) and a current one (production inputs), per feature:
// the population stability index over reference-quantile bins, and the two-sample Kolmogorov-Smirnov
// statistic with its asymptotic p-value.
import { ArgumentError, ValidationError, checkOptions, describe } from '../errors.js';
import { columnsOf, type TableLike } from './columns.js';

/** Drift numbers for one feature. */
export interface FeatureDrift {
  feature: string;
  kind: 'numeric' | 'categorical';
  psi: number;
  /** KS statistic D (numeric features; null for categorical ones) */
  ks: number | null;
  pValue: number | null;
  /** fraction of missing values in reference and current */
  missing: { reference: number; current: number };
  psiDrift: boolean;
  ksDrift: boolean;
  drift: boolean;
}

/** What driftReport returns. */
export interface DriftReport {
  features: FeatureDrift[];
  drifted: string[];
  thresholds: { psi: number; ksAlpha: number };
}

/**
 * Kolmogorov distribution tail Q(lambda) = 2 sum_{j>=1} (-1)^(j-1) exp(-2 j^2 lambda^2). That alternating series
 * needs ~1/lambda terms, so below lambda = 1 the tail is taken as 1 minus the CDF's own series,
 * sqrt(2 pi) / lambda sum_{k>=1} exp(-(2k-1)^2 pi^2 / (8 lambda^2)), which converges in a few terms there (the
 * alternating series cut at 100 terms gave Q(0.002) = 0.08, not 1: identical large samples looked drifted).
 */
export function kolmogorovQ(lambda: number): number {
  if (!(lambda > 0)) return 1;
  let s = 0;
  if (lambda < 1) {
    for (let k = 1; k <= 20; k++) {
      const term = Math.exp((-((2 * k - 1) ** 2) * Math.PI * Math.PI) / (8 * lambda * lambda));
      s += term;
      if (term < 1e-17 * s) break;
    }
    return Math.min(1, Math.max(0, 1 - (Math.sqrt(2 * Math.PI) / lambda) * s));
  }
  for (let j = 1; j <= 100; j++) {
    const term = 2 * (j % 2 ? 1 : -1) * Math.exp(-2 * j * j * lambda * lambda);
    s += term;
    if (Math.abs(term) < 1e-17) break;
  }
  return Math.min(1, Math.max(0, s));
}

/**
 * Two-sample KS: D = max |F_a - F_b| and its asymptotic p-value (Numerical Recipes' effective-n correction).
 * @example kn.data.ksTest([1, 2, 3, 4], [1, 2, 3, 4]).statistic // 0
 */
export function ksTest(a: ArrayLike<number>, b: ArrayLike<number>): { statistic: number; pValue: number } {
  const x = observed(a, 'ksTest first sample'),
    y = observed(b, 'ksTest second sample');
  if (!x.length || !y.length) throw new ValidationError('ksTest needs two non-empty samples');
  return ksSorted(x, y);
}

/** A sample as float64, sorted ascending; NaN (a missing value: it has no place in a distribution) is refused. */
function observed(a: ArrayLike<number>, what: string): Float64Array {
  const x = Float64Array.from(a);
  const at = x.findIndex(Number.isNaN);
  if (at >= 0) throw new ValidationError(`${what} has NaN at index ${at}; leave missing values out`);
  return x.sort();
}

/** Same place in ascending sort order, where NaN comes last (Float64Array's sort). */
const same = (a: number, b: number): boolean => a === b || (a !== a && b !== b);

/**
 * ksTest of two samples already sorted ascending (non-empty): a merge, no sorting. NaN, sorted last, counts as
 * a value above all others (the merge once waited forever on NaN in both samples).
 */
export function ksSorted(x: Float64Array, y: Float64Array): { statistic: number; pValue: number } {
  let i = 0,
    j = 0,
    d = 0;
  while (i < x.length && j < y.length) {
    const a = x[i]!,
      b = y[j]!;
    const v = a < b || b !== b ? a : b;
    while (i < x.length && same(x[i]!, v)) i++;
    while (j < y.length && same(y[j]!, v)) j++;
    d = Math.max(d, Math.abs(i / x.length - j / y.length));
  }
  const ne = Math.sqrt((x.length * y.length) / (x.length + y.length));
  return { statistic: d, pValue: kolmogorovQ((ne + 0.12 + 0.11 / ne) * d) };
}

const EPS = 1e-4;
function psiOf(ref: number[], cur: number[]): number {
  let s = 0;
  for (let k = 0; k < ref.length; k++) {
    const r = Math.max(ref[k]!, EPS),
      c = Math.max(cur[k]!, EPS);
    s += (c - r) * Math.log(c / r);
  }
  return s;
}

/**
 * Population stability index of `current` against `reference` over `bins` reference-quantile bins.
 * @example kn.data.psi([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) // 0
 */
export function psi(reference: ArrayLike<number>, current: ArrayLike<number>, bins = 10): number {
  if (!Number.isInteger(bins) || bins < 2)
    throw new ArgumentError(`bins must be an integer >= 2, got ${describe(bins)}`);
  const r = observed(reference, 'psi reference');
  const c = observed(current, 'psi current sample');
  if (!r.length || !c.length) throw new ValidationError('psi needs two non-empty samples');
  return psiFromBins(quantileBins(r, bins), c);
}

/** PSI bins of a reference: the edges of its quantiles and its share of values in each bin. */
export interface QuantileBins {
  edges: number[];
  shares: number[];
}

/** The reference-quantile bins psi() uses, from a sample sorted ascending (computed once, reused per window). */
export function quantileBins(sorted: Float64Array, bins: number): QuantileBins {
  const edges: number[] = [];
  for (let k = 1; k < bins; k++) {
    const e = sorted[Math.min(sorted.length - 1, Math.floor((k * sorted.length) / bins))]!;
    if (!edges.length || e > edges[edges.length - 1]!) edges.push(e);
  }
  return { edges, shares: binShares(edges, sorted) };
}

function binShares(edges: readonly number[], vals: ArrayLike<number>): number[] {
  const h = new Array<number>(edges.length + 1).fill(0);
  for (let i = 0; i < vals.length; i++) {
    const v = vals[i]!;
    let lo = 0,
      hi = edges.length;
    while (lo < hi) {
      const m = (lo + hi) >> 1;
      if (v >= edges[m]!) lo = m + 1;
      else hi = m;
    }
    h[lo]!++;
  }
  return h.map((x) => x / vals.length);
}

/** PSI of `current` against precomputed reference bins (the same number psi() gives). */
export function psiFromBins(b: QuantileBins, current: ArrayLike<number>): number {
  if (!current.length) throw new ValidationError('psi needs two non-empty samples');
  return psiOf(b.shares, binShares(b.edges, current));
}

/**
 * Per-feature drift of `current` against `reference` (same columns): PSI (numeric: reference-quantile bins;
 * categorical: one bin per category) and, for numeric features, the KS statistic and p-value. A feature is
 * flagged when PSI > psiThreshold (default 0.2) or the KS p-value < ksAlpha (default 0.05).
 */
export function driftReport(
  reference: TableLike,
  current: TableLike,
  opts: { psiThreshold?: number; ksAlpha?: number; bins?: number } = {},
): DriftReport {
  checkOptions(opts, 'driftReport', ['psiThreshold', 'ksAlpha', 'bins']);
  const psiT = opts.psiThreshold ?? 0.2,
    alpha = opts.ksAlpha ?? 0.05,
    bins = opts.bins ?? 10;
  if (!(psiT > 0)) throw new ArgumentError(`psiThreshold must be > 0, got ${describe(opts.psiThreshold)}`);
  if (!(alpha > 0 && alpha < 1)) throw new ArgumentError(`ksAlpha must be in (0, 1), got ${describe(opts.ksAlpha)}`);
  const ref = columnsOf(reference, 'driftReport reference'),
    cur = new Map(columnsOf(current, 'driftReport current').map((c) => [c.name, c]));
  const features: FeatureDrift[] = [];
  for (const rc of ref) {
    const cc = cur.get(rc.name);
    if (!cc) throw new ValidationError(`feature '${rc.name}' is in the reference but not in the current data`);
    // null and NaN (pandas' missing float) are missing values, counted in `missing`
    const present = <T>(vals: ArrayLike<T | null>): T[] =>
      Array.from(vals).filter((v): v is T => v !== null && !(typeof v === 'number' && Number.isNaN(v)));
    const rv = present(rc.values),
      cv = present(cc.values);
    if (!rv.length || !cv.length)
      throw new ValidationError(
        `feature '${rc.name}' has no observed values in the ${rv.length ? 'current' : 'reference'} data`,
      );
    const missing = { reference: 1 - rv.length / rc.values.length, current: 1 - cv.length / cc.values.length };
    let f: FeatureDrift;
    if (rc.kind === 'string' || cc.kind === 'string') {
      const cats = [...new Set([...rv, ...cv].map(String))];
      const hist = (vals: unknown[]): number[] => {
        const h = new Map(cats.map((k) => [k, 0]));
        for (const v of vals) h.set(String(v), h.get(String(v))! + 1);
        return cats.map((k) => h.get(k)! / vals.length);
      };
      const p = psiOf(hist(rv), hist(cv));
      f = {
        feature: rc.name,
        kind: 'categorical',
        psi: p,
        ks: null,
        pValue: null,
        missing,
        psiDrift: p > psiT,
        ksDrift: false,
        drift: p > psiT,
      };
    } else {
      const rn = rv.map(Number),
        cn = cv.map(Number);
      const p = psi(rn, cn, bins);
      const ks = ksTest(rn, cn);
      f = {
        feature: rc.name,
        kind: 'numeric',
        psi: p,
        ks: ks.statistic,
        pValue: ks.pValue,
        missing,
        psiDrift: p > psiT,
        ksDrift: ks.pValue < alpha,
        drift: p > psiT || ks.pValue < alpha,
      };
    }
    features.push(f);
  }
  return {
    features,
    drifted: features.filter((f) => f.drift).map((f) => f.feature),
    thresholds: { psi: psiT, ksAlpha: alpha },
  };
}
