// Movement kernels of the webgpu backend: copy (elementwise `map`), concat, gather and scatterAdd
// (kernels/wgsl/movement.wgsl, which moves 32-bit words; narrower dtypes are widened to a word per element and
// narrowed back, bit for bit).
import { BackendError } from '../../errors.js';
import { DTYPE_SIZE, type DType } from '../../tensor/dtype.js';
import type { KernelOut, KernelView } from '../backend.js';
import { map } from './elementwise.js';
import {
  MAX_DIMS,
  Params,
  denseInputs,
  denseView,
  id,
  mergeDims,
  numelOf,
  windows,
  withFlags,
  type Gpu,
  type GpuKernel,
} from './gpu.js';
import { attrsOf } from '../../ops/table.js';
import { PARAMS } from './params.js';

/** A view with one element per 32-bit word: the view itself, or a widened contiguous copy (caller releases). */
function words(g: Gpu, v: KernelView, temps: number[]): KernelView {
  if (DTYPE_SIZE[v.dtype] === 4) return v;
  const w = g.scratch('int32', numelOf(v.shape));
  temps.push(w);
  map(g, 'copy', [v], { handle: w, dtype: 'int32', shape: v.shape });
  return denseView(w, 'int32', v.shape);
}

/** Runs `body` into a word-per-element output, then narrows it into `out` when out's dtype is narrower. */
function intoWords(g: Gpu, out: KernelOut, temps: number[], body: (dst: number) => void): void {
  if (DTYPE_SIZE[out.dtype] === 4) {
    body(id(out));
    return;
  }
  const w = g.scratch('int32', numelOf(out.shape));
  temps.push(w);
  body(w);
  map(g, 'copy', [denseView(w, 'int32', out.shape)], out);
}

function withTemps(g: Gpu, f: (temps: number[]) => void): void {
  const temps: number[] = [];
  try {
    f(temps);
  } finally {
    for (const t of temps) g.release(t);
  }
}

const indexParams = (pre: number, D: number, post: number, k: number): Params =>
  new Params().set(PARAMS.index.pre, pre).set(PARAMS.index.D, D).set(PARAMS.index.post, post).set(PARAMS.index.k, k);

const dtypeOk = (d: DType): boolean => d in DTYPE_SIZE;

export const movementKernels: Record<string, GpuKernel> = {
  copy: (g, ins, out) => map(g, 'copy', ins, out),
  concat: (g, ins, out, attrs) => {
    const { axis } = attrsOf('concat', attrs);
    const inner = numelOf(out.shape.slice(axis + 1)),
      total = out.shape[axis]!;
    if (numelOf(out.shape) === 0) return;
    withTemps(g, (temps) =>
      intoWords(g, out, temps, (dst) => {
        let start = 0;
        for (const v0 of ins) {
          if (!dtypeOk(v0.dtype) || v0.dtype !== out.dtype)
            throw new BackendError(`webgpu concat: inputs must be ${out.dtype}, got ${v0.dtype}`);
          const len = v0.shape[axis]!;
          const n = numelOf(v0.shape);
          if (n > 0) {
            const v = words(g, v0, temps);
            const m = mergeDims(v.shape, [v.strides]);
            if (m.shape.length > MAX_DIMS)
              throw new BackendError(`webgpu concat: inputs of up to ${MAX_DIMS} dims after merging`);
            const P = PARAMS.place;
            const p = new Params()
              .set(P.n, n)
              .set(P.ndim, m.shape.length)
              .set(P.dstBase, start * inner)
              .set(P.dstRowStride, total * inner)
              .set(P.rowLen, len * inner)
              .set(P.srcOffset, v.offset);
            m.shape.forEach((s, d) => p.set(P.shape + d, s));
            m.strides[0]!.forEach((s, d) => p.set(P.strides + d, s));
            g.dispatch('movement', 'place', {}, p, [dst, id(v)], { threads: n });
          }
          start += len;
        }
        if (start !== total)
          throw new BackendError(`webgpu concat: inputs cover ${start} of ${total} along axis ${axis}`);
      }),
    );
  },
  gather: denseInputs(
    (g, ins, out, attrs) => {
      const [xv, iv] = ins as [KernelView, KernelView];
      const { axis } = attrsOf('gather', attrs);
      const pre = numelOf(xv.shape.slice(0, axis)),
        D = xv.shape[axis]!,
        post = numelOf(xv.shape.slice(axis + 1)),
        k = numelOf(iv.shape);
      if (pre * k * post === 0) return;
      withTemps(g, (temps) => {
        const x = words(g, xv, temps);
        intoWords(g, out, temps, (dst) => {
          g.dispatch(
            'movement',
            'gather',
            {},
            indexParams(pre, D, post, k).set(PARAMS.index.axis, axis),
            withFlags(g, [dst, id(x), id(iv)]),
            { threads: pre * k * post },
          );
        });
      });
    },
    (g, v, dst) => map(g, 'copy', [v], { handle: dst, dtype: v.dtype, shape: v.shape }),
  ),
  scatterAdd: denseInputs(
    (g, ins, out, attrs) => {
      const [gv, iv] = ins as [KernelView, KernelView];
      const { axis, size: D } = attrsOf('scatterAdd', attrs);
      const pre = numelOf(out.shape.slice(0, axis)),
        post = numelOf(out.shape.slice(axis + 1)),
        k = numelOf(iv.shape);
      if (numelOf(out.shape) === 0) return;
      // positions grouped by target row (one workgroup: counts and run starts, then the positions placed), then an
      // invocation per output element sums its row's values in position order (kernels/wgsl/movement.wgsl)
      withTemps(g, (temps) => {
        const ends = g.scratch('int32', D),
          order = g.scratch('int32', Math.max(1, k));
        temps.push(ends, order);
        const bufs = withFlags(g, [null, null, id(iv), ends]);
        g.dispatch('movement', 'scatter_group', {}, indexParams(pre, D, post, k), bufs, { groups: [1, 1, 1] });
        // ordering the positions loops about WG + 4 turns a block of WG, summing a run one turn a value: under a
        // loop cap (llvmpipe) both go in windows, a dispatch each
        windows(g, Math.ceil(k / 256), 260, (lo, hi) => {
          const p = indexParams(pre, D, post, k).set(PARAMS.index.blockLo, lo).set(PARAMS.index.blockHi, hi);
          g.dispatch('movement', 'scatter_place', {}, p, [null, null, id(iv), ends, order], { groups: [1, 1, 1] });
        });
        windows(g, k, 1, (lo, hi) => {
          const p = indexParams(pre, D, post, k).set(PARAMS.index.runLo, lo).set(PARAMS.index.runHi, hi);
          const consts = { INT: gv.dtype === 'int32' ? 1 : 0 };
          g.dispatch('movement', 'scatter_sum', consts, p, [id(out), id(gv), null, ends, order], {
            threads: pre * D * post,
          });
        });
      });
    },
    (g, v, dst) => map(g, 'copy', [v], { handle: dst, dtype: v.dtype, shape: v.shape }),
  ),
};
