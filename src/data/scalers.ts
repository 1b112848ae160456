// Feature scaling and imputation, fitted per feature on a table [rows, features] with NaN as "missing".
// Statistics come from native kernels (masked sums, min/max, column quantiles); transforms are broadcast
// kiln ops. Every transformer serialises to JSON (toJSON / fromJSON / save / load) to ship next to a model.
import { noGrad } from '../autograd/tape.js';
import { tidy } from '../engine/memory.js';
import { ArgumentError, FormatError, ValidationError, checkOptions, describe } from '../errors.js';
import { add, div, maximum, minimum, mul, sub, where } from '../ops/elementwise.js';
import type { Tensor } from '../tensor/tensor.js';
import { checkFilePath, readFileForSync, writeFileAtomicSync } from '../io/atomic.js';
import { asRow, assertTable, nanMinMax, nanMoments, nanQuantiles, rowFingerprints } from './stats.js';
import { own } from '../records.js';

/** The JSON form of a fitted transformer. */
export interface TransformerJSON {
  kind: string;
  nFeatures: number;
  params: Record<string, number[]>;
  options: Record<string, unknown>;
}

const finiteOr = (v: number, d: number): number => (Number.isFinite(v) ? v : d);

/** Base of scalers, imputer and clipper: fit on a table, then transform tables with the same features. */
export abstract class Transformer {
  nFeatures: number | null = null;
  protected params: Record<string, Float64Array> = {};
  /** Fingerprints of the rows this was fitted on (sorted on first use by kn.data.leakageReport). @internal */
  fittedRows: Float64Array | null = null;
  private sortedRows = false;
  /** @internal the fingerprints, sorted (once) for binary search */
  sortedFingerprints(): Float64Array | null {
    if (this.fittedRows && !this.sortedRows) {
      this.fittedRows.sort();
      this.sortedRows = true;
    }
    return this.fittedRows;
  }
  abstract readonly kind: string;
  protected abstract computeParams(x: Tensor): Record<string, Float64Array>;
  protected abstract apply(x: Tensor): Tensor;
  protected options(): Record<string, unknown> {
    return {};
  }

  /** Learns the per-feature statistics from x [rows, features]; NaN values are ignored. */
  fit(x: Tensor): this {
    const t = assertTable(x, `${this.kind}.fit input`);
    if (t.shape[0] === 0) throw new ValidationError(`${this.kind}.fit needs at least one row`);
    this.params = this.computeParams(t);
    this.nFeatures = t.shape[1]!;
    this.fittedRows = rowFingerprints(t);
    this.sortedRows = false;
    return this;
  }
  protected ready(x: Tensor, what: string): Tensor {
    if (this.nFeatures === null)
      throw new ValidationError(`${this.kind} is not fitted: call fit() (on training data only) first`);
    return assertTable(x, `${this.kind}.${what} input`, this.nFeatures);
  }
  /** Applies the fitted transform (NaN stays NaN, except in the imputer). */
  transform(x: Tensor): Tensor {
    const t = this.ready(x, 'transform');
    return noGrad(() => tidy(() => this.apply(t)));
  }
  /** fit(x) then transform(x). */
  fitTransform(x: Tensor): Tensor {
    return this.fit(x).transform(x);
  }
  /** The fitted parameters (per feature). */
  get fitted(): Readonly<Record<string, readonly number[]>> {
    return Object.fromEntries(Object.entries(this.params).map(([k, v]) => [k, Array.from(v)]));
  }
  toJSON(): TransformerJSON {
    if (this.nFeatures === null) throw new ValidationError(`${this.kind} is not fitted; nothing to serialise`);
    return {
      kind: this.kind,
      nFeatures: this.nFeatures,
      params: this.fitted as Record<string, number[]>,
      options: this.options(),
    };
  }
  /** Writes toJSON() to a file, atomically. */
  save(path: string): void {
    checkFilePath(path, `${this.constructor.name}.save`);
    writeFileAtomicSync(path, [new TextEncoder().encode(JSON.stringify(this.toJSON(), null, 1))]);
  }
  /** @internal */
  restore(j: TransformerJSON, keys: readonly string[]): this {
    if (!j || typeof j !== 'object' || j.kind !== this.kind)
      throw new FormatError(`expected a ${this.kind} JSON, got kind ${describe(j?.kind)}`);
    if (!Number.isInteger(j.nFeatures) || j.nFeatures < 1)
      throw new FormatError(`${this.kind} JSON has nFeatures ${describe(j.nFeatures)}`);
    const params: Record<string, Float64Array> = {};
    for (const k of keys) {
      const v = own(j.params as Record<string, unknown> | undefined, k) as (number | null)[] | undefined;
      if (!Array.isArray(v) || v.length !== j.nFeatures || !v.every((x) => typeof x === 'number' || x === null)) {
        throw new FormatError(`${this.kind} JSON: params.${k} must be ${j.nFeatures} numbers`);
      }
      params[k] = Float64Array.from(v, (x) => (x === null ? NaN : x));
    }
    this.params = params;
    this.nFeatures = j.nFeatures;
    return this;
  }
}

/** Scalers: y = (x - center) / scale per feature, with an inverse. */
abstract class AffineScaler extends Transformer {
  protected apply(x: Tensor): Tensor {
    return div(sub(x, asRow(this.params.center!, x)), asRow(this.params.scale!, x));
  }
  /** Maps scaled values back: x = y * scale + center. */
  inverseTransform(y: Tensor): Tensor {
    const t = this.ready(y, 'inverseTransform');
    return noGrad(() => tidy(() => add(mul(t, asRow(this.params.scale!, t)), asRow(this.params.center!, t))));
  }
}

/**
 * Standardises each feature to mean 0 and standard deviation 1 (population std, like scikit-learn); a
 * constant feature gets scale 1.
 * @example new kn.data.StandardScaler().fit(kn.tensor([[1], [3]])).fitted.scale // [1]
 */
export class StandardScaler extends AffineScaler {
  readonly kind = 'StandardScaler';
  constructor(readonly opts: { withMean?: boolean; withStd?: boolean } = {}) {
    super();
    checkOptions(opts, 'StandardScaler', ['withMean', 'withStd']);
  }
  protected override options(): Record<string, unknown> {
    return { ...this.opts };
  }
  protected computeParams(x: Tensor): Record<string, Float64Array> {
    const { mean, variance } = nanMoments(x);
    return {
      center: mean.map((m) => (this.opts.withMean === false ? 0 : finiteOr(m, 0))),
      scale: variance.map((v) => (this.opts.withStd === false || !(v > 0) ? 1 : Math.sqrt(v))),
    };
  }
  static fromJSON(j: TransformerJSON): StandardScaler {
    return new StandardScaler(jsonOptions(j, 'StandardScaler')).restore(j, ['center', 'scale']);
  }
}

/**
 * Maps each feature's [min, max] onto featureRange (default [0, 1]); a constant feature maps to the low end.
 * @example new kn.data.MinMaxScaler().fitTransform(kn.tensor([[0], [5], [10]])).toList() // [[0], [0.5], [1]]
 */
export class MinMaxScaler extends AffineScaler {
  readonly kind = 'MinMaxScaler';
  readonly range: [number, number];
  constructor(opts: { featureRange?: readonly [number, number] } = {}) {
    super();
    checkOptions(opts, 'MinMaxScaler', ['featureRange']);
    const r = opts.featureRange ?? [0, 1];
    if (!Array.isArray(r) || r.length !== 2 || !r.every(Number.isFinite) || !(r[0] < r[1])) {
      throw new ArgumentError(`featureRange must be [low, high] with low < high, got ${describe(opts.featureRange)}`);
    }
    this.range = [r[0], r[1]];
  }
  protected override options(): Record<string, unknown> {
    return { featureRange: this.range };
  }
  protected computeParams(x: Tensor): Record<string, Float64Array> {
    const { min, max } = nanMinMax(x);
    const [lo, hi] = this.range;
    const scale = min.map((m, j) => {
      const d = max[j]! - m;
      return d > 0 ? d / (hi - lo) : 1;
    });
    return { center: min.map((m, j) => finiteOr(m, 0) - lo * scale[j]!), scale, dataMin: min, dataMax: max };
  }
  static fromJSON(j: TransformerJSON): MinMaxScaler {
    return new MinMaxScaler(jsonOptions(j, 'MinMaxScaler') as { featureRange?: [number, number] }).restore(j, [
      'center',
      'scale',
      'dataMin',
      'dataMax',
    ]);
  }
}

/**
 * Centres on the median and scales by the interquartile range (quantileRange, default [25, 75] percent):
 * robust to outliers. A feature with zero IQR gets scale 1.
 * @example new kn.data.RobustScaler().fit(kn.tensor([[1], [2], [3], [4], [100]])).fitted.center // [3]
 */
export class RobustScaler extends AffineScaler {
  readonly kind = 'RobustScaler';
  readonly quantileRange: [number, number];
  constructor(opts: { quantileRange?: readonly [number, number] } = {}) {
    super();
    checkOptions(opts, 'RobustScaler', ['quantileRange']);
    const r = opts.quantileRange ?? [25, 75];
    if (!Array.isArray(r) || r.length !== 2 || !(r[0] >= 0 && r[0] < r[1] && r[1] <= 100)) {
      throw new ArgumentError(
        `quantileRange must be [low, high] percentages with 0 <= low < high <= 100, got ${describe(opts.quantileRange)}`,
      );
    }
    this.quantileRange = [r[0], r[1]];
  }
  protected override options(): Record<string, unknown> {
    return { quantileRange: this.quantileRange };
  }
  protected computeParams(x: Tensor): Record<string, Float64Array> {
    const med = nanQuantiles(x, 0.5);
    const q1 = nanQuantiles(x, this.quantileRange[0] / 100),
      q3 = nanQuantiles(x, this.quantileRange[1] / 100);
    return {
      center: med.map((m) => finiteOr(m, 0)),
      scale: q1.map((a, j) => {
        const d = q3[j]! - a;
        return d > 0 ? d : 1;
      }),
    };
  }
  static fromJSON(j: TransformerJSON): RobustScaler {
    return new RobustScaler(jsonOptions(j, 'RobustScaler') as { quantileRange?: [number, number] }).restore(j, [
      'center',
      'scale',
    ]);
  }
}

/** Imputation strategies. */
export type ImputeStrategy = 'mean' | 'median' | 'mostFrequent' | 'constant';

/**
 * Replaces NaN per feature with the training mean, median, most frequent value (ties: the smallest) or a
 * constant.
 * @example new kn.data.SimpleImputer({ strategy: 'median' }).fitTransform(kn.tensor([[1], [NaN], [5], [2]])).toList() // [[1], [2], [5], [2]]
 */
export class SimpleImputer extends Transformer {
  readonly kind = 'SimpleImputer';
  readonly strategy: ImputeStrategy;
  readonly fillValue: number;
  constructor(opts: { strategy?: ImputeStrategy; fillValue?: number } = {}) {
    super();
    checkOptions(opts, 'SimpleImputer', ['strategy', 'fillValue']);
    this.strategy = opts.strategy ?? 'mean';
    if (!['mean', 'median', 'mostFrequent', 'constant'].includes(this.strategy)) {
      throw new ArgumentError(
        `strategy must be mean, median, mostFrequent or constant; got ${describe(opts.strategy)}`,
      );
    }
    this.fillValue = opts.fillValue ?? 0;
    if (!Number.isFinite(this.fillValue))
      throw new ArgumentError(`fillValue must be a finite number, got ${describe(opts.fillValue)}`);
  }
  protected override options(): Record<string, unknown> {
    return { strategy: this.strategy, fillValue: this.fillValue };
  }
  protected computeParams(x: Tensor): Record<string, Float64Array> {
    const F = x.shape[1]!;
    let fill: Float64Array;
    if (this.strategy === 'constant') fill = new Float64Array(F).fill(this.fillValue);
    else if (this.strategy === 'mean') fill = nanMoments(x).mean;
    else if (this.strategy === 'median') fill = nanQuantiles(x, 0.5);
    else {
      const a = x.toArray() as Float32Array,
        N = x.shape[0]!;
      fill = new Float64Array(F);
      for (let j = 0; j < F; j++) {
        const counts = new Map<number, number>();
        for (let i = 0; i < N; i++) {
          const v = a[i * F + j]!;
          if (!Number.isNaN(v)) counts.set(v, (counts.get(v) ?? 0) + 1);
        }
        let best = NaN,
          bc = 0;
        for (const [v, c] of counts)
          if (c > bc || (c === bc && v < best)) {
            best = v;
            bc = c;
          }
        fill[j] = best;
      }
    }
    const empty = Array.from(fill).findIndex((v) => Number.isNaN(v));
    if (empty >= 0)
      throw new ValidationError(
        `SimpleImputer: feature ${empty} has no observed values to compute a ${this.strategy} from; use strategy 'constant'`,
      );
    return { fill };
  }
  protected apply(x: Tensor): Tensor {
    return where(x.ne(x), asRow(this.params.fill!, x), x);
  }
  static fromJSON(j: TransformerJSON): SimpleImputer {
    return new SimpleImputer(jsonOptions(j, 'SimpleImputer')).restore(j, ['fill']);
  }
}

/**
 * Explicit outlier clipping: learns per-feature bounds at the given quantiles (default 1% and 99%) and clamps
 * values to them (NaN stays NaN).
 * @example new kn.data.OutlierClipper({ lower: 0, upper: 0.5 }).fitTransform(kn.tensor([[1], [2], [3]])).toList() // [[1], [2], [2]]
 */
export class OutlierClipper extends Transformer {
  readonly kind = 'OutlierClipper';
  readonly lower: number;
  readonly upper: number;
  constructor(opts: { lower?: number; upper?: number } = {}) {
    super();
    checkOptions(opts, 'OutlierClipper', ['lower', 'upper']);
    this.lower = opts.lower ?? 0.01;
    this.upper = opts.upper ?? 0.99;
    if (!(this.lower >= 0 && this.lower < this.upper && this.upper <= 1)) {
      throw new ArgumentError(
        `OutlierClipper needs quantiles 0 <= lower < upper <= 1, got ${describe(opts.lower)} and ${describe(opts.upper)}`,
      );
    }
  }
  protected override options(): Record<string, unknown> {
    return { lower: this.lower, upper: this.upper };
  }
  protected computeParams(x: Tensor): Record<string, Float64Array> {
    return { low: nanQuantiles(x, this.lower), high: nanQuantiles(x, this.upper) };
  }
  protected apply(x: Tensor): Tensor {
    const clipped = minimum(maximum(x, asRow(this.params.low!, x)), asRow(this.params.high!, x));
    return where(x.ne(x), x, clipped);
  }
  static fromJSON(j: TransformerJSON): OutlierClipper {
    return new OutlierClipper(jsonOptions(j, 'OutlierClipper')).restore(j, ['low', 'high']);
  }
}

const KINDS = { StandardScaler, MinMaxScaler, RobustScaler, SimpleImputer, OutlierClipper } as const;

/**
 * Rebuilds any transformer from its JSON (or a file written by `save`).
 * @example kn.data.transformerFromJSON(new kn.data.StandardScaler().fit(kn.tensor([[1], [3]])).toJSON()).kind // "StandardScaler"
 */
export function transformerFromJSON(j: TransformerJSON | string): Transformer {
  let obj: TransformerJSON;
  try {
    obj = typeof j === 'string' ? (JSON.parse(j) as TransformerJSON) : j;
  } catch (e) {
    throw new FormatError(`transformer JSON is not valid JSON (${(e as Error).message})`);
  }
  const kind = obj !== null && typeof obj === 'object' && typeof obj.kind === 'string' ? obj.kind : undefined;
  const cls = kind === undefined ? undefined : own(KINDS as Record<string, (typeof KINDS)[keyof typeof KINDS]>, kind);
  if (!cls)
    throw new FormatError(
      `unknown transformer kind ${describe(obj?.kind)}; expected one of ${Object.keys(KINDS).join(', ')}`,
    );
  return cls.fromJSON(obj);
}

/** A transformer JSON's options object (missing means defaults); anything else is a FormatError. */
function jsonOptions(j: TransformerJSON, kind: string): Record<string, unknown> {
  const o = (j as { options?: unknown }).options;
  if (o === undefined) return {};
  if (o === null || typeof o !== 'object' || Array.isArray(o))
    throw new FormatError(`${kind} JSON: options must be an object, got ${describe(o)}`);
  return o as Record<string, unknown>;
}

/** Loads a transformer saved with `save(path)`. */
export function loadTransformer(path: string): Transformer {
  const text = readFileForSync(path, 'loadTransformer').toString('utf8');
  let obj: TransformerJSON;
  try {
    obj = JSON.parse(text);
  } catch {
    throw new FormatError(`${path} is not valid JSON`);
  }
  return transformerFromJSON(obj);
}
