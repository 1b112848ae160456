import { checkBiasAct, checkClamp } from '../checks.js';
import type { KernelFn } from './kernels.js';
import { erfc, gatherView, outBuf, writeCanon } from './util.js';
import { castValue } from '../../tensor/dtype.js';
import { attrsOf } from '../../ops/table.js';

const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
export const gelu = (x: number): number => 0.5 * x * erfc(-x * SQRT1_2);
export const geluGrad = (x: number): number => 0.5 * erfc(-x * SQRT1_2) + x * INV_SQRT_2PI * Math.exp(-0.5 * x * x);

const unaryF: Record<string, (x: number) => number> = {
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  tanh: Math.tanh,
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  gelu,
  silu: (x) => x / (1 + Math.exp(-x)),
};

function unary(f: (x: number) => number, intF?: (x: number) => number): KernelFn {
  return (ins, out) => {
    const a = gatherView(ins[0]!);
    const g = ins[0]!.dtype === 'int32' && intF ? intF : f;
    const r = new Float64Array(a.length);
    for (let i = 0; i < a.length; i++) r[i] = g(a[i]!);
    writeCanon(out, r);
  };
}

function binary(f: (x: number, y: number) => number, intF?: (x: number, y: number) => number): KernelFn {
  return (ins, out) => {
    const a = gatherView(ins[0]!);
    const b = gatherView(ins[1]!);
    const g = ins[0]!.dtype === 'int32' && intF ? intF : f;
    const r = new Float64Array(a.length);
    for (let i = 0; i < a.length; i++) r[i] = g(a[i]!, b[i]!);
    writeCanon(out, r);
  };
}

/** C's pow (IEEE 754, as the native kernels and PyTorch): Math.pow differs in 1^y (1 for any y, NaN and +-inf
 * included) and (-1)^(+-inf) (1), where it gives NaN. */
const powC = (x: number, y: number): number =>
  x === 1 || (x === -1 && (y === Infinity || y === -Infinity)) ? 1 : Math.pow(x, y);
const maxNaN = (x: number, y: number): number => (Number.isNaN(x) || x > y ? x : y);
const minNaN = (x: number, y: number): number => (Number.isNaN(x) || x < y ? x : y);

export const elementwiseKernels: Record<string, KernelFn> = {
  fill: (_ins, out, attrs) => {
    outBuf(out).fill(castValue(attrsOf('fill', attrs).value, out.dtype));
  },
  arange: (_ins, out, attrs) => {
    const o = outBuf(out);
    const { start, step } = attrsOf('arange', attrs);
    for (let i = 0; i < o.length; i++) o[i] = castValue(start + i * step, out.dtype);
  },
  ...Object.fromEntries(Object.entries(unaryF).map(([k, f]) => [k, unary(f)])),
  neg: unary(
    (x) => -x,
    (x) => -x | 0,
  ),
  abs: unary(Math.abs, (x) => Math.abs(x) | 0),
  sign: unary((x) => (Number.isNaN(x) ? x : Math.sign(x) + 0)),
  relu: unary((x) => (x < 0 ? 0 : x)),
  biasAct: (ins, out, attrs) => {
    const { act } = attrsOf('biasAct', attrs);
    checkBiasAct(act);
    const x = gatherView(ins[0]!),
      b = gatherView(ins[1]!),
      r = new Float64Array(x.length);
    const N = b.length;
    for (let i = 0; i < x.length; i++) {
      const v = x[i]! + b[i % N]!;
      r[i] = act === 1 ? (v < 0 ? 0 : v) : act === 2 ? gelu(v) : v;
    }
    writeCanon(out, r);
  },
  clamp: (ins, out, attrs) => {
    let { min: lo, max: hi } = attrsOf('clamp', attrs);
    checkClamp(lo, hi);
    if (ins[0]!.dtype === 'int32') {
      lo = Math.ceil(lo);
      hi = Math.floor(hi);
    }
    unary((x) => (x < lo ? lo : x > hi ? hi : x))(ins, out, attrs);
  },
  cast: (ins, out) => {
    writeCanon(out, gatherView(ins[0]!));
  },
  add: binary(
    (x, y) => x + y,
    (x, y) => (x + y) | 0,
  ),
  sub: binary(
    (x, y) => x - y,
    (x, y) => (x - y) | 0,
  ),
  mul: binary(
    (x, y) => x * y,
    (x, y) => Math.imul(x, y),
  ),
  div: binary((x, y) => x / y),
  pow: binary(powC),
  maximum: binary(maxNaN),
  minimum: binary(minNaN),
  eq: binary((x, y) => +(x === y)),
  ne: binary((x, y) => +(x !== y)),
  lt: binary((x, y) => +(x < y)),
  le: binary((x, y) => +(x <= y)),
  gt: binary((x, y) => +(x > y)),
  ge: binary((x, y) => +(x >= y)),
  geluGrad: binary((x, g) => geluGrad(x) * g),
  reluGrad: binary((x, g) => (x > 0 ? g : 0)),
  where: (ins, out) => {
    const c = gatherView(ins[0]!);
    const a = gatherView(ins[1]!);
    const b = gatherView(ins[2]!);
    const r = new Float64Array(c.length);
    for (let i = 0; i < c.length; i++) r[i] = c[i] ? a[i]! : b[i]!;
    writeCanon(out, r);
  },
};
