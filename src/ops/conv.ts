// conv2d and pooling (NCHW) with backward kernels.
import { record } from '../autograd/tape.js';
import { runKernel } from '../engine/dispatch.js';
import { ArgumentError, ShapeError, checkOptions, describe } from '../errors.js';
import { isFloat } from '../tensor/dtype.js';
import { convOutSize, shapeStr } from '../tensor/shape.js';
import { assertTensor, type Tensor } from '../tensor/tensor.js';
import { arange, full } from './creation.js';
import { add, cast, eq, mul } from './elementwise.js';
import { concat, contiguous, reshape, slice, stack } from './movement.js';
import { argmax, sum } from './reduce.js';

export type Pair = number | readonly [number, number];

/** A stride, padding or dilation as [h, w], checked: integers >= min. */
export function pair(v: Pair | undefined, def: number, what: string, min: number): [number, number] {
  const p = v === undefined ? [def, def] : typeof v === 'number' ? [v, v] : v;
  if (!Array.isArray(p) && typeof v !== 'number')
    throw new ArgumentError(`${what} must be a number or [h, w], got ${describe(v)}`);
  if (p.length !== 2 || !p.every((x) => Number.isInteger(x) && x >= min)) {
    throw new ArgumentError(`${what} must be an integer >= ${min} or a pair of them, got ${describe(v)}`);
  }
  return [p[0]!, p[1]!];
}

/**
 * A convolution's padding: zeros on each side ([h, w] or one number), or PyTorch's strings: 'valid' is none,
 * 'same' (stride 1 only) keeps the size, padding dilation * (kernel - 1) in all per axis, the odd one at the end.
 */
export type ConvPadding = Pair | 'same' | 'valid';

export interface Conv2dOptions {
  stride?: Pair;
  padding?: ConvPadding;
  dilation?: Pair;
  groups?: number;
}

/**
 * Padding 'same' or 'valid' as zeros [before, after] per axis (h, w) for a kernel, stride and dilation; a
 * number or pair as both sides. 'same' needs stride 1, as PyTorch.
 */
export function resolvePadding(
  padding: ConvPadding | undefined,
  kernel: readonly [number, number],
  stride: readonly [number, number],
  dilation: readonly [number, number],
  what: string,
): [[number, number], [number, number]] {
  if (padding === 'valid')
    return [
      [0, 0],
      [0, 0],
    ];
  if (padding !== 'same') {
    const [ph, pw] = pair(padding as Pair | undefined, 0, `${what} padding`, 0);
    return [
      [ph, ph],
      [pw, pw],
    ];
  }
  if (stride[0] !== 1 || stride[1] !== 1)
    throw new ArgumentError(`${what}: padding 'same' needs stride 1 (as PyTorch), got stride ${describe(stride)}`);
  const side = (i: 0 | 1): [number, number] => {
    const total = dilation[i] * (kernel[i] - 1);
    return [Math.floor(total / 2), total - Math.floor(total / 2)];
  };
  return [side(0), side(1)];
}

/**
 * 2-D convolution (cross-correlation) of x [N, C, H, W] with weight [O, C/groups, kH, kW], plus optional bias [O].
 * @example kn.conv2d(kn.ones([1, 1, 5, 5]), kn.ones([2, 1, 3, 3]), null, { padding: 1 }).shape // [1, 2, 5, 5]
 */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  assertTensor(x, 'conv2d input');
  assertTensor(weight, 'conv2d weight');
  checkOptions(opts, 'conv2d', ['stride', 'padding', 'dilation', 'groups']);
  if (x.ndim !== 4) throw new ShapeError(`conv2d input must be [N, C, H, W], got ${shapeStr(x.shape)}`);
  if (weight.ndim !== 4)
    throw new ShapeError(`conv2d weight must be [O, C/groups, kH, kW], got ${shapeStr(weight.shape)}`);
  const [sh, sw] = pair(opts.stride, 1, 'conv2d stride', 1);
  const [dh, dw] = pair(opts.dilation, 1, 'conv2d dilation', 1);
  const groups = opts.groups ?? 1;
  if (!Number.isInteger(groups) || groups < 1)
    throw new ArgumentError(`conv2d groups must be a positive integer, got ${describe(opts.groups)}`);
  const [O, Cg, kh, kw] = weight.shape as [number, number, number, number];
  const [[ph, ph1], [pw, pw1]] = resolvePadding(opts.padding, [kh, kw], [sh, sw], [dh, dw], 'conv2d');
  // 'same' with an even total: the extra row and column of zeros at the end, then symmetric padding
  if (ph1 !== ph || pw1 !== pw) x = padEnd(x, ph1 - ph, pw1 - pw);
  const [, C, H, W] = x.shape as [number, number, number, number];
  if (C % groups !== 0 || O % groups !== 0)
    throw new ShapeError(`conv2d: channels ${C} and filters ${O} must both be divisible by groups ${groups}`);
  if (Cg * groups !== C)
    throw new ShapeError(
      `conv2d: input has ${C} channels but weight ${shapeStr(weight.shape)} with groups ${groups} expects ${Cg * groups}`,
    );
  const OH = convOutSize(H, kh, sh, ph, dh),
    OW = convOutSize(W, kw, sw, pw, dw);
  if ((OH === 0 || OW === 0) && H * W > 0) {
    throw new ShapeError(
      `conv2d: kernel ${kh}x${kw} (dilation ${dh}x${dw}) is larger than the padded input ${H + 2 * ph}x${W + 2 * pw}`,
    );
  }
  const attrs = [sh, sw, ph, pw, dh, dw, groups];
  const conv = convCore(x, weight, attrs);
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

// The convolution and its two gradients as differentiable ops. conv is bilinear in (x, w), so each gradient is
// bilinear too and their vjps are the other two ops: this is what makes gradients of gradients work through
// convolutions (attrs = stride, padding, dilation, groups).

/** conv2d without bias, recorded. */
function convCore(x: Tensor, w: Tensor, attrs: readonly number[]): Tensor {
  const [N, , H, W] = x.shape as [number, number, number, number];
  const [O, , kh, kw] = w.shape as [number, number, number, number];
  const [sh, sw, ph, pw, dh, dw] = attrs as [number, number, number, number, number, number];
  const shape = [N, O, convOutSize(H, kh, sh, ph, dh), convOutSize(W, kw, sw, pw, dw)];
  const y = runKernel('conv2d', [x, w], attrs, shape, isFloat(x.dtype) ? x.dtype : 'float32');
  return record('conv2d', y, [x, w], [x, w], (g, [xx, ww], needs) => {
    // both gradient kernels read g whole: a strided g (sum's broadcast gradient) is copied once, not per kernel
    const gc = needs[0] && needs[1] && !g.isContiguous() ? contiguous(g) : g;
    const grads = [
      needs[0] ? convInputGrad(gc, ww!, attrs, H, W) : null,
      needs[1] ? convWeightGrad(xx!, gc, attrs, kh, kw) : null,
    ];
    if (gc !== g) gc.dispose();
    return grads;
  });
}

/** The input gradient of conv2d: g [N, O, OH, OW] and w -> [N, C, H, W]. */
function convInputGrad(g: Tensor, w: Tensor, attrs: readonly number[], H: number, W: number): Tensor {
  const [, Cg, kh, kw] = w.shape as [number, number, number, number];
  const y = runKernel('conv2dBackwardInput', [g, w], [...attrs, H, W], [g.shape[0]!, Cg * attrs[6]!, H, W], g.dtype);
  return record('conv2dBackwardInput', y, [g, w], [g, w], (u, [gg, ww], needs) => [
    needs[0] ? convCore(u, ww!, attrs) : null,
    needs[1] ? convWeightGrad(u, gg!, attrs, kh, kw) : null,
  ]);
}

/** The weight gradient of conv2d: x and g [N, O, OH, OW] -> [O, C/groups, kh, kw]. */
function convWeightGrad(x: Tensor, g: Tensor, attrs: readonly number[], kh: number, kw: number): Tensor {
  const [, C, H, W] = x.shape as [number, number, number, number];
  const O = g.shape[1]!;
  const y = runKernel('conv2dBackwardWeight', [x, g], [...attrs, kh, kw], [O, C / attrs[6]!, kh, kw], g.dtype);
  return record('conv2dBackwardWeight', y, [x, g], [x, g], (u, [xx, gg], needs) => [
    needs[0] ? convInputGrad(gg!, u, attrs, H, W) : null,
    needs[1] ? convCore(xx!, u, attrs) : null,
  ]);
}

/** x [N, C, H, W] with `rows` rows and `cols` columns of zeros appended (differentiable: a concat). */
function padEnd(x: Tensor, rows: number, cols: number): Tensor {
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const o = { dtype: x.dtype, backend: x.backendInstance.name };
  let y = x;
  for (const [axis, shape] of [
    [2, [N, C, rows, W]],
    [3, [N, C, H + rows, cols]],
  ] as const) {
    if (shape[axis] === 0) continue;
    const zeros = full(shape, 0, o);
    const next = concat([y, zeros], axis);
    zeros.dispose();
    if (y !== x) y.dispose();
    y = next;
  }
  return y;
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
  const OH = convOutSize(H, kh, sh, ph, 1),
    OW = convOutSize(W, kw, sw, pw, 1);
  if ((OH === 0 || OW === 0) && H * W > 0)
    throw new ShapeError(`${op}: kernel ${kh}x${kw} is larger than the padded input ${H + 2 * ph}x${W + 2 * pw}`);
  return { attrs: [kh, kw, sh, sw, ph, pw], OH, OW };
}

/**
 * Max pooling over kH x kW windows (stride defaults to the kernel size).
 * @example kn.maxPool2d(kn.arange(16).reshape([1, 1, 4, 4]), 2).reshape([4]) // [5, 7, 13, 15]
 */
export function maxPool2d(x: Tensor, kernel: Pair, opts: Pool2dOptions = {}): Tensor {
  checkOptions(opts, 'maxPool2d', ['stride', 'padding']);
  const { attrs, OH, OW } = poolSetup(x, kernel, opts, 'maxPool2d');
  const [N, C] = x.shape as [number, number];
  const y = runKernel('maxPool2d', [x], attrs, [N, C, OH, OW], isFloat(x.dtype) ? x.dtype : 'float32');
  return record('maxPool2d', y, [x], [x], (g, [xx]) => [maxPoolBackward(xx!, g, attrs)]);
}

/** The max-pool gradient (g routed to each window's first maximum), recorded: linear in g, and its transpose
 * picks, in each window, the upstream gradient at the maximum (maxPoolSelect); constant in x. */
function maxPoolBackward(x: Tensor, g: Tensor, attrs: readonly number[]): Tensor {
  const y = runKernel('maxPool2dBackward', [x, g], attrs, x.shape, g.dtype);
  return record('maxPool2dBackward', y, [x, g], [x], (u, [xx], needs) => [
    null,
    needs[1] ? maxPoolSelect(xx!, u, attrs, g.shape) : null,
  ]);
}

/** For each pooling window of x, u's value at the window's first maximum (taps in row-major order, as the
 * kernels scan them): one strided slice per tap, stacked, argmax, gather. Differentiable in u. */
function maxPoolSelect(x: Tensor, u: Tensor, attrs: readonly number[], outShape: readonly number[]): Tensor {
  const [kh, kw, sh, sw, ph, pw] = attrs as [number, number, number, number, number, number];
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const [, , OH, OW] = outShape as [number, number, number, number];
  const padded = (t: Tensor, fill: number): Tensor => {
    if (ph === 0 && pw === 0) return t;
    const rows = full([N, C, ph, W], fill, { dtype: t.dtype });
    const tall = concat([rows, t, rows], 2);
    const cols = full([N, C, H + 2 * ph, pw], fill, { dtype: t.dtype });
    return concat([cols, tall, cols], 3);
  };
  const taps = (t: Tensor): Tensor => {
    const out: Tensor[] = [];
    for (let i = 0; i < kh; i++)
      for (let j = 0; j < kw; j++)
        out.push(slice(t, [0, 0, i, j], [N, C, i + sh * (OH - 1) + 1, j + sw * (OW - 1) + 1], [1, 1, sh, sw]));
    return stack(out, 0);
  };
  const arg = argmax(taps(padded(x.detach(), -Infinity)), 0, true); // [1, N, C, OH, OW]
  const onehot = cast(eq(reshape(arange(0, kh * kw), [kh * kw, 1, 1, 1, 1]), arg), u.dtype);
  return sum(mul(taps(padded(u, 0)), onehot), 0);
}

/**
 * Average pooling over kH x kW windows.
 * @example kn.avgPool2d(kn.arange(16).reshape([1, 1, 4, 4]), 2).reshape([4]) // [2.5, 4.5, 10.5, 12.5]
 */
export function avgPool2d(x: Tensor, kernel: Pair, opts: Pool2dOptions = {}): Tensor {
  checkOptions(opts, 'avgPool2d', ['stride', 'padding', 'countIncludePad']);
  const { attrs, OH, OW } = poolSetup(x, kernel, opts, 'avgPool2d');
  const inc = (opts.countIncludePad ?? true) ? 1 : 0;
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const y = runKernel('avgPool2d', [x], [...attrs, inc], [N, C, OH, OW], isFloat(x.dtype) ? x.dtype : 'float32');
  return record('avgPool2d', y, [x], [], (g) => [avgPoolBackward(g, attrs, inc, [N, C, H, W])]);
}

/** The average-pool gradient, recorded: linear in g, and its transpose is average pooling itself. */
function avgPoolBackward(g: Tensor, attrs: readonly number[], inc: number, xShape: readonly number[]): Tensor {
  const y = runKernel('avgPool2dBackward', [g], [...attrs, inc, xShape[2]!, xShape[3]!], xShape, g.dtype);
  return record('avgPool2dBackward', y, [g], [], (u) => [
    record('avgPool2d', runKernel('avgPool2d', [u], [...attrs, inc], g.shape, u.dtype), [u], [], (v) => [
      avgPoolBackward(v, attrs, inc, xShape),
    ]),
  ]);
}
