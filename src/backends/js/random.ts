// Philox4x32-10 in exact 32-bit arithmetic: the reference for native/cpu/random.cc (and every other backend).
import { checkRandomInt } from '../checks.js';
import type { KernelFn } from './kernels.js';
import { outBuf } from './util.js';
import { attrsOf, groupAttrs } from '../../ops/table.js';

function mulhi(a: number, b: number): number {
  const aL = a & 0xffff,
    aH = a >>> 16,
    bL = b & 0xffff,
    bH = b >>> 16;
  const ll = aL * bL,
    lh = aL * bH,
    hl = aH * bL,
    hh = aH * bH;
  const cross = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (hh + (lh >>> 16) + (hl >>> 16) + Math.floor(cross / 65536)) >>> 0;
}

/** One Philox4x32-10 block for counter (c0, c1, 0, 0) and key (k0, k1). */
export function philox(c0: number, c1: number, k0: number, k1: number, out: Uint32Array): void {
  let x0 = c0 >>> 0,
    x1 = c1 >>> 0,
    x2 = 0,
    x3 = 0;
  for (let r = 0; r < 10; r++) {
    const hi0 = mulhi(0xd2511f53, x0),
      lo0 = Math.imul(0xd2511f53, x0) >>> 0;
    const hi1 = mulhi(0xcd9e8d57, x2),
      lo1 = Math.imul(0xcd9e8d57, x2) >>> 0;
    const n0 = (hi1 ^ x1 ^ k0) >>> 0;
    const n2 = (hi0 ^ x3 ^ k1) >>> 0;
    x1 = lo1;
    x3 = lo0;
    x0 = n0;
    x2 = n2;
    k0 = (k0 + 0x9e3779b9) >>> 0;
    k1 = (k1 + 0xbb67ae85) >>> 0;
  }
  out[0] = x0;
  out[1] = x1;
  out[2] = x2;
  out[3] = x3;
}

function blocks(attrs: readonly number[], n: number, f: (i0: number, u: Uint32Array) => void): void {
  const { key0, key1, ctrLo: lo, ctrHi: hi } = groupAttrs('rng', attrs);
  const k0 = key0 >>> 0,
    k1 = key1 >>> 0;
  const u = new Uint32Array(4);
  for (let b = 0; b * 4 < n; b++) {
    // 64-bit counter = (hi:lo) + b
    const s = lo + b;
    const c0 = s % 4294967296;
    const c1 = (hi + Math.floor(s / 4294967296)) % 4294967296;
    philox(c0, c1, k0, k1, u);
    f(b * 4, u);
  }
}

export const randomKernels: Record<string, KernelFn> = {
  randomUniform: (_ins, out, attrs) => {
    const o = outBuf(out);
    const { low: lo, high: hi } = attrsOf('randomUniform', attrs);
    blocks(attrs, o.length, (i0, u) => {
      for (let l = 0; l < 4 && i0 + l < o.length; l++)
        o[i0 + l] = Math.fround(lo + (hi - lo) * ((u[l]! >>> 8) / 16777216));
    });
  },
  randomNormal: (_ins, out, attrs) => {
    const o = outBuf(out);
    const { mean, std: sd } = attrsOf('randomNormal', attrs);
    const z = new Float64Array(4);
    blocks(attrs, o.length, (i0, u) => {
      for (let p = 0; p < 2; p++) {
        const u1 = (u[2 * p]! + 1) / 4294967296;
        const u2 = u[2 * p + 1]! / 4294967296;
        const r = Math.sqrt(-2 * Math.log(u1));
        const th = 6.283185307179586 * u2;
        z[2 * p] = r * Math.cos(th);
        z[2 * p + 1] = r * Math.sin(th);
      }
      for (let l = 0; l < 4 && i0 + l < o.length; l++) o[i0 + l] = Math.fround(mean + sd * z[l]!);
    });
  },
  randomInt: (_ins, out, attrs) => {
    const o = outBuf(out);
    const { low: lo, high: hi } = attrsOf('randomInt', attrs);
    checkRandomInt(lo, hi);
    const range = hi - lo;
    const exact = range < 2 ** 21;
    blocks(attrs, o.length, (i0, u) => {
      for (let l = 0; l < 4 && i0 + l < o.length; l++) {
        const v = exact ? Math.floor((u[l]! * range) / 4294967296) : Number((BigInt(u[l]!) * BigInt(range)) >> 32n);
        o[i0 + l] = lo + v;
      }
    });
  },
};
