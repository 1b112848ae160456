// Quant kernels of the webgpu backend (kernels/wgsl/quant.wgsl): int8 linear with per-row (dynamic) or
// calibrated activation quantization, exact int32 accumulation and a float32 epilogue.
import type { KernelView } from '../backend.js';
import { checkQlinear, checkQlinearInt4 } from '../checks.js';
import { Params, code, id, withFlags, type GpuKernel } from './gpu.js';

export const quantKernels: Record<string, GpuKernel> = {
  // int4 weight-only linear: the tiled matmul with B dequantized from the packed nibbles as tiles load
  qlinearInt4: (g, ins, out, at) => {
    const { M, K, N, G, g: group } = checkQlinearInt4(ins, at);
    const [x, w, s, b] = ins as [KernelView, KernelView, KernelView, KernelView | undefined];
    if (M * N === 0) return;
    const p = new Params()
      .set(0, M)
      .set(1, N)
      .set(2, K)
      .set(3, 0)
      .set(4, x.offset)
      .set(5, K)
      .set(6, 1)
      .set(7, w.offset)
      .set(22, group)
      .set(23, G)
      .set(24, (G * group) / 2)
      .set(25, s.offset)
      .set(26, b ? b.offset : 0);
    g.dispatch(
      'matmul',
      'matmul',
      { DTA: code('float32'), DTB: code('uint8'), QB4: 1, HASB: b ? 1 : 0 },
      p,
      [id(out), id(x), id(w), id(s), b ? id(b) : g.dummy],
      { groups: [Math.ceil(N / 64), Math.ceil(M / 64), 1] },
    );
  },
  qlinearInt8: (g, ins, out, at) => {
    const { M, K, N, sx, zx } = checkQlinear(ins, at);
    const [x, w, ws, b] = ins as [(typeof ins)[0], (typeof ins)[0], (typeof ins)[0], (typeof ins)[0] | undefined];
    if (M * N === 0) return;
    const p = new Params()
      .set(0, M)
      .set(1, K)
      .set(2, N)
      .set(3, x!.offset)
      .set(4, w!.offset)
      .set(5, ws!.offset)
      .set(6, b ? b.offset : 0);
    p.f[7] = sx;
    p.f[8] = zx;
    const codes = g.scratch('int32', M * K + 2 * M);
    const bufs = [id(out), null, id(w!), id(ws!), b ? id(b) : g.dummy, codes];
    g.dispatch('quant', 'quantize_rows', {}, p, withFlags(g, [null, id(x!), null, null, null, codes]), { threads: M });
    g.dispatch('quant', 'qlinear', { HASB: b ? 1 : 0 }, p, bufs, { threads: M * N });
    g.release(codes);
  },
};
