// Quant kernels of the webgpu backend (kernels/wgsl/quant.wgsl): int8 linear with per-row (dynamic) or
// calibrated activation quantization, exact int32 accumulation and a float32 epilogue.
import { ArgumentError, ShapeError } from '../../errors.js';
import { Params, id, withFlags, type GpuKernel } from './gpu.js';

export const quantKernels: Record<string, GpuKernel> = {
  qlinearInt8: (g, ins, out, at) => {
    if (ins.length !== 3 && ins.length !== 4) throw new ArgumentError(`qlinearInt8 takes (x, wq, wscale[, bias]), got ${ins.length} inputs`);
    const [x, w, ws, b] = ins as [typeof ins[0], typeof ins[0], typeof ins[0], typeof ins[0] | undefined];
    if (x!.shape.length !== 2 || w!.shape.length !== 2 || w!.shape[1] !== x!.shape[1]) {
      throw new ShapeError(`qlinearInt8: x [${x!.shape}] and wq [${w!.shape}] must be [M, K] and [N, K]`);
    }
    const M = x!.shape[0]!, K = x!.shape[1]!, N = w!.shape[0]!;
    const [sx, zx] = at as [number, number];
    if (!(sx >= 0) || !Number.isInteger(zx) || zx < 0 || zx > 255) throw new ArgumentError(`qlinearInt8: xScale must be >= 0 and xZero an integer in [0, 255], got ${sx} and ${zx}`);
    if (K > 65536) throw new ShapeError(`qlinearInt8: K = ${K} is over 65536 (int32 accumulators could overflow)`);
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
