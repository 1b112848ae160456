import { quiet } from '../autograd/tape.js';
import { ArgumentError, ValidationError, checkOptions, describe } from '../errors.js';
import { add, div, lt, minimum, mul, sqrt, where } from '../ops/elementwise.js';
import { stack } from '../ops/movement.js';
import { max, sum } from '../ops/reduce.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';

function withGrad(params: Iterable<Tensor>, what: string): Tensor[] {
  if (params === null || typeof (params as Partial<Iterable<Tensor>>)?.[Symbol.iterator] !== 'function')
    throw new ArgumentError(`${what} takes an iterable of tensors (model.parameters()), got ${describe(params)}`);
  return [...params].filter((p) => {
    if (!isTensor(p)) throw new ArgumentError(`${what} takes tensors, got ${describe(p)}`);
    return p.grad !== null;
  });
}

/**
 * The global norm of the gradients of `ps` (at least one), a float32 scalar computed on their backend. Squares
 * are taken in float32: a float16 gradient over 256 squares past float16's range (the norm was Infinity, so
 * clipping skipped exactly the gradients it is for), and bfloat16 squares lose bits.
 */
function normOf(ps: readonly Tensor[], normType: number): Tensor {
  const parts = ps.map((p) => {
    const g = p.grad!.cast('float32');
    return normType === 2 ? sum(mul(g, g)) : max(g.abs());
  });
  const all = stack(parts);
  return normType === 2 ? sqrt(sum(all)) : max(all);
}

function norm(ps: readonly Tensor[], normType: number): number {
  if (ps.length === 0) return 0;
  return quiet(() => normOf(ps, normType).item());
}

/**
 * Clips on the gradients' backend, without waiting for it: scales every gradient by min(1, maxNorm / (norm +
 * 1e-6)) where the norm is finite (by 1, which changes no bit, otherwise) and returns the norm before clipping as a
 * float32 scalar tensor the caller owns, or null when no parameter has a gradient. kn.train.fit clips with this and
 * reads the norm only on the steps it logs.
 * @internal
 */
export function clipGradNormTensor(params: Iterable<Tensor>, maxNorm: number, normType = 2): Tensor | null {
  const ps = withGrad(params, 'clipGradNorm');
  if (ps.length === 0) return null;
  return quiet(() => {
    const total = normOf(ps, normType);
    const coef = where(lt(total, Infinity), minimum(div(maxNorm, add(total, 1e-6)), 1), 1);
    for (const p of ps) p.grad!.assign(mul(p.grad!, coef.cast(p.grad!.dtype)));
    return total;
  });
}

/**
 * The global norm of the gradients of `params` (all of them together; those without a gradient are skipped):
 * the number clipGradNorm compares with its limit, without changing anything. `normType` is 2 (default) or Infinity.
 * @example
 * const w = kn.tensor([3, 4], undefined, { requiresGrad: true });
 * w.mul(w).mul(0.5).sum().backward();
 * kn.optim.gradNorm([w]) // 5
 */
export function gradNorm(params: Iterable<Tensor>, opts: { normType?: number } = {}): number {
  checkOptions(opts, 'gradNorm', ['normType']);
  const normType = opts.normType ?? 2;
  if (normType !== 2 && normType !== Infinity)
    throw new ArgumentError(`gradNorm normType must be 2 or Infinity, got ${describe(normType)}`);
  return norm(withGrad(params, 'gradNorm'), normType);
}

/**
 * Scales the gradients of `params` so that their global norm (over all of them together) is at most `maxNorm`,
 * and returns the norm before clipping. `normType` is 2 (default) or Infinity. A non-finite norm is returned
 * as is (gradients untouched) unless `errorIfNonfinite` is set, which throws instead.
 * @example
 * const w = kn.tensor([3, 4], undefined, { requiresGrad: true });
 * w.mul(w).mul(0.5).sum().backward(); // grad = [3, 4], norm 5
 * kn.optim.clipGradNorm([w], 1) // 5, and w.grad is now [0.6, 0.8]
 */
export function clipGradNorm(
  params: Iterable<Tensor>,
  maxNorm: number,
  opts: { normType?: number; errorIfNonfinite?: boolean } = {},
): number {
  checkOptions(opts, 'clipGradNorm', ['normType', 'errorIfNonfinite']);
  if (typeof maxNorm !== 'number' || !(maxNorm >= 0) || !Number.isFinite(maxNorm)) {
    throw new ArgumentError(`clipGradNorm maxNorm must be a finite number >= 0, got ${describe(maxNorm)}`);
  }
  const normType = opts.normType ?? 2;
  if (normType !== 2 && normType !== Infinity)
    throw new ArgumentError(`clipGradNorm normType must be 2 or Infinity, got ${describe(normType)}`);
  const t = clipGradNormTensor(params, maxNorm, normType);
  if (t === null) return 0;
  let total: number;
  try {
    total = t.item();
  } finally {
    t.dispose();
  }
  if (!Number.isFinite(total) && opts.errorIfNonfinite)
    throw new ValidationError(`the total gradient norm is ${total}; a gradient holds NaN or Inf`);
  return total;
}
