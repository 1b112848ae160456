// Shared machinery of kn.explain and kn.evaluate's model-based checks (not part of the public API): host
// copies of inputs, target selection, batched forwards and input gradients on host rows, seeded normals, a
// small dense solver.
import { grad } from '../autograd/backward.js';
import { ArgumentError, ShapeError, ValidationError, describe } from '../errors.js';
import { hostValues, runPredictor, type Predictor, type Values } from '../evaluate/host.js';
import { inEvalMode } from '../nn/module.js';
import { tensor } from '../ops/creation.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';

/** The output to explain: one class index for every example, or one per example. */
export type Target = number | ArrayLike<number>;

/** Rows the attribution methods send through the model at once (steps x examples, samples x background). */
export const DEFAULT_MAX_ROWS = 512;

export function inputOf(x: Tensor, what: string): { v: Float32Array; n: number; shape: number[]; per: number } {
  if (!isTensor(x)) throw new ArgumentError(`${what} must be a Tensor [N, ...features], got ${describe(x)}`);
  x.assertAlive(what);
  if (x.ndim < 2) throw new ShapeError(`${what} must have a batch dimension [N, ...features], got shape [${x.shape}]`);
  const v = Float32Array.from(x.toArray() as ArrayLike<number>);
  const n = x.shape[0]!;
  return { v, n, shape: [...x.shape], per: n ? v.length / n : 0 };
}

export function targetsOf(target: Target | undefined, n: number, fallback: () => Int32Array): Int32Array {
  if (target === undefined) return fallback();
  if (typeof target === 'number') {
    if (!Number.isInteger(target) || target < 0)
      throw new ArgumentError(`target must be a class index (a non-negative integer), got ${target}`);
    return new Int32Array(n).fill(target);
  }
  if (target === null || typeof target !== 'object' || target.length !== n)
    throw new ArgumentError(`target must be a class index or one per example (${n}), got ${describe(target)}`);
  const t = Int32Array.from(target);
  for (let i = 0; i < n; i++)
    if (!Number.isInteger(target[i]) || target[i]! < 0)
      throw new ArgumentError(`target[${i}] = ${target[i]} is not a class index`);
  return t;
}

/** Output columns of a model output [M], [M, 1] or [M, C]. */
export function outputCols(out: Tensor): number {
  if (out.ndim === 1) return 1;
  if (out.ndim === 2) return out.shape[1]!;
  throw new ShapeError(`the model must return [N] or [N, C] outputs to be explained, got shape [${out.shape}]`);
}

/** The selected output of every row, on the host. */
export function selectHost(out: Tensor, t: Int32Array | null): Float64Array {
  const c = outputCols(out);
  const v = out.toArray() as ArrayLike<number>;
  const m = out.shape[0]!;
  const r = new Float64Array(m);
  for (let i = 0; i < m; i++) {
    const k = t ? t[i % t.length]! : 0;
    if (k >= c) throw new ValidationError(`target class ${k} but the model has ${c} output(s)`);
    r[i] = v[i * c + (c === 1 ? 0 : k)]!;
  }
  return r;
}

/** Forward on host rows; returns the selected output per row. */
export function forwardRows(model: Predictor, v: Float32Array, shape: number[], t: Int32Array | null): Float64Array {
  const x = tensor(v, shape);
  try {
    const out = runPredictor(model, x);
    try {
      return selectHost(out, t);
    } finally {
      out.dispose();
    }
  } finally {
    x.dispose();
  }
}

/** d(sum of the selected outputs)/d(input) for host rows (rows are independent: the model must not mix the batch). */
export function gradRows(model: Predictor, v: Float32Array, shape: number[], t: Int32Array | null): Float32Array {
  return gradMaskRows(model, v, shape, (m, c) => {
    const mask = new Float32Array(m * c);
    for (let i = 0; i < m; i++) {
      const k = t ? t[i % t.length]! : 0;
      if (k >= c) throw new ValidationError(`target class ${k} but the model has ${c} outputs`);
      mask[i * c + k] = 1;
    }
    return mask;
  });
}

/**
 * d(sum over rows and columns of mask * output)/d(input) for host rows: `mask(m, c)` gives the weight of every output
 * (a one-hot target, or +1/-1 for a margin). A single-output model ignores the mask and sums its outputs.
 */
export function gradMaskRows(
  model: Predictor,
  v: Float32Array,
  shape: number[],
  mask: (rows: number, cols: number) => Float32Array,
): Float32Array {
  return inputGrad(model, v, shape, (out) => {
    const c = outputCols(out);
    if (c === 1) return out.sum();
    const m = shape[0]!;
    return out.mul(tensor(mask(m, c), [m, c])).sum();
  });
}

/**
 * d(objective(model output))/d(input) for host rows, the model in eval mode (restored afterwards). `objective`
 * turns the output into a scalar (a masked sum, a loss).
 */
export function inputGrad(
  model: Predictor,
  v: Float32Array,
  shape: number[],
  objective: (out: Tensor) => Tensor,
): Float32Array {
  const run = (): Float32Array => {
    const call = typeof model === 'function' ? model : (z: Tensor) => model.call(z);
    const x = tensor(v, shape);
    try {
      const g = grad((z: Tensor) => objective(call(z)))(x) as Tensor;
      try {
        return Float32Array.from(g.toArray() as ArrayLike<number>);
      } finally {
        g.dispose();
      }
    } finally {
      x.dispose();
    }
  };
  return typeof model === 'function' ? run() : inEvalMode(model, run);
}

/** The index of the largest of the `c` values of row `row` (the first on ties). */
export function rowArgmax(o: ArrayLike<number>, c: number, row = 0): number {
  let b = 0;
  for (let j = 1; j < c; j++) if (o[row * c + j]! > o[row * c + b]!) b = j;
  return b;
}

/** The predicted class of every row (argmax; 0 for a single output). */
export function predictedClasses(model: Predictor, v: Float32Array, shape: number[]): Int32Array {
  const x = tensor(v, shape);
  try {
    const out = runPredictor(model, x);
    try {
      const c = outputCols(out);
      const o = out.toArray() as ArrayLike<number>;
      const r = new Int32Array(shape[0]!);
      if (c > 1) for (let i = 0; i < r.length; i++) r[i] = rowArgmax(o, c, i);
      return r;
    } finally {
      out.dispose();
    }
  } finally {
    x.dispose();
  }
}

export function positiveInt(v: unknown, what: string, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max)
    throw new ArgumentError(`${what} must be an integer in [1, ${max}], got ${describe(v)}`);
  return v;
}

/** Standard normal draws from a seeded host generator (Box-Muller). */
export function normals(count: number, rng: () => number): Float64Array {
  const out = new Float64Array(count);
  for (let i = 0; i < count; i += 2) {
    const u = Math.max(rng(), 1e-300),
      w = rng();
    const r = Math.sqrt(-2 * Math.log(u));
    out[i] = r * Math.cos(2 * Math.PI * w);
    if (i + 1 < count) out[i + 1] = r * Math.sin(2 * Math.PI * w);
  }
  return out;
}

/**
 * Model outputs for host rows [M, ...] as a flat host array and its column count.
 */
export function outputsOf(model: Predictor, v: Float32Array, shape: number[]): { o: Float64Array; c: number } {
  const x = tensor(v, shape);
  try {
    const out = runPredictor(model, x);
    try {
      const c = outputCols(out);
      return { o: Float64Array.from(out.toArray() as ArrayLike<number>), c };
    } finally {
      out.dispose();
    }
  } finally {
    x.dispose();
  }
}

/** Solves A x = b (A symmetric positive semi-definite, small) by Gaussian elimination with partial pivoting. */
export function solve(a: Float64Array, b: Float64Array, k: number): Float64Array {
  const m = Float64Array.from(a),
    r = Float64Array.from(b);
  let scale = 0;
  for (let i = 0; i < k; i++) scale = Math.max(scale, Math.abs(m[i * k + i]!));
  for (let i = 0; i < k; i++) m[i * k + i]! += 1e-12 * (scale || 1); // a whisper of ridge for rank-deficient designs
  for (let c = 0; c < k; c++) {
    let p = c;
    for (let i = c + 1; i < k; i++) if (Math.abs(m[i * k + c]!) > Math.abs(m[p * k + c]!)) p = i;
    if (p !== c) {
      for (let j = 0; j < k; j++) [m[c * k + j], m[p * k + j]] = [m[p * k + j]!, m[c * k + j]!];
      [r[c], r[p]] = [r[p]!, r[c]!];
    }
    const d = m[c * k + c]!;
    if (d === 0) continue;
    for (let i = c + 1; i < k; i++) {
      const f = m[i * k + c]! / d;
      if (f === 0) continue;
      for (let j = c; j < k; j++) m[i * k + j]! -= f * m[c * k + j]!;
      r[i]! -= f * r[c]!;
    }
  }
  const x = new Float64Array(k);
  for (let i = k - 1; i >= 0; i--) {
    let s = r[i]!;
    for (let j = i + 1; j < k; j++) s -= m[i * k + j]! * x[j]!;
    x[i] = m[i * k + i]! === 0 ? 0 : s / m[i * k + i]!;
  }
  return x;
}

export function tabular(
  x: Tensor | ArrayLike<number> | readonly (readonly number[])[],
  what: string,
): { v: Float64Array; n: number; f: number } {
  const h = hostValues(x as Values, what);
  if (h.shape.length === 1) return { v: h.v, n: 1, f: h.shape[0]! };
  if (h.shape.length !== 2)
    throw new ShapeError(`${what} must be one example [F] or rows [N, F], got shape [${h.shape}]`);
  return { v: h.v, n: h.shape[0]!, f: h.shape[1]! };
}
