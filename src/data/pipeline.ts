// ColumnPipeline (scikit-learn's ColumnTransformer + Pipeline): named groups of raw columns, each through its own
// steps (an encoder or calendar step on the raw values, then scalers and imputers on numbers), fitted on training
// rows only and concatenated into one float32 feature matrix. It saves as one JSON file; `kiln serve --pipeline`
// applies it to the raw fields of each request, so serving takes the same records as the training data. It
// records fingerprints of the raw rows it was fitted on, for kn.data.leakageReport.
import { tidy } from '../engine/memory.js';
import { ArgumentError, FormatError, ShapeError, ValidationError, checkOptions, describe } from '../errors.js';
import { checkFilePath, readFileForSync, writeFileAtomicSync } from '../io/atomic.js';
import { concat } from '../ops/movement.js';
import { tensor } from '../ops/creation.js';
import { nameRecord } from '../records.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';
import { columnsOf, type Column, type TableLike } from './columns.js';
import {
  HashingEncoder,
  OneHotEncoder,
  OrdinalEncoder,
  TargetEncoder,
  encoderFromJSON,
  type EncoderJSON,
} from './encoders.js';
import { tableRowFingerprints } from './hash.js';
import { Transformer, transformerFromJSON, type TransformerJSON } from './scalers.js';
import { calendarFeatures, type CalendarPart } from './time.js';

type Encoder = OneHotEncoder | OrdinalEncoder | TargetEncoder | HashingEncoder;

/**
 * A pipeline step that turns one timestamp column (epoch ms, Dates or ISO-8601 strings) into calendar features
 * (kn.data.calendarFeatures with these options).
 * @example new kn.data.CalendarStep({ parts: ['month'] }).parts // ["month"]
 */
export class CalendarStep {
  readonly kind = 'CalendarStep' as const;
  readonly parts: readonly CalendarPart[] | undefined;
  readonly cyclical: boolean;
  readonly timeZone: string;
  constructor(opts: { parts?: readonly CalendarPart[]; cyclical?: boolean; timeZone?: string } = {}) {
    checkOptions(opts, 'CalendarStep', ['parts', 'cyclical', 'timeZone']);
    this.parts = opts.parts ? [...opts.parts] : undefined;
    this.cyclical = opts.cyclical ?? false;
    this.timeZone = opts.timeZone ?? 'UTC';
    calendarFeatures([0], { parts: this.parts, cyclical: this.cyclical, timeZone: this.timeZone }); // checks options
  }
  /** Features of a column of timestamps. */
  apply(values: ArrayLike<number | string | boolean | null>, column: string): { x: Tensor; names: string[] } {
    const ms = Array.from(values, (v, i) => {
      if (v === null) return null;
      if (typeof v === 'number') return v;
      const t = typeof v === 'string' ? Date.parse(v) : NaN;
      if (Number.isNaN(t))
        throw new ValidationError(
          `column '${column}' row ${i}: ${describe(v)} is not a timestamp (epoch ms or ISO-8601)`,
        );
      return t;
    });
    const r = calendarFeatures(ms, { parts: this.parts, cyclical: this.cyclical, timeZone: this.timeZone });
    return { x: r.x, names: r.names.map((n) => `${column}.${n}`) };
  }
  toJSON(): { kind: 'CalendarStep'; options: Record<string, unknown> } {
    return { kind: 'CalendarStep', options: { parts: this.parts, cyclical: this.cyclical, timeZone: this.timeZone } };
  }
}

/** A step of a group: a first step on raw values (encoder or calendar), or a numeric transformer. */
export type PipelineStep = Transformer | Encoder | CalendarStep;

/** A named group: raw columns and the steps they go through (none: the numeric columns as they are). */
export interface ColumnGroup {
  name: string;
  columns: readonly string[];
  steps?: readonly PipelineStep[];
}

/** The JSON form of a fitted pipeline. */
export interface PipelineJSON {
  kind: 'ColumnPipeline';
  version: 1;
  groups: {
    name: string;
    columns: string[];
    steps: (TransformerJSON | EncoderJSON | ReturnType<CalendarStep['toJSON']>)[];
    features: string[];
  }[];
}

const isEncoder = (s: unknown): s is Encoder =>
  s instanceof OneHotEncoder ||
  s instanceof OrdinalEncoder ||
  s instanceof TargetEncoder ||
  s instanceof HashingEncoder;

/**
 * Named groups of raw columns, each through its steps, concatenated into one float32 matrix [rows, features].
 * @example const p = new kn.data.ColumnPipeline([{ name: 'num', columns: ['a'], steps: [new kn.data.StandardScaler()] }, { name: 'cat', columns: ['c'], steps: [new kn.data.OneHotEncoder()] }]); p.fit({ a: [1, 3], c: ['x', 'y'] }).transform({ a: [2], c: ['y'] }).toList() // [[0, 0, 1]]
 */
export class ColumnPipeline {
  readonly groups: readonly { name: string; columns: string[]; steps: PipelineStep[] }[];
  private features: string[][] | null = null;
  private fitted: Float64Array | null = null;

  constructor(groups: readonly ColumnGroup[]) {
    if (!Array.isArray(groups) || groups.length === 0)
      throw new ArgumentError(
        `ColumnPipeline takes a non-empty list of { name, columns, steps }, got ${describe(groups)}`,
      );
    const names = new Set<string>();
    this.groups = groups.map((g, k) => {
      if (g === null || typeof g !== 'object' || typeof g.name !== 'string' || g.name === '')
        throw new ArgumentError(`group ${k} needs a name, got ${describe(g)}`);
      if (names.has(g.name)) throw new ArgumentError(`two groups are named ${JSON.stringify(g.name)}`);
      names.add(g.name);
      const given: unknown = g.columns;
      if (!Array.isArray(given) || given.length === 0 || given.some((c) => typeof c !== 'string'))
        throw new ArgumentError(
          `group '${g.name}' columns must be a non-empty list of names, got ${describe(g.columns)}`,
        );
      const steps = [...(g.steps ?? [])];
      steps.forEach((s, i) => {
        const first = isEncoder(s) || s instanceof CalendarStep;
        if (!first && !(s instanceof Transformer))
          throw new ArgumentError(
            `group '${g.name}' step ${i} is not a kn.data encoder, CalendarStep or scaler: ${describe(s)}`,
          );
        if (first && i > 0)
          throw new ArgumentError(`group '${g.name}': ${s.kind} reads raw columns, so it must be the first step`);
        if (s instanceof CalendarStep && g.columns.length !== 1)
          throw new ArgumentError(
            `group '${g.name}': a CalendarStep takes one timestamp column, got ${g.columns.length}`,
          );
      });
      return { name: g.name, columns: [...g.columns], steps };
    });
  }

  /** The raw columns the pipeline reads, in group order. */
  inputColumns(): string[] {
    return [...new Set(this.groups.flatMap((g) => g.columns))];
  }

  /** The output feature names (`group:feature`), after fit. */
  featureNames(): string[] {
    if (!this.features) throw new ValidationError('ColumnPipeline is not fitted: call fit() on training rows first');
    return this.features.flat();
  }

  /** The pipeline's raw columns of a table, by name, checked for presence and equal lengths. */
  private read(table: TableLike, what: string): { cols: Map<string, Column>; n: number } {
    const all = columnsOf(table, `ColumnPipeline.${what}`);
    const by = new Map(all.map((c) => [c.name, c]));
    const cols = new Map<string, Column>();
    let n = -1;
    for (const name of this.inputColumns()) {
      const c = by.get(name);
      if (!c)
        throw new ValidationError(
          `ColumnPipeline.${what}: column ${JSON.stringify(name)} is missing; it needs ${this.inputColumns().join(', ')}`,
        );
      if (n >= 0 && c.values.length !== n)
        throw new ShapeError(
          `ColumnPipeline.${what}: column ${JSON.stringify(name)} has ${c.values.length} rows, others ${n}`,
        );
      n = c.values.length;
      cols.set(name, c);
    }
    return { cols, n };
  }

  /** A group's first stage: the raw columns through its first step (or as numbers). */
  private first(
    g: ColumnPipeline['groups'][number],
    cols: Map<string, Column>,
    n: number,
    mode: 'fit' | 'fitTransform' | 'transform',
    y: Tensor | ArrayLike<number> | undefined,
  ): { x: Tensor; names: string[]; rest: PipelineStep[] } {
    const s = g.steps[0];
    const raw = g.columns.map((c) => cols.get(c)!);
    if (isEncoder(s)) {
      const rec = nameRecord<(string | number | boolean | null)[]>();
      for (const c of raw) rec[c.name] = Array.from(c.values);
      if (mode !== 'transform') {
        if (s instanceof TargetEncoder) {
          if (y === undefined)
            throw new ArgumentError(`group '${g.name}': a TargetEncoder needs the targets: fit(table, y)`);
          if (mode === 'fitTransform')
            return { x: s.fitTransform(rec, y), names: raw.map((c) => `${c.name}`), rest: g.steps.slice(1) };
          s.fit(rec, y);
        } else s.fit(rec);
      }
      const x = s.transform(rec);
      const names =
        s instanceof OneHotEncoder
          ? s.featureNames()
          : s instanceof HashingEncoder
            ? Array.from({ length: s.nFeatures }, (_, i) => `hash${i}`)
            : raw.map((c) => c.name);
      return { x, names, rest: g.steps.slice(1) };
    }
    if (s instanceof CalendarStep) {
      const r = s.apply(raw[0]!.values, raw[0]!.name);
      return { ...r, rest: g.steps.slice(1) };
    }
    const m = new Float32Array(n * raw.length);
    raw.forEach((c, j) => {
      if (c.kind === 'string')
        throw new ValidationError(
          `group '${g.name}': column ${JSON.stringify(c.name)} holds strings; start the group with an encoder`,
        );
      for (let i = 0; i < n; i++) {
        const v = c.values[i];
        m[i * raw.length + j] = v === null || v === undefined ? NaN : Number(v);
      }
    });
    return { x: tensor(m, [n, raw.length]), names: raw.map((c) => c.name), rest: g.steps };
  }

  private run(table: TableLike, mode: 'fit' | 'fitTransform' | 'transform', y?: Tensor | ArrayLike<number>): Tensor {
    if (mode === 'transform' && !this.features)
      throw new ValidationError('ColumnPipeline is not fitted: call fit() on training rows first');
    const { cols, n } = this.read(table, mode);
    if (y !== undefined) {
      const len = isTensor(y) ? y.shape[0] : y.length;
      if (len !== n) throw new ShapeError(`ColumnPipeline.${mode}: ${len} targets for ${n} rows`);
    }
    const names: string[][] = [];
    const out = tidy(() => {
      const parts = this.groups.map((g) => {
        const f = this.first(g, cols, n, mode, y);
        let x = f.x;
        for (const s of f.rest) {
          const t = s as Transformer;
          if (mode !== 'transform') t.fit(x);
          x = t.transform(x);
        }
        names.push(f.names.map((k) => `${g.name}:${k}`));
        return x;
      });
      return parts.length === 1 ? parts[0]! : concat(parts, 1);
    });
    if (mode !== 'transform') {
      this.features = names;
      this.fitted = tableRowFingerprints([...cols.values()], n).sort();
    } else {
      const want = this.features!.reduce((a, g) => a + g.length, 0);
      if (out.shape[1] !== want) {
        out.dispose();
        throw new ShapeError(`ColumnPipeline.transform made ${out.shape[1]} features, the fitted pipeline ${want}`);
      }
    }
    return out;
  }

  /** Fits every step on the training rows (`y` for target encoders). */
  fit(table: TableLike, y?: Tensor | ArrayLike<number>): this {
    this.run(table, 'fit', y).dispose();
    return this;
  }

  /** fit, then the training rows' features (target encoders out of fold: no row sees its own target). */
  fitTransform(table: TableLike, y?: Tensor | ArrayLike<number>): Tensor {
    return this.run(table, 'fitTransform', y);
  }

  /** The features of new rows with the fitted steps. */
  transform(table: TableLike): Tensor {
    return this.run(table, 'transform');
  }

  /**
   * The features of raw records (objects with the pipeline's columns, e.g. JSON request bodies). Only the
   * pipeline's own column names are read from each record; a missing field is a missing value.
   */
  transformRecords(records: readonly unknown[]): Tensor {
    if (!Array.isArray(records) || records.length === 0)
      throw new ArgumentError(`transformRecords takes a non-empty list of records, got ${describe(records)}`);
    const cols = nameRecord<(string | number | boolean | null)[]>();
    for (const c of this.inputColumns()) cols[c] = [];
    records.forEach((r, i) => {
      if (r === null || typeof r !== 'object' || Array.isArray(r))
        throw new ValidationError(`record ${i} must be an object of column values, got ${describe(r)}`);
      for (const c of this.inputColumns()) {
        const v: unknown = Object.prototype.hasOwnProperty.call(r, c) ? (r as Record<string, unknown>)[c] : null;
        if (v !== null && typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean')
          throw new ValidationError(
            `record ${i} field ${JSON.stringify(c)} must be a string, number, boolean or null, got ${describe(v)}`,
          );
        cols[c]!.push(v as string | number | boolean | null);
      }
    });
    // a column whose records are all null has no kind: it is numeric-missing
    return this.transform(cols);
  }

  /** Fingerprints of a table's rows over the pipeline's input columns (what leakageReport compares). @internal */
  rowFingerprints(table: TableLike): Float64Array {
    const { cols, n } = this.read(table, 'rowFingerprints');
    return tableRowFingerprints([...cols.values()], n);
  }

  /** @internal sorted fingerprints of the training rows */
  sortedFingerprints(): Float64Array | null {
    return this.fitted;
  }

  toJSON(): PipelineJSON {
    if (!this.features) throw new ValidationError('ColumnPipeline is not fitted: call fit() on training rows first');
    return {
      kind: 'ColumnPipeline',
      version: 1,
      groups: this.groups.map((g, k) => ({
        name: g.name,
        columns: [...g.columns],
        steps: g.steps.map((s) => s.toJSON()),
        features: [...this.features![k]!],
      })),
    };
  }

  /** Writes the fitted pipeline as one JSON file, atomically. */
  save(path: string): void {
    checkFilePath(path, 'ColumnPipeline.save');
    writeFileAtomicSync(path, [new TextEncoder().encode(JSON.stringify(this.toJSON()))]);
  }

  /** Rebuilds a fitted pipeline from its JSON (object or text); a malformed one is a FormatError. */
  static fromJSON(j: PipelineJSON | string): ColumnPipeline {
    let o: unknown = j;
    if (typeof j === 'string') {
      try {
        o = JSON.parse(j);
      } catch (e) {
        throw new FormatError(`pipeline JSON: not valid JSON (${(e as Error).message})`);
      }
    }
    const p = o as PipelineJSON;
    if (
      p === null ||
      typeof p !== 'object' ||
      p.kind !== 'ColumnPipeline' ||
      p.version !== 1 ||
      !Array.isArray(p.groups)
    )
      throw new FormatError("pipeline JSON: expected { kind: 'ColumnPipeline', version: 1, groups: [...] }");
    const groups: ColumnGroup[] = [];
    const features: string[][] = [];
    p.groups.forEach((g, k) => {
      if (
        g === null ||
        typeof g !== 'object' ||
        !Array.isArray(g.steps) ||
        !Array.isArray(g.features) ||
        !g.features.every((f) => typeof f === 'string')
      )
        throw new FormatError(`pipeline JSON: group ${k} needs name, columns, steps and features`);
      const steps = g.steps.map((s, i): PipelineStep => {
        const kind = (s as { kind?: unknown })?.kind;
        try {
          if (kind === 'CalendarStep') {
            const opts = (s as ReturnType<CalendarStep['toJSON']>).options ?? {};
            return new CalendarStep(opts as ConstructorParameters<typeof CalendarStep>[0]);
          }
          if (
            kind === 'OneHotEncoder' ||
            kind === 'OrdinalEncoder' ||
            kind === 'TargetEncoder' ||
            kind === 'HashingEncoder'
          )
            return encoderFromJSON(s as EncoderJSON);
          return transformerFromJSON(s as TransformerJSON);
        } catch (e) {
          throw new FormatError(`pipeline JSON: group ${k} step ${i}: ${(e as Error).message}`);
        }
      });
      groups.push({ name: g.name, columns: g.columns, steps });
      features.push([...g.features]);
    });
    let pipe: ColumnPipeline;
    try {
      pipe = new ColumnPipeline(groups);
    } catch (e) {
      throw new FormatError(`pipeline JSON: ${(e as Error).message}`);
    }
    pipe.features = features;
    return pipe;
  }
}

/** Reads a pipeline saved with ColumnPipeline.save. */
export function loadPipeline(path: string): ColumnPipeline {
  return ColumnPipeline.fromJSON(readFileForSync(path, 'loadPipeline').toString('utf8'));
}
