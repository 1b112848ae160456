// Random kernels of the webgpu backend (kernels/wgsl/random.wgsl): the same Philox4x32-10 stream as every
// other backend, so a seed gives the same numbers on js, cpu and webgpu.
import { checkRandomInt } from '../checks.js';
import { Params, id, numelOf, type GpuKernel } from './gpu.js';

function random(kind: 0 | 1 | 2): GpuKernel {
  return (g, _ins, out, at) => {
    const n = numelOf(out.shape);
    const p = new Params().set(0, n).set(1, at[0]! >>> 0).set(2, at[1]! >>> 0).set(3, at[2]! % 2 ** 32).set(4, at[3]! % 2 ** 32);
    if (kind === 2) {
      const lo = at[4]!, hi = at[5]!;
      checkRandomInt(lo, hi);
      p.i[5] = lo;
      p.u[6] = (hi - lo) % 2 ** 32;
    } else {
      p.f[5] = at[4]!;
      p.f[6] = at[5]!;
    }
    if (n === 0) return;
    g.dispatch('random', 'random', { KIND: kind, OUTF: kind === 2 && out.dtype === 'float32' ? 1 : 0 }, p, [id(out)], { threads: Math.ceil(n / 4) });
  };
}

export const randomKernels: Record<string, GpuKernel> = {
  randomUniform: random(0), randomNormal: random(1), randomInt: random(2),
};
