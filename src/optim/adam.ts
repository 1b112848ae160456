import { runInPlace } from '../engine/dispatch.js';
import { ArgumentError, describe } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { checkNumber, Optimizer, type StepItem } from './optimizer.js';

/** Parameters per adamStepMulti call (its 32 inputs: 8 x param, grad, m, v). */
const MULTI = 8;

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
   * Without AMSGrad, parameters with the same step count on the same backend go MULTI at a time through
   * adamStepMulti: one dispatch and one pass over all their elements instead of one per parameter (a model of
   * many small tensors spent more time dispatching than updating). The arithmetic is adamStep's.
   */
  protected override updateAll(items: readonly StepItem[]): void {
    if (this.amsgrad) return super.updateAll(items);
    // usually every parameter shares one step count and backend: one batch, no grouping work
    const first = items[0];
    const uniform = first !== undefined && items.every((it) => it.t === first.t && it.p.backend === first.p.backend);
    const batches: StepItem[][] = [];
    if (uniform) batches.push([...items]);
    else {
      const byKey = new Map<string, StepItem[]>();
      for (const it of items) {
        const key = `${it.t}:${it.p.backend}`;
        const b = byKey.get(key);
        if (b) b.push(it);
        else byKey.set(key, [it]);
      }
      batches.push(...byKey.values());
    }
    for (const batch of batches)
      for (const part of this.parts(batch)) {
        if (part.length === 1) {
          this.update(part[0]!.i, part[0]!.p, part[0]!.g, part[0]!.t);
        } else {
          const ins: Tensor[] = [];
          for (const { i, p, g } of part) ins.push(p, g, this.slot(i, 'm'), this.slot(i, 'v'));
          runInPlace('adamStepMulti', ins, this.attrs(part[0]!.t));
        }
        this.stepped(part);
      }
  }
  /**
   * Cuts a batch into calls of up to MULTI parameters where no buffer written in place (a parameter, m or v) is
   * also another input of the same call: parameters that are views of one flat buffer go to different calls, as
   * the dispatcher refuses a call that writes memory it also reads through another input. Gradients may share.
   */
  private parts(batch: readonly StepItem[]): StepItem[][] {
    // each item's buffers, looked up once: those written in place (p, m, v) and the gradient it reads
    const handles = batch.map((it) => ({
      written: [it.p, this.slot(it.i, 'm'), this.slot(it.i, 'v')].map((t) => t.storageHandle()),
      read: it.g.storageHandle(),
    }));
    // the common case, no buffer seen twice: plain runs of MULTI
    const seen = new Set<unknown>();
    let shared = false;
    for (const { written, read } of handles) {
      for (const h of [...written, read]) {
        if (seen.has(h)) shared = true;
        seen.add(h);
      }
      if (shared) break;
    }
    if (!shared) {
      const runs: StepItem[][] = [];
      for (let k = 0; k < batch.length; k += MULTI) runs.push(batch.slice(k, k + MULTI));
      return runs;
    }
    const parts: { items: StepItem[]; written: Set<unknown>; all: Set<unknown> }[] = [];
    batch.forEach((it, n) => {
      const { written, read } = handles[n]!;
      let part = parts.find(
        (q) => q.items.length < MULTI && !written.some((h) => q.all.has(h)) && !q.written.has(read),
      );
      if (!part) {
        part = { items: [], written: new Set(), all: new Set() };
        parts.push(part);
      }
      part.items.push(it);
      for (const h of written) {
        part.written.add(h);
        part.all.add(h);
      }
      part.all.add(read);
    });
    return parts.map((q) => q.items);
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
