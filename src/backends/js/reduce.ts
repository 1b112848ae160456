import { ArgumentError, ShapeError } from '../../errors.js';
import { checkColumns, checkCrossEntropy, checkLayerNorm, checkQuantile } from '../checks.js';
import type { KernelView } from '../backend.js';
import type { KernelFn } from './kernels.js';
import { gatherView, outBuf, prod, writeCanon } from './util.js';
import { attrsOf, groupAttrs } from '../../ops/table.js';

function dims3(shape: readonly number[], a0: number, a1: number): [number, number, number] {
  return [prod(shape, 0, a0), prod(shape, a0, a1), prod(shape, a1)];
}

function reduceWith(
  name: string,
  init: (x: Float64Array, base: number) => number,
  step: (acc: number, v: number) => number,
  needsNonEmpty: boolean,
): KernelFn {
  return (ins, out, attrs) => {
    const v = ins[0]!;
    const x = gatherView(v);
    const axes = groupAttrs('axes', attrs);
    const [outer, r, inner] = dims3(v.shape, axes.axisStart, axes.axisEnd);
    if (needsNonEmpty && r === 0 && outer * inner > 0) {
      throw new ShapeError(
        `${name} over an empty axis has no identity; the reduced axes of [${v.shape.join(', ')}] have size 0`,
      );
    }
    const o = new Float64Array(outer * inner);
    const f = name === 'sum' && v.dtype === 'int32' ? (a: number, b: number): number => (a + b) | 0 : step;
    for (let i = 0; i < outer; i++) {
      for (let j = 0; j < inner; j++) {
        const base = i * r * inner + j;
        let acc = init(x, base);
        for (let k = needsNonEmpty ? 1 : 0; k < r; k++) acc = f(acc, x[base + k * inner]!);
        o[i * inner + j] = acc;
      }
    }
    writeCanon(out, o);
  };
}

const nanMax = (a: number, v: number): number => (Number.isNaN(a) || Number.isNaN(v) ? NaN : v > a ? v : a);
const nanMin = (a: number, v: number): number => (Number.isNaN(a) || Number.isNaN(v) ? NaN : v < a ? v : a);

function argReduce(isMax: boolean): KernelFn {
  return (ins, out, attrs) => {
    const v = ins[0]!;
    const { axis } = attrsOf(isMax ? 'argmax' : 'argmin', attrs);
    const x = gatherView(v);
    const [outer, r, inner] = dims3(v.shape, axis, axis + 1);
    if (r === 0 && outer * inner > 0)
      throw new ShapeError(`${isMax ? 'argmax' : 'argmin'} over an empty axis of [${v.shape.join(', ')}]`);
    const o = new Float64Array(outer * inner);
    for (let i = 0; i < outer; i++) {
      for (let j = 0; j < inner; j++) {
        const base = i * r * inner + j;
        let best = 0,
          bv = x[base]!;
        for (let k = 1; k < r; k++) {
          if (Number.isNaN(bv)) break;
          const val = x[base + k * inner]!;
          if (Number.isNaN(val) || (isMax ? val > bv : val < bv)) {
            bv = val;
            best = k;
          }
        }
        o[i * inner + j] = best;
      }
    }
    writeCanon(out, o);
  };
}

function softmaxKernel(log: boolean): KernelFn {
  return (ins, out, attrs) => {
    const v = ins[0]!;
    const { axis } = attrsOf(log ? 'logSoftmax' : 'softmax', attrs);
    const x = gatherView(v);
    const [outer, n, inner] = dims3(v.shape, axis, axis + 1);
    const o = new Float64Array(x.length);
    for (let i = 0; i < outer; i++) {
      for (let j = 0; j < inner; j++) {
        const base = i * n * inner + j;
        let m = -Infinity;
        for (let k = 0; k < n; k++) {
          const val = x[base + k * inner]!;
          if (val > m) m = val;
        }
        if (m === -Infinity) m = 0;
        let s = 0;
        for (let k = 0; k < n; k++) s += Math.exp(x[base + k * inner]! - m);
        if (log) {
          // (x - m) - log s, not x - (m + log s): m + log s rounds away log s when |m| is large
          const ls = Math.log(s);
          for (let k = 0; k < n; k++) o[base + k * inner] = x[base + k * inner]! - m - ls;
        } else {
          for (let k = 0; k < n; k++) o[base + k * inner] = Math.exp(x[base + k * inner]! - m) / s;
        }
      }
    }
    writeCanon(out, o);
  };
}

export const reduceKernels: Record<string, KernelFn> = {
  sum: reduceWith(
    'sum',
    () => 0,
    (a, v) => a + v,
    false,
  ),
  max: reduceWith('max', (x, b) => x[b]!, nanMax, true),
  min: reduceWith('min', (x, b) => x[b]!, nanMin, true),
  argmax: argReduce(true),
  argmin: argReduce(false),
  rowHash: (ins, out) => {
    const [n, f] = checkColumns(ins[0]!, 'rowHash');
    const words = new Uint32Array(Float32Array.from(gatherView(ins[0]!)).buffer),
      o = outBuf(out);
    for (let i = 0; i < n; i++) {
      let h1 = (0x811c9dc5 ^ f) >>> 0,
        h2 = 0x9e3779b9;
      for (let k = i * f; k < (i + 1) * f; k++) {
        const raw = words[k]!;
        const v = (raw & 0x7f800000) === 0x7f800000 && (raw & 0x7fffff) !== 0 ? 0x7fc00000 : raw;
        h1 = Math.imul(h1 ^ v, 0x01000193) >>> 0;
        h2 = Math.imul(h2 ^ v, 0x5bd1e995) >>> 0;
        h2 = (h2 ^ (h2 >>> 13)) >>> 0;
      }
      o[2 * i] = h1 | 0;
      o[2 * i + 1] = h2 | 0;
    }
  },
  nanColumnStats: (ins, out) => {
    const [n, f] = checkColumns(ins[0]!, 'nanColumnStats');
    const x = gatherView(ins[0]!),
      o = outBuf(out);
    for (let j = 0; j < f; j++) {
      let cnt = 0,
        sum = 0,
        lo = Infinity,
        hi = -Infinity;
      for (let i = 0; i < n; i++) {
        const v = x[i * f + j]!;
        if (!Number.isNaN(v)) {
          cnt++;
          sum += v;
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
        }
      }
      const mean = sum / cnt;
      let ss = 0;
      for (let i = 0; i < n; i++) {
        const v = x[i * f + j]!;
        if (!Number.isNaN(v)) ss += (v - mean) ** 2;
      }
      o[j] = cnt;
      o[f + j] = cnt ? mean : NaN;
      o[2 * f + j] = cnt ? ss / cnt : NaN;
      o[3 * f + j] = cnt ? lo : NaN;
      o[4 * f + j] = cnt ? hi : NaN;
    }
  },
  nanQuantile: (ins, out, at) => {
    const [n, f] = checkColumns(ins[0]!, 'nanQuantile');
    const { q } = attrsOf('nanQuantile', at);
    checkQuantile(q);
    const x = gatherView(ins[0]!),
      o = outBuf(out);
    for (let j = 0; j < f; j++) {
      const col: number[] = [];
      for (let i = 0; i < n; i++) if (!Number.isNaN(x[i * f + j]!)) col.push(x[i * f + j]!);
      if (!col.length) {
        o[j] = NaN;
        continue;
      }
      col.sort((a, b) => a - b);
      const pos = q * (col.length - 1),
        k = Math.floor(pos),
        frac = pos - k;
      o[j] = frac === 0 ? col[k]! : col[k]! + (col[k + 1]! - col[k]!) * frac;
    }
  },
  softmaxCrossEntropy: (ins, out, at) => {
    const { x, y, w, n, c } = ceArgs(ins, 2, 'softmaxCrossEntropy');
    const s = attrsOf('softmaxCrossEntropy', at).labelSmoothing,
      o = outBuf(out);
    for (let r = 0; r < n; r++) {
      const { m, ls } = rowShift(x, r * c, c);
      const wy = w ? w[y[r]!]! : 1;
      let loss = -(1 - s) * wy * (x[r * c + y[r]!]! - m - ls);
      if (s !== 0) {
        let acc = 0;
        for (let k = 0; k < c; k++) acc += (w ? w[k]! : 1) * (x[r * c + k]! - m - ls);
        loss -= (s / c) * acc;
      }
      o[r] = loss;
    }
  },
  softmaxCrossEntropyBackward: (ins, out, at) => {
    const { x, y, w, n, c } = ceArgs(ins, 3, 'softmaxCrossEntropyBackward');
    const g = gatherView(ins[2]!);
    const s = attrsOf('softmaxCrossEntropyBackward', at).labelSmoothing,
      o = outBuf(out);
    const W = w ? w.reduce((a, v) => a + v, 0) : c;
    for (let r = 0; r < n; r++) {
      const { m, ls } = rowShift(x, r * c, c);
      const hard = (1 - s) * (w ? w[y[r]!]! : 1);
      for (let k = 0; k < c; k++) {
        const p = Math.exp(x[r * c + k]! - m - ls);
        o[r * c + k] = g[r]! * (hard * p + (s / c) * (p * W - (w ? w[k]! : 1)));
      }
      o[r * c + y[r]!]! -= g[r]! * hard;
    }
  },
  layerNorm: (ins, out, at) => {
    const { R, C, affine } = checkLayerNorm(ins, 'layerNorm', at);
    const { eps } = attrsOf('layerNorm', at);
    const x = gatherView(ins[0]!),
      w = affine ? gatherView(ins[1]!) : null,
      b = affine ? gatherView(ins[2]!) : null,
      o = outBuf(out);
    for (let r = 0; r < R; r++) {
      const { mu, rstd } = rowStats(x, r * C, C, eps);
      for (let c = 0; c < C; c++) {
        const xh = (x[r * C + c]! - mu) * rstd;
        o[r * C + c] = w ? xh * w[c]! + b![c]! : xh;
      }
    }
  },
  layerNormBackward: (ins, out, at) => {
    const { R, C, affine } = checkLayerNorm(ins, 'layerNormBackward', at);
    const { eps } = attrsOf('layerNormBackward', at);
    const x = gatherView(ins[0]!),
      g = gatherView(ins[1]!),
      w = affine ? gatherView(ins[2]!) : null,
      o = outBuf(out);
    o.fill(0);
    const dw = R * C,
      db = R * C + C;
    for (let r = 0; r < R; r++) {
      const { mu, rstd } = rowStats(x, r * C, C, eps);
      let m1 = 0,
        m2 = 0;
      for (let c = 0; c < C; c++) {
        const xh = (x[r * C + c]! - mu) * rstd,
          gy = g[r * C + c]!,
          dxh = w ? gy * w[c]! : gy;
        m1 += dxh;
        m2 += dxh * xh;
        o[dw + c] = o[dw + c]! + gy * xh;
        o[db + c] = o[db + c]! + gy;
      }
      m1 /= C;
      m2 /= C;
      for (let c = 0; c < C; c++) {
        const xh = (x[r * C + c]! - mu) * rstd,
          dxh = w ? g[r * C + c]! * w[c]! : g[r * C + c]!;
        o[r * C + c] = rstd * (dxh - m1 - xh * m2);
      }
    }
  },
  softmax: softmaxKernel(false),
  logSoftmax: softmaxKernel(true),
};

/** A row's mean and 1/sqrt(population variance + eps), two-pass, in float64. */
function rowStats(x: Float64Array, off: number, C: number, eps: number): { mu: number; rstd: number } {
  let mu = 0;
  for (let c = 0; c < C; c++) mu += x[off + c]!;
  mu /= C;
  let v = 0;
  for (let c = 0; c < C; c++) v += (x[off + c]! - mu) ** 2;
  return { mu, rstd: 1 / Math.sqrt(v / C + eps) };
}

function ceArgs(
  ins: readonly KernelView[],
  want: number,
  op: string,
): { x: Float64Array; y: Float64Array; w: Float64Array | null; n: number; c: number } {
  const { n, c, weight } = checkCrossEntropy(ins, want, op);
  const w = weight ? gatherView(weight) : null;
  const y = gatherView(ins[1]!);
  for (let i = 0; i < n; i++) {
    if (!(y[i]! >= 0 && y[i]! < c))
      throw new ArgumentError(
        `crossEntropy label ${y[i]} at index ${i} is out of range; expected a class in [0, ${c}) (set ignoreIndex to leave padding rows out)`,
      );
  }
  return { x: gatherView(ins[0]!), y, w, n, c };
}

/** A row's max m and ls = log sum exp(x - m): its log-softmax is (x - m) - ls, which keeps ls when |m| is large
 * (x - (m + ls) would round it away). */
function rowShift(x: Float64Array, off: number, c: number): { m: number; ls: number } {
  let m = -Infinity;
  for (let k = 0; k < c; k++) m = Math.max(m, x[off + k]!);
  if (m === -Infinity) m = 0;
  let s = 0;
  for (let k = 0; k < c; k++) s += Math.exp(x[off + k]! - m);
  return { m, ls: Math.log(s) };
}
