// conv2d and pooling (NCHW) with backward kernels.
import { record } from '../autograd/tape.js';
import { runKernel } from '../engine/dispatch.js';
import { ArgumentError, ShapeError, describe } from '../errors.js';
import { isFloat } from '../tensor/dtype.js';
import { shapeStr } from '../tensor/shape.js';
import { assertTensor, type Tensor } from '../tensor/tensor.js';
import { add } from './elementwise.js';
import { reshape } from './movement.js';

export type Pair = number | readonly [number, number];

function pair(v: Pair | undefined, def: number, what: string, min: number): [number, number] {
  const p = v === undefined ? [def, def] : typeof v === 'number' ? [v, v] : v;
  if (!Array.isArray(p) && typeof v !== 'number')
    throw new ArgumentError(`${what} must be a number or [h, w], got ${describe(v)}`);
  if (p.length !== 2 || !p.every((x) => Number.isInteger(x) && x >= min)) {
    throw new ArgumentError(`${what} must be an integer >= ${min} or a pair of them, got ${describe(v)}`);
  }
  return [p[0]!, p[1]!];
}

function outSize(n: number, k: number, s: number, p: number, d: number): number {
  const span = d * (k - 1) + 1;
  return n + 2 * p < span ? 0 : Math.floor((n + 2 * p - span) / s) + 1;
}

export interface Conv2dOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
}

/**
 * 2-D convolution (cross-correlation) of x [N, C, H, W] with weight [O, C/groups, kH, kW], plus optional bias [O].
 * @example kn.conv2d(kn.ones([1, 1, 5, 5]), kn.ones([2, 1, 3, 3]), null, { padding: 1 }).shape // [1, 2, 5, 5]
 */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  assertTensor(x, 'conv2d input');
  assertTensor(weight, 'conv2d weight');
  if (x.ndim !== 4) throw new ShapeError(`conv2d input must be [N, C, H, W], got ${shapeStr(x.shape)}`);
  if (weight.ndim !== 4)
    throw new ShapeError(`conv2d weight must be [O, C/groups, kH, kW], got ${shapeStr(weight.shape)}`);
  const [sh, sw] = pair(opts.stride, 1, 'conv2d stride', 1);
  const [ph, pw] = pair(opts.padding, 0, 'conv2d padding', 0);
  const [dh, dw] = pair(opts.dilation, 1, 'conv2d dilation', 1);
  const groups = opts.groups ?? 1;
  if (!Number.isInteger(groups) || groups < 1)
    throw new ArgumentError(`conv2d groups must be a positive integer, got ${describe(opts.groups)}`);
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const [O, Cg, kh, kw] = weight.shape as [number, number, number, number];
  if (C % groups !== 0 || O % groups !== 0)
    throw new ShapeError(`conv2d: channels ${C} and filters ${O} must both be divisible by groups ${groups}`);
  if (Cg * groups !== C)
    throw new ShapeError(
      `conv2d: input has ${C} channels but weight ${shapeStr(weight.shape)} with groups ${groups} expects ${Cg * groups}`,
    );
  const OH = outSize(H, kh, sh, ph, dh),
    OW = outSize(W, kw, sw, pw, dw);
  if ((OH === 0 || OW === 0) && H * W > 0) {
    throw new ShapeError(
      `conv2d: kernel ${kh}x${kw} (dilation ${dh}x${dw}) is larger than the padded input ${H + 2 * ph}x${W + 2 * pw}`,
    );
  }
  const attrs = [sh, sw, ph, pw, dh, dw, groups];
  const outDtype = isFloat(x.dtype) ? x.dtype : 'float32';
  const y = runKernel('conv2d', [x, weight], attrs, [N, O, OH, OW], outDtype);
  const conv = record('conv2d', y, [x, weight], [x, weight], (g, [xx, ww], needs) => [
    needs[0] ? runKernel('conv2dBackwardInput', [g, ww!], [...attrs, H, W], [N, C, H, W], g.dtype) : null,
    needs[1] ? runKernel('conv2dBackwardWeight', [xx!, g], [...attrs, kh, kw], [O, Cg, kh, kw], g.dtype) : null,
  ]);
  if (bias === undefined || bias === null) return conv;
  assertTensor(bias, 'conv2d bias');
  if (bias.ndim !== 1 || bias.shape[0] !== O)
    throw new ShapeError(`conv2d bias must be [${O}], got ${shapeStr(bias.shape)}`);
  const b4 = reshape(bias, [1, O, 1, 1]);
  const out = add(conv, b4);
  conv.dispose();
  b4.dispose();
  return out;
}

export interface Pool2dOptions {
  stride?: Pair;
  padding?: Pair;
  /** avgPool2d: count padded zeros in the divisor (default true, like PyTorch). */
  countIncludePad?: boolean;
}

function poolSetup(
  x: Tensor,
  kernel: Pair,
  opts: Pool2dOptions,
  op: string,
): { attrs: number[]; OH: number; OW: number } {
  assertTensor(x, op);
  if (x.ndim !== 4) throw new ShapeError(`${op} input must be [N, C, H, W], got ${shapeStr(x.shape)}`);
  const [kh, kw] = pair(kernel, 1, `${op} kernel size`, 1);
  const [sh, sw] = pair(opts.stride ?? kernel, 1, `${op} stride`, 1);
  const [ph, pw] = pair(opts.padding, 0, `${op} padding`, 0);
  if (2 * ph > kh || 2 * pw > kw)
    throw new ArgumentError(`${op}: padding (${ph}, ${pw}) must be at most half the kernel size (${kh}, ${kw})`);
  const [, , H, W] = x.shape as [number, number, number, number];
  const OH = outSize(H, kh, sh, ph, 1),
    OW = outSize(W, kw, sw, pw, 1);
  if ((OH === 0 || OW === 0) && H * W > 0)
    throw new ShapeError(`${op}: kernel ${kh}x${kw} is larger than the padded input ${H + 2 * ph}x${W + 2 * pw}`);
  return { attrs: [kh, kw, sh, sw, ph, pw], OH, OW };
}

/**
 * Max pooling over kH x kW windows (stride defaults to the kernel size).
 * @example kn.maxPool2d(kn.arange(16).reshape([1, 1, 4, 4]), 2).reshape([4]) // [5, 7, 13, 15]
 */
export function maxPool2d(x: Tensor, kernel: Pair, opts: Pool2dOptions = {}): Tensor {
  const { attrs, OH, OW } = poolSetup(x, kernel, opts, 'maxPool2d');
  const [N, C] = x.shape as [number, number];
  const y = runKernel('maxPool2d', [x], attrs, [N, C, OH, OW], isFloat(x.dtype) ? x.dtype : 'float32');
  return record('maxPool2d', y, [x], [x], (g, [xx]) => [
    runKernel('maxPool2dBackward', [xx!, g], attrs, xx!.shape, g.dtype),
  ]);
}

/**
 * Average pooling over kH x kW windows.
 * @example kn.avgPool2d(kn.arange(16).reshape([1, 1, 4, 4]), 2).reshape([4]) // [2.5, 4.5, 10.5, 12.5]
 */
export function avgPool2d(x: Tensor, kernel: Pair, opts: Pool2dOptions = {}): Tensor {
  const { attrs, OH, OW } = poolSetup(x, kernel, opts, 'avgPool2d');
  const inc = (opts.countIncludePad ?? true) ? 1 : 0;
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const y = runKernel('avgPool2d', [x], [...attrs, inc], [N, C, OH, OW], isFloat(x.dtype) ? x.dtype : 'float32');
  return record('avgPool2d', y, [x], [], (g) => [
    runKernel('avgPool2dBackward', [g], [...attrs, inc, H, W], [N, C, H, W], g.dtype),
  ]);
}
