import { attrsOf } from '../../ops/table.js';
import { castValue } from '../../tensor/dtype.js';
import { attentionKeeps, checkAttention } from '../checks.js';
import type { KernelFn } from './kernels.js';
import { buf, gatherView, outBuf, prod } from './util.js';

function matmul(...args: Parameters<KernelFn>): void {
  const [ins, out] = args;
  {
    const a = ins[0]!,
      b = ins[1]!;
    const nd = a.shape.length;
    const M = a.shape[nd - 2]!,
      K = a.shape[nd - 1]!,
      N = b.shape[nd - 1]!;
    const batch = prod(out.shape, 0, nd - 2);
    const pa = buf(a.handle),
      pb = buf(b.handle),
      o = outBuf(out);
    // matmulBf16 may write bfloat16: the float64 sum rounded once, as a float32 one cast would be
    const bf16Out = out.dtype === 'bfloat16';
    const ars = a.strides[nd - 2]!,
      acs = a.strides[nd - 1]!,
      brs = b.strides[nd - 2]!,
      bcs = b.strides[nd - 1]!;
    for (let bi = 0; bi < batch; bi++) {
      let oa = a.offset,
        ob = b.offset,
        rem = bi;
      for (let d = nd - 3; d >= 0; d--) {
        const idx = rem % out.shape[d]!;
        rem = Math.floor(rem / out.shape[d]!);
        oa += idx * a.strides[d]!;
        ob += idx * b.strides[d]!;
      }
      for (let i = 0; i < M; i++) {
        for (let j = 0; j < N; j++) {
          let s = 0;
          for (let k = 0; k < K; k++) s += pa[oa + i * ars + k * acs]! * pb[ob + k * brs + j * bcs]!;
          o[(bi * M + i) * N + j] = bf16Out ? castValue(s, 'bfloat16') : s;
        }
      }
    }
  }
}

/** The pieces both attention kernels need: inputs as float64 arrays and the score of (b, i, j). */
function attentionSetup(
  ins: Parameters<KernelFn>[0],
  want: number,
  op: 'attention' | 'attentionBackward',
  at: readonly number[],
) {
  const geo = checkAttention(ins, want, op, at);
  const { L, S, D } = geo;
  const { scale, causal, dropoutThreshold: thr, seed } = attrsOf(op, at);
  const [q, k, v] = [0, 1, 2].map((i) => gatherView(ins[i]!)) as [Float64Array, Float64Array, Float64Array];
  const mask = geo.mask ? gatherView(geo.mask) : null;
  const score = (b: number, i: number, j: number): number => {
    if (causal && j > i) return -Infinity;
    let s = 0;
    for (let d = 0; d < D; d++) s += q[(b * L + i) * D + d]! * k[(b * S + j) * D + d]!;
    s *= scale;
    if (mask) s += mask[((geo.maskBatched ? b : 0) * L + i) * S + j]!;
    return s;
  };
  const ks = 1 / (1 - thr / 2 ** 32);
  /** the dropout factor of weight (b, i, j): 0 when dropped, 1/(1-p) when kept */
  const keep = (b: number, i: number, j: number): number =>
    thr === 0 ? 1 : attentionKeeps(seed, thr, (b * L + i) * S + j) ? ks : 0;
  return { ...geo, q, k, v, score, keep, scale };
}

/** softmax(q k^T * scale + mask) (dropped out) v per row, and the row's log-sum-exp, in float64. */
const attention: KernelFn = (ins, out, at) => {
  const { B, L, S, Dv, v, score, keep } = attentionSetup(ins, 3, 'attention', at);
  const o = outBuf(out);
  const s = new Float64Array(S);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < L; i++) {
      let m = -Infinity;
      for (let j = 0; j < S; j++) m = Math.max(m, (s[j] = score(b, i, j)));
      const row = (b * L + i) * (Dv + 1);
      if (m === -Infinity) {
        // every key masked: zero outputs and log-sum-exp -inf (PyTorch's SDPA since 2.5; the backward skips the row)
        o.fill(0, row, row + Dv);
        o[row + Dv] = -Infinity;
        continue;
      }
      let l = 0;
      for (let j = 0; j < S; j++) l += s[j] = Math.exp(s[j]! - m);
      for (let e = 0; e < Dv; e++) o[row + e] = 0;
      for (let j = 0; j < S; j++) {
        const w = (s[j]! / l) * keep(b, i, j);
        if (w !== 0) for (let e = 0; e < Dv; e++) o[row + e] = o[row + e]! + w * v[(b * S + j) * Dv + e]!;
      }
      o[row + Dv] = m + Math.log(l);
    }
};

/** dq, dk, dv of attention from the forward's packed output and the output gradient, in float64. */
const attentionBackward: KernelFn = (ins, out, at) => {
  const { B, L, S, D, Dv, q, k, v, score, keep, scale } = attentionSetup(ins, 5, 'attentionBackward', at);
  const fo = gatherView(ins[3]!),
    go = gatherView(ins[4]!);
  const o = outBuf(out);
  o.fill(0);
  const dq = 0,
    dk = B * L * D,
    dv = dk + B * S * D;
  for (let b = 0; b < B; b++)
    for (let i = 0; i < L; i++) {
      const row = (b * L + i) * (Dv + 1);
      const lse = fo[row + Dv]!;
      let Di = 0;
      for (let e = 0; e < Dv; e++) Di += go[(b * L + i) * Dv + e]! * fo[row + e]!;
      for (let j = 0; j < S; j++) {
        const sc = score(b, i, j);
        if (sc === -Infinity) continue;
        const P = Math.exp(sc - lse),
          kf = keep(b, i, j);
        let dPd = 0;
        for (let e = 0; e < Dv; e++) {
          const g = go[(b * L + i) * Dv + e]!;
          o[dv + (b * S + j) * Dv + e] = o[dv + (b * S + j) * Dv + e]! + P * kf * g;
          dPd += g * v[(b * S + j) * Dv + e]!;
        }
        const dS = P * (dPd * kf - Di) * scale;
        for (let d = 0; d < D; d++) {
          o[dq + (b * L + i) * D + d] = o[dq + (b * L + i) * D + d]! + dS * k[(b * S + j) * D + d]!;
          o[dk + (b * S + j) * D + d] = o[dk + (b * S + j) * D + d]! + dS * q[(b * L + i) * D + d]!;
        }
      }
    }
};

export const matmulKernels: Record<string, KernelFn> = {
  matmul,
  attention,
  attentionBackward,
  // the inputs hold exact bfloat16 values; the product is computed in float64 like matmul's, written as float32
  // or rounded to bfloat16
  matmulBf16: matmul,
};
