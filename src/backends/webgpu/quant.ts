// Quant kernels of the webgpu backend (kernels/wgsl/quant.wgsl): int8 linear with per-row (dynamic) or
// calibrated activation quantization, exact int32 accumulation and a float32 epilogue.
import { checkQlinear } from '../checks.js';
import { Params, id, withFlags, type GpuKernel } from './gpu.js';

export const quantKernels: Record<string, GpuKernel> = {
  qlinearInt8: (g, ins, out, at) => {
    const { M, K, N, sx, zx } = checkQlinear(ins, at);
    const [x, w, ws, b] = ins as [typeof ins[0], typeof ins[0], typeof ins[0], typeof ins[0] | undefined];
    if (M * N === 0) return;
    const p = new Params().set(0, M).set(1, K).set(2, N).set(3, x!.offset).set(4, w!.offset).set(5, ws!.offset).set(6, b ? b.offset : 0);
    p.f[7] = sx;
    p.f[8] = zx;
    const codes = g.scratch('int32', M * K + 2 * M);
    const bufs = [id(out), null, id(w!), id(ws!), b ? id(b) : g.dummy, codes];
    g.dispatch('quant', 'quantize_rows', {}, p, withFlags(g, [null, id(x!), null, null, null, codes]), { threads: M });
    g.dispatch('quant', 'qlinear', { HASB: b ? 1 : 0 }, p, bufs, { threads: M * N });
    g.release(codes);
  },
};
