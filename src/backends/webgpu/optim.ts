// Optimizer kernels of the webgpu backend (kernels/wgsl/optim.wgsl): fused Adam/AMSGrad/AdamW and SGD steps,
// in place. The dispatcher has checked that the updated inputs are contiguous float32 and share no buffer.
import { ArgumentError, ShapeError } from '../../errors.js';
import { sameShape } from '../../tensor/shape.js';
import type { KernelView } from '../backend.js';
import { Params, id, numelOf, type GpuKernel } from './gpu.js';

function check(ins: readonly KernelView[], op: string, counts: readonly number[]): number {
  if (!counts.includes(ins.length)) throw new ArgumentError(`${op} takes ${counts.join(' or ')} inputs, got ${ins.length}`);
  for (const v of ins) {
    if (!sameShape(v.shape, ins[0]!.shape)) throw new ShapeError(`${op}: an input has shape [${v.shape}] but the parameter has [${ins[0]!.shape}]`);
  }
  return numelOf(ins[0]!.shape);
}

export const optimKernels: Record<string, GpuKernel> = {
  adamStep: (g, ins, _out, at) => {
    const n = check(ins, 'adamStep', [4, 5]);
    const [, , , , , , bias1, bias2] = at as [number, number, number, number, number, number, number, number];
    if (!(bias1 > 0 && bias1 <= 1 && bias2 > 0 && bias2 <= 1)) throw new ArgumentError(`adamStep: bias corrections must be in (0, 1], got ${bias1} and ${bias2}`);
    if (n === 0) return;
    const p = new Params().set(0, n);
    ins.forEach((v, k) => p.set(1 + k, v.offset));
    at.slice(0, 8).forEach((v, k) => { p.f[8 + k] = v; });
    const bufs = ins.map(id);
    if (bufs.length === 4) bufs.push(g.dummy);
    g.dispatch('optim', 'adam', { HASV: ins.length === 5 ? 1 : 0 }, p, bufs, { threads: n });
  },
  sgdStep: (g, ins, _out, at) => {
    const n = check(ins, 'sgdStep', [2, 3]);
    if (at[4] && ins.length < 3) throw new ArgumentError('sgdStep: nesterov needs a momentum buffer');
    if (n === 0) return;
    const p = new Params().set(0, n);
    ins.forEach((v, k) => p.set(1 + k, v.offset));
    at.slice(0, 6).forEach((v, k) => { p.f[8 + k] = v; });
    const bufs = ins.map(id);
    if (bufs.length === 2) bufs.push(g.dummy);
    g.dispatch('optim', 'sgd', { HASV: ins.length === 3 ? 1 : 0 }, p, bufs, { threads: n });
  },
};
