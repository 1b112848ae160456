// Functional transforms over reverse-mode autograd (torch.autograd.functional, JAX's vjp/jvp/jacrev/hessian):
// each takes a function of one tensor or of several, evaluates it at given points and returns tensors.
// Forward mode (jvp) is the double-vjp construction: u -> vjp(f, x, u) is linear in u, so its vjp with
// cotangent v is J v. Everything nests: with { createGraph: true } the results are differentiable again.
import { tidy } from '../engine/memory.js';
import { ArgumentError, ShapeError, checkOptions, describe } from '../errors.js';
import * as ops from '../ops/index.js';
import { sameShape, shapeStr } from '../tensor/shape.js';
import { assertTensor, Tensor } from '../tensor/tensor.js';
import { getRngState, setRngState } from '../ops/random.js';
import { gradients, nestedBackward } from './backward.js';
import { isGradEnabled, probeNoGrad, record, withGrad } from './tape.js';

export type Fn = (...xs: Tensor[]) => Tensor;
/** Options of the functional transforms. */
export interface FunctionalOptions {
  /** keep the results differentiable (for transforms of transforms); default false */
  createGraph?: boolean;
}

function listOf(x: Tensor | readonly Tensor[], what: string): Tensor[] {
  const xs = Array.isArray(x) ? [...(x as readonly Tensor[])] : [x as Tensor];
  if (xs.length === 0) throw new ArgumentError(`${what}: needs at least one input tensor`);
  xs.forEach((t, i) => assertTensor(t, `${what} input ${i}`));
  return xs;
}

/** Inputs as tensors autograd can differentiate: an input that already requires a gradient inside another
 * transform is used as it is (so transforms nest); others get a detached leaf, returned in `owned`. */
function differentiable(xs: readonly Tensor[], owned: Tensor[]): Tensor[] {
  return xs.map((x) => {
    if (x.requiresGrad && isGradEnabled()) return x;
    const l = x.detach();
    if (l.dtype !== 'float32' && l.dtype !== 'float16' && l.dtype !== 'bfloat16')
      throw new ArgumentError(`functional transforms differentiate floating-point inputs, got ${l.dtype}`);
    l.requiresGrad = true;
    owned.push(l);
    return l;
  });
}

function checkFn(f: unknown, what: string): asserts f is Fn {
  if (typeof f !== 'function') throw new ArgumentError(`${what}(f, ...) takes a function, got ${describe(f)}`);
}

function run<T>(x: Tensor | readonly Tensor[], what: string, body: (xs: Tensor[]) => T): T {
  const owned: Tensor[] = [];
  try {
    return tidy(() => body(differentiable(listOf(x, what), owned)));
  } finally {
    for (const l of owned) l.dispose();
  }
}

const single = (x: Tensor | readonly Tensor[]): boolean => !Array.isArray(x);

function checkLike(v: Tensor, like: readonly number[], what: string): void {
  assertTensor(v, what);
  if (!sameShape(v.shape, like))
    throw new ShapeError(`${what} must have shape ${shapeStr(like)}, got ${shapeStr(v.shape)}`);
}

/**
 * Vector-Jacobian product: v^T (df/dx) for each input x, with v shaped like f's output (reverse mode, one pass).
 * Returns a Tensor for one input, Tensor[] for several.
 * @example kn.vjp((x) => x.mul(x), kn.tensor([1, 2]), kn.tensor([1, 1])) // [2, 4]
 */
export function vjp(f: Fn, x: Tensor | readonly Tensor[], v: Tensor, opts: FunctionalOptions = {}): Tensor | Tensor[] {
  checkFn(f, 'vjp');
  checkOptions(opts, 'vjp', ['createGraph']);
  const r = run(x, 'vjp', (xs) => {
    const out = f(...xs);
    assertTensor(out, 'vjp: the value f returns');
    checkLike(v, out.shape, 'vjp: v');
    return gradients(out, xs, v, { createGraph: opts.createGraph === true });
  });
  return single(x) ? r[0]! : r;
}

/**
 * Jacobian-vector product (df/dx) v: the directional derivative of f along v (one tangent per input), shaped
 * like f's output. Computed by the double-vjp construction (two reverse passes).
 * @example kn.jvp((x) => x.mul(x), kn.tensor([1, 2]), kn.tensor([1, 0])) // [2, 0]
 */
export function jvp(
  f: Fn,
  x: Tensor | readonly Tensor[],
  v: Tensor | readonly Tensor[],
  opts: FunctionalOptions = {},
): Tensor {
  checkFn(f, 'jvp');
  checkOptions(opts, 'jvp', ['createGraph']);
  const vs = listOf(v, 'jvp tangents');
  return run(x, 'jvp', (xs) => {
    if (vs.length !== xs.length)
      throw new ArgumentError(`jvp: ${xs.length} inputs need ${xs.length} tangents, got ${vs.length}`);
    vs.forEach((t, i) => checkLike(t, xs[i]!.shape, `jvp: tangent ${i}`));
    const out = f(...xs);
    assertTensor(out, 'jvp: the value f returns');
    const u = ops.zerosLike(out).detach();
    u.requiresGrad = true;
    // g(u) = u^T J, linear in u; d/du <g(u), v> = J v
    const g = gradients(out, xs, u, { createGraph: true });
    let s: Tensor | null = null;
    g.forEach((gi, i) => {
      const term = ops.sum(ops.mul(gi, vs[i]!));
      s = s ? ops.add(s, term) : term;
    });
    const [jv] = gradients(s!, [u], undefined, { createGraph: opts.createGraph === true });
    return jv!;
  });
}

/**
 * The Jacobian of f at x: for each input, a tensor of shape [...output shape, ...input shape] (one reverse pass
 * per output element). Returns a Tensor for one input, Tensor[] for several.
 * @example kn.jacobian((x) => x.mul(2), kn.tensor([1, 2])) // [[2, 0], [0, 2]]
 */
export function jacobian(f: Fn, x: Tensor | readonly Tensor[], opts: FunctionalOptions = {}): Tensor | Tensor[] {
  checkFn(f, 'jacobian');
  checkOptions(opts, 'jacobian', ['createGraph']);
  const r = run(x, 'jacobian', (xs) => {
    const out = f(...xs);
    assertTensor(out, 'jacobian: the value f returns');
    const m = out.size;
    const rows: Tensor[][] = xs.map(() => []);
    for (let i = 0; i < m; i++) {
      const e = Tensor.fromHostNumbers(
        Array.from({ length: m }, (_, k) => (k === i ? 1 : 0)),
        out.shape,
        out.backend,
      );
      const gs = gradients(out, xs, e, { createGraph: opts.createGraph === true, retainGraph: true });
      gs.forEach((g, j) => rows[j]!.push(g));
    }
    return xs.map((xi, j) => ops.reshape(ops.stack(rows[j]!, 0), [...out.shape, ...xi.shape]));
  });
  return single(x) ? r[0]! : r;
}

/**
 * Hessian-vector product of scalar f: (d^2 f / dx^2) v, reverse over reverse, without forming the Hessian.
 * Returns a Tensor for one input, Tensor[] (one per input, v one per input) for several.
 * @example kn.hvp((x) => x.pow(3).sum(), kn.tensor([1, 2]), kn.tensor([1, 1])) // [6, 12]
 */
export function hvp(
  f: Fn,
  x: Tensor | readonly Tensor[],
  v: Tensor | readonly Tensor[],
  opts: FunctionalOptions = {},
): Tensor | Tensor[] {
  checkFn(f, 'hvp');
  checkOptions(opts, 'hvp', ['createGraph']);
  const vs = listOf(v, 'hvp vectors');
  const r = run(x, 'hvp', (xs) => {
    if (vs.length !== xs.length)
      throw new ArgumentError(`hvp: ${xs.length} inputs need ${xs.length} vectors, got ${vs.length}`);
    vs.forEach((t, i) => checkLike(t, xs[i]!.shape, `hvp: vector ${i}`));
    const out = f(...xs);
    assertTensor(out, 'hvp: the value f returns');
    if (out.size !== 1) throw new ShapeError(`hvp needs a scalar-valued f, got shape ${shapeStr(out.shape)}`);
    const g = gradients(out, xs, undefined, { createGraph: true });
    let s: Tensor | null = null;
    g.forEach((gi, i) => {
      const term = ops.sum(ops.mul(gi, vs[i]!));
      s = s ? ops.add(s, term) : term;
    });
    return gradients(s!, xs, undefined, { createGraph: opts.createGraph === true });
  });
  return single(x) ? r[0]! : r;
}

/**
 * The Hessian of scalar f at x: [...x shape, ...x shape] for one input; for several, the blocks H[i][j] of shape
 * [...x_i shape, ...x_j shape].
 * @example kn.hessian((x) => x.pow(3).sum(), kn.tensor([1, 2])) // [[6, 0], [0, 12]]
 */
export function hessian(f: Fn, x: Tensor | readonly Tensor[], opts: FunctionalOptions = {}): Tensor | Tensor[][] {
  checkFn(f, 'hessian');
  checkOptions(opts, 'hessian', ['createGraph']);
  const r = run(x, 'hessian', (xs) => {
    const out = f(...xs);
    assertTensor(out, 'hessian: the value f returns');
    if (out.size !== 1) throw new ShapeError(`hessian needs a scalar-valued f, got shape ${shapeStr(out.shape)}`);
    const g = gradients(out, xs, undefined, { createGraph: true });
    // row block i: the Jacobian of grad_i with respect to every input
    return g.map((gi) => {
      const rows: Tensor[][] = xs.map(() => []);
      for (let k = 0; k < gi.size; k++) {
        const e = Tensor.fromHostNumbers(
          Array.from({ length: gi.size }, (_, q) => (q === k ? 1 : 0)),
          gi.shape,
          gi.backend,
        );
        const hs = gradients(gi, xs, e, { createGraph: opts.createGraph === true, retainGraph: true });
        hs.forEach((h, j) => rows[j]!.push(h));
      }
      return xs.map((xj, j) => ops.reshape(ops.stack(rows[j]!, 0), [...gi.shape, ...xj.shape]));
    });
  });
  return single(x) ? r[0]![0]! : r;
}

/**
 * Activation checkpointing: runs `fn(...inputs)` without keeping its intermediate activations, and recomputes
 * them during backward (with the random state of the first run, so dropout masks are the same). Gradients
 * reach the inputs and every parameter `fn` uses, bit for bit as without checkpointing; the memory held
 * between forward and backward is the inputs and the output only.
 * @example const w = kn.ones([3], { requiresGrad: true }); kn.checkpoint((x) => x.mul(w).tanh(), kn.ones([3])).sum().backward(); w.grad!.shape // [3]
 */
export function checkpoint(fn: (...xs: Tensor[]) => Tensor, ...inputs: Tensor[]): Tensor {
  checkFn(fn, 'checkpoint');
  inputs.forEach((t, i) => assertTensor(t, `checkpoint input ${i}`));
  if (!isGradEnabled()) return fn(...inputs);
  const rng = getRngState();
  const { value: out, differentiable } = probeNoGrad(() => fn(...inputs));
  assertTensor(out, 'checkpoint: the value fn returns');
  if (!differentiable) return out;
  // parameters inside fn require gradients even when no input does: an anchor input makes the node record
  const anchor = inputs.some((t) => t.requiresGrad) ? [] : [ops.zeros([], { requiresGrad: true })];
  return record('checkpoint', out, [...inputs, ...anchor], inputs, (g, saved, needs) => {
    const after = getRngState();
    setRngState(rng);
    try {
      // recompute with a graph: inputs as fresh leaves (their gradients are the vjp's result), parameters used
      // by fn accumulate their .grad directly, as in the plain run
      const leaves = saved.map((t, i) => {
        const l = t.detach();
        l.requiresGrad =
          needs[i] === true && (l.dtype === 'float32' || l.dtype === 'float16' || l.dtype === 'bfloat16');
        return l;
      });
      const y = withGrad(true, () => fn(...leaves));
      if (y.requiresGrad) nestedBackward(y, g, {});
      const grads: (Tensor | null)[] = leaves.map((l) => {
        const gi = l.grad;
        l.grad = null;
        return gi;
      });
      return anchor.length ? [...grads, null] : grads;
    } finally {
      setRngState(after);
    }
  });
}
