// Quant kernels of the webgpu backend (kernels/wgsl/quant.wgsl): int8 linear with per-row (dynamic) or
// calibrated activation quantization, and int8 convolution (per image), with exact int32 accumulation and a
// float32 epilogue.
import type { KernelView } from '../backend.js';
import { checkQconv, checkQlinear, checkQlinearInt4 } from '../checks.js';
import { Params, code, id, withFlags, type GpuKernel } from './gpu.js';
import { dispatchMatmul } from './matmul.js';
import { PARAMS } from './params.js';

export const quantKernels: Record<string, GpuKernel> = {
  // int4 weight-only linear: the tiled matmul with B dequantized from the packed nibbles as tiles load
  qlinearInt4: (g, ins, out, at) => {
    const { M, K, N, G, g: group } = checkQlinearInt4(ins, at);
    const [x, w, s, b] = ins as [KernelView, KernelView, KernelView, KernelView | undefined];
    if (M * N === 0) return;
    const P = PARAMS.matmul;
    const p = new Params()
      .set(P.M, M)
      .set(P.N, N)
      .set(P.K, K)
      .set(P.batchDims, 0)
      .set(P.offA, x.offset)
      .set(P.rowStrideA, K)
      .set(P.colStrideA, 1)
      .set(P.offB, w.offset)
      .set(P.groupSize, group)
      .set(P.groups, G)
      .set(P.rowBytes, (G * group) / 2)
      .set(P.scaleOffset, s.offset)
      .set(P.biasOffset, b ? b.offset : 0);
    dispatchMatmul(
      g,
      { DTA: code('float32'), DTB: code('uint8'), QB4: 1, HASB: b ? 1 : 0 },
      p,
      K,
      [id(out), id(x), id(w), id(s), b ? id(b) : g.dummy],
      [Math.ceil(N / 64), Math.ceil(M / 64), 1],
    );
  },
  qlinearInt8: (g, ins, out, at) => {
    const { M, K, N, sx, zx } = checkQlinear(ins, at);
    const [x, w, ws, b] = ins as [(typeof ins)[0], (typeof ins)[0], (typeof ins)[0], (typeof ins)[0] | undefined];
    if (M * N === 0) return;
    const P = PARAMS.qlinear;
    const p = new Params()
      .set(P.M, M)
      .set(P.K, K)
      .set(P.N, N)
      .set(P.xOffset, x!.offset)
      .set(P.wOffset, w!.offset)
      .set(P.wsOffset, ws!.offset)
      .set(P.biasOffset, b ? b.offset : 0);
    p.f[P.xScale] = sx;
    p.f[P.xZero] = zx;
    const codes = g.scratch('int32', M * K + 2 * M);
    const bufs = [id(out), null, id(w!), id(ws!), b ? id(b) : g.dummy, codes];
    g.dispatch('quant', 'quantize_rows', {}, p, withFlags(g, [null, id(x!), null, null, null, codes]), { threads: M });
    g.dispatch('quant', 'qlinear_int8', { HASB: b ? 1 : 0 }, p, bufs, { threads: M * N });
    g.release(codes);
  },
  qconv2dInt8: (g, ins, out, at) => {
    const q = checkQconv(ins, at);
    const [x, w, ws, b] = ins as [KernelView, KernelView, KernelView, KernelView | undefined];
    if (q.N * q.O === 0) return;
    const P = PARAMS.qlinear;
    const K = q.C * q.H * q.W;
    const p = new Params()
      .set(P.M, q.N)
      .set(P.K, K)
      .set(P.N, q.O)
      .set(P.xOffset, x.offset)
      .set(P.wOffset, w.offset)
      .set(P.wsOffset, ws.offset)
      .set(P.biasOffset, b ? b.offset : 0)
      .set(P.convC, q.C)
      .set(P.convH, q.H)
      .set(P.convW, q.W)
      .set(P.convO, q.O)
      .set(P.convKh, q.kh)
      .set(P.convKw, q.kw)
      .set(P.convOH, q.OH)
      .set(P.convOW, q.OW);
    [q.sh, q.sw, q.ph, q.pw, q.dh, q.dw, 1].forEach((v, i) => p.set(P.convAttrs + i, v));
    p.f[P.xScale] = q.sx;
    p.f[P.xZero] = q.zx;
    const codes = g.scratch('int32', q.N * K + 2 * q.N);
    g.dispatch('quant', 'quantize_rows', {}, p, withFlags(g, [null, id(x), null, null, null, codes]), { threads: q.N });
    g.dispatch(
      'quant',
      'qconv2d_int8',
      { HASB: b ? 1 : 0, RELU: q.relu ? 1 : 0, POOL: q.pool },
      p,
      [id(out), null, id(w), id(ws), b ? id(b) : g.dummy, codes],
      { threads: q.N * q.O * q.PH * q.PW },
    );
    g.release(codes);
  },
};
