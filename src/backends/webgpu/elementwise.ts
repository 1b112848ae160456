// Elementwise kernels of the webgpu backend: every op runs kernels/wgsl/elementwise.wgsl's `map` entry point,
// specialised by op and dtypes through override constants.
import { BackendError } from '../../errors.js';
import { checkBiasAct, checkClamp } from '../checks.js';
import { encodeStorage, type DType } from '../../tensor/dtype.js';
import { attrsOf, MAP_OP_CODES, type MapOp } from '../../ops/table.js';
import type { KernelOut, KernelView } from '../backend.js';
import { MAX_DIMS, Params, code, id, mergeDims, numelOf, type Gpu, type GpuKernel } from './gpu.js';
import { PARAMS } from './params.js';

const PER_WORD: Record<DType, number> = { float32: 1, int32: 1, float16: 2, bfloat16: 2, int8: 4, uint8: 4, bool: 4 };

/**
 * Runs `map` over the output: out[e] = op(in0[e], in1[e], in2[e]) with the inputs as strided views of the
 * output's shape. `scalars` are the params' a/b words (already as raw bits).
 */
export function map(
  g: Gpu,
  op: MapOp,
  ins: readonly KernelView[],
  out: KernelOut,
  opts: { int?: boolean; a?: number; b?: number } = {},
): void {
  const n = numelOf(out.shape);
  if (n === 0) return;
  const merged = mergeDims(
    out.shape,
    ins.map((v) => v.strides),
  );
  if (merged.shape.length > MAX_DIMS) {
    throw new BackendError(
      `webgpu: elementwise kernels take views of up to ${MAX_DIMS} dims after merging, got ${merged.shape.length}`,
    );
  }
  const P = PARAMS.map;
  const p = new Params();
  p.set(P.n, n).set(P.ndim, merged.shape.length);
  p.u[P.a] = opts.a ?? 0;
  p.u[P.b] = opts.b ?? 0;
  merged.shape.forEach((s, d) => p.set(P.shape + d, s));
  ins.forEach((v, k) => {
    p.set([P.offset0, P.offset1, P.offset2][k]!, v.offset);
    merged.strides[k]!.forEach((s, d) => p.set([P.strides0, P.strides1, P.strides2][k]! + d, s));
  });
  const dts = ins.map((v) => code(v.dtype));
  const bufs = [id(out), ...ins.map(id)];
  while (bufs.length < 4) bufs.push(g.dummy);
  g.dispatch(
    'elementwise',
    'map',
    {
      OP: MAP_OP_CODES[op],
      DT0: dts[0] ?? 0,
      DT1: dts[1] ?? 0,
      DT2: dts[2] ?? 0,
      DTO: code(out.dtype),
      INT: opts.int ? 1 : 0,
    },
    p,
    bufs,
    { threads: Math.ceil(n / PER_WORD[out.dtype]) },
  );
}

const f32bits = (v: number): number => new Uint32Array(Float32Array.of(v).buffer)[0]!;
const i32bits = (v: number): number => v >>> 0;
const isInt = (v: KernelView): boolean => v.dtype === 'int32';

const simple =
  (op: MapOp): GpuKernel =>
  (g, ins, out) =>
    map(g, op, ins, out, { int: isInt(ins[0]!) });

/** The stored bits of a value in a dtype (exactly as the host would store it). */
function bitsOf(v: number, d: DType): number {
  const s = encodeStorage([v], d);
  if (d === 'float32') return f32bits(s[0]!);
  if (d === 'int32') return i32bits(s[0]!);
  return s[0]! >>> 0;
}

export const elementwiseKernels: Record<string, GpuKernel> = {
  fill: (g, _ins, out, attrs) => map(g, 'fill', [], out, { a: bitsOf(attrsOf('fill', attrs).value, out.dtype) }),
  arange: (g, _ins, out, attrs) => {
    const { start, step } = attrsOf('arange', attrs);
    if (
      out.dtype === 'int32' &&
      Number.isInteger(start) &&
      Number.isInteger(step) &&
      Math.abs(start) < 2 ** 31 &&
      Math.abs(step) < 2 ** 31
    ) {
      map(g, 'arange', [], out, { int: true, a: i32bits(start), b: i32bits(step) });
    } else {
      map(g, 'arange', [], out, { a: f32bits(start), b: f32bits(step) });
    }
  },
  neg: simple('neg'),
  abs: simple('abs'),
  sign: simple('sign'),
  relu: simple('relu'),
  exp: simple('exp'),
  log: simple('log'),
  sqrt: simple('sqrt'),
  tanh: simple('tanh'),
  sigmoid: simple('sigmoid'),
  gelu: simple('gelu'),
  silu: simple('silu'),
  clamp: (g, ins, out, attrs) => {
    const { min: lo, max: hi } = attrsOf('clamp', attrs);
    checkClamp(lo, hi);
    if (isInt(ins[0]!)) {
      const ilo = Math.max(Math.ceil(lo), -(2 ** 31)),
        ihi = Math.min(Math.floor(hi), 2 ** 31 - 1);
      map(g, 'clamp', ins, out, { int: true, a: i32bits(ilo), b: i32bits(ihi) });
    } else {
      map(g, 'clamp', ins, out, { a: f32bits(lo), b: f32bits(hi) });
    }
  },
  cast: (g, ins, out) => map(g, ins[0]!.dtype === out.dtype ? 'copy' : 'cast', ins, out),
  add: simple('add'),
  sub: simple('sub'),
  mul: simple('mul'),
  div: simple('div'),
  pow: simple('pow'),
  maximum: simple('maximum'),
  minimum: simple('minimum'),
  eq: simple('eq'),
  ne: simple('ne'),
  lt: simple('lt'),
  le: simple('le'),
  gt: simple('gt'),
  ge: simple('ge'),
  geluGrad: simple('geluGrad'),
  reluGrad: simple('reluGrad'),
  biasAct: (g, ins, out, attrs) => {
    const { act } = attrsOf('biasAct', attrs);
    checkBiasAct(act);
    const [x, b] = ins as [KernelView, KernelView];
    const N = b.shape[b.shape.length - 1] ?? 1;
    // the bias as a view of x's shape: stride 0 everywhere but the last dim
    const bias: KernelView = {
      ...b,
      shape: x.shape,
      strides: x.shape.map((_, d) => (d === x.shape.length - 1 && N > 1 ? b.strides[b.strides.length - 1]! : 0)),
    };
    map(g, act === 1 ? 'biasRelu' : act === 2 ? 'biasGelu' : 'bias', [x, bias], out);
  },
  where: (g, ins, out) => {
    const [c, a, b] = ins as [KernelView, KernelView, KernelView];
    if (a.dtype !== out.dtype || b.dtype !== out.dtype) {
      throw new BackendError(`webgpu where: values must already be ${out.dtype}, got ${a.dtype} and ${b.dtype}`);
    }
    map(g, 'where', [c, a, b], out);
  },
};

/** Copies a strided view into a contiguous buffer of the same dtype (used by kernels that need contiguous data). */
export function copyView(g: Gpu, v: KernelView, dst: number): void {
  map(g, 'copy', [v], { handle: dst, dtype: v.dtype, shape: v.shape });
}
