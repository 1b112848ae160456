import { runInPlace } from '../engine/dispatch.js';
import { ArgumentError, describe } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { checkNumber, Optimizer } from './optimizer.js';

/** Adam/AdamW options. */
export interface AdamOptions {
  /** default 3e-4 */
  lr?: number;
  betas?: readonly [number, number];
  eps?: number;
  /** L2 penalty added to the gradient (Adam) or decoupled decay (AdamW) */
  weightDecay?: number;
  amsgrad?: boolean;
}

/**
 * Adam (Kingma & Ba): m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps). With `amsgrad`, v is replaced by its running max.
 * `weightDecay` adds wd * p to the gradient (L2). One fused kernel pass per parameter.
 * @example
 * const w = kn.tensor([1, -1], undefined, { requiresGrad: true });
 * const opt = new kn.optim.Adam([w], { lr: 0.1 });
 * w.sum().backward(); opt.step(); w.toArray() // [0.9, -1.1]
 */
export class Adam extends Optimizer {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly amsgrad: boolean;
  protected readonly decoupled: boolean = false;
  constructor(params: Iterable<Tensor>, opts: AdamOptions = {}) {
    super(params, opts.lr ?? 3e-4);
    const betas = opts.betas ?? [0.9, 0.999];
    if (!Array.isArray(betas) || betas.length !== 2)
      throw new ArgumentError(`betas must be [beta1, beta2], got ${describe(betas)}`);
    this.beta1 = checkNumber(betas[0], 'beta1', 0, 1, false, true);
    this.beta2 = checkNumber(betas[1], 'beta2', 0, 1, false, true);
    this.eps = checkNumber(opts.eps ?? 1e-8, 'eps', 0, Infinity, true);
    this.weightDecay = checkNumber(opts.weightDecay ?? this.defaultDecay(), 'weightDecay', 0, Infinity);
    this.amsgrad = opts.amsgrad ?? false;
    if (typeof this.amsgrad !== 'boolean') throw new ArgumentError('amsgrad must be a boolean');
  }
  protected defaultDecay(): number {
    return 0;
  }
  protected get kind(): string {
    return 'Adam';
  }
  protected hyper(): Record<string, number | boolean> {
    return {
      beta1: this.beta1,
      beta2: this.beta2,
      eps: this.eps,
      weightDecay: this.weightDecay,
      amsgrad: this.amsgrad,
    };
  }
  protected update(i: number, p: Tensor, g: Tensor, t: number): void {
    const ins = [p, g, this.slot(i, 'm'), this.slot(i, 'v')];
    if (this.amsgrad) ins.push(this.slot(i, 'vmax'));
    const bias1 = 1 - this.beta1 ** t,
      bias2 = 1 - this.beta2 ** t;
    runInPlace('adamStep', ins, [
      this.lr,
      this.beta1,
      this.beta2,
      this.eps,
      this.weightDecay,
      this.decoupled ? 1 : 0,
      bias1 > 0 ? bias1 : 1,
      bias2 > 0 ? bias2 : 1,
    ]);
  }
}

/**
 * AdamW (Loshchilov & Hutter): Adam with decoupled weight decay p *= 1 - lr * wd (default wd 0.01).
 * @example new kn.optim.AdamW(new kn.nn.Linear(2, 2).parameters()).weightDecay // 0.01
 */
export class AdamW extends Adam {
  protected override readonly decoupled = true;
  protected override defaultDecay(): number {
    return 0.01;
  }
  protected override get kind(): string {
    return 'AdamW';
  }
}
