import { runInPlace } from '../engine/dispatch.js';
import { ArgumentError, checkOptions, optionKeys } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { checkNumber, Optimizer, type StepItem } from './optimizer.js';

/** SGD options (PyTorch semantics). */
export interface SGDOptions {
  lr?: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

const SGD_OPTIONS = optionKeys<SGDOptions>({
  lr: true,
  momentum: true,
  dampening: true,
  weightDecay: true,
  nesterov: true,
});

/**
 * Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay. Each step is
 * one fused kernel pass per parameter; with momentum, up to 8 parameters share one call (sgdStepMulti).
 * @example
 * const w = kn.tensor([1, 2], undefined, { requiresGrad: true });
 * const opt = new kn.optim.SGD([w], { lr: 0.1 });
 * w.mul(w).sum().backward(); opt.step(); w.toArray() // [0.8, 1.6]
 */
export class SGD extends Optimizer {
  readonly momentum: number;
  readonly dampening: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;
  constructor(params: Iterable<Tensor>, opts: SGDOptions = {}) {
    checkOptions(opts, 'SGD', SGD_OPTIONS);
    super(params, opts.lr ?? 1e-2);
    this.momentum = checkNumber(opts.momentum ?? 0, 'SGD momentum', 0, 1);
    this.dampening = checkNumber(opts.dampening ?? 0, 'SGD dampening', 0, 1);
    this.weightDecay = checkNumber(opts.weightDecay ?? 0, 'SGD weightDecay', 0, Infinity);
    this.nesterov = opts.nesterov ?? false;
    if (typeof this.nesterov !== 'boolean') throw new ArgumentError('SGD nesterov must be a boolean');
    if (this.nesterov && (this.momentum === 0 || this.dampening !== 0)) {
      throw new ArgumentError('SGD nesterov needs momentum > 0 and dampening 0');
    }
  }
  protected get kind(): string {
    return 'SGD';
  }
  protected hyper(): Record<string, number | boolean> {
    return {
      momentum: this.momentum,
      dampening: this.dampening,
      weightDecay: this.weightDecay,
      nesterov: this.nesterov,
    };
  }
  private attrs(first: boolean): number[] {
    return [this.lr, this.momentum, this.dampening, this.weightDecay, this.nesterov ? 1 : 0, first ? 1 : 0];
  }
  protected update(i: number, p: Tensor, g: Tensor): void {
    // a buffer's first step takes the gradient as it is; read before slot() creates the buffer
    const first = !this.state[i]!.has('momentum');
    runInPlace('sgdStep', this.momentum > 0 ? [p, g, this.slot(i, 'momentum')] : [p, g], this.attrs(first));
  }
  /**
   * With momentum, parameters on the same backend whose buffers are all new (their first step) or all not go up
   * to 8 at a time through sgdStepMulti: one dispatch and one pass over their elements, sgdStep's arithmetic.
   * Without momentum there is no buffer, and each parameter takes its own sgdStep.
   */
  protected override updateAll(items: readonly StepItem[]): void {
    if (this.momentum === 0) return super.updateAll(items);
    // whether each buffer is new, read before any call below creates them
    const first = new Set(items.filter((it) => !this.state[it.i]!.has('momentum')).map((it) => it.i));
    this.updateMulti(
      items,
      (it) => `${first.has(it.i)}:${it.p.backend}`,
      // a buffer not made yet is new memory, shared with nothing: only an existing one can alias another input
      (it) => {
        const m = this.state[it.i]!.get('momentum');
        return m ? [it.p, m] : [it.p];
      },
      (part) => {
        const ins: Tensor[] = [];
        for (const { i, p, g } of part) ins.push(p, g, this.slot(i, 'momentum'));
        runInPlace('sgdStepMulti', ins, this.attrs(first.has(part[0]!.i)));
      },
    );
  }
}
