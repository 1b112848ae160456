// Optimizer kernels of the webgpu backend (kernels/wgsl/optim.wgsl): fused Adam/AMSGrad/AdamW and SGD steps,
// in place. The dispatcher has checked that the updated inputs are contiguous float32 and share no buffer.
import type { KernelView } from '../backend.js';
import { attrsOf } from '../../ops/table.js';
import { checkAdam, checkAdamMulti, checkOptim, checkSgd, checkSgdMulti } from '../checks.js';
import { Params, id, type Gpu } from './gpu.js';
import { PARAMS } from './params.js';

/** The constants adam_step / sgd_step read at PARAMS.optim.derived, computed in float64 (as cpu's kernels). */
function derived(entry: 'adam_step' | 'sgd_step', at: readonly number[]): number[] {
  if (entry === 'sgd_step') return [1 - attrsOf('sgdStep', at).dampening];
  const { lr, beta1, beta2, weightDecay, decoupled, bias1, bias2 } = attrsOf('adamStep', at);
  return [1 - beta1, 1 - beta2, decoupled ? 1 - lr * weightDecay : 1, lr / bias1, 1 / Math.sqrt(bias2)];
}

/** One optimizer dispatch: element offsets of every input, the op's attributes as f32 and the constants derived
 * from them, an optional last state buffer (AMSGrad's vmax, SGD's momentum) bound to the dummy when absent. */
function step(
  g: Gpu,
  entry: 'adam_step' | 'sgd_step',
  ins: readonly KernelView[],
  attrs: readonly number[],
  n: number,
  full: number,
): void {
  if (n === 0) return;
  const P = PARAMS.optim;
  const p = new Params().set(P.n, n);
  ins.forEach((v, k) => p.set(P.offsets + k, v.offset));
  attrs.forEach((v, k) => {
    p.f[P.attrs + k] = v;
  });
  derived(entry, attrs).forEach((v, k) => {
    p.f[P.derived + k] = v;
  });
  const bufs = ins.map(id);
  if (bufs.length < full) bufs.push(g.dummy);
  g.dispatch('optim', entry, { HASV: ins.length === full ? 1 : 0 }, p, bufs, { threads: n });
}

export const optimKernels = {
  adamStep: (g: Gpu, ins: readonly KernelView[], _out: unknown, at: readonly number[]): void => {
    const n = checkOptim(ins, 'adamStep', [4, 5]);
    checkAdam(at);
    step(g, 'adam_step', ins, at.slice(0, 8), n, 5);
  },
  // one dispatch per parameter (the dispatches of one submission run back to back on the queue)
  adamStepMulti: (g: Gpu, ins: readonly KernelView[], _out: unknown, at: readonly number[]): void => {
    const groups = checkAdamMulti(ins);
    checkAdam(at, 'adamStepMulti');
    for (const { group, n } of groups) step(g, 'adam_step', group, at.slice(0, 8), n, 5);
  },
  sgdStep: (g: Gpu, ins: readonly KernelView[], _out: unknown, at: readonly number[]): void => {
    const n = checkOptim(ins, 'sgdStep', [2, 3]);
    checkSgd(ins, at);
    step(g, 'sgd_step', ins, at.slice(0, 6), n, 3);
  },
  sgdStepMulti: (g: Gpu, ins: readonly KernelView[], _out: unknown, at: readonly number[]): void => {
    for (const { group, n } of checkSgdMulti(ins)) step(g, 'sgd_step', group, at.slice(0, 6), n, 3);
  },
};
