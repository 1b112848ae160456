// Reference int8 linear (the same rules as native/cpu/quant.cc): x is quantized to uint8 exactly as the native
// kernel does it in float32 (round half to even, clamp to [0, 255]); the integer sum and the dequantization
// are then computed in float64.
import { ArgumentError } from '../../errors.js';
import { checkQconv, checkQlinear, checkQlinearInt4 } from '../checks.js';
import type { KernelView } from '../backend.js';
import { maxPoolPlanes } from './conv.js';
import type { KernelFn } from './kernels.js';
import { buf, outBuf } from './util.js';

const f32 = Math.fround;
/** rint in round-half-to-even mode, as C's nearbyint under the default rounding mode. */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The quantization parameters of one row of values (every element finite): the calibrated (sx, zx), or with
 * sx = 0 the row's own range, widened to hold 0. The float32 steps of the native kernels.
 */
function rowQuant(
  v: ArrayLike<number>,
  start: number,
  len: number,
  sx: number,
  zx: number,
  op: string,
): [number, number] {
  let mn = 0,
    mx = 0;
  for (let k = 0; k < len; k++) {
    const e = f32(v[start + k]!);
    if (!Number.isFinite(e)) throw new ArgumentError(`${op}: x has NaN or infinite values (cannot be quantized)`);
    mn = Math.min(mn, e);
    mx = Math.max(mx, e);
  }
  if (sx !== 0) return [f32(sx), zx];
  const range = f32(mx - mn);
  if (range === 0) return [1, 0];
  const s = f32(range / 255);
  return [s, Math.min(255, Math.max(0, roundHalfEven(f32(-mn / s))))];
}
/** One value's uint8 code under (scale, zero): x * (1/scale) in float32, rounded half to even, clamped. */
const code = (x: number, inv: number, z: number): number =>
  Math.min(255, Math.max(0, roundHalfEven(f32(f32(x) * inv)) + z));

/** One operand as its float64 data and the element offset where the tensor starts. */
interface Operand {
  d: Float64Array;
  o: number;
}
/** The (x, weights, scales[, bias]) operands every quantized kernel takes. */
function operands(ins: readonly KernelView[]): { x: Operand; w: Operand; s: Operand; b: Operand | null } {
  const op = (v: KernelView): Operand => ({ d: buf(v.handle), o: v.offset });
  return { x: op(ins[0]!), w: op(ins[1]!), s: op(ins[2]!), b: ins[3] ? op(ins[3]) : null };
}
const biasAt = (b: Operand | null, j: number): number => (b ? b.d[b.o + j]! : 0);

export const quantKernels: Record<string, KernelFn> = {
  // int8 convolution: each image quantized as one row; sum over in-bounds taps of (code - zero) * w, exact;
  // then the ReLU, then the max of each pool x pool window (NaN wins, as in maxPool2d)
  qconv2dInt8: (ins, out, at) => {
    const g = checkQconv(ins, at);
    const { N, C, H, W, O, kh, kw, OH, OW, pool, PH, PW } = g;
    const { x, w, s: ws, b } = operands(ins);
    const o = outBuf(out);
    const img = C * H * W;
    const q = new Float64Array(img);
    const plane = new Float64Array(OH * OW);
    const window = { kh: pool, kw: pool, sh: pool, sw: pool, ph: 0, pw: 0 };
    for (let n = 0; n < N; n++) {
      const [s, z] = rowQuant(x.d, x.o + n * img, img, g.sx, g.zx, 'qconv2dInt8');
      const inv = f32(1 / s);
      for (let e = 0; e < img; e++) q[e] = code(x.d[x.o + n * img + e]!, inv, z) - z;
      for (let oc = 0; oc < O; oc++) {
        const scale = s * f32(ws.d[ws.o + oc]!);
        for (let oh = 0; oh < OH; oh++)
          for (let ow = 0; ow < OW; ow++) {
            let acc = 0;
            for (let c = 0; c < C; c++)
              for (let i = 0; i < kh; i++) {
                const ih = oh * g.sh - g.ph + i * g.dh;
                if (ih < 0 || ih >= H) continue;
                for (let j = 0; j < kw; j++) {
                  const iw = ow * g.sw - g.pw + j * g.dw;
                  if (iw < 0 || iw >= W) continue;
                  acc += q[(c * H + ih) * W + iw]! * w.d[w.o + ((oc * C + c) * kh + i) * kw + j]!;
                }
              }
            const y = acc * scale + biasAt(b, oc);
            plane[oh * OW + ow] = g.relu && y < 0 ? 0 : y;
          }
        maxPoolPlanes(plane, [1, OH, OW, PH, PW], window, o, (n * O + oc) * PH * PW);
      }
    }
  },

  // int4 weight-only: W[j, k] = (nibble - 8) * scale[j, k / g]; y = x W^T + b in float64
  qlinearInt4: (ins, out, at) => {
    const { M, K, N, G, g } = checkQlinearInt4(ins, at);
    const { x, w, s, b } = operands(ins);
    const o = outBuf(out);
    const half = (G * g) / 2;
    const W = new Float64Array(N * K);
    for (let j = 0; j < N; j++)
      for (let k = 0; k < K; k++) {
        const byte = w.d[w.o + j * half + (k >> 1)]!;
        const q = (k & 1 ? byte >> 4 : byte & 15) - 8;
        W[j * K + k] = q * f32(s.d[s.o + j * G + Math.floor(k / g)]!);
      }
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let acc = 0;
        for (let k = 0; k < K; k++) acc += x.d[x.o + i * K + k]! * W[j * K + k]!;
        o[i * N + j] = acc + biasAt(b, j);
      }
  },
  qlinearInt8: (ins, out, at) => {
    const { M, K, N, sx, zx } = checkQlinear(ins, at);
    const { x, w, s: ws, b } = operands(ins);
    const o = outBuf(out);
    const wsum = new Float64Array(N);
    for (let j = 0; j < N; j++) for (let k = 0; k < K; k++) wsum[j] = wsum[j]! + w.d[w.o + j * K + k]!;
    const q = new Float64Array(K);
    for (let i = 0; i < M; i++) {
      const [s, z] = rowQuant(x.d, x.o + i * K, K, sx, zx, 'qlinearInt8');
      const inv = f32(1 / s);
      for (let k = 0; k < K; k++) q[k] = code(x.d[x.o + i * K + k]!, inv, z);
      for (let j = 0; j < N; j++) {
        let acc = 0;
        for (let k = 0; k < K; k++) acc += q[k]! * w.d[w.o + j * K + k]!;
        o[i * N + j] = (acc - z * wsum[j]!) * s * f32(ws.d[ws.o + j]!) + biasAt(b, j);
      }
    }
  },
};
