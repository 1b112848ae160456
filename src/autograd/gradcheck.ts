// Finite-difference gradient check. The analytic gradient comes from the inputs' own backend; the numeric
// one from central differences of f evaluated in float64 on the `js` reference backend.
import { getBackend, setBackend } from '../backends/registry.js';
import { ArgumentError, checkOptions, describe } from '../errors.js';
import { tidy } from '../engine/memory.js';
import * as ops from '../ops/index.js';
import { isFloat } from '../tensor/dtype.js';
import { assertTensor, Tensor } from '../tensor/tensor.js';
import { backward, gradients } from './backward.js';

export interface GradcheckOptions {
  /** Finite-difference step (default 1e-6, in float64). */
  eps?: number;
  /** Absolute tolerance (default 1e-6 on js, 1e-3 on float32 backends). */
  atol?: number;
  /** Relative tolerance (default 1e-5 on js, 1e-2 on float32 backends). */
  rtol?: number;
}

export interface GradcheckResult {
  ok: boolean;
  maxAbsErr: number;
  maxRelErr: number;
  worst: { input: number; index: number; analytic: number; numeric: number } | null;
}

/** Deterministic projection weights so non-scalar outputs are checked through sum(f(x) * w). */
function projection(n: number): Float64Array {
  const w = new Float64Array(n);
  for (let i = 0; i < n; i++) w[i] = 0.5 + ((i * 7919) % 13) / 13;
  return w;
}

/**
 * Compares the autograd gradient of `f` at `inputs` with central finite differences.
 * @example kn.gradcheck((x) => x.tanh(), [kn.randn([3])]).ok // true
 */
export function gradcheck(
  f: (...xs: Tensor[]) => Tensor,
  inputs: readonly Tensor[],
  opts: GradcheckOptions = {},
): GradcheckResult {
  if (typeof f !== 'function') throw new ArgumentError(`gradcheck: f must be a function, got ${describe(f)}`);
  if (!Array.isArray(inputs) || inputs.length === 0)
    throw new ArgumentError('gradcheck: inputs must be a non-empty array of tensors');
  checkOptions(opts, 'gradcheck', ['eps', 'atol', 'rtol']);
  inputs.forEach((t, i) => {
    assertTensor(t, `gradcheck input ${i}`);
    if (!isFloat(t.dtype)) throw new ArgumentError(`gradcheck input ${i} must be floating point, got ${t.dtype}`);
  });
  const onJs = inputs[0]!.backend === 'js';
  const eps = opts.eps ?? 1e-6;
  const atol = opts.atol ?? (onJs ? 1e-6 : 1e-3);
  const rtol = opts.rtol ?? (onJs ? 1e-5 : 1e-2);
  for (const [k, v] of Object.entries({ eps, atol, rtol })) {
    if (!(typeof v === 'number' && v >= 0 && Number.isFinite(v)))
      throw new ArgumentError(`gradcheck: ${k} must be a finite number >= 0, got ${describe(v)}`);
  }

  // analytic, on the inputs' backend
  const analytic: Float64Array[] = tidy(() => {
    const leaves = inputs.map((t) => {
      const l = t.detach();
      l.requiresGrad = true;
      return l;
    });
    const out = f(...leaves);
    assertTensor(out, 'gradcheck: the value f returns');
    const w = Tensor.fromHostNumbers(projection(out.size), out.shape, out.backend);
    backward(ops.sum(ops.mul(out, w)));
    const res = leaves.map((l) =>
      Float64Array.from(l.grad ? (l.grad.toArray() as ArrayLike<number>) : new Float64Array(l.size)),
    );
    leaves.forEach((l) => l.dispose());
    return res;
  });

  // numeric, in float64 on js
  const prevBackend = getBackend();
  setBackend('js');
  let maxAbs = 0,
    maxRel = 0,
    ok = true;
  let worst: GradcheckResult['worst'] = null;
  let worstScore = -1;
  try {
    const base = inputs.map((t) => Float64Array.from(t.toArray() as ArrayLike<number>));
    const evalAt = (vals: Float64Array[]): number =>
      tidy(() => {
        const xs = vals.map((v, i) => Tensor.fromHostNumbers(v, inputs[i]!.shape, 'js'));
        const out = f(...xs);
        const w = projection(out.size);
        const o = out.toFloat64Array();
        let s = 0;
        for (let j = 0; j < o.length; j++) s += o[j]! * w[j]!;
        return s;
      });
    for (let i = 0; i < base.length; i++) {
      for (let j = 0; j < base[i]!.length; j++) {
        const x0 = base[i]![j]!;
        base[i]![j] = x0 + eps;
        const fp = evalAt(base);
        base[i]![j] = x0 - eps;
        const fm = evalAt(base);
        base[i]![j] = x0;
        const numeric = (fp - fm) / (2 * eps);
        const a = analytic[i]![j]!;
        const abs = Math.abs(a - numeric);
        const rel = abs / Math.max(Math.abs(numeric), 1e-12);
        const good = abs <= atol + rtol * Math.abs(numeric); // false for NaN
        if (!good) ok = false;
        if (Number.isNaN(abs)) ok = false;
        const score = Number.isNaN(abs) ? Infinity : abs - rtol * Math.abs(numeric);
        if (score > worstScore) {
          worstScore = score;
          worst = { input: i, index: j, analytic: a, numeric };
        }
        if (!(abs <= maxAbs)) maxAbs = abs;
        if (!(rel <= maxRel)) maxRel = rel;
      }
    }
  } finally {
    setBackend(prevBackend);
  }
  return { ok, maxAbsErr: maxAbs, maxRelErr: maxRel, worst };
}

/**
 * Second-order check: the gradient of `<v, d/dx <w, f(x)>>` with respect to the inputs and to the output
 * weights `w` (so the vjps of the backward functions themselves are checked, in both of their arguments),
 * analytic through `createGraph` on the inputs' backend against central differences of the first-order
 * gradient in float64 on the js reference backend. `v` and `w` are fixed projections.
 * @example kn.gradgradcheck((x) => x.tanh(), [kn.randn([3])]).ok // true
 */
export function gradgradcheck(
  f: (...xs: Tensor[]) => Tensor,
  inputs: readonly Tensor[],
  opts: GradcheckOptions = {},
): GradcheckResult {
  if (typeof f !== 'function') throw new ArgumentError(`gradgradcheck: f must be a function, got ${describe(f)}`);
  if (!Array.isArray(inputs) || inputs.length === 0)
    throw new ArgumentError('gradgradcheck: inputs must be a non-empty array of tensors');
  checkOptions(opts, 'gradgradcheck', ['eps', 'atol', 'rtol']);
  inputs.forEach((t, i) => assertTensor(t, `gradgradcheck input ${i}`));
  const n = inputs.length;
  const outShape = tidy(() => [...f(...inputs).shape]);
  const size = outShape.reduce((a, b) => a * b, 1);
  const w = Tensor.fromHostNumbers(
    projection(size).map((v) => v - 0.9),
    outShape,
    inputs[0]!.backend,
  );
  // F(x, w) = sum_i <v_i, d/dx_i <w, f(x)>>
  const F = (...xw: Tensor[]): Tensor => {
    const xs = xw.slice(0, n).map((x) => {
      if (x.requiresGrad) return x;
      const l = x.detach();
      l.requiresGrad = true;
      return l;
    });
    const out = f(...xs);
    const gs = gradients(ops.sum(ops.mul(out, xw[n]!)), xs, undefined, { createGraph: true });
    let total: Tensor | null = null;
    gs.forEach((g, i) => {
      const v = Tensor.fromHostNumbers(projection(g.size).reverse(), g.shape, g.backend);
      const term = ops.sum(ops.mul(g, v));
      total = total ? ops.add(total, term) : term;
    });
    return total!;
  };
  try {
    return gradcheck(F, [...inputs, w], opts);
  } finally {
    w.dispose();
  }
}
