// Categorical encoders (scikit-learn's OneHotEncoder, OrdinalEncoder and TargetEncoder): fitted on the
// training rows of named columns (any TableLike), then applied to new rows with explicit handling of unseen
// and missing categories, and saved as JSON to ship next to a model. Category values come from data, so they
// live in Maps and arrays, never as keys of ordinary objects.
import { ArgumentError, FormatError, ValidationError, checkOptions, describe } from '../errors.js';
import { tensor } from '../ops/creation.js';
import { checkFilePath, readFileForSync, writeFileAtomicSync } from '../io/atomic.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';
import { columnsOf, type Column, type TableLike } from './columns.js';
import { murmur3 } from './hash.js';

/** A category's key: the value as text (null = missing). */
const keyOf = (v: number | string | boolean | null): string | null => (v === null ? null : String(v));

/** The JSON form of a fitted encoder. */
export interface EncoderJSON {
  kind: 'OneHotEncoder' | 'OrdinalEncoder' | 'TargetEncoder' | 'HashingEncoder';
  /** [column, categories in code order] */
  columns: [string, string[]][];
  /** TargetEncoder: [column, per-category encoded value] plus the prior */
  values?: [string, number[]][];
  prior?: number;
  options: Record<string, unknown>;
}

/** Shared by the encoders: the fitted columns and their categories (in code order). */
abstract class CategoricalEncoder {
  abstract readonly kind: EncoderJSON['kind'];
  protected cats = new Map<string, string[]>();
  protected index = new Map<string, Map<string, number>>();

  /** The fitted columns, in order. */
  get columns(): string[] {
    return [...this.cats.keys()];
  }
  /** The categories of a fitted column, in code order. */
  categories(column: string): string[] {
    const c = this.cats.get(column);
    if (!c) throw new ArgumentError(`${this.kind} has no fitted column ${describe(column)}`);
    return [...c];
  }
  /** Learns each column's categories (sorted) from the training rows; missing values are not categories. */
  protected learn(cols: Column[], minFrequency = 1): void {
    if (cols.length === 0) throw new ValidationError(`${this.kind}.fit needs at least one column`);
    this.cats.clear();
    this.index.clear();
    for (const c of cols) {
      const counts = new Map<string, number>();
      for (const v of Array.from(c.values)) {
        const k = keyOf(v);
        if (k !== null) counts.set(k, (counts.get(k) ?? 0) + 1);
      }
      const keep = [...counts.entries()].filter(([, n]) => n >= minFrequency).map(([k]) => k);
      keep.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      this.set(c.name, keep);
    }
  }
  protected set(name: string, categories: string[]): void {
    this.cats.set(name, categories);
    this.index.set(name, new Map(categories.map((k, i) => [k, i])));
  }
  /** The fitted columns of a table to transform, in fit order, with the row count. */
  protected read(table: TableLike, what: string): { cols: Column[]; n: number } {
    if (this.cats.size === 0)
      throw new ValidationError(`${this.kind} is not fitted: call fit() on training rows first`);
    const all = columnsOf(table, `${this.kind}.${what}`);
    const by = new Map(all.map((c) => [c.name, c]));
    const cols = this.columns.map((name) => {
      const c = by.get(name);
      if (!c) throw new ValidationError(`${this.kind}.${what}: column ${describe(name)} is missing from the table`);
      return c;
    });
    const n = cols[0]!.values.length;
    for (const c of cols)
      if (c.values.length !== n)
        throw new ValidationError(`${this.kind}.${what}: columns have different lengths (${n} and ${c.values.length})`);
    return { cols, n };
  }
  /** The code of a value in a column: a category index, -1 unseen, -2 missing. */
  protected code(column: string, v: number | string | boolean | null): number {
    const k = keyOf(v);
    if (k === null) return -2;
    return this.index.get(column)!.get(k) ?? -1;
  }
  protected baseJSON(options: Record<string, unknown>): EncoderJSON {
    return { kind: this.kind, columns: this.columns.map((c) => [c, this.categories(c)]), options };
  }
  abstract toJSON(): EncoderJSON;
  /** Writes the fitted encoder as JSON (atomically). */
  save(path: string): void {
    checkFilePath(path, `${this.constructor.name}.save`);
    writeFileAtomicSync(path, [new TextEncoder().encode(JSON.stringify(this.toJSON()))]);
  }
}

/** What to do with a category the encoder has not seen (or a missing value). */
export type UnknownPolicy = 'error' | 'ignore';

/**
 * One indicator column per category of each fitted column (float32 [rows, sum of categories]). Unseen and
 * missing values give all zeros (`handleUnknown: 'ignore'`, the default) or a ValidationError ('error').
 * Categories seen fewer than `minFrequency` times in training are treated as unseen.
 * @example new kn.data.OneHotEncoder().fit({ c: ['a', 'b', 'a'] }).transform({ c: ['b', 'z'] }).toList() // [[0, 1], [0, 0]]
 */
export class OneHotEncoder extends CategoricalEncoder {
  readonly kind = 'OneHotEncoder' as const;
  readonly handleUnknown: UnknownPolicy;
  readonly minFrequency: number;
  constructor(opts: { handleUnknown?: UnknownPolicy; minFrequency?: number } = {}) {
    super();
    checkOptions(opts, 'OneHotEncoder', ['handleUnknown', 'minFrequency']);
    this.handleUnknown = policy(opts.handleUnknown ?? 'ignore', 'handleUnknown');
    this.minFrequency = opts.minFrequency ?? 1;
    if (!Number.isInteger(this.minFrequency) || this.minFrequency < 1)
      throw new ArgumentError(`minFrequency must be a positive integer, got ${describe(opts.minFrequency)}`);
  }
  fit(table: TableLike): this {
    this.learn(columnsOf(table, 'OneHotEncoder.fit'), this.minFrequency);
    return this;
  }
  /** The output columns' names, `column=category`. */
  featureNames(): string[] {
    return this.columns.flatMap((c) => this.categories(c).map((k) => `${c}=${k}`));
  }
  transform(table: TableLike): Tensor {
    const { cols, n } = this.read(table, 'transform');
    const widths = cols.map((c) => this.cats.get(c.name)!.length);
    const W = widths.reduce((a, b) => a + b, 0);
    const out = new Float32Array(n * W);
    let off = 0;
    cols.forEach((c, j) => {
      const vals = c.values;
      for (let i = 0; i < n; i++) {
        const k = this.code(c.name, vals[i]!);
        if (k >= 0) out[i * W + off + k] = 1;
        else if (this.handleUnknown === 'error')
          throw new ValidationError(
            `OneHotEncoder: row ${i} of column ${describe(c.name)} has ${k === -2 ? 'a missing value' : `the unseen category ${describe(vals[i])}`}; ` +
              "fit on data that has it, or use handleUnknown: 'ignore'",
          );
      }
      off += widths[j]!;
    });
    return tensor(out, [n, W]);
  }
  /** Rebuilds a fitted OneHotEncoder from its JSON (encoderFromJSON, refusing another kind). */
  static fromJSON(j: EncoderJSON | string): OneHotEncoder {
    return ofKind(encoderFromJSON(j), OneHotEncoder, 'OneHotEncoder');
  }
  toJSON(): EncoderJSON {
    return this.baseJSON({ handleUnknown: this.handleUnknown, minFrequency: this.minFrequency });
  }
}

/**
 * One integer code per column: the category's index in sorted order. `transform` gives float32 codes with
 * `unknownValue` (default -1) for unseen and NaN for missing values; `embeddingCodes` gives int32 codes for
 * nn.Embedding with 0 reserved for unseen or missing and categories from 1, and `cardinalities` the
 * numEmbeddings each column needs.
 * @example new kn.data.OrdinalEncoder().fit({ c: ['b', 'a'] }).transform({ c: ['a', 'b', 'z'] }).toList() // [[0], [1], [-1]]
 */
export class OrdinalEncoder extends CategoricalEncoder {
  readonly kind = 'OrdinalEncoder' as const;
  readonly unknownValue: number;
  constructor(opts: { unknownValue?: number } = {}) {
    super();
    checkOptions(opts, 'OrdinalEncoder', ['unknownValue']);
    this.unknownValue = opts.unknownValue ?? -1;
    if (typeof this.unknownValue !== 'number')
      throw new ArgumentError(`unknownValue must be a number, got ${describe(opts.unknownValue)}`);
  }
  fit(table: TableLike): this {
    this.learn(columnsOf(table, 'OrdinalEncoder.fit'));
    return this;
  }
  private codes(table: TableLike, what: string, map: (k: number) => number, T: 'float32' | 'int32'): Tensor {
    const { cols, n } = this.read(table, what);
    const C = cols.length;
    const out = T === 'int32' ? new Int32Array(n * C) : new Float32Array(n * C);
    cols.forEach((c, j) => {
      for (let i = 0; i < n; i++) out[i * C + j] = map(this.code(c.name, c.values[i]!));
    });
    return tensor(out, [n, C], { dtype: T });
  }
  transform(table: TableLike): Tensor {
    return this.codes(table, 'transform', (k) => (k >= 0 ? k : k === -2 ? NaN : this.unknownValue), 'float32');
  }
  /** int32 codes [rows, columns] for nn.Embedding: 0 = unseen or missing, category i -> i + 1. */
  embeddingCodes(table: TableLike): Tensor {
    return this.codes(table, 'embeddingCodes', (k) => (k >= 0 ? k + 1 : 0), 'int32');
  }
  /** numEmbeddings for each column's Embedding (categories + 1 for unseen/missing). */
  cardinalities(): number[] {
    return this.columns.map((c) => this.cats.get(c)!.length + 1);
  }
  /** Rebuilds a fitted OrdinalEncoder from its JSON (encoderFromJSON, refusing another kind). */
  static fromJSON(j: EncoderJSON | string): OrdinalEncoder {
    return ofKind(encoderFromJSON(j), OrdinalEncoder, 'OrdinalEncoder');
  }
  toJSON(): EncoderJSON {
    return this.baseJSON({ unknownValue: this.unknownValue });
  }
}

/**
 * Target (mean) encoding for regression or binary targets: each category becomes the smoothed mean of y over
 * its rows, (sum + smoothing * prior) / (count + smoothing), where prior is the overall mean. Unseen and missing
 * values get the prior. `fitTransform` encodes the training rows out of fold (each row with statistics from the
 * other folds, shuffled by `seed`), so a row's own target never leaks into its feature; `transform` encodes new
 * rows with statistics from all training rows.
 * @example new kn.data.TargetEncoder({ smoothing: 0 }).fit({ c: ['a', 'a', 'b'] }, [1, 0, 1]).transform({ c: ['a', 'b'] }).toList() // [[0.5], [1]]
 */
export class TargetEncoder extends CategoricalEncoder {
  readonly kind = 'TargetEncoder' as const;
  readonly smoothing: number;
  readonly folds: number;
  readonly seed: number;
  private values = new Map<string, number[]>();
  prior = NaN;
  constructor(opts: { smoothing?: number; folds?: number; seed?: number } = {}) {
    super();
    checkOptions(opts, 'TargetEncoder', ['smoothing', 'folds', 'seed']);
    this.smoothing = opts.smoothing ?? 10;
    this.folds = opts.folds ?? 5;
    this.seed = opts.seed ?? 0;
    if (typeof this.smoothing !== 'number' || !(this.smoothing >= 0) || !Number.isFinite(this.smoothing))
      throw new ArgumentError(`smoothing must be a finite number >= 0, got ${describe(opts.smoothing)}`);
    if (!Number.isInteger(this.folds) || this.folds < 2)
      throw new ArgumentError(`folds must be an integer >= 2, got ${describe(opts.folds)}`);
  }
  /** Learns categories and their smoothed target means from all training rows. */
  fit(table: TableLike, y: Tensor | ArrayLike<number>): this {
    const cols = columnsOf(table, 'TargetEncoder.fit');
    const t = targets(y, cols[0]?.values.length ?? 0);
    this.learn(cols);
    const { values, prior } = this.stats(cols, t, null);
    this.values = values;
    this.prior = prior;
    return this;
  }
  /** fit, then the training rows encoded out of fold (no row sees its own target). */
  fitTransform(table: TableLike, y: Tensor | ArrayLike<number>): Tensor {
    this.fit(table, y);
    const cols = columnsOf(table, 'TargetEncoder.fitTransform');
    const t = targets(y, cols[0]!.values.length);
    const n = t.length,
      C = this.columns.length;
    // seeded fold assignment: a shuffled order cut into `folds` parts
    const order = Array.from({ length: n }, (_, i) => i);
    let s = this.seed >>> 0 || 1;
    for (let i = n - 1; i > 0; i--) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      const j = s % (i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const fold = new Int32Array(n);
    order.forEach((r, k) => (fold[r] = Math.floor((k * this.folds) / n)));
    const out = new Float32Array(n * C);
    const fitted = new Map(this.columns.map((c) => [c, cols.find((x) => x.name === c)!]));
    for (let f = 0; f < this.folds; f++) {
      const { values, prior } = this.stats([...fitted.values()], t, (r) => fold[r] !== f);
      for (let r = 0; r < n; r++) {
        if (fold[r] !== f) continue;
        this.columns.forEach((c, j) => {
          const k = this.code(c, fitted.get(c)!.values[r]!);
          out[r * C + j] = k >= 0 ? values.get(c)![k]! : prior;
        });
      }
    }
    return tensor(out, [n, C]);
  }
  transform(table: TableLike): Tensor {
    const { cols, n } = this.read(table, 'transform');
    const C = cols.length;
    const out = new Float32Array(n * C);
    cols.forEach((c, j) => {
      const v = this.values.get(c.name)!;
      for (let i = 0; i < n; i++) {
        const k = this.code(c.name, c.values[i]!);
        out[i * C + j] = k >= 0 ? v[k]! : this.prior;
      }
    });
    return tensor(out, [n, C]);
  }
  /** Smoothed means per category over the rows `use` accepts (all when null), and their prior. */
  private stats(
    cols: Column[],
    t: Float64Array,
    use: ((row: number) => boolean) | null,
  ): { values: Map<string, number[]>; prior: number } {
    let sum = 0,
      cnt = 0;
    for (let r = 0; r < t.length; r++)
      if (!use || use(r)) {
        sum += t[r]!;
        cnt++;
      }
    const prior = cnt ? sum / cnt : 0;
    const values = new Map<string, number[]>();
    for (const c of cols) {
      const K = this.cats.get(c.name)?.length;
      if (K === undefined) continue;
      const s = new Float64Array(K),
        m = new Float64Array(K);
      for (let r = 0; r < t.length; r++) {
        if (use && !use(r)) continue;
        const k = this.code(c.name, c.values[r]!);
        if (k >= 0) {
          s[k] = s[k]! + t[r]!;
          m[k] = m[k]! + 1;
        }
      }
      values.set(
        c.name,
        Array.from(s, (v, k) =>
          m[k]! + this.smoothing > 0 ? (v + this.smoothing * prior) / (m[k]! + this.smoothing) : prior,
        ),
      );
    }
    return { values, prior };
  }
  /** Rebuilds a fitted TargetEncoder from its JSON (encoderFromJSON, refusing another kind). */
  static fromJSON(j: EncoderJSON | string): TargetEncoder {
    return ofKind(encoderFromJSON(j), TargetEncoder, 'TargetEncoder');
  }
  toJSON(): EncoderJSON {
    return {
      ...this.baseJSON({ smoothing: this.smoothing, folds: this.folds, seed: this.seed }),
      values: this.columns.map((c) => [c, [...this.values.get(c)!]]),
      prior: this.prior,
    };
  }
  /** @internal */
  restore(values: [string, number[]][], prior: number): void {
    this.values = new Map(values);
    this.prior = prior;
  }
}

function policy(v: unknown, what: string): UnknownPolicy {
  if (v !== 'error' && v !== 'ignore')
    throw new ArgumentError(`${what} must be 'error' or 'ignore', got ${describe(v)}`);
  return v;
}

function targets(y: Tensor | ArrayLike<number>, n: number): Float64Array {
  const t = isTensor(y) ? y.toFloat64Array() : Float64Array.from(y as ArrayLike<number>);
  if (t.length !== n) throw new ValidationError(`TargetEncoder: ${t.length} targets for ${n} rows`);
  if (t.some((v) => !Number.isFinite(v))) throw new ValidationError('TargetEncoder: targets must be finite numbers');
  return t;
}

/**
 * The hashing trick (scikit-learn's FeatureHasher): each `column=value` pair is hashed (MurmurHash3 of its
 * UTF-8 text) into one of `nFeatures` float32 columns, with a sign from a second hash (`alternateSign`, the
 * default) so collisions cancel on average. No vocabulary: unseen categories need no handling and memory does not
 * grow with cardinality. Missing values add nothing. `fit` only records the columns to hash.
 * @example new kn.data.HashingEncoder({ nFeatures: 8 }).fit({ c: ['a'] }).transform({ c: ['a', null] }).shape // [2, 8]
 */
export class HashingEncoder extends CategoricalEncoder {
  readonly kind = 'HashingEncoder' as const;
  readonly nFeatures: number;
  readonly alternateSign: boolean;
  constructor(opts: { nFeatures?: number; alternateSign?: boolean } = {}) {
    super();
    checkOptions(opts, 'HashingEncoder', ['nFeatures', 'alternateSign']);
    this.nFeatures = opts.nFeatures ?? 1024;
    if (!Number.isInteger(this.nFeatures) || this.nFeatures < 1 || this.nFeatures > 1 << 24)
      throw new ArgumentError(`nFeatures must be an integer in [1, 2^24], got ${describe(opts.nFeatures)}`);
    this.alternateSign = opts.alternateSign ?? true;
    if (typeof this.alternateSign !== 'boolean')
      throw new ArgumentError(`alternateSign must be a boolean, got ${describe(opts.alternateSign)}`);
  }
  fit(table: TableLike): this {
    const cols = columnsOf(table, 'HashingEncoder.fit');
    if (cols.length === 0) throw new ValidationError('HashingEncoder.fit needs at least one column');
    this.cats.clear();
    this.index.clear();
    for (const c of cols) this.set(c.name, []);
    return this;
  }
  transform(table: TableLike): Tensor {
    const { cols, n } = this.read(table, 'transform');
    const F = this.nFeatures;
    const out = new Float32Array(n * F);
    for (const c of cols) {
      const memo = new Map<string, number>();
      for (let i = 0; i < n; i++) {
        const k = keyOf(c.values[i]!);
        if (k === null) continue;
        let slot = memo.get(k);
        if (slot === undefined) {
          const text = `${c.name}=${k}`;
          const h = murmur3(text);
          const sign = this.alternateSign && (murmur3(text, 0x5bd1e995) & 1) === 1 ? -1 : 1;
          slot = sign * ((h % F) + 1);
          memo.set(k, slot);
        }
        out[i * F + Math.abs(slot) - 1]! += Math.sign(slot);
      }
    }
    return tensor(out, [n, F]);
  }
  /** Rebuilds a fitted HashingEncoder from its JSON (encoderFromJSON, refusing another kind). */
  static fromJSON(j: EncoderJSON | string): HashingEncoder {
    return ofKind(encoderFromJSON(j), HashingEncoder, 'HashingEncoder');
  }
  toJSON(): EncoderJSON {
    return this.baseJSON({ nFeatures: this.nFeatures, alternateSign: this.alternateSign });
  }
}

/** `e` as an encoder of class `cls`, or a FormatError saying which kind the JSON held. */
function ofKind<T>(e: object, cls: abstract new (...a: never[]) => T, kind: string): T {
  if (!(e instanceof cls))
    throw new FormatError(`${kind}.fromJSON: the JSON holds a ${(e as { kind?: string }).kind}, not a ${kind}`);
  return e;
}

/**
 * Rebuilds a fitted encoder from its JSON (the object toJSON returns, or its text); malformed input throws
 * FormatError naming the field.
 * @example kn.data.encoderFromJSON(new kn.data.OrdinalEncoder().fit({ c: ['x'] }).toJSON()).columns // ["c"]
 */
export function encoderFromJSON(
  j: EncoderJSON | string,
): OneHotEncoder | OrdinalEncoder | TargetEncoder | HashingEncoder {
  let o: unknown = j;
  if (typeof j === 'string') {
    try {
      o = JSON.parse(j);
    } catch (e) {
      throw new FormatError(`encoder JSON: not valid JSON (${(e as Error).message})`);
    }
  }
  const v = o as Partial<EncoderJSON>;
  if (v === null || typeof v !== 'object') throw new FormatError(`encoder JSON must be an object, got ${describe(o)}`);
  const opts = (v.options ?? {}) as Record<string, unknown>;
  const enc =
    v.kind === 'OneHotEncoder'
      ? new OneHotEncoder(opts as { handleUnknown?: UnknownPolicy; minFrequency?: number })
      : v.kind === 'OrdinalEncoder'
        ? new OrdinalEncoder(opts as { unknownValue?: number })
        : v.kind === 'TargetEncoder'
          ? new TargetEncoder(opts as { smoothing?: number; folds?: number; seed?: number })
          : v.kind === 'HashingEncoder'
            ? new HashingEncoder(opts as { nFeatures?: number; alternateSign?: boolean })
            : null;
  if (!enc) throw new FormatError(`encoder JSON: unknown kind ${describe(v.kind)}`);
  const cols = v.columns;
  const pair = (p: unknown, kind: 'string' | 'number'): p is [string, unknown[]] =>
    Array.isArray(p) &&
    p.length === 2 &&
    typeof p[0] === 'string' &&
    Array.isArray(p[1]) &&
    p[1].every((x) => typeof x === kind);
  if (!Array.isArray(cols) || cols.length === 0 || !cols.every((p) => pair(p, 'string')))
    throw new FormatError("encoder JSON: 'columns' must be a non-empty list of [name, categories[]]");
  for (const [name, cats] of cols) (enc as unknown as { set(n: string, c: string[]): void }).set(name, cats);
  if (enc instanceof TargetEncoder) {
    const vals = v.values;
    if (!Array.isArray(vals) || !vals.every((p) => pair(p, 'number')) || typeof v.prior !== 'number')
      throw new FormatError("encoder JSON: a TargetEncoder needs 'values' ([name, number[]]) and 'prior'");
    vals.forEach(([name, xs], i) => {
      if (name !== cols[i]?.[0] || xs.length !== cols[i]![1].length)
        throw new FormatError(`encoder JSON: values for ${describe(name)} do not match its categories`);
    });
    enc.restore(vals, v.prior);
  }
  return enc;
}

/** Reads an encoder saved with `save`. */
export function loadEncoder(path: string): OneHotEncoder | OrdinalEncoder | TargetEncoder | HashingEncoder {
  return encoderFromJSON(readFileForSync(path, 'loadEncoder').toString('utf8'));
}
