// Reference int8 linear (the same rules as native/cpu/quant.cc): x is quantized to uint8 exactly as the native
// kernel does it in float32 (round half to even, clamp to [0, 255]); the integer sum and the dequantization
// are then computed in float64.
import { ArgumentError } from '../../errors.js';
import { checkQlinear, checkQlinearInt4 } from '../checks.js';
import type { KernelFn } from './kernels.js';
import { buf, outBuf } from './util.js';

const f32 = Math.fround;
/** rint in round-half-to-even mode, as C's nearbyint under the default rounding mode. */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export const quantKernels: Record<string, KernelFn> = {
  // int4 weight-only: W[j, k] = (nibble - 8) * scale[j, k / g]; y = x W^T + b in float64
  qlinearInt4: (ins, out, at) => {
    const { M, K, N, G, g } = checkQlinearInt4(ins, at);
    const [x, w, s, b] = ins as [(typeof ins)[0], (typeof ins)[0], (typeof ins)[0], (typeof ins)[0] | undefined];
    const px = buf(x!.handle),
      pw = buf(w!.handle),
      ps = buf(s!.handle),
      pb = b ? buf(b.handle) : null,
      o = outBuf(out);
    const half = (G * g) / 2;
    const W = new Float64Array(N * K);
    for (let j = 0; j < N; j++)
      for (let k = 0; k < K; k++) {
        const byte = pw[w!.offset + j * half + (k >> 1)]!;
        const q = (k & 1 ? byte >> 4 : byte & 15) - 8;
        W[j * K + k] = q * f32(ps[s!.offset + j * G + Math.floor(k / g)]!);
      }
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let acc = 0;
        for (let k = 0; k < K; k++) acc += px[x!.offset + i * K + k]! * W[j * K + k]!;
        o[i * N + j] = acc + (pb ? pb[b!.offset + j]! : 0);
      }
  },
  qlinearInt8: (ins, out, at) => {
    const { M, K, N, sx, zx } = checkQlinear(ins, at);
    const [x, w, ws, b] = ins as [(typeof ins)[0], (typeof ins)[0], (typeof ins)[0], (typeof ins)[0] | undefined];
    const px = buf(x!.handle),
      pw = buf(w!.handle),
      psw = buf(ws!.handle),
      pb = b ? buf(b.handle) : null,
      o = outBuf(out);
    const wsum = new Float64Array(N);
    for (let j = 0; j < N; j++) for (let k = 0; k < K; k++) wsum[j] = wsum[j]! + pw[w!.offset + j * K + k]!;
    const q = new Float64Array(K);
    for (let i = 0; i < M; i++) {
      let mn = 0,
        mx = 0;
      for (let k = 0; k < K; k++) {
        const v = f32(px[x!.offset + i * K + k]!);
        if (!Number.isFinite(v))
          throw new ArgumentError('qlinearInt8: x has NaN or infinite values (cannot be quantized)');
        mn = Math.min(mn, v);
        mx = Math.max(mx, v);
      }
      let s = f32(sx),
        z = zx;
      if (sx === 0) {
        const range = f32(mx - mn);
        if (range === 0) {
          s = 1;
          z = 0;
        } else {
          s = f32(range / 255);
          z = Math.min(255, Math.max(0, roundHalfEven(f32(-mn / s))));
        }
      }
      const inv = f32(1 / s);
      for (let k = 0; k < K; k++)
        q[k] = Math.min(255, Math.max(0, roundHalfEven(f32(f32(px[x!.offset + i * K + k]!) * inv)) + z));
      for (let j = 0; j < N; j++) {
        let acc = 0;
        for (let k = 0; k < K; k++) acc += q[k]! * pw[w!.offset + j * K + k]!;
        o[i * N + j] = (acc - z * wsum[j]!) * s * f32(psw[ws!.offset + j]!) + (pb ? pb[b!.offset + j]! : 0);
      }
    }
  },
};
