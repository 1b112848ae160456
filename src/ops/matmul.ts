import { isGradEnabled, noGrad, record } from '../autograd/tape.js';
import { attentionKeeps } from '../backends/checks.js';
import type { BackendName } from '../backends/backend.js';
import { runKernel } from '../engine/dispatch.js';
import { ShapeError } from '../errors.js';
import { isFloat } from '../tensor/dtype.js';
import { broadcastShapes, sameShape, shapeStr } from '../tensor/shape.js';
import { assertTensor, type Tensor } from '../tensor/tensor.js';
import { operandAs } from './define.js';
import { tensor } from './creation.js';
import { add, eq, mul, where } from './elementwise.js';
import { reshape, slice, transpose } from './movement.js';
import { randint } from './random.js';
import { max, softmax, sumTo } from './reduce.js';

/**
 * Matrix product with NumPy semantics: 1-D operands are promoted (and the added dim removed after),
 * leading batch dims broadcast. Transposed views are read in place, without a copy.
 * @example kn.matmul(kn.ones([2, 3]), kn.ones([3, 4])).shape // [2, 4]
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  assertTensor(a, 'matmul: a');
  assertTensor(b, 'matmul: b');
  if (a.ndim === 0 || b.ndim === 0)
    throw new ShapeError(`matmul needs operands of rank >= 1, got ${shapeStr(a.shape)} and ${shapeStr(b.shape)}`);
  const a2 = a.ndim === 1 ? reshape(a, [1, a.shape[0]!]) : a;
  const b2 = b.ndim === 1 ? reshape(b, [b.shape[0]!, 1]) : b;
  try {
    const M = a2.shape[a2.ndim - 2]!,
      K = a2.shape[a2.ndim - 1]!,
      K2 = b2.shape[b2.ndim - 2]!,
      N = b2.shape[b2.ndim - 1]!;
    if (K !== K2)
      throw new ShapeError(
        `matmul: inner dimensions differ: ${shapeStr(a.shape)} x ${shapeStr(b.shape)} (${K} vs ${K2})`,
      );
    const batch = broadcastShapes(a2.shape.slice(0, -2), b2.shape.slice(0, -2), 'matmul batch dims');
    // operand views only where broadcasting changes a shape (a plain 2-D product passes its inputs as they are)
    const shapeA = [...batch, M, K],
      shapeB = [...batch, K, N];
    const va = operandAs(a2, shapeA);
    const vb = operandAs(b2, shapeB);
    let y: Tensor;
    try {
      if (a.dtype === 'bfloat16' && b.dtype === 'bfloat16' && va.backendInstance.has('matmulBf16')) {
        // bfloat16 operands, float32 accumulation (AVX512-BF16 on CPU), bfloat16 result like the inputs, rounded
        // once by the kernel (on a GPU its epilogue writes bfloat16: no float32 product and cast pass)
        y = runKernel('matmulBf16', [va, vb], [], [...batch, M, N], 'bfloat16');
      } else {
        y = runKernel('matmul', [va, vb], [], [...batch, M, N], isFloat(a.dtype) ? a.dtype : 'float32');
      }
    } finally {
      if (va !== a2) va.dispose();
      if (vb !== b2) vb.dispose();
    }
    const outShape = [...batch, ...(a.ndim === 1 ? [] : [M]), ...(b.ndim === 1 ? [] : [N])];
    if (outShape.length !== y.ndim) {
      const r = reshape(y, outShape);
      y.dispose();
      y = r;
    }
    const as = a.shape,
      bs = b.shape;
    // saved as given (not the 1-D reshapes), so gradients of gradients reach a and b
    return record('matmul', y, [a, b], [a, b], (g, [a0, b0], needs) => {
      const sa = a0!.ndim === 1 ? reshape(a0!, [1, K]) : a0,
        sb = b0!.ndim === 1 ? reshape(b0!, [K, 1]) : b0;
      const g2 = reshape(g, [...batch, M, N]);
      // no reshape when the shape is already right: a fresh buffer that a leaf can take without a copy
      const fit = (t: Tensor, shape: readonly number[]): Tensor => (sameShape(t.shape, shape) ? t : reshape(t, shape));
      const ga = needs[0] ? fit(sumTo(matmul(g2, transpose(sb!)), [...sa!.shape]), as) : null;
      let gb: Tensor | null = null;
      if (needs[1]) {
        // a matrix b shared by a batch of a (Linear on [N, L, E]): one GEMM over the flattened rows, which is
        // the sum over the batch that broadcasting b implies
        const flat = sb!.ndim === 2 && sa!.ndim > 2;
        const ra = flat ? reshape(sa!, [-1, K]) : sa!,
          rg = flat ? reshape(g2, [-1, N]) : g2;
        if (sb!.ndim === 2 && sb!.shape[0]! > 1 && sb!.strides[0] === 1 && sb!.strides[1] === sb!.shape[0]) {
          // b is a transposed matrix (Linear's x W^T): compute the gradient in W's own layout, (g^T a)^T, so
          // after transpose's vjp W gets a contiguous buffer it can own instead of a copy
          const t = matmul(transpose(rg), ra);
          gb = transpose(t);
          t.dispose();
        } else gb = fit(sumTo(matmul(transpose(ra), rg), [...sb!.shape]), bs);
      }
      return [ga, gb];
    });
  } finally {
    if (a2 !== a) a2.dispose();
    if (b2 !== b) b2.dispose();
  }
}

/** @internal Options of {@link fusedAttention}. */
export interface FusedAttentionOptions {
  /** additive float32 mask [1 | B, L, S] (-Infinity removes a pair), or null */
  mask: Tensor | null;
  causal: boolean;
  scale: number;
  /** dropout on the attention weights (0 = none) */
  dropoutP: number;
}

/**
 * The attention weights softmax(s) over the last axis, except that a row whose scores are all -Infinity (every
 * key masked) gives zeros, not softmax's NaN, and passes no gradient back: PyTorch's scaled_dot_product_attention
 * since 2.5 (its `_safe_softmax`), and the fused kernels of every backend.
 */
function attentionWeights(s: Tensor): Tensor {
  const dead = noGrad(() => eq(max(s, -1, true), -Infinity));
  return where(dead, 0, softmax(where(dead, 0, s), -1));
}

/**
 * Attention's weights in ops: softmax(q k^T * scale) over the keys, with the causal mask and a boolean (true =
 * attend) or additive mask. Causal alone always leaves key 0 (top-left aligned), so plain softmax; a mask may
 * remove a whole row, which {@link attentionWeights} turns into zeros.
 */
export function attentionProbs(q: Tensor, k: Tensor, scale: number, causal: boolean, mask: Tensor | null): Tensor {
  const L = q.shape[q.ndim - 2]!;
  const S = k.shape[k.ndim - 2]!;
  let s = mul(matmul(q, transpose(k, -2, -1)), scale);
  if (causal) s = where(causalMask(L, S, s.backendInstance.name), s, -Infinity);
  if (!mask) return softmax(s, -1);
  return attentionWeights(mask.dtype === 'bool' ? where(mask, s, -Infinity) : add(s, mask));
}

/** bool [L, S]: true where query i may attend to key j (j <= i); the causal mask of attention in ops. */
export function causalMask(L: number, S: number, backend: BackendName): Tensor {
  const m = new Uint8Array(L * S);
  for (let i = 0; i < L; i++) m.fill(1, i * S, i * S + Math.min(S, i + 1));
  return tensor(m, [L, S], { dtype: 'bool', backend });
}

/**
 * @internal Fused scaled dot-product attention on [B, L, D] / [B, S, D] / [B, S, Dv] float32 operands, computed
 * blockwise with an online softmax (memory linear in the sequence lengths) by the `attention` kernel; its
 * gradient by `attentionBackward`, or, when a gradient of the gradient is recorded, by the same formulas in ops.
 * A query row whose keys are all masked gives zeros and no gradient, as {@link attentionProbs}.
 */
export function fusedAttention(q: Tensor, k: Tensor, v: Tensor, o: FusedAttentionOptions): Tensor {
  const [B, L, D] = q.shape as [number, number, number];
  const [, S, Dv] = v.shape as [number, number, number];
  const thr = o.dropoutP > 0 ? Math.min(0xffffffff, Math.round(o.dropoutP * 2 ** 32)) : 0;
  // the dropout pattern's seed comes from kiln's RNG, so kn.seed makes it reproducible
  const seed = thr ? noGrad(() => randint([1], 0, 0x7fffffff).item()) : 0;
  const attrs = [o.scale, o.causal ? 1 : 0, thr, seed];
  const extra = o.mask ? [o.mask] : [];
  const packed = runKernel('attention', [q, k, v, ...extra], attrs, [B, L, Dv + 1], 'float32');
  const out = slice(packed, [0, 0, 0], [B, L, Dv]);
  return record('attention', out, [q, k, v], [q, k, v, packed, ...extra], (g, [qq, kk, vv, pk, mm]) => {
    if (isGradEnabled()) return attentionGradOps(qq!, kk!, vv!, g, mm ?? null, o, thr, seed);
    const flat = runKernel(
      'attentionBackward',
      [qq!, kk!, vv!, pk!, g, ...(mm ? [mm] : [])],
      attrs,
      [B * L * D + B * S * D + B * S * Dv],
      'float32',
    );
    const part = (from: number, n: number, shape: number[]): Tensor => reshape(slice(flat, [from], [from + n]), shape);
    return [
      part(0, B * L * D, [B, L, D]),
      part(B * L * D, B * S * D, [B, S, D]),
      part(B * L * D + B * S * D, B * S * Dv, [B, S, Dv]),
    ];
  });
}

/** The attention gradient written in ops (differentiable again), with the kernel's dropout pattern. */
function attentionGradOps(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  g: Tensor,
  mask: Tensor | null,
  o: FusedAttentionOptions,
  thr: number,
  seed: number,
): Tensor[] {
  const [B, L] = q.shape as [number, number];
  const S = k.shape[1]!;
  const be = { backend: q.backendInstance.name };
  const p = attentionProbs(q, k, o.scale, o.causal, mask);
  let keep: Tensor | null = null;
  if (thr) {
    const ks = 1 / (1 - thr / 2 ** 32);
    const f = new Float32Array(B * L * S);
    for (let i = 0; i < f.length; i++) f[i] = attentionKeeps(seed, thr, i) ? ks : 0;
    keep = tensor(f, [B, L, S], be);
  }
  const pd = keep ? p.mul(keep) : p;
  const out = matmul(pd, v);
  const dv = matmul(transpose(pd, -2, -1), g);
  const dpd = matmul(g, transpose(v, -2, -1));
  const dp = keep ? dpd.mul(keep) : dpd;
  const di = g.mul(out).sum(-1, true);
  const ds = p.mul(dp.sub(di)).mul(o.scale);
  return [matmul(ds, k), matmul(transpose(ds, -2, -1), q), dv];
}
