// Random kernels of the webgpu backend (kernels/wgsl/random.wgsl): the same Philox4x32-10 stream as every
// other backend, so a seed gives the same numbers on js, cpu and webgpu.
import { checkRandomInt } from '../checks.js';
import { Params, id, numelOf, type GpuKernel } from './gpu.js';
import { attrsOf, groupAttrs } from '../../ops/table.js';
import { PARAMS } from './params.js';

function random(kind: 0 | 1 | 2): GpuKernel {
  return (g, _ins, out, at) => {
    const n = numelOf(out.shape);
    const { key0, key1, ctrLo, ctrHi } = groupAttrs('rng', at);
    const P = PARAMS.random;
    const p = new Params()
      .set(P.n, n)
      .set(P.key0, key0 >>> 0)
      .set(P.key1, key1 >>> 0)
      .set(P.ctrLo, ctrLo % 2 ** 32)
      .set(P.ctrHi, ctrHi % 2 ** 32);
    if (kind === 2) {
      const { low: lo, high: hi } = attrsOf('randomInt', at);
      checkRandomInt(lo, hi);
      p.i[P.a] = lo;
      p.u[P.b] = (hi - lo) % 2 ** 32;
    } else {
      const { low, high } = attrsOf('randomUniform', at),
        { mean, std } = attrsOf('randomNormal', at);
      p.f[P.a] = kind === 0 ? low : mean;
      p.f[P.b] = kind === 0 ? high : std;
    }
    if (n === 0) return;
    g.dispatch('random', 'random', { KIND: kind, OUTF: kind === 2 && out.dtype === 'float32' ? 1 : 0 }, p, [id(out)], {
      threads: Math.ceil(n / 4),
    });
  };
}

export const randomKernels: Record<string, GpuKernel> = {
  randomUniform: random(0),
  randomNormal: random(1),
  randomInt: random(2),
};
