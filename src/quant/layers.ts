// Quantized layers. Their weights are buffers (saved, not trained): int8 with a float32 scale per output
// channel, or int4 in groups along the input dimension. QuantLinear and QuantConv2d run on the int8 kernels
// (kn.qlinearInt8, kn.qconv2dInt8; AVX512-VNNI on CPU); Int4Linear runs kn.qlinearInt4, which dots the nibbles
// with a few rows of x directly and otherwise dequantizes its weights for each call and runs the float GEMM
// (int4 saves storage and bandwidth; there is no int4 product kernel).
import { isGradEnabled, noGrad } from '../autograd/tape.js';
import { ArgumentError, ShapeError, checkOptions, describe } from '../errors.js';
import { Module } from '../nn/module.js';
import { posInt } from '../nn/layers.js';
import { registerLayer, type SpecFields } from '../nn/registry.js';
import type { SpecReader } from '../nn/spec_reader.js';
import { ones, tensor, zeros } from '../ops/creation.js';
import { tidy } from '../engine/memory.js';
import { add, cast, clamp, div, mul, sub, type FusedActivation } from '../ops/elementwise.js';
import { concat, reshape, slice, stack } from '../ops/movement.js';
import { maxPool2d, pair as checkPair } from '../ops/conv.js';
import { qconv2dInt8, qlinearInt4, qlinearInt8, type ActivationQuant } from '../ops/quant.js';
import { convOutSize, shapeStr } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { INT4_LAYOUT } from './layout.js';

type Pair2 = [number, number];

function actFrom(buf: Tensor): ActivationQuant {
  const [scale, zeroPoint] = Array.from(buf.toArray() as Float32Array);
  return scale! > 0 ? { scale: scale!, zeroPoint: zeroPoint! } : 'dynamic';
}
function actTensor(act: ActivationQuant): Tensor {
  return tensor(act === 'dynamic' ? [0, 0] : [act.scale, act.zeroPoint]);
}

/**
 * Symmetric int8 weights: w [N, ...] -> q int8 [N, ...] and scale [N], max|w| / 127 per output channel (or, with
 * `perChannel` false, the whole tensor's max|w| / 127 in every channel).
 */
export function quantizeWeightsInt8(w: Tensor, perChannel = true): { q: Tensor; scale: Tensor } {
  // tidy: every intermediate is freed now, not when the garbage collector gets to it
  return tidy(() =>
    noGrad(() => {
      const N = w.shape[0]!;
      const flat = reshape(w, [N, w.size / N]);
      // per tensor: every channel gets the scale of the largest |w| anywhere
      const amax = perChannel ? flat.abs().max(1, true) : flat.abs().max(1, true).max(0, true).expand([N, 1]);
      const scale = div(amax, 127).maximum(1e-12); // an all-zero row keeps a tiny positive scale
      const q = cast(clamp(quantCodes(flat, scale), -127, 127), 'int8');
      const out = { q: reshape(q, w.shape), scale: reshape(scale, [N]) };
      [flat, amax, scale, q].forEach((t) => {
        if (t !== out.q && t !== out.scale) t.dispose();
      });
      return out;
    }),
  );
}

/**
 * The integer codes of x at `scale` before the zero point: nearbyint(x * (1 / scale)) with the reciprocal
 * rounded to float32 first, the rule of every quantize kernel (cpu, CUDA, WGSL) and of PyTorch. x / scale
 * rounds differently at ties (0.05 / 0.1 is 0.49999997, 0.05 * 10 is 0.5).
 */
export function quantCodes(x: Tensor, scale: Tensor): Tensor {
  return tidy(() => noGrad(() => roundHalfEven(mul(x, div(1, scale)))));
}

/** Rounds to the nearest integer, ties to even (as the kernels' nearbyint), with tensor ops. */
export function roundHalfEven(x: Tensor): Tensor {
  // tidy: every intermediate is freed now, not when the garbage collector gets to it
  return tidy(() =>
    noGrad(() => {
      // floor(x + 0.5), then step back where x + 0.5 was an odd integer exactly (a tie rounded up to odd)
      const y = x.add(0.5);
      const f = floorT(y);
      const tie = f.eq(y);
      const odd = f.sub(floorT(f.div(2)).mul(2)).ne(0);
      const r = f.sub(tie.cast('float32').mul(odd.cast('float32')));
      [y, tie, odd].forEach((t) => t.dispose());
      f.dispose();
      return r;
    }),
  );
}
/** floor for float32 tensors: truncation corrected for negative non-integers. */
function floorT(x: Tensor): Tensor {
  const t = cast(cast(x, 'int32'), 'float32');
  const fix = t.gt(x).cast('float32');
  const r = sub(t, fix);
  t.dispose();
  fix.dispose();
  return r;
}

/** int8 Linear: y = qlinearInt8(x, wq, wscale, bias) with static or dynamic activation quantization. */
export class QuantLinear extends Module {
  readonly weightQ: Tensor;
  readonly weightScale: Tensor;
  readonly bias: Tensor | null;
  /** [scale, zeroPoint] of the input; scale 0 = dynamic (per row) */
  readonly inputQuant: Tensor;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: { bias?: boolean; act?: ActivationQuant } = {},
  ) {
    super();
    checkOptions(opts, 'QuantLinear', ['bias', 'act']);
    this.weightQ = this.registerBuffer('weightQ', zeros([outFeatures, inFeatures], { dtype: 'int8' }));
    this.weightScale = this.registerBuffer('weightScale', ones([outFeatures]));
    this.bias = opts.bias === false ? null : this.registerBuffer('bias', zeros([outFeatures]));
    this.inputQuant = this.registerBuffer('inputQuant', actTensor(opts.act ?? 'dynamic'));
  }
  /** True when the input is quantized per row at run time. */
  get dynamic(): boolean {
    return actFrom(this.inputQuant) === 'dynamic';
  }
  forward(x: Tensor): Tensor {
    if (x.ndim < 1 || x.shape[x.ndim - 1] !== this.inFeatures) {
      throw new ShapeError(
        `QuantLinear expects inputs whose last dimension is ${this.inFeatures}, got ${shapeStr(x.shape)}`,
      );
    }
    return qlinearInt8(x, this.weightQ, this.weightScale, this.bias, actFrom(this.inputQuant));
  }
  protected override extraRepr(): string {
    return `${this.inFeatures}, ${this.outFeatures}, int8, input ${this.dynamic ? 'dynamic' : 'static'}`;
  }
}

/** int8 Conv2d (groups = 1) on the int8 convolution kernel (kn.qconv2dInt8); dynamic inputs are quantized per image. */
export class QuantConv2d extends Module {
  /** A following ReLU layer runs inside the int8 kernel's epilogue (see Sequential). */
  static readonly fusedActivations: readonly FusedActivation[] = ['relu'];
  /** A following MaxPool2d(k) (stride k, no padding) runs there too, after the ReLU (see Sequential). */
  static readonly fusedMaxPool = true;
  readonly weightQ: Tensor;
  readonly weightScale: Tensor;
  readonly bias: Tensor | null;
  readonly inputQuant: Tensor;
  readonly kernelSize: Pair2;
  readonly stride: Pair2;
  readonly padding: Pair2;
  readonly dilation: Pair2;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    kernelSize: number | Pair2,
    opts: {
      stride?: number | Pair2;
      padding?: number | Pair2;
      dilation?: number | Pair2;
      bias?: boolean;
      act?: ActivationQuant;
    } = {},
  ) {
    super();
    checkOptions(opts, 'QuantConv2d', ['stride', 'padding', 'dilation', 'bias', 'act']);
    posInt(inChannels, 'QuantConv2d inChannels');
    posInt(outChannels, 'QuantConv2d outChannels');
    this.kernelSize = checkPair(kernelSize ?? NaN, NaN, 'QuantConv2d kernelSize', 1);
    this.stride = checkPair(opts.stride, 1, 'QuantConv2d stride', 1);
    this.padding = checkPair(opts.padding, 0, 'QuantConv2d padding', 0);
    this.dilation = checkPair(opts.dilation, 1, 'QuantConv2d dilation', 1);
    const [kh, kw] = this.kernelSize;
    this.weightQ = this.registerBuffer('weightQ', zeros([outChannels, inChannels, kh, kw], { dtype: 'int8' }));
    this.weightScale = this.registerBuffer('weightScale', ones([outChannels]));
    this.bias = opts.bias === false ? null : this.registerBuffer('bias', zeros([outChannels]));
    this.inputQuant = this.registerBuffer('inputQuant', actTensor(opts.act ?? 'dynamic'));
  }
  forward(x: Tensor): Tensor {
    return this.forwardAct(x, 'none');
  }
  /** forward followed by a ReLU in the same kernel (Sequential fuses a following ReLU layer this way). */
  forwardAct(x: Tensor, act: FusedActivation): Tensor {
    return this.forwardPool(x, act, 1);
  }
  /**
   * forward, then the ReLU (act 'relu'), then a k x k max pool at stride k (pool = k; 1: none), in the same
   * kernel: Sequential fuses a following MaxPool2d(k) this way. A pool larger than the output runs apart, so
   * that maxPool2d reports it.
   */
  forwardPool(x: Tensor, act: FusedActivation, pool: number): Tensor {
    if (x.ndim !== 4 || x.shape[1] !== this.inChannels) {
      throw new ShapeError(`QuantConv2d expects [N, ${this.inChannels}, H, W], got ${shapeStr(x.shape)}`);
    }
    if (act !== 'none' && act !== 'relu') throw new ArgumentError(`QuantConv2d fuses only relu, got ${describe(act)}`);
    const opts = {
      stride: this.stride,
      padding: this.padding,
      dilation: this.dilation,
      act: actFrom(this.inputQuant),
      relu: act === 'relu',
    };
    const side = (i: 0 | 1): number =>
      convOutSize(x.shape[2 + i]!, this.kernelSize[i], this.stride[i], this.padding[i], this.dilation[i]);
    if (pool === 1 || pool <= Math.min(side(0), side(1)))
      return qconv2dInt8(x, this.weightQ, this.weightScale, this.bias, { ...opts, pool });
    const y = qconv2dInt8(x, this.weightQ, this.weightScale, this.bias, opts);
    try {
      return maxPool2d(y, pool);
    } finally {
      y.dispose();
    }
  }
  protected override extraRepr(): string {
    return `${this.inChannels}, ${this.outChannels}, kernel=${this.kernelSize.join('x')}, int8`;
  }
}

/**
 * int4 weight-only Linear: weights in [-8, 7] with one float32 scale per (row, group of `groupSize` inputs),
 * two per byte (INT4_LAYOUT); dequantized for each call, then the float GEMM.
 */
export class Int4Linear extends Module {
  readonly weightPacked: Tensor;
  readonly weightScale: Tensor;
  readonly bias: Tensor | null;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    readonly groupSize: number,
    opts: { bias?: boolean } = {},
  ) {
    super();
    checkOptions(opts, 'Int4Linear', ['bias']);
    if (!(INT4_LAYOUT.groupSizes as readonly number[]).includes(groupSize)) {
      throw new ArgumentError(
        `Int4Linear groupSize must be one of ${INT4_LAYOUT.groupSizes.join(', ')}, got ${describe(groupSize)}`,
      );
    }
    const G = Math.ceil(inFeatures / groupSize);
    this.weightPacked = this.registerBuffer(
      'weightPacked',
      zeros([outFeatures, (G * groupSize) / 2], { dtype: 'uint8' }),
    );
    this.weightScale = this.registerBuffer('weightScale', ones([outFeatures, G]));
    this.bias = opts.bias === false ? null : this.registerBuffer('bias', zeros([outFeatures]));
  }
  /** The float32 weight [out, in] these int4 values stand for. */
  dequantized(): Tensor {
    return dequantizeWeightsInt4(this.weightPacked, this.weightScale, this.groupSize, this.inFeatures);
  }
  forward(x: Tensor): Tensor {
    if (x.ndim < 1 || x.shape[x.ndim - 1] !== this.inFeatures) {
      throw new ShapeError(
        `Int4Linear expects inputs whose last dimension is ${this.inFeatures}, got ${shapeStr(x.shape)}`,
      );
    }
    // inference: one kernel that dequantizes as it multiplies; with a gradient to carry back to x, the composite
    if (!(x.requiresGrad && isGradEnabled()))
      return qlinearInt4(x, this.weightPacked, this.weightScale, this.bias, this.groupSize);
    const w = this.dequantized();
    const y = x.matmul(w.transpose());
    w.dispose();
    if (!this.bias) return y;
    const r = add(y, this.bias);
    y.dispose();
    return r;
  }
  protected override extraRepr(): string {
    return `${this.inFeatures}, ${this.outFeatures}, int4 groups of ${this.groupSize}`;
  }
}

/**
 * The float32 weight [N, K] of int4 groups (INT4_LAYOUT): packed uint8 [N, G*g/2] and scales [N, G] as
 * quantizeWeightsInt4 makes them.
 */
export function dequantizeWeightsInt4(packed: Tensor, scale: Tensor, groupSize: number, K: number): Tensor {
  return noGrad(() => {
    const N = scale.shape[0]!,
      G = scale.shape[1]!,
      g = groupSize;
    const p = cast(packed, 'int32');
    const hi = cast(cast(div(p, 16), 'int32'), 'float32'); // p >= 0: truncation is floor
    const lo = sub(cast(p, 'float32'), mul(hi, 16));
    // byte b of a row holds element 2b in its low nibble and 2b + 1 in its high nibble, stored with +8
    const vals = sub(reshape(stack([lo, hi], 2), [N, G, g]), INT4_LAYOUT.offset);
    const w = mul(vals, reshape(scale, [N, G, 1]));
    const full = reshape(w, [N, G * g]);
    const out = G * g === K ? full.clone() : slice(full, [0, 0], [N, K]).contiguous();
    [p, hi, lo, vals, w, full].forEach((t) => t.dispose());
    return out;
  });
}

/** Quantizes w [N, K] to int4 groups: packed uint8 [N, G*g/2] and scales [N, G] (max|w| of the group / 7). */
export function quantizeWeightsInt4(w: Tensor, groupSize: number): { packed: Tensor; scale: Tensor } {
  if (w.ndim !== 2) throw new ShapeError(`int4 quantization takes a 2-D weight, got ${shapeStr(w.shape)}`);
  if (!(INT4_LAYOUT.groupSizes as readonly number[]).includes(groupSize)) {
    throw new ArgumentError(
      `int4 groupSize must be one of ${INT4_LAYOUT.groupSizes.join(', ')}, got ${describe(groupSize)}`,
    );
  }
  // tidy: every intermediate is freed now, not when the garbage collector gets to it
  return tidy(() =>
    noGrad(() => {
      const [N, K] = w.shape as [number, number];
      const G = Math.ceil(K / groupSize),
        g = groupSize;
      const padded = G * g === K ? w.clone() : concat([w, zeros([N, G * g - K])], 1);
      const grouped = reshape(padded, [N, G, g]);
      const amax = grouped.abs().max(2, true);
      const scale = div(amax, 7).maximum(1e-12);
      const q = clamp(quantCodes(grouped, scale), -8, 7).add(INT4_LAYOUT.offset); // 0..15
      const pairs = reshape(q, [N, (G * g) / 2, 2]);
      const lo = slice(pairs, [0, 0, 0], [N, (G * g) / 2, 1]),
        hi = slice(pairs, [0, 0, 1], [N, (G * g) / 2, 2]);
      const byte = reshape(add(lo, mul(hi, 16)), [N, (G * g) / 2]);
      const packed = cast(byte, 'uint8');
      const sc = reshape(scale, [N, G]);
      [padded, grouped, amax, scale, q, pairs, lo, hi, byte].forEach((t) => {
        if (t !== sc) t.dispose();
      });
      return { packed, scale: sc };
    }),
  );
}

// ---- descriptions (nn/registry.ts): the quantized layers' specs, so quantized files load and serve ----

const p2 = (v: number | [number, number]): Pair2 => (typeof v === 'number' ? [v, v] : v);
const linearBits = (o: SpecFields, r: SpecReader, path: string): { i: number; out: number; bias: boolean } => ({
  i: r.int(o, 'inFeatures', path, 1),
  out: r.int(o, 'outFeatures', path, 1),
  bias: r.bool(o, 'bias', path, true),
});

registerLayer(QuantLinear, {
  type: 'QuantLinear',
  toSpec: (q) => ({ type: 'QuantLinear', inFeatures: q.inFeatures, outFeatures: q.outFeatures, bias: q.bias !== null }),
  params: (o, r, path) => {
    const { i, out } = linearBits(o, r, path);
    return (i * out) / 4 + out + 2;
  },
  fromSpec: (o, r, path) => {
    const { i, out, bias } = linearBits(o, r, path);
    return new QuantLinear(i, out, { bias });
  },
  inputFeatures: (q) => q.inFeatures,
});

function qconvFields(o: SpecFields, r: SpecReader, path: string) {
  const k = p2(r.pair(o, 'kernelSize', path, 1));
  return {
    ci: r.int(o, 'inChannels', path, 1),
    co: r.int(o, 'outChannels', path, 1),
    k,
    stride: p2(r.pair(o, 'stride', path, 1, 1)),
    padding: p2(r.pair(o, 'padding', path, 0, 0)),
    dilation: p2(r.pair(o, 'dilation', path, 1, 1)),
    bias: r.bool(o, 'bias', path, true),
  };
}
registerLayer(QuantConv2d, {
  type: 'QuantConv2d',
  toSpec: (q) => ({
    type: 'QuantConv2d',
    inChannels: q.inChannels,
    outChannels: q.outChannels,
    kernelSize: [...q.kernelSize],
    stride: [...q.stride],
    padding: [...q.padding],
    dilation: [...q.dilation],
    bias: q.bias !== null,
  }),
  params: (o, r, path) => {
    const { ci, co, k } = qconvFields(o, r, path);
    return (co * ci * k[0] * k[1]) / 4 + co + 2;
  },
  fromSpec: (o, r, path) => {
    const { ci, co, k, stride, padding, dilation, bias } = qconvFields(o, r, path);
    return new QuantConv2d(ci, co, k, { stride, padding, dilation, bias });
  },
});

function int4Group(o: SpecFields, r: SpecReader, path: string): number {
  const g = r.int(o, 'groupSize', path, 1);
  if (!(INT4_LAYOUT.groupSizes as readonly number[]).includes(g))
    r.fail(path, `'groupSize' must be 32, 64 or 128, got ${g}`);
  return g;
}
registerLayer(Int4Linear, {
  type: 'Int4Linear',
  toSpec: (q) => ({
    type: 'Int4Linear',
    inFeatures: q.inFeatures,
    outFeatures: q.outFeatures,
    groupSize: q.groupSize,
    bias: q.bias !== null,
  }),
  params: (o, r, path) => {
    const { i, out } = linearBits(o, r, path);
    const g = int4Group(o, r, path);
    return (i * out) / 8 + out * Math.ceil(i / g) + out;
  },
  fromSpec: (o, r, path) => {
    const { i, out, bias } = linearBits(o, r, path);
    return new Int4Linear(i, out, int4Group(o, r, path), { bias });
  },
  inputFeatures: (q) => q.inFeatures,
});
