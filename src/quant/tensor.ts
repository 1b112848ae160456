// Quantizing one tensor, and back: the weight formats of the quantized layers (symmetric int8 per channel or per
// tensor, int4 in groups along the last axis) and the uint8 affine format of their activations, as a value a user
// can store, inspect and dequantize (PyTorch's quantize_per_channel / dequantize, MLX's quantize / dequantize).
import { noGrad } from '../autograd/tape.js';
import { DTypeError, ShapeError, ValidationError, ArgumentError, checkOptions, describe } from '../errors.js';
import { tidy } from '../engine/memory.js';
import { tensor } from '../ops/creation.js';
import { add, cast, clamp, mul, sub } from '../ops/elementwise.js';
import { permute, reshape } from '../ops/movement.js';
import { shapeStr } from '../tensor/shape.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';
import { INT4_LAYOUT } from './layout.js';
import { dequantizeWeightsInt4, quantCodes, quantizeWeightsInt4, quantizeWeightsInt8 } from './layers.js';
import { affineParams } from './quantize.js';

/** How quantizeTensor stores a tensor. */
export interface QuantizeTensorOptions {
  /** 'int8' (default): 8-bit values; 'int4': 4-bit values in groups along the last axis, two to a byte. */
  scheme?: 'int8' | 'int4';
  /**
   * int8 only. A scale (and zero point) per slice along `axis` (default: true for tensors of 2 or more dimensions,
   * as quantize() does for weights; false for vectors and scalars), or one for the whole tensor.
   */
  perChannel?: boolean;
  /** int8 per channel: the channel axis (default 0, a weight's output channels; negative counts from the end). */
  axis?: number;
  /**
   * int8 only. true (default): signed values in [-127, 127], scale max|x| / 127, no zero point (the weights of the
   * quantized layers). false: uint8 values in [0, 255] with a zero point, over the range [min(x, 0), max(x, 0)]
   * (their activations), so that 0 is exact.
   */
  symmetric?: boolean;
  /** int4: inputs per group along the last axis, one of 32 (default), 64, 128; the last group is zero-padded. */
  groupSize?: number;
}

/**
 * A quantized tensor: `values` (int8; uint8 when asymmetric; int4 packed two to a uint8 byte, INT4_LAYOUT) and the
 * float32 `scale` (and int32 `zeroPoint`) to read them with: x ~ (values - zeroPoint) * scale. `scale` has shape []
 * per tensor, [shape[axis]] per channel, and [rows, groups] for int4 (rows: the product of every axis but the
 * last). It owns its tensors: dispose() frees them.
 */
export class QuantizedTensor {
  constructor(
    readonly scheme: 'int8' | 'int4',
    readonly values: Tensor,
    readonly scale: Tensor,
    readonly zeroPoint: Tensor | null,
    /** The shape of the tensor it stands for. */
    readonly shape: readonly number[],
    /** The channel axis (int8 per channel), else null. */
    readonly axis: number | null,
    /** int4's group size, else null. */
    readonly groupSize: number | null,
  ) {}

  /** The float32 tensor it stands for: (values - zeroPoint) * scale. */
  dequantize(): Tensor {
    return dequantize(this);
  }

  /** Bytes held: the values, the scales and the zero points. */
  get nbytes(): number {
    const b = (t: Tensor | null): number => (t ? t.size * (t.dtype === 'int32' || t.dtype === 'float32' ? 4 : 1) : 0);
    return b(this.values) + b(this.scale) + b(this.zeroPoint);
  }

  /** Frees the values, scales and zero points. */
  dispose(): void {
    this.values.dispose();
    this.scale.dispose();
    this.zeroPoint?.dispose();
  }
}

/** x with `axis` moved to the front, as [shape[axis], rest] (contiguous), and the permutation that did it. */
function channelsFirst(x: Tensor, axis: number): { flat: Tensor; perm: number[] } {
  const perm = [axis, ...x.shape.map((_, i) => i).filter((i) => i !== axis)];
  const p = permute(x, perm);
  const flat = reshape(p.contiguous(), [x.shape[axis]!, x.size / x.shape[axis]!]);
  p.dispose();
  return { flat, perm };
}

/** The inverse of channelsFirst: values [C, rest] back to `shape`. */
function channelsBack(v: Tensor, shape: readonly number[], perm: readonly number[]): Tensor {
  const moved = reshape(
    v,
    perm.map((i) => shape[i]!),
  );
  const inv = perm.map((_, i) => perm.indexOf(i));
  const out = permute(moved, inv).contiguous();
  moved.dispose();
  return out;
}

/**
 * Quantizes a float tensor. int8 (the default) is symmetric per output channel (axis 0) for tensors of 2 or more
 * dimensions and per tensor otherwise, with scale max|x| / 127 and values rounded half to even, exactly as
 * quantize() stores a layer's weights; `symmetric: false` gives uint8 values with a zero point, as its
 * activations. int4 stores groups of `groupSize` along the last axis (scale max|x| / 7 per group). The tensor must
 * be finite and non-empty.
 * @example const q = kn.quant.quantizeTensor(kn.tensor([[0.5, -1], [2, 0.25]])); [q.values.dtype, q.scale.shape] // ["int8", [2]]
 * @example const q = kn.quant.quantizeTensor(kn.tensor([0, 1.27, -1.27]), { perChannel: false }); Array.from(q.values.toArray()) // [0, 127, -127]
 */
export function quantizeTensor(x: Tensor, opts: QuantizeTensorOptions = {}): QuantizedTensor {
  checkOptions(opts, 'quantizeTensor', ['scheme', 'perChannel', 'axis', 'symmetric', 'groupSize']);
  if (!isTensor(x)) throw new ArgumentError(`quantizeTensor takes a Tensor, got ${describe(x)}`);
  x.assertAlive('quantizeTensor');
  if (x.dtype !== 'float32' && x.dtype !== 'float16' && x.dtype !== 'bfloat16')
    throw new DTypeError(`quantizeTensor takes a float32, float16 or bfloat16 tensor, got ${x.dtype}`);
  if (x.size === 0) throw new ShapeError(`quantizeTensor needs a non-empty tensor, got shape ${shapeStr(x.shape)}`);
  const scheme = opts.scheme ?? 'int8';
  if (scheme !== 'int8' && scheme !== 'int4')
    throw new ArgumentError(`quantizeTensor scheme must be 'int8' or 'int4', got ${describe(opts.scheme)}`);
  for (const k of ['perChannel', 'symmetric'] as const)
    if (opts[k] !== undefined && typeof opts[k] !== 'boolean')
      throw new ArgumentError(`quantizeTensor ${k} must be a boolean, got ${describe(opts[k])}`);
  // tidy keeps the tensors of a plain object: the parts, wrapped once they are kept
  const p = noGrad(() =>
    tidy(() => {
      const xf = x.dtype === 'float32' ? x : cast(x, 'float32');
      // one NaN or infinity would spoil its channel's (or the whole tensor's) scale: x * 0 sums to NaN then
      if (!Number.isFinite(mul(xf, 0).sum().item()))
        throw new ValidationError('quantizeTensor: the tensor holds NaN or Infinity; only finite values quantize');
      return scheme === 'int4' ? int4(xf, opts) : int8(xf, opts);
    }),
  );
  return new QuantizedTensor(scheme, p.values, p.scale, p.zeroPoint, [...x.shape], p.axis, p.groupSize);
}

/** What int8 and int4 make, before it becomes a QuantizedTensor. */
interface Parts {
  values: Tensor;
  scale: Tensor;
  zeroPoint: Tensor | null;
  axis: number | null;
  groupSize: number | null;
}

function int4(x: Tensor, opts: QuantizeTensorOptions): Parts {
  for (const k of ['perChannel', 'axis', 'symmetric'] as const)
    if (opts[k] !== undefined)
      throw new ArgumentError(
        `quantizeTensor: int4 takes no ${k} (it is symmetric, with a scale per group along the last axis)`,
      );
  if (x.ndim === 0) throw new ShapeError('quantizeTensor: int4 groups run along the last axis; a scalar has none');
  const g = opts.groupSize ?? 32;
  if (!(INT4_LAYOUT.groupSizes as readonly number[]).includes(g))
    throw new ArgumentError(
      `quantizeTensor groupSize must be one of ${INT4_LAYOUT.groupSizes.join(', ')}, got ${describe(opts.groupSize)}`,
    );
  const K = x.shape[x.ndim - 1]!;
  const rows = reshape(x, [x.size / K, K]);
  const { packed, scale } = quantizeWeightsInt4(rows, g);
  return { values: packed, scale, zeroPoint: null, axis: null, groupSize: g };
}

function int8(x: Tensor, opts: QuantizeTensorOptions): Parts {
  if (opts.groupSize !== undefined)
    throw new ArgumentError('quantizeTensor: groupSize is for int4; int8 has a scale per channel or per tensor');
  const perChannel = opts.perChannel ?? x.ndim >= 2;
  if (!perChannel && opts.axis !== undefined)
    throw new ArgumentError('quantizeTensor: axis is the channel axis of perChannel quantization');
  let axis = opts.axis ?? 0;
  if (perChannel) {
    if (x.ndim === 0) throw new ShapeError('quantizeTensor: a scalar has no channels (use perChannel: false)');
    if (!Number.isInteger(axis) || axis < -x.ndim || axis >= x.ndim)
      throw new ArgumentError(
        `quantizeTensor axis must be an integer in [${-x.ndim}, ${x.ndim - 1}], got ${describe(opts.axis)}`,
      );
    if (axis < 0) axis += x.ndim;
  }
  // per channel: [C, rest] with the channel axis first; per tensor: one row
  const { flat, perm } = perChannel ? channelsFirst(x, axis) : { flat: reshape(x, [1, x.size]), perm: [] };
  const back = (v: Tensor): Tensor => (perChannel ? channelsBack(v, x.shape, perm) : reshape(v, x.shape));
  const scaleShape = perChannel ? [x.shape[axis]!] : [];
  if (opts.symmetric ?? true) {
    const { q, scale } = quantizeWeightsInt8(flat);
    return {
      values: back(q),
      scale: reshape(scale, scaleShape),
      zeroPoint: null,
      axis: perChannel ? axis : null,
      groupSize: null,
    };
  }
  // asymmetric: each row's range [min(x, 0), max(x, 0)] in 255 steps, by the activation rule (affineParams)
  const lo = Array.from(flat.min(1).toArray() as Float32Array),
    hi = Array.from(flat.max(1).toArray() as Float32Array);
  const params = lo.map((l, i) => affineParams([l, hi[i]!]));
  const scale = tensor(
    Float32Array.from(params, (p) => p.scale),
    [params.length, 1],
  );
  const zp = tensor(
    Float32Array.from(params, (p) => p.zeroPoint),
    [params.length, 1],
  );
  const q = cast(clamp(add(quantCodes(flat, scale), zp), 0, 255), 'uint8');
  return {
    values: back(q),
    scale: reshape(scale, scaleShape),
    zeroPoint: cast(reshape(zp, scaleShape), 'int32'),
    axis: perChannel ? axis : null,
    groupSize: null,
  };
}

/**
 * The float32 tensor a QuantizedTensor stands for: (values - zeroPoint) * scale, per channel along its axis, or
 * per group for int4.
 * @example kn.quant.dequantize(kn.quant.quantizeTensor(kn.tensor([0, 1.27, -1.27]))).toArray() // Float32Array [0, 1.27, -1.27]
 */
export function dequantize(q: QuantizedTensor): Tensor {
  if (!(q instanceof QuantizedTensor))
    throw new ArgumentError(`dequantize takes a QuantizedTensor (from quantizeTensor), got ${describe(q)}`);
  return noGrad(() =>
    tidy(() => {
      if (q.scheme === 'int4') {
        const K = q.shape[q.shape.length - 1]!;
        return reshape(dequantizeWeightsInt4(q.values, q.scale, q.groupSize!, K), q.shape);
      }
      // the scale (and zero point) broadcast along the channel axis, or as a scalar
      const bshape = q.shape.map((d, i) => (i === q.axis ? d : 1));
      const s = q.axis === null ? q.scale : reshape(q.scale, bshape);
      let v = cast(q.values, 'float32');
      if (q.zeroPoint) v = sub(v, cast(q.axis === null ? q.zeroPoint : reshape(q.zeroPoint, bshape), 'float32'));
      return mul(v, s);
    }),
  );
}
