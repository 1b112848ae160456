// The bridge between a kiln model and the batcher: rows of float32 values in, rows out. One batch is one
// tensor [B, ...inputShape] and one forward pass, under noGrad and tidy so nothing leaks between requests.
import { noGrad } from '../autograd/tape.js';
import type { BackendName } from '../backends/backend.js';
import { ArgumentError, FormatError, ShapeError, checkOptions, describe } from '../errors.js';
import { tidy } from '../engine/memory.js';
import { Module } from '../nn/module.js';
import { inferInputShape, takesIds } from '../nn/spec.js';
import { tensor } from '../ops/creation.js';
import { reshape } from '../ops/movement.js';
import { shapeStr } from '../tensor/shape.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';
import { own } from '../records.js';

/** A model the server can run: a kn.nn Module (run in eval mode) or a function of a batch tensor. */
export type ServableModel = Module | ((x: Tensor) => Tensor);

/** Something with `transform(x)`, such as a fitted kn.data.StandardScaler, applied to each batch (as a table
 * [B, features]) before the model. */
export interface BatchTransform {
  transform(x: Tensor): Tensor;
}

/** A model that maps float32 rows to float32 rows. */
export interface RowModel {
  readonly inputShape: readonly number[];
  /** The model takes integer token ids (it starts with an Embedding): rows hold integers, run as int32. */
  readonly ids: boolean;
  /** Runs one batch. Every row must have numel(inputShape) values. */
  run(rows: readonly Float32Array[]): Promise<Float32Array[]>;
  /** Shape of one output row, known after the first run. */
  outputShape: readonly number[] | null;
  dispose(): void;
}

export { inferInputShape };

/** Metadata key for a model's per-example input shape (JSON list), written by the demo and `kiln quantize`. */
export const INPUT_SHAPE_METADATA_KEY = 'kiln.input_shape';
/** Metadata key for the input columns a model reads, in order (JSON list of names), as kiln train saves. */
export const FEATURES_METADATA_KEY = 'kiln.features';
/** Metadata key for the class names of a classifier's outputs (JSON list; class i is the i-th), as kiln train saves. */
export const CLASSES_METADATA_KEY = 'kiln.classes';
/** Metadata key for what a model predicts, 'classification' or 'regression', as kiln train saves. */
export const TASK_METADATA_KEY = 'kiln.task';
/** Metadata key for the name of the column a model was trained to predict, as kiln train saves. */
export const LABEL_METADATA_KEY = 'kiln.label';

/**
 * A list of names a model file's metadata holds under `key` (kiln.classes, kiln.features: a JSON array of
 * strings), or null when it has no such key; anything else there is a FormatError naming `where`.
 */
export function metadataNames(metadata: Record<string, string>, key: string, where: string): string[] | null {
  const raw = own(metadata, key);
  if (raw === undefined) return null;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    v = raw;
  }
  if (!Array.isArray(v) || v.some((c) => typeof c !== 'string'))
    throw new FormatError(`${where}: metadata '${key}' must be a JSON array of names, got ${describe(v)}`);
  return v as string[];
}

/**
 * A model's per-example input shape: the one given, else the file metadata's (INPUT_SHAPE_METADATA_KEY; a
 * malformed entry is ignored), else what its first layer implies. Null when none of them says.
 */
export function resolveInputShape(
  model: ServableModel,
  metadata: Record<string, string> = {},
  given?: readonly number[],
): number[] | null {
  if (given) return [...given];
  const raw = own(metadata, INPUT_SHAPE_METADATA_KEY);
  if (raw !== undefined) {
    try {
      const v: unknown = JSON.parse(raw);
      if (Array.isArray(v) && v.length > 0 && v.every((d) => Number.isInteger(d) && d > 0)) return v as number[];
    } catch {
      /* fall through to the layers */
    }
  }
  return inferInputShape(model);
}

/**
 * Wraps a model as a RowModel. `inputShape` is the shape of one example (without the batch dim).
 * @example const r = kn.serve.rowModel((x) => x.mul(2), { inputShape: [2] }); Array.from((await r.run([new Float32Array([1, 2])]))[0]) // [2, 4]
 */
export function rowModel(
  model: ServableModel,
  opts: { inputShape: readonly number[]; backend?: BackendName; transform?: BatchTransform; dispose?: boolean },
): RowModel {
  checkOptions(opts, 'rowModel', ['inputShape', 'backend', 'transform', 'dispose'], 'required');
  if (!(model instanceof Module) && typeof model !== 'function') {
    throw new ArgumentError(
      `a servable model is a kn.nn.Module or a function (x: Tensor) => Tensor, got ${describe(model)}`,
    );
  }
  const inputShape = opts.inputShape;
  if (!Array.isArray(inputShape) || inputShape.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new ArgumentError(
      `inputShape must be a list of positive integers (one example, no batch dim), got ${describe(inputShape)}`,
    );
  }
  if (opts.transform !== undefined && typeof opts.transform?.transform !== 'function') {
    throw new ArgumentError(
      `transform must have a transform(x) method (a fitted kn.data scaler), got ${describe(opts.transform)}`,
    );
  }
  if (model instanceof Module) model.eval();
  const per = inputShape.reduce((a, b) => a * b, 1);
  // a model that starts with an Embedding takes token ids: rows must hold integers, sent as int32
  const ids = model instanceof Module && takesIds(model);
  const forward = model instanceof Module ? (x: Tensor) => model.call(x) : model;
  const r: RowModel = {
    inputShape: [...inputShape],
    ids,
    outputShape: null,
    async run(rows) {
      const B = rows.length;
      const buf = new Float32Array(B * per);
      rows.forEach((row, i) => {
        if (!(row instanceof Float32Array) || row.length !== per) {
          throw new ShapeError(
            `row ${i} has ${row?.length ?? describe(row)} values, expected ${per} (input shape ${shapeStr(inputShape)})`,
          );
        }
        if (ids) {
          const bad = row.findIndex((v) => !Number.isInteger(v));
          if (bad >= 0)
            throw new ArgumentError(`row ${i}: this model takes integer token ids, got ${row[bad]} at position ${bad}`);
        }
        buf.set(row, i * per);
      });
      const y = tidy(() =>
        noGrad(() => {
          const where = opts.backend ? { backend: opts.backend } : {};
          // a scaler sees the batch as a table [B, features], the model sees [B, ...inputShape]
          const x = opts.transform
            ? reshape(opts.transform.transform(tensor(buf, [B, per], where)), [B, ...inputShape])
            : ids
              ? tensor(Int32Array.from(buf), [B, ...inputShape], { ...where, dtype: 'int32' })
              : tensor(buf, [B, ...inputShape], where);
          const out = forward(x);
          if (!isTensor(out)) throw new ArgumentError(`the model returned ${describe(out)}, expected a Tensor`);
          return out;
        }),
      );
      try {
        if (y.ndim < 1 || y.shape[0] !== B) {
          throw new ShapeError(
            `the model returned shape ${shapeStr(y.shape)} for a batch of ${B}; expected [${B}, ...]`,
          );
        }
        const flat = await y.data();
        const outShape = y.shape.slice(1);
        r.outputShape = outShape;
        const k = outShape.reduce((a, b) => a * b, 1);
        const f32 = flat instanceof Float32Array ? flat : Float32Array.from(flat as ArrayLike<number>);
        return Array.from({ length: B }, (_, i) => f32.slice(i * k, (i + 1) * k));
      } finally {
        y.dispose();
      }
    },
    dispose() {
      if (opts.dispose && model instanceof Module) model.dispose();
    },
  };
  return r;
}

/** One measured batch size of tuneBatchSize. */
export interface BatchTiming {
  size: number;
  /** median of the timed runs, ms */
  ms: number;
  rowsPerSecond: number;
}

/**
 * Sizes batches for the device: times the model on zeros at each of `sizes` (one untimed run, then the median
 * of `repeats`) and picks the smallest size that reaches `share` (default 0.9) of the best rows per second.
 * On a GPU throughput keeps rising with the batch long after it stops on a CPU, so the same rule gives large
 * batches there and small ones here.
 */
export async function tuneBatchSize(
  rm: RowModel,
  sizes: readonly number[],
  opts: { repeats?: number; share?: number } = {},
): Promise<{ size: number; timings: BatchTiming[] }> {
  checkOptions(opts, 'tuneBatchSize', ['repeats', 'share']);
  if (rm === null || typeof rm !== 'object' || typeof rm.run !== 'function' || !Array.isArray(rm.inputShape))
    throw new ArgumentError(`tuneBatchSize takes a RowModel (kn.serve.rowModel), got ${describe(rm)}`);
  if (!Array.isArray(sizes) || sizes.length === 0 || sizes.some((n) => !Number.isInteger(n) || n < 1))
    throw new ArgumentError(
      `tuneBatchSize sizes must be a non-empty list of positive integers, got ${describe(sizes)}`,
    );
  const repeats = opts.repeats ?? 3,
    share = opts.share ?? 0.9;
  if (!Number.isInteger(repeats) || repeats < 1)
    throw new ArgumentError(`tuneBatchSize: repeats must be an integer >= 1, got ${describe(opts.repeats)}`);
  if (typeof share !== 'number' || !(share > 0 && share <= 1))
    throw new ArgumentError(`tuneBatchSize: share must be in (0, 1], got ${describe(opts.share)}`);
  const per = rm.inputShape.reduce((a, b) => a * b, 1);
  const timings: BatchTiming[] = [];
  for (const size of sizes) {
    const rows = Array.from({ length: size }, () => new Float32Array(per));
    await rm.run(rows);
    const ms: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const t0 = performance.now();
      await rm.run(rows);
      ms.push(performance.now() - t0);
    }
    const med = ms.sort((a, b) => a - b)[ms.length >> 1]!;
    timings.push({ size, ms: med, rowsPerSecond: (size * 1000) / Math.max(med, 1e-3) });
  }
  const best = Math.max(...timings.map((t) => t.rowsPerSecond));
  return { size: timings.find((t) => t.rowsPerSecond >= share * best)!.size, timings };
}
