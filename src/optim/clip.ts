import { noGrad } from '../autograd/tape.js';
import { tidy } from '../engine/memory.js';
import { ArgumentError, ValidationError, describe } from '../errors.js';
import { mul } from '../ops/elementwise.js';
import { stack } from '../ops/movement.js';
import { max, sum } from '../ops/reduce.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';

function withGrad(params: Iterable<Tensor>, what: string): Tensor[] {
  return [...params].filter((p) => {
    if (!isTensor(p)) throw new ArgumentError(`${what} takes tensors, got ${describe(p)}`);
    return p.grad !== null;
  });
}

function norm(ps: readonly Tensor[], normType: number): number {
  if (ps.length === 0) return 0;
  return noGrad(() =>
    tidy(() => {
      const parts = ps.map((p) => (normType === 2 ? sum(mul(p.grad!, p.grad!)) : max(p.grad!.abs())).cast('float32'));
      const all = stack(parts);
      return normType === 2 ? Math.sqrt(sum(all).item()) : max(all).item();
    }),
  );
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
  if (typeof maxNorm !== 'number' || !(maxNorm >= 0) || !Number.isFinite(maxNorm)) {
    throw new ArgumentError(`clipGradNorm maxNorm must be a finite number >= 0, got ${describe(maxNorm)}`);
  }
  const normType = opts.normType ?? 2;
  if (normType !== 2 && normType !== Infinity)
    throw new ArgumentError(`clipGradNorm normType must be 2 or Infinity, got ${describe(normType)}`);
  const ps = withGrad(params, 'clipGradNorm');
  const total = norm(ps, normType);
  if (!Number.isFinite(total)) {
    if (opts.errorIfNonfinite)
      throw new ValidationError(`the total gradient norm is ${total}; a gradient holds NaN or Inf`);
    return total;
  }
  const coef = maxNorm / (total + 1e-6);
  if (coef < 1) {
    noGrad(() => {
      for (const p of ps) {
        const scaled = mul(p.grad!, coef);
        p.grad!.assign(scaled);
        scaled.dispose();
      }
    });
  }
  return total;
}
