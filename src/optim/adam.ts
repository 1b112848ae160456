import { runInPlace } from '../engine/dispatch.js';
import { ArgumentError, checkOptions, describe, optionKeys } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { checkNumber, Optimizer, type StepItem } from './optimizer.js';

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

const ADAM_OPTIONS = optionKeys<AdamOptions>({ lr: true, betas: true, eps: true, weightDecay: true, amsgrad: true });

/**
 * Adam (Kingma & Ba): m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps). With `amsgrad`, v is replaced by its running max.
 * `weightDecay` adds wd * p to the gradient (L2). One fused kernel pass over up to 8 parameters at a time (one
 * per parameter with `amsgrad`).
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
    checkOptions(opts, new.target.name, ADAM_OPTIONS);
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
  /** The kernel attributes of step t (adamStep and adamStepMulti share them). */
  private attrs(t: number): number[] {
    const bias1 = 1 - this.beta1 ** t,
      bias2 = 1 - this.beta2 ** t;
    return [
      this.lr,
      this.beta1,
      this.beta2,
      this.eps,
      this.weightDecay,
      this.decoupled ? 1 : 0,
      bias1 > 0 ? bias1 : 1,
      bias2 > 0 ? bias2 : 1,
    ];
  }
  protected update(i: number, p: Tensor, g: Tensor, t: number): void {
    const ins = [p, g, this.slot(i, 'm'), this.slot(i, 'v')];
    if (this.amsgrad) ins.push(this.slot(i, 'vmax'));
    runInPlace('adamStep', ins, this.attrs(t));
  }
  /**
   * Without AMSGrad, parameters with the same step count on the same backend go up to 8 at a time through
   * adamStepMulti: one dispatch and one pass over all their elements instead of one per parameter (a model of
   * many small tensors spent more time dispatching than updating). The arithmetic is adamStep's.
   */
  protected override updateAll(items: readonly StepItem[]): void {
    if (this.amsgrad) return super.updateAll(items);
    this.updateMulti(
      items,
      (it) => `${it.t}:${it.p.backend}`,
      (it) => [it.p, this.slot(it.i, 'm'), this.slot(it.i, 'v')],
      (part) => {
        const ins: Tensor[] = [];
        for (const { i, p, g } of part) ins.push(p, g, this.slot(i, 'm'), this.slot(i, 'v'));
        runInPlace('adamStepMulti', ins, this.attrs(part[0]!.t));
      },
    );
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
