// Matmul kernels of the webgpu backend (kernels/wgsl/matmul.wgsl): float32 and bfloat16 operands (float32
// accumulation), strided and batch-broadcast views as they come, so transposes cost no copy.
import { BackendError } from '../../errors.js';
import { attrsOf } from '../../ops/table.js';
import { checkAttention, hash32 } from '../checks.js';
import { copyView, map } from './elementwise.js';
import {
  Params,
  code,
  denseInputs,
  denseView,
  id,
  mergeDims,
  numelOf,
  windows,
  type Gpu,
  type GpuKernel,
} from './gpu.js';
import { PARAMS } from './params.js';

const matmul: GpuKernel = (g, ins, out) => {
  const [a, b] = ins as [(typeof ins)[0] & object, (typeof ins)[0] & object];
  const nd = a.shape.length;
  const M = a.shape[nd - 2]!,
    K = a.shape[nd - 1]!,
    N = b.shape[nd - 1]!;
  const bshape = out.shape.slice(0, nd - 2);
  const batch = numelOf(bshape);
  if (batch * M * N === 0) return;
  const merged = mergeDims(bshape, [a.strides.slice(0, nd - 2), b.strides.slice(0, nd - 2)]);
  if (merged.shape.length > 4)
    throw new BackendError(`webgpu matmul: up to 4 batch dims after merging, got ${merged.shape.length}`);
  const max = g.limits.maxComputeWorkgroupsPerDimension ?? 65535;
  if (batch > max)
    throw new BackendError(
      `webgpu matmul: ${batch} batched products exceed the device's ${max} workgroups per dimension`,
    );
  const P = PARAMS.matmul;
  const p = new Params()
    .set(P.M, M)
    .set(P.N, N)
    .set(P.K, K)
    .set(P.batchDims, merged.shape.length)
    .set(P.offA, a.offset)
    .set(P.rowStrideA, a.strides[nd - 2]!)
    .set(P.colStrideA, a.strides[nd - 1]!)
    .set(P.offB, b.offset)
    .set(P.rowStrideB, b.strides[nd - 2]!)
    .set(P.colStrideB, b.strides[nd - 1]!);
  merged.shape.forEach((s, d) => {
    p.set(P.batchShape + d, s);
    p.set(P.batchStrideA + d, merged.strides[0]![d]!);
    p.set(P.batchStrideB + d, merged.strides[1]![d]!);
  });
  dispatchMatmul(
    g,
    { DTA: code(a.dtype), DTB: code(b.dtype) },
    p,
    K,
    [id(out), id(a), id(b), g.dummy, g.dummy],
    [Math.ceil(N / 64), Math.ceil(M / 64), batch],
  );
};

/**
 * Dispatches the tiled `matmul` entry point (float32/bfloat16 operands, or the int4 linear's packed B) over
 * K = `K`: about 18 loop turns a 16-deep K tile, so in windows of K under a loop cap, each adding onto what the
 * last wrote (the bias joins the first).
 */
export function dispatchMatmul(
  g: Gpu,
  consts: Record<string, number>,
  p: Params,
  K: number,
  bufs: readonly (number | null)[],
  groups: [number, number, number],
): void {
  const P = PARAMS.matmul;
  windows(g, K, 2, (lo, hi) =>
    g.dispatch('matmul', 'matmul', consts, p.set(P.kLo, lo).set(P.kHi, hi), bufs, { groups }),
  );
}

/**
 * bfloat16 operands: float32 out as matmul writes it, or bfloat16 out through a float32 scratch product and the
 * cast shader (WGSL has no 16-bit stores), the same bits as a cast after the product.
 */
const matmulBf16: GpuKernel = (g, ins, out, attrs) => {
  if (out.dtype !== 'bfloat16') return matmul(g, ins, out, attrs);
  const acc = g.scratch('float32', numelOf(out.shape));
  try {
    matmul(g, ins, { handle: acc, dtype: 'float32', shape: out.shape }, attrs);
    map(g, 'cast', [denseView(acc, 'float32', out.shape)], out);
  } finally {
    g.release(acc);
  }
};

/** The attention params and the mask binding shared by the forward and the backward passes. */
function attentionParams(
  ins: Parameters<GpuKernel>[1],
  want: number,
  op: 'attention' | 'attentionBackward',
  at: readonly number[],
): { p: Params; B: number; L: number; S: number; D: number; Dv: number; mask: number | null } {
  const geo = checkAttention(ins, want, op, at);
  const { scale, causal, dropoutThreshold: thr, seed } = attrsOf(op, at);
  const P = PARAMS.attention;
  const p = new Params()
    .set(P.B, geo.B)
    .set(P.L, geo.L)
    .set(P.S, geo.S)
    .set(P.D, geo.D)
    .set(P.Dv, geo.Dv)
    .set(P.maskStride, geo.maskBatched ? geo.L * geo.S : 0)
    .set(P.hasMask, geo.mask ? 1 : 0)
    .set(P.causal, causal)
    .set(P.threshold, thr)
    .set(P.seedHash, hash32(seed));
  p.f[P.scale] = scale;
  p.f[P.keepScale] = 1 / (1 - thr / 2 ** 32);
  return { p, ...geo, mask: geo.mask ? id(geo.mask) : null };
}

/** The window of keys or query rows an attention dispatch takes (matmul.wgsl P_ATTENTION_WIN_LO/HI). */
const winParams = (p: Params, lo: number, hi: number): Params =>
  p.set(PARAMS.attention.winLo, lo).set(PARAMS.attention.winHi, hi);

const attention: GpuKernel = (g, ins, out, at) => {
  const { p, B, L, S, D, Dv, mask } = attentionParams(ins, 3, 'attention', at);
  if (B * L === 0) return;
  const bufs = [id(out), id(ins[0]!), id(ins[1]!), id(ins[2]!), mask ?? g.dummy];
  // a key's score (D), its weight and value row (D + Dv)
  windows(g, S, 2 * D + Dv + 16, (lo, hi) =>
    g.dispatch('matmul', 'attention', {}, winParams(p, lo, hi), bufs, { threads: B * L }),
  );
};

/**
 * The backward in three passes over buffers the five bindings can hold: k and v packed into one scratch
 * buffer, dO with each row's log-sum-exp and D = dO . O into another; then dq per query row and dk, dv per key.
 */
const attentionBackward: GpuKernel = (g, ins, out, at) => {
  const { p, B, L, S, D, Dv, mask } = attentionParams(ins, 5, 'attentionBackward', at);
  if (B * L * D + B * S * (D + Dv) === 0) return;
  const P = PARAMS.attention;
  const kv = g.scratch('float32', Math.max(1, B * S * (D + Dv))),
    gst = g.scratch('float32', Math.max(1, B * L * (Dv + 2)));
  try {
    const copy = (dst: number, src: number, n: number, at0: number): void => {
      if (n === 0) return;
      const c = new Params().set(P.n, n).set(P.dstOffset, at0);
      g.dispatch('matmul', 'copy_f32', {}, c, [dst, src, null, null, null], { threads: n });
    };
    copy(kv, id(ins[1]!), B * S * D, 0);
    copy(kv, id(ins[2]!), B * S * Dv, B * S * D);
    copy(gst, id(ins[4]!), B * L * Dv, 0);
    const m = mask ?? g.dummy;
    if (B * L > 0) {
      g.dispatch('matmul', 'attention_backward_stats', {}, p, [gst, id(ins[3]!), null, null, null], {
        threads: B * L,
      });
      // a key's score (D), dP (Dv) and dq row (D)
      windows(g, S, 2 * D + Dv + 16, (lo, hi) =>
        g.dispatch('matmul', 'attention_backward_q', {}, winParams(p, lo, hi), [id(out), id(ins[0]!), kv, gst, m], {
          threads: B * L,
        }),
      );
    }
    if (B * S > 0)
      // a query's score (D), dP (Dv), dv row (Dv) and dk row (D)
      windows(g, L, 2 * (D + Dv) + 16, (lo, hi) =>
        g.dispatch('matmul', 'attention_backward_kv', {}, winParams(p, lo, hi), [id(out), id(ins[0]!), kv, gst, m], {
          threads: B * S,
        }),
      );
  } finally {
    g.release(kv);
    g.release(gst);
  }
};

export const matmulKernels: Record<string, GpuKernel> = {
  matmul,
  matmulBf16,
  // the attention shaders index their inputs from element 0
  attention: denseInputs(attention, copyView),
  attentionBackward: denseInputs(attentionBackward, copyView),
};
