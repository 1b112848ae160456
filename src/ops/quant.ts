// User-level quantized ops (inference only: they record no gradient).
import { runKernel } from '../engine/dispatch.js';
import { ArgumentError, DTypeError, ShapeError, checkOptions, describe, optionKeys } from '../errors.js';
import { convOutSize, shapeStr } from '../tensor/shape.js';
import { pair, type Pair } from './conv.js';
import { assertTensor, type Tensor } from '../tensor/tensor.js';

/** Runs a linear kernel on x [..., K] as rows [M, K] (and bias as [N]), giving back [..., N]. */
function linearRows(
  x: Tensor,
  K: number,
  N: number,
  bias: Tensor | null,
  run: (x2: Tensor, b: Tensor | null) => Tensor,
): Tensor {
  const lead = x.shape.slice(0, -1);
  const x2 = x.reshape([lead.reduce((a, b) => a * b, 1), K]);
  const b = bias ? bias.reshape([N]) : null;
  try {
    const y = run(x2, b);
    if (lead.length === 1) return y;
    const r = y.reshape([...lead, N]);
    y.dispose();
    return r;
  } finally {
    x2.dispose();
    b?.dispose();
  }
}

/** How the input of an int8 linear layer is quantized: a fixed scale and zero point, or per row (dynamic). */
export type ActivationQuant = { scale: number; zeroPoint: number } | 'dynamic';

/** An activation quantization checked, as the kernels' (xScale, xZero) attributes: (0, 0) is dynamic. */
function actParams(act: ActivationQuant, op: string): [number, number] {
  if (act === 'dynamic') return [0, 0];
  if (
    act === null ||
    typeof act !== 'object' ||
    !(act.scale > 0) ||
    !Number.isFinite(act.scale) ||
    !Number.isInteger(act.zeroPoint) ||
    act.zeroPoint < 0 ||
    act.zeroPoint > 255
  ) {
    throw new ArgumentError(
      `${op}: activation quantization must be 'dynamic' or {scale > 0, zeroPoint in 0..255}, got ${describe(act)}`,
    );
  }
  return [act.scale, act.zeroPoint];
}

/**
 * y = dequant(quant(x) wq^T) * ... + bias on the int8 kernels (AVX512-VNNI where the CPU has it): x [M, K]
 * float32 is quantized to uint8, wq [N, K] int8 is symmetric with one scale per output row.
 * @example kn.qlinearInt8(kn.tensor([[1, 2]]), kn.tensor(new Int8Array([127, -127]), [1, 2]), kn.tensor([0.01])).shape // [1, 1]
 */
export function qlinearInt8(
  x: Tensor,
  wq: Tensor,
  wscale: Tensor,
  bias: Tensor | null = null,
  act: ActivationQuant = 'dynamic',
): Tensor {
  assertTensor(x, 'qlinearInt8: x');
  assertTensor(wq, 'qlinearInt8: wq');
  assertTensor(wscale, 'qlinearInt8: wscale');
  if (bias !== null) assertTensor(bias, 'qlinearInt8: bias');
  if (wq.dtype !== 'int8') throw new DTypeError(`qlinearInt8: wq must be int8, got ${wq.dtype}`);
  if (wq.ndim !== 2) throw new ShapeError(`qlinearInt8: wq must be [N, K], got ${shapeStr(wq.shape)}`);
  const [N, K] = wq.shape as [number, number];
  if (x.ndim < 1 || x.shape[x.ndim - 1] !== K)
    throw new ShapeError(`qlinearInt8: x must end in K = ${K}, got ${shapeStr(x.shape)}`);
  if (wscale.size !== N)
    throw new ShapeError(`qlinearInt8: wscale must have ${N} values, got ${shapeStr(wscale.shape)}`);
  if (bias && bias.size !== N)
    throw new ShapeError(`qlinearInt8: bias must have ${N} values, got ${shapeStr(bias.shape)}`);
  const [xs, xz] = actParams(act, 'qlinearInt8');
  const ws = wscale.reshape([N]);
  try {
    return linearRows(x, K, N, bias, (x2, b) =>
      runKernel('qlinearInt8', b ? [x2, wq, ws, b] : [x2, wq, ws], [xs, xz], [x2.shape[0]!, N], 'float32'),
    );
  } finally {
    ws.dispose();
  }
}

/**
 * y = x . W^T (+ bias) for int4 weights W [N, K] stored in kiln's int4 layout (src/quant/layout.ts): packed uint8
 * [N, G*g/2], two values per byte, and float32 scales [N, G] for groups of g = groupSize inputs. The weights are
 * dequantized inside the kernel (on the GPU as matmul tiles load), never as a tensor. Records no gradient.
 * @example Array.from(kn.qlinearInt4(kn.ones([1, 32]), kn.full([2, 16], 0x99, { dtype: 'uint8' }), kn.ones([2, 1]), null, 32).toArray()) // [32, 32]
 */
export function qlinearInt4(x: Tensor, packed: Tensor, scales: Tensor, bias: Tensor | null, groupSize: number): Tensor {
  assertTensor(x, 'qlinearInt4: x');
  assertTensor(packed, 'qlinearInt4: packed');
  assertTensor(scales, 'qlinearInt4: scales');
  if (bias !== null) assertTensor(bias, 'qlinearInt4: bias');
  if (packed.dtype !== 'uint8') throw new DTypeError(`qlinearInt4: packed must be uint8, got ${packed.dtype}`);
  if (![32, 64, 128].includes(groupSize))
    throw new ArgumentError(`qlinearInt4: groupSize must be 32, 64 or 128, got ${describe(groupSize)}`);
  if (packed.ndim !== 2 || scales.ndim !== 2)
    throw new ShapeError(
      `qlinearInt4: packed and scales must be 2-D, got ${shapeStr(packed.shape)} and ${shapeStr(scales.shape)}`,
    );
  const N = packed.shape[0]!;
  const G = scales.shape[1]!;
  if (x.ndim < 1) throw new ShapeError('qlinearInt4: x must have at least one dimension');
  const K = x.shape[x.ndim - 1]!;
  if (Math.ceil(K / groupSize) !== G || packed.shape[1] !== (G * groupSize) / 2 || scales.shape[0] !== N) {
    throw new ShapeError(
      `qlinearInt4: x ends in K = ${K}, so packed must be [${N}, ${(Math.ceil(K / groupSize) * groupSize) / 2}] and scales [${N}, ${Math.ceil(K / groupSize)}]; got ${shapeStr(packed.shape)} and ${shapeStr(scales.shape)}`,
    );
  }
  if (bias && bias.size !== N)
    throw new ShapeError(`qlinearInt4: bias must have ${N} values, got ${shapeStr(bias.shape)}`);
  return linearRows(x, K, N, bias, (x2, b) =>
    runKernel(
      'qlinearInt4',
      b ? [x2, packed, scales, b] : [x2, packed, scales],
      [groupSize],
      [x2.shape[0]!, N],
      'float32',
    ),
  );
}

/** Options of kn.qconv2dInt8: the conv geometry (one group) and how the input is quantized. */
export interface QConv2dOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  /** a calibrated scale and zero point, or 'dynamic' (default): each image from its own range */
  act?: ActivationQuant;
  /** max(y, 0) in the kernel, as a following ReLU would (default false) */
  relu?: boolean;
  /**
   * k >= 2: the max of each k x k window at stride k in the kernel, after the ReLU, as a following
   * `maxPool2d(y, k)` would (output [N, O, floor(OH / k), floor(OW / k)]); 1 (default): no pooling
   */
  pool?: number;
}

/**
 * int8 2-D convolution for inference: x [N, C, H, W] float32 is quantized to uint8 (with `act`, or per image
 * from its range), wq [O, C, kH, kW] int8 is symmetric with one scale per output channel, and the products
 * accumulate exactly in int32: y[n, o] = sx * wscale[o] * sum (q(x) - zx) * wq[o] + bias[o]. Padding stands for
 * 0. One group. On the cpu it is a direct convolution with AVX512-VNNI where the CPU has it. `relu` and `pool`
 * run a following ReLU and MaxPool2d(k) on the results while they are in cache. Records no gradient.
 * @example kn.qconv2dInt8(kn.ones([1, 1, 3, 3]), kn.full([2, 1, 3, 3], 1, { dtype: 'int8' }), kn.full([2], 0.5), null, { padding: 1 }).shape // [1, 2, 3, 3]
 */
export function qconv2dInt8(
  x: Tensor,
  wq: Tensor,
  wscale: Tensor,
  bias: Tensor | null = null,
  opts: QConv2dOptions = {},
): Tensor {
  checkOptions(
    opts,
    'qconv2dInt8',
    optionKeys<QConv2dOptions>({ stride: true, padding: true, dilation: true, act: true, relu: true, pool: true }),
  );
  assertTensor(x, 'qconv2dInt8: x');
  assertTensor(wq, 'qconv2dInt8: wq');
  assertTensor(wscale, 'qconv2dInt8: wscale');
  if (bias !== null) assertTensor(bias, 'qconv2dInt8: bias');
  if (wq.dtype !== 'int8') throw new DTypeError(`qconv2dInt8: wq must be int8, got ${wq.dtype}`);
  if (x.ndim !== 4) throw new ShapeError(`qconv2dInt8: x must be [N, C, H, W], got ${shapeStr(x.shape)}`);
  if (wq.ndim !== 4 || wq.shape[1] !== x.shape[1])
    throw new ShapeError(
      `qconv2dInt8: wq must be [O, ${x.shape[1]}, kH, kW] for x ${shapeStr(x.shape)}, got ${shapeStr(wq.shape)}`,
    );
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const [O, , kh, kw] = wq.shape as [number, number, number, number];
  if (kh < 1 || kw < 1) throw new ShapeError(`qconv2dInt8: the kernel must be at least 1x1, got ${kh}x${kw}`);
  if (C * kh * kw > 65536)
    throw new ShapeError(`qconv2dInt8: C*kH*kW = ${C * kh * kw} is over 65536 (int32 accumulators could overflow)`);
  if (wscale.size !== O)
    throw new ShapeError(`qconv2dInt8: wscale must have ${O} values, got ${shapeStr(wscale.shape)}`);
  if (bias && bias.size !== O)
    throw new ShapeError(`qconv2dInt8: bias must have ${O} values, got ${shapeStr(bias.shape)}`);
  const [sh, sw] = pair(opts.stride, 1, 'qconv2dInt8 stride', 1);
  const [ph, pw] = pair(opts.padding, 0, 'qconv2dInt8 padding', 0);
  const [dh, dw] = pair(opts.dilation, 1, 'qconv2dInt8 dilation', 1);
  const OH = convOutSize(H, kh, sh, ph, dh),
    OW = convOutSize(W, kw, sw, pw, dw);
  if (OH === 0 || OW === 0)
    throw new ShapeError(
      `qconv2dInt8: kernel ${kh}x${kw} (dilation ${dh}x${dw}) is larger than the padded input ${H + 2 * ph}x${W + 2 * pw}`,
    );
  const [xs, xz] = actParams(opts.act ?? 'dynamic', 'qconv2dInt8');
  if (opts.relu !== undefined && typeof opts.relu !== 'boolean')
    throw new ArgumentError(`qconv2dInt8: relu must be a boolean, got ${describe(opts.relu)}`);
  const k = opts.pool ?? 1;
  if (!Number.isInteger(k) || k < 1 || k > Math.min(OH, OW))
    throw new ArgumentError(
      `qconv2dInt8: pool must be an integer from 1 (none) to the output's smaller side ${Math.min(OH, OW)}, got ${describe(opts.pool)}`,
    );
  const ws = wscale.reshape([O]);
  const b = bias ? bias.reshape([O]) : null;
  try {
    return runKernel(
      'qconv2dInt8',
      b ? [x, wq, ws, b] : [x, wq, ws],
      [sh, sw, ph, pw, dh, dw, 1, xs, xz, opts.relu ? 1 : 0, k],
      [N, O, Math.floor(OH / k), Math.floor(OW / k)],
      'float32',
    );
  } finally {
    ws.dispose();
    b?.dispose();
  }
}
