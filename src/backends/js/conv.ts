import type { KernelFn } from './kernels.js';
import { gatherView, outBuf } from './util.js';
import { attrsOf, groupAttrs } from '../../ops/table.js';

interface Conv {
  sh: number;
  sw: number;
  ph: number;
  pw: number;
  dh: number;
  dw: number;
  groups: number;
}
const convAttrs = (a: readonly number[]): Conv => {
  const c = groupAttrs('conv', a);
  return { sh: c.strideH, sw: c.strideW, ph: c.padH, pw: c.padW, dh: c.dilationH, dw: c.dilationW, groups: c.groups };
};

/** Calls f(n, o, oh, ow, c, i, j, ih, iw) for every in-bounds tap of a grouped conv (the reference loop nest). */
function forEachTap(
  N: number,
  C: number,
  H: number,
  W: number,
  O: number,
  kh: number,
  kw: number,
  OH: number,
  OW: number,
  p: Conv,
  f: (xi: number, wi: number, oi: number) => void,
): void {
  const Cg = C / p.groups,
    Og = O / p.groups;
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++) {
      const g = Math.floor(o / Og);
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++) {
          const oi = ((n * O + o) * OH + oh) * OW + ow;
          for (let c = 0; c < Cg; c++)
            for (let i = 0; i < kh; i++) {
              const ih = oh * p.sh - p.ph + i * p.dh;
              if (ih < 0 || ih >= H) continue;
              for (let j = 0; j < kw; j++) {
                const iw = ow * p.sw - p.pw + j * p.dw;
                if (iw < 0 || iw >= W) continue;
                f(((n * C + g * Cg + c) * H + ih) * W + iw, ((o * Cg + c) * kh + i) * kw + j, oi);
              }
            }
        }
    }
}

export interface Pool {
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  ph: number;
  pw: number;
}
const poolAttrs = (a: readonly number[]): Pool => {
  const p = groupAttrs('pool', a);
  return { kh: p.kernelH, kw: p.kernelW, sh: p.strideH, sw: p.strideW, ph: p.padH, pw: p.padW };
};

function forEachWindow(
  NC: number,
  H: number,
  W: number,
  OH: number,
  OW: number,
  p: Pool,
  f: (plane: number, oi: number, taps: number[]) => void,
): void {
  for (let nc = 0; nc < NC; nc++)
    for (let oh = 0; oh < OH; oh++)
      for (let ow = 0; ow < OW; ow++) {
        const taps: number[] = [];
        for (let i = 0; i < p.kh; i++) {
          const ih = oh * p.sh - p.ph + i;
          if (ih < 0 || ih >= H) continue;
          for (let j = 0; j < p.kw; j++) {
            const iw = ow * p.sw - p.pw + j;
            if (iw >= 0 && iw < W) taps.push((nc * H + ih) * W + iw);
          }
        }
        f(nc, (nc * OH + oh) * OW + ow, taps);
      }
}

/** The max of each window of NC planes x [NC, H, W] into o [NC, OH, OW] from offset at (NaN wins, as on every
 * backend): maxPool2d's forward, and the pool inside the int8 convolution's reference. */
export function maxPoolPlanes(
  x: ArrayLike<number>,
  dims: readonly [NC: number, H: number, W: number, OH: number, OW: number],
  p: Pool,
  o: Float64Array,
  at: number,
): void {
  const [NC, H, W, OH, OW] = dims;
  forEachWindow(NC, H, W, OH, OW, p, (_p, oi, taps) => {
    let m = -Infinity;
    for (const t of taps) m = Number.isNaN(x[t]!) || Number.isNaN(m) ? NaN : Math.max(m, x[t]!);
    o[at + oi] = m;
  });
}

export const convKernels: Record<string, KernelFn> = {
  conv2d: (ins, out, attrs) => {
    const x = gatherView(ins[0]!),
      w = gatherView(ins[1]!),
      o = outBuf(out);
    const [N, C, H, W] = ins[0]!.shape as [number, number, number, number];
    const [O, , kh, kw] = ins[1]!.shape as [number, number, number, number];
    const [, , OH, OW] = out.shape as [number, number, number, number];
    o.fill(0);
    forEachTap(N, C, H, W, O, kh, kw, OH, OW, convAttrs(attrs), (xi, wi, oi) => {
      o[oi]! += x[xi]! * w[wi]!;
    });
  },
  conv2dBackwardInput: (ins, out, attrs) => {
    const gy = gatherView(ins[0]!),
      w = gatherView(ins[1]!),
      dx = outBuf(out);
    const [N, C, H, W] = out.shape as [number, number, number, number];
    const [O, , kh, kw] = ins[1]!.shape as [number, number, number, number];
    const [, , OH, OW] = ins[0]!.shape as [number, number, number, number];
    dx.fill(0);
    forEachTap(N, C, H, W, O, kh, kw, OH, OW, convAttrs(attrs), (xi, wi, oi) => {
      dx[xi]! += gy[oi]! * w[wi]!;
    });
  },
  conv2dBackwardWeight: (ins, out, attrs) => {
    const x = gatherView(ins[0]!),
      gy = gatherView(ins[1]!),
      dw = outBuf(out);
    const [N, C, H, W] = ins[0]!.shape as [number, number, number, number];
    const [O, , kh, kw] = out.shape as [number, number, number, number];
    const [, , OH, OW] = ins[1]!.shape as [number, number, number, number];
    dw.fill(0);
    forEachTap(N, C, H, W, O, kh, kw, OH, OW, convAttrs(attrs), (xi, wi, oi) => {
      dw[wi]! += x[xi]! * gy[oi]!;
    });
  },
  maxPool2d: (ins, out, attrs) => {
    const x = gatherView(ins[0]!),
      o = outBuf(out);
    const [N, C, H, W] = ins[0]!.shape as [number, number, number, number];
    const [, , OH, OW] = out.shape as [number, number, number, number];
    maxPoolPlanes(x, [N * C, H, W, OH, OW], poolAttrs(attrs), o, 0);
  },
  maxPool2dBackward: (ins, out, attrs) => {
    const x = gatherView(ins[0]!),
      gy = gatherView(ins[1]!),
      dx = outBuf(out);
    const [N, C, H, W] = ins[0]!.shape as [number, number, number, number];
    const [, , OH, OW] = ins[1]!.shape as [number, number, number, number];
    dx.fill(0);
    forEachWindow(N * C, H, W, OH, OW, poolAttrs(attrs), (_p, oi, taps) => {
      let best = -1,
        m = -Infinity;
      for (const t of taps) {
        const v = x[t]!;
        if (best < 0 || v > m || (Number.isNaN(v) && !Number.isNaN(m))) {
          m = v;
          best = t;
        }
      }
      if (best >= 0) dx[best]! += gy[oi]!;
    });
  },
  avgPool2d: (ins, out, attrs) => {
    const x = gatherView(ins[0]!),
      o = outBuf(out);
    const [N, C, H, W] = ins[0]!.shape as [number, number, number, number];
    const [, , OH, OW] = out.shape as [number, number, number, number];
    const p = poolAttrs(attrs);
    const includePad = attrsOf('avgPool2d', attrs).countIncludePad !== 0;
    forEachWindow(N * C, H, W, OH, OW, p, (_p, oi, taps) => {
      let s = 0;
      for (const t of taps) s += x[t]!;
      const div = includePad ? p.kh * p.kw : taps.length;
      o[oi] = div > 0 ? s / div : 0;
    });
  },
  avgPool2dBackward: (ins, out, attrs) => {
    const gy = gatherView(ins[0]!),
      dx = outBuf(out);
    const [N, C, H, W] = out.shape as [number, number, number, number];
    const [, , OH, OW] = ins[0]!.shape as [number, number, number, number];
    const p = poolAttrs(attrs);
    const includePad = attrsOf('avgPool2dBackward', attrs).countIncludePad !== 0;
    dx.fill(0);
    forEachWindow(N * C, H, W, OH, OW, p, (_p, oi, taps) => {
      const div = includePad ? p.kh * p.kw : taps.length;
      if (div === 0) return;
      for (const t of taps) dx[t]! += gy[oi]! / div;
    });
  },
};
