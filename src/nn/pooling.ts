// Sequence convolution, pooling, resizing and composition layers: Conv1d, AvgPool2d, AdaptiveAvgPool2d,
// GlobalAvgPool2d, SequencePool, Residual (the skip connection of ResNets and Transformers) and Upsample
// (kn.nn.interpolate). Each describes itself in nn/registry.ts after its class.
import { ArgumentError, ShapeError, checkOptions, describe } from '../errors.js';
import { avgPool2d, conv2d, pair, type Pair } from '../ops/conv.js';
import { tensor } from '../ops/creation.js';
import { add, mul, sub } from '../ops/elementwise.js';
import { gather, reshape, slice, stack } from '../ops/movement.js';
import { max, mean } from '../ops/reduce.js';
import { shapeStr } from '../tensor/shape.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';
import { own } from '../records.js';
import { initBias, initWeight } from './init.js';
import { layerPadding, poolFields, poolSpec, posInt, type LayerOptions } from './layers.js';
import { Module } from './module.js';
import { registerLayer, type SpecFields } from './registry.js';
import type { SpecReader } from './spec_reader.js';

/** Conv1d options: stride, padding, dilation, groups, bias, init. */
export interface Conv1dLayerOptions extends LayerOptions {
  stride?: number;
  /** Zeros on each side, or 'valid' (none) or 'same' (stride 1: the output keeps the input's length). */
  padding?: number | 'same' | 'valid';
  dilation?: number;
  groups?: number;
}

/**
 * 1-D convolution over [N, C, L] input; weight [out, in/groups, k] (PyTorch's layout). Runs on the conv2d kernels
 * with a height of 1, so it has their speed and gradients.
 * @example new kn.nn.Conv1d(2, 4, 3, { padding: 1 }).call(kn.ones([1, 2, 10])).shape // [1, 4, 10]
 */
export class Conv1d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly stride: number;
  readonly padding: number;
  readonly dilation: number;
  readonly groups: number;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    opts: Conv1dLayerOptions = {},
  ) {
    super();
    checkOptions(opts, 'Conv1d', ['bias', 'init', 'stride', 'padding', 'dilation', 'groups']);
    posInt(inChannels, 'Conv1d inChannels');
    posInt(outChannels, 'Conv1d outChannels');
    posInt(kernelSize, 'Conv1d kernelSize');
    this.stride = posInt(opts.stride ?? 1, 'Conv1d stride');
    this.dilation = posInt(opts.dilation ?? 1, 'Conv1d dilation');
    this.groups = posInt(opts.groups ?? 1, 'Conv1d groups');
    const pad =
      typeof opts.padding === 'string'
        ? layerPadding(
            { stride: [1, this.stride], padding: opts.padding, dilation: [1, this.dilation] },
            [1, kernelSize],
            'Conv1d',
          )[1]
        : (opts.padding ?? 0);
    if (!Number.isInteger(pad) || pad < 0)
      throw new ArgumentError(`Conv1d padding must be an integer >= 0, got ${describe(opts.padding)}`);
    this.padding = pad;
    if (inChannels % this.groups || outChannels % this.groups)
      throw new ShapeError(
        `Conv1d: channels ${inChannels} and ${outChannels} must be divisible by groups ${this.groups}`,
      );
    const fanIn = (inChannels / this.groups) * kernelSize;
    this.weight = this.registerParameter(
      'weight',
      initWeight([outChannels, inChannels / this.groups, kernelSize], opts.init),
    );
    this.bias = opts.bias === false ? null : this.registerParameter('bias', initBias(outChannels, fanIn, opts.init));
  }
  forward(x: Tensor): Tensor {
    if (x.ndim !== 3 || x.shape[1] !== this.inChannels)
      throw new ShapeError(`Conv1d(${this.inChannels}) expects [N, ${this.inChannels}, L], got ${shapeStr(x.shape)}`);
    const [N, C, L] = x.shape as [number, number, number];
    const w = reshape(this.weight, [this.outChannels, C / this.groups, 1, this.kernelSize]);
    const y = conv2d(reshape(x, [N, C, 1, L]), w, this.bias, {
      stride: [1, this.stride],
      padding: [0, this.padding],
      dilation: [1, this.dilation],
      groups: this.groups,
    });
    return reshape(y, [N, this.outChannels, y.shape[3]!]);
  }
  protected override extraRepr(): string {
    return `${this.inChannels}, ${this.outChannels}, kernel=${this.kernelSize}`;
  }
}

/**
 * Average pooling over NCHW input (stride defaults to the kernel size; padded zeros count, as PyTorch).
 * @example new kn.nn.AvgPool2d(2).call(kn.ones([1, 1, 4, 4])).shape // [1, 1, 2, 2]
 */
export class AvgPool2d extends Module {
  constructor(
    readonly kernelSize: Pair,
    readonly opts: { stride?: Pair; padding?: Pair; countIncludePad?: boolean } = {},
  ) {
    super();
    checkOptions(opts, 'AvgPool2d', ['stride', 'padding', 'countIncludePad']);
  }
  forward(x: Tensor): Tensor {
    return avgPool2d(x, this.kernelSize, this.opts);
  }
}

/** PyTorch's adaptive window of output index i: [floor(i n / out), ceil((i + 1) n / out)). */
function window(i: number, n: number, out: number): [number, number] {
  return [Math.floor((i * n) / out), Math.ceil(((i + 1) * n) / out)];
}

/**
 * Average pooling to a fixed output size [oh, ow] whatever the input's H and W (PyTorch's adaptive windows).
 * When the sizes divide evenly it is one avgPool2d.
 * @example new kn.nn.AdaptiveAvgPool2d(1).call(kn.ones([2, 3, 5, 7])).shape // [2, 3, 1, 1]
 */
export class AdaptiveAvgPool2d extends Module {
  readonly outputSize: [number, number];
  constructor(outputSize: number | readonly [number, number]) {
    super();
    this.outputSize = pair(outputSize ?? NaN, NaN, 'AdaptiveAvgPool2d outputSize', 1);
    if (this.outputSize.some((d) => d > 2 ** 31 - 1))
      throw new ArgumentError(`AdaptiveAvgPool2d outputSize must be at most 2^31 - 1, got ${describe(outputSize)}`);
  }
  forward(x: Tensor): Tensor {
    if (x.ndim !== 4) throw new ShapeError(`AdaptiveAvgPool2d expects [N, C, H, W], got ${shapeStr(x.shape)}`);
    const [oh, ow] = this.outputSize;
    const [, , H, W] = x.shape as [number, number, number, number];
    if (H % oh === 0 && W % ow === 0) return avgPool2d(x, [H / oh, W / ow]);
    // uneven windows: average rows per output row, then columns per output column
    const rows = stack(
      Array.from({ length: oh }, (_, i) => {
        const [a, b] = window(i, H, oh);
        return mean(slice(x, [0, 0, a], [null, null, b]), 2);
      }),
      2,
    );
    return stack(
      Array.from({ length: ow }, (_, j) => {
        const [a, b] = window(j, W, ow);
        return mean(slice(rows, [0, 0, 0, a], [null, null, null, b]), 3);
      }),
      3,
    );
  }
}

/**
 * The mean over H and W of NCHW input, flattened to [N, C] (the head of ResNets).
 * @example new kn.nn.GlobalAvgPool2d().call(kn.ones([2, 3, 4, 4])).shape // [2, 3]
 */
export class GlobalAvgPool2d extends Module {
  forward(x: Tensor): Tensor {
    if (x.ndim !== 4) throw new ShapeError(`GlobalAvgPool2d expects [N, C, H, W], got ${shapeStr(x.shape)}`);
    return mean(x, [2, 3]);
  }
}

/** How {@link SequencePool} reduces the sequence axis. */
export type SequencePoolMode = 'mean' | 'max' | 'first' | 'last';

/**
 * Reduces a sequence [N, L, E] (batchFirst, the default) or [L, N, E] to [N, E]: the mean or max over
 * positions, or the first (a [CLS] token) or last position. The bridge from a Transformer encoder to a head.
 * @example new kn.nn.SequencePool('mean').call(kn.ones([2, 5, 8])).shape // [2, 8]
 */
export class SequencePool extends Module {
  readonly batchFirst: boolean;
  constructor(
    readonly mode: SequencePoolMode = 'mean',
    opts: { batchFirst?: boolean } = {},
  ) {
    super();
    checkOptions(opts, 'SequencePool', ['batchFirst']);
    if (!['mean', 'max', 'first', 'last'].includes(mode))
      throw new ArgumentError(`SequencePool mode must be 'mean', 'max', 'first' or 'last', got ${describe(mode)}`);
    this.batchFirst = opts.batchFirst ?? true;
  }
  forward(x: Tensor): Tensor {
    if (x.ndim !== 3)
      throw new ShapeError(
        `SequencePool expects ${this.batchFirst ? '[N, L, E]' : '[L, N, E]'}, got ${shapeStr(x.shape)}`,
      );
    const ax = this.batchFirst ? 1 : 0;
    if (this.mode === 'mean') return mean(x, ax);
    if (this.mode === 'max') return max(x, ax);
    const L = x.shape[ax]!;
    const at = this.mode === 'first' ? 0 : L - 1;
    const begin = ax === 1 ? [0, at] : [at];
    const end = ax === 1 ? [null, at + 1] : [at + 1];
    const s = slice(x, begin, end);
    return reshape(s, [x.shape[1 - ax]!, x.shape[2]!]);
  }
}

/**
 * A skip connection: body(x) + x, or body(x) + shortcut(x) when the body changes the shape (a 1x1 conv
 * projection in ResNets). Children `body` and `shortcut`.
 * @example new kn.nn.Residual(new kn.nn.Linear(4, 4)).call(kn.ones([2, 4])).shape // [2, 4]
 */
export class Residual extends Module {
  constructor(body: Module, shortcut?: Module | null) {
    super();
    this.registerModule('body', body);
    if (shortcut) this.registerModule('shortcut', shortcut);
  }
  /** The module on the skip path, or null for the identity. */
  get shortcut(): Module | null {
    return this.namedChildren().some(([n]) => n === 'shortcut') ? this.child('shortcut') : null;
  }
  /** The residual branch. */
  get body(): Module {
    return this.child('body');
  }
  forward(x: Tensor): Tensor {
    const y = this.body.call(x);
    const s = this.shortcut;
    const skip = s ? s.call(x) : x;
    if (y.shape.length !== skip.shape.length || y.shape.some((d, i) => d !== skip.shape[i]))
      throw new ShapeError(
        `Residual: the body gives ${shapeStr(y.shape)} but the skip path ${shapeStr(skip.shape)}; ` +
          'give a shortcut module that maps the input to the body output shape',
      );
    return add(y, skip);
  }
}

// ---- descriptions (nn/registry.ts) ----

const nonNeg = (o: SpecFields, r: SpecReader, path: string, k: string, dflt: number): number =>
  r.int(o, k, path, 0, dflt);
registerLayer(Conv1d, {
  type: 'Conv1d',
  toSpec: (c) => ({
    type: 'Conv1d',
    inChannels: c.inChannels,
    outChannels: c.outChannels,
    kernelSize: c.kernelSize,
    stride: c.stride,
    padding: c.padding,
    dilation: c.dilation,
    groups: c.groups,
    bias: c.bias !== null,
  }),
  params: (o, r, path) => {
    const ci = r.int(o, 'inChannels', path, 1),
      co = r.int(o, 'outChannels', path, 1),
      k = r.int(o, 'kernelSize', path, 1),
      g = r.int(o, 'groups', path, 1, 1);
    if (ci % g || co % g) r.fail(path, `channels ${ci} and ${co} must be divisible by groups ${g}`);
    r.int(o, 'stride', path, 1, 1);
    r.int(o, 'dilation', path, 1, 1);
    nonNeg(o, r, path, 'padding', 0);
    return co * (ci / g) * k + (r.bool(o, 'bias', path, true) ? co : 0);
  },
  fromSpec: (o, r, path) =>
    new Conv1d(r.int(o, 'inChannels', path, 1), r.int(o, 'outChannels', path, 1), r.int(o, 'kernelSize', path, 1), {
      stride: r.int(o, 'stride', path, 1, 1),
      padding: nonNeg(o, r, path, 'padding', 0),
      dilation: r.int(o, 'dilation', path, 1, 1),
      groups: r.int(o, 'groups', path, 1, 1),
      bias: r.bool(o, 'bias', path, true),
    }),
});

registerLayer(AvgPool2d, {
  type: 'AvgPool2d',
  toSpec: (p) => ({
    type: 'AvgPool2d',
    ...poolSpec(p.kernelSize, p.opts),
    countIncludePad: p.opts.countIncludePad ?? true,
  }),
  params: (o, r, path) => (poolFields(o, r, path), r.bool(o, 'countIncludePad', path, true), 0),
  fromSpec: (o, r, path) => {
    const f = poolFields(o, r, path);
    return new AvgPool2d(f.kernel, {
      ...(f.stride ? { stride: f.stride } : {}),
      padding: f.padding,
      countIncludePad: r.bool(o, 'countIncludePad', path, true),
    });
  },
  keepsFeatures: true,
});

const outSize = (o: SpecFields, r: SpecReader, path: string): [number, number] => {
  const p = r.pair(o, 'outputSize', path, 1);
  return typeof p === 'number' ? [p, p] : p;
};
registerLayer(AdaptiveAvgPool2d, {
  type: 'AdaptiveAvgPool2d',
  toSpec: (p) => ({ type: 'AdaptiveAvgPool2d', outputSize: [...p.outputSize] }),
  params: (o, r, path) => (outSize(o, r, path), 0),
  fromSpec: (o, r, path) => new AdaptiveAvgPool2d(outSize(o, r, path)),
  keepsFeatures: true,
});

registerLayer(GlobalAvgPool2d, {
  type: 'GlobalAvgPool2d',
  toSpec: () => ({ type: 'GlobalAvgPool2d' }),
  params: () => 0,
  fromSpec: () => new GlobalAvgPool2d(),
});

const poolMode = (o: SpecFields, r: SpecReader, path: string): SequencePoolMode => {
  const m = o.mode ?? 'mean';
  if (m !== 'mean' && m !== 'max' && m !== 'first' && m !== 'last')
    r.fail(path, `'mode' must be 'mean', 'max', 'first' or 'last', got ${describe(m)}`);
  return m;
};
registerLayer(SequencePool, {
  type: 'SequencePool',
  toSpec: (p) => ({ type: 'SequencePool', mode: p.mode, batchFirst: p.batchFirst }),
  params: (o, r, path) => (poolMode(o, r, path), r.bool(o, 'batchFirst', path, true), 0),
  fromSpec: (o, r, path) => new SequencePool(poolMode(o, r, path), { batchFirst: r.bool(o, 'batchFirst', path, true) }),
});

registerLayer(Residual, {
  type: 'Residual',
  toSpec: (m, child) => ({ type: 'Residual', layers: m.children().map((c, i) => child(c, i)) }),
  params: () => 0,
  children: (o, r, path) => {
    const ls = o.layers;
    if (!Array.isArray(ls) || ls.length < 1 || ls.length > 2)
      r.fail(path, `'layers' must list the body and optionally a shortcut, got ${describe(ls)}`);
    return ls as unknown[];
  },
  fromSpec: (o, _r, _path, child) => new Residual(child(0), (o.layers as unknown[]).length > 1 ? child(1) : null),
});

/** How interpolate resizes: the nearest input pixel (PyTorch's 'nearest') or bilinear weights. */
export type InterpolateMode = 'nearest' | 'bilinear';

/** interpolate's options: the output `size` [h, w] or a `scaleFactor` (one of the two), the mode and alignment. */
export interface InterpolateOptions {
  size?: number | readonly [number, number];
  scaleFactor?: number | readonly [number, number];
  /** 'nearest' (default) or 'bilinear'. */
  mode?: InterpolateMode;
  /** bilinear: map the corner pixels' centres onto each other (PyTorch's align_corners; default false). */
  alignCorners?: boolean;
}
const INTERPOLATE_KEYS = ['size', 'scaleFactor', 'mode', 'alignCorners'];

/**
 * Resizes the H and W of x [N, C, H, W] as PyTorch's F.interpolate: 'nearest' takes input index
 * floor(out * scale) (float32 arithmetic, as PyTorch), 'bilinear' blends the two nearest rows and columns at
 * source (out + 0.5) * scale - 0.5 (clamped at 0), or out * (in - 1) / (out - 1) with alignCorners. The scale is
 * in / out for a `size`, and 1 / scaleFactor for a `scaleFactor` (output floor(in * scaleFactor)). Gathers and
 * weighted sums, so it is differentiable on every backend.
 * @example kn.nn.interpolate(kn.ones([1, 2, 3, 4]), { scaleFactor: 2 }).shape // [1, 2, 6, 8]
 */
export function interpolate(x: Tensor, opts: InterpolateOptions = {}): Tensor {
  checkOptions(opts, 'interpolate', INTERPOLATE_KEYS);
  const plan = interpolatePlan(opts, 'interpolate');
  if (!isTensor(x) || x.ndim !== 4)
    throw new ShapeError(`interpolate expects [N, C, H, W], got ${isTensor(x) ? shapeStr(x.shape) : describe(x)}`);
  return resize(x, plan);
}

interface InterpolatePlan {
  size: [number, number] | null;
  scale: [number, number] | null;
  mode: InterpolateMode;
  alignCorners: boolean;
}

/** Checks interpolate's options once (a layer checks them when built). */
function interpolatePlan(opts: InterpolateOptions, what: string): InterpolatePlan {
  const mode = opts.mode ?? 'nearest';
  if (mode !== 'nearest' && mode !== 'bilinear')
    throw new ArgumentError(`${what} mode must be 'nearest' or 'bilinear', got ${describe(opts.mode)}`);
  const alignCorners = opts.alignCorners ?? false;
  if (typeof alignCorners !== 'boolean')
    throw new ArgumentError(`${what} alignCorners must be a boolean, got ${describe(opts.alignCorners)}`);
  if (alignCorners && mode === 'nearest')
    throw new ArgumentError(`${what}: alignCorners applies to mode 'bilinear' only (as PyTorch)`);
  if ((opts.size === undefined) === (opts.scaleFactor === undefined))
    throw new ArgumentError(`${what} takes one of size and scaleFactor, got ${describe(opts)}`);
  if (opts.size !== undefined) {
    const size = pair(opts.size, NaN, `${what} size`, 1);
    return { size, scale: null, mode, alignCorners };
  }
  const f = opts.scaleFactor!;
  const scale: [number, number] =
    typeof f === 'number' ? [f, f] : Array.isArray(f) && f.length === 2 ? [f[0]!, f[1]!] : [NaN, NaN];
  if (!scale.every((s) => typeof s === 'number' && Number.isFinite(s) && s > 0))
    throw new ArgumentError(`${what} scaleFactor must be a number > 0 or a pair of them, got ${describe(f)}`);
  return { size: null, scale, mode, alignCorners };
}

/** Index and weight of the input rows each output row reads along one axis (in -> out). */
function axisTaps(
  n: number,
  out: number,
  factor: number | null,
  mode: InterpolateMode,
  alignCorners: boolean,
): { i0: Int32Array; i1: Int32Array; w1: Float32Array } {
  const i0 = new Int32Array(out),
    i1 = new Int32Array(out),
    w1 = new Float32Array(out);
  if (mode === 'nearest') {
    const s = Math.fround(factor !== null ? 1 / factor : n / out);
    for (let o = 0; o < out; o++) i0[o] = i1[o] = Math.min(Math.floor(Math.fround(o * s)), n - 1);
    return { i0, i1, w1 };
  }
  const s = alignCorners ? (out > 1 ? (n - 1) / (out - 1) : 0) : factor !== null ? 1 / factor : n / out;
  for (let o = 0; o < out; o++) {
    const src = alignCorners ? o * s : Math.max((o + 0.5) * s - 0.5, 0);
    const a = Math.min(Math.floor(src), n - 1);
    i0[o] = a;
    i1[o] = a < n - 1 ? a + 1 : a;
    w1[o] = src - a;
  }
  return { i0, i1, w1 };
}

function resize(x: Tensor, p: InterpolatePlan): Tensor {
  const [, , H, W] = x.shape as [number, number, number, number];
  const [OH, OW] = p.size ?? [Math.floor(H * p.scale![0]), Math.floor(W * p.scale![1])];
  if (OH < 1 || OW < 1)
    throw new ShapeError(`interpolate: the output would be ${OH}x${OW} for input ${H}x${W}; it must be at least 1x1`);
  const backend = x.backendInstance.name;
  const along = (t: Tensor, axis: 2 | 3, n: number, out: number, factor: number | null): Tensor => {
    const { i0, i1, w1 } = axisTaps(n, out, factor, p.mode, p.alignCorners);
    const ix0 = tensor(i0, [out], { dtype: 'int32', backend });
    const a = gather(t, ix0, axis);
    if (p.mode === 'nearest') return a;
    const shape = axis === 2 ? [out, 1] : [out];
    const wt = tensor(w1, shape, { backend });
    const b = gather(t, tensor(i1, [out], { dtype: 'int32', backend }), axis);
    // a + (b - a) * w, PyTorch's lambda0 * a + lambda1 * b up to rounding
    return add(mul(a, sub(1, wt)), mul(b, wt));
  };
  return along(along(x, 2, H, OH, p.scale?.[0] ?? null), 3, W, OW, p.scale?.[1] ?? null);
}

/**
 * Resizes [N, C, H, W] inputs (PyTorch's nn.Upsample): see interpolate.
 * @example new kn.nn.Upsample({ scaleFactor: 2, mode: 'bilinear' }).call(kn.ones([1, 1, 2, 2])).shape // [1, 1, 4, 4]
 */
export class Upsample extends Module {
  /** The output size [h, w], or null when a scale factor sets it. */
  readonly size: [number, number] | null;
  /** The scale factor [h, w], or null when a size is given. */
  readonly scaleFactor: [number, number] | null;
  readonly mode: InterpolateMode;
  readonly alignCorners: boolean;
  constructor(opts: InterpolateOptions) {
    super();
    checkOptions(opts, 'Upsample', INTERPOLATE_KEYS);
    const p = interpolatePlan(opts, 'Upsample');
    this.size = p.size;
    this.scaleFactor = p.scale;
    this.mode = p.mode;
    this.alignCorners = p.alignCorners;
  }
  forward(x: Tensor): Tensor {
    if (x.ndim !== 4) throw new ShapeError(`Upsample expects [N, C, H, W], got ${shapeStr(x.shape)}`);
    return resize(x, { size: this.size, scale: this.scaleFactor, mode: this.mode, alignCorners: this.alignCorners });
  }
  protected override extraRepr(): string {
    const by = this.size ? `size=${this.size.join('x')}` : `scaleFactor=${this.scaleFactor!.join('x')}`;
    return `${by}, mode=${this.mode}${this.alignCorners ? ', alignCorners' : ''}`;
  }
}

const upsampleFields = (o: SpecFields, r: SpecReader, path: string): InterpolateOptions => {
  const out: InterpolateOptions = {};
  const size = own(o, 'size'),
    factor = own(o, 'scaleFactor');
  if (size !== undefined) out.size = r.pair(o, 'size', path, 1) as [number, number];
  if (factor !== undefined) {
    if (
      !Array.isArray(factor) ||
      factor.length !== 2 ||
      !factor.every((f) => typeof f === 'number' && Number.isFinite(f) && f > 0)
    )
      r.fail(path, `'scaleFactor' must be a pair of numbers > 0, got ${describe(factor)}`);
    out.scaleFactor = [factor[0] as number, factor[1] as number];
  }
  if ((size === undefined) === (factor === undefined)) r.fail(path, "needs one of 'size' and 'scaleFactor'");
  const mode = own(o, 'mode') ?? 'nearest';
  if (mode !== 'nearest' && mode !== 'bilinear')
    r.fail(path, `'mode' must be 'nearest' or 'bilinear', got ${describe(mode)}`);
  out.mode = mode;
  out.alignCorners = r.bool(o, 'alignCorners', path, false);
  if (out.alignCorners && mode === 'nearest') r.fail(path, "'alignCorners' applies to mode 'bilinear' only");
  return out;
};
registerLayer(Upsample, {
  type: 'Upsample',
  toSpec: (u) => ({
    type: 'Upsample',
    ...(u.size ? { size: [...u.size] as [number, number] } : { scaleFactor: [...u.scaleFactor!] as [number, number] }),
    mode: u.mode,
    alignCorners: u.alignCorners,
  }),
  params: (o, r, path) => (upsampleFields(o, r, path), 0),
  fromSpec: (o, r, path) => new Upsample(upsampleFields(o, r, path)),
  keepsFeatures: true,
});
