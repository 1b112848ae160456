// The standard layers. Each forward is written in kiln ops, so every backend runs it and autograd gives the
// backward pass.
import { activeRecorder } from '../profile/recorder.js';
import { ArgumentError, DTypeError, ShapeError, checkOptions, describe } from '../errors.js';
import { ones, zeros } from '../ops/creation.js';
import {
  conv2d,
  maxPool2d,
  pair as checkPair,
  resolvePadding,
  type Conv2dOptions,
  type ConvPadding,
  type Pair,
} from '../ops/conv.js';
import {
  add,
  biasAct,
  cast,
  div,
  gelu,
  mul,
  ne,
  relu,
  sigmoid,
  sub,
  tanh,
  where,
  type FusedActivation,
} from '../ops/elementwise.js';
import { flatten, gather, reshape } from '../ops/movement.js';
import { rand, randn } from '../ops/random.js';
import { noGrad } from '../autograd/tape.js';
import { layerNorm, mean, variance } from '../ops/reduce.js';
import { shapeStr } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { initBias, initWeight, type InitName } from './init.js';
import { Module, type StateAliases } from './module.js';
import { own } from '../records.js';
import { registerLayer, type SpecFields } from './registry.js';
import type { Pair2, SpecReader } from './spec_reader.js';

/** @internal A positive integer argument, or ArgumentError naming it. */
export function posInt(x: unknown, what: string): number {
  if (typeof x !== 'number' || !Number.isInteger(x) || x < 1)
    throw new ArgumentError(`${what} must be a positive integer, got ${describe(x)}`);
  return x;
}
/** @internal Checks an input's last dimension. */
export function lastDim(x: Tensor, want: number, layer: string): void {
  if (x.ndim < 1 || x.shape[x.ndim - 1] !== want) {
    throw new ShapeError(`${layer} expects inputs whose last dimension is ${want}, got ${shapeStr(x.shape)}`);
  }
}

/** Options for layers with weights. */
export interface LayerOptions {
  bias?: boolean;
  init?: InitName;
}

/**
 * y = x W^T + b, with W [out, in] (PyTorch's layout).
 * @example new kn.nn.Linear(4, 2).call(kn.ones([3, 4])).shape // [3, 2]
 */
export class Linear extends Module {
  /** The activations a following ReLU / GELU layer may be fused into (Sequential calls forwardAct). */
  static readonly fusedActivations: readonly FusedActivation[] = ['relu', 'gelu'];
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: LayerOptions = {},
  ) {
    super();
    checkOptions(opts, 'Linear', ['bias', 'init']);
    posInt(inFeatures, 'Linear inFeatures');
    posInt(outFeatures, 'Linear outFeatures');
    this.weight = this.registerParameter('weight', initWeight([outFeatures, inFeatures], opts.init));
    this.bias =
      opts.bias === false ? null : this.registerParameter('bias', initBias(outFeatures, inFeatures, opts.init));
  }
  forward(x: Tensor): Tensor {
    return this.forwardAct(x, 'none');
  }
  /** forward followed by an activation, with the bias and the activation fused into one kernel. */
  forwardAct(x: Tensor, act: FusedActivation): Tensor {
    lastDim(x, this.inFeatures, 'Linear');
    const wt = this.weight.transpose();
    const y = x.matmul(wt);
    wt.dispose();
    if (!this.bias) {
      if (act === 'none') return y;
      const r = act === 'relu' ? relu(y) : gelu(y);
      y.dispose();
      return r;
    }
    const r = biasAct(y, this.bias, act);
    y.dispose();
    return r;
  }
  protected override extraRepr(): string {
    return `${this.inFeatures}, ${this.outFeatures}, bias=${this.bias !== null}`;
  }
}

/** Conv2d options: stride, padding, dilation, groups, bias, init. */
export interface Conv2dLayerOptions extends LayerOptions {
  stride?: Pair;
  /** Zeros on each side, or 'valid' (none) or 'same' (stride 1: the output keeps the input's size). */
  padding?: ConvPadding;
  dilation?: Pair;
  groups?: number;
}

/** The convolution's own options out of a Conv2d layer's, which also hold `bias` and `init`. */
export function convOptions(o: Conv2dLayerOptions): Conv2dOptions {
  const c: Conv2dOptions = {};
  if (o.stride !== undefined) c.stride = o.stride;
  if (o.padding !== undefined) c.padding = o.padding;
  if (o.dilation !== undefined) c.dilation = o.dilation;
  if (o.groups !== undefined) c.groups = o.groups;
  return c;
}

/**
 * @internal A layer's padding 'same' or 'valid' as the [h, w] zeros on each side (its options were checked). 'same' whose total per axis is odd
 * (an even kernel) would need one more zero at the end than at the start, which a layer's symmetric padding
 * cannot say: ArgumentError (the functional kn.conv2d pads that case).
 */
export function layerPadding(
  opts: { stride?: Pair; padding?: ConvPadding; dilation?: Pair },
  kernel: Pair,
  what: string,
): [number, number] {
  const k = checkPair(kernel ?? NaN, NaN, `${what} kernelSize`, 1);
  const stride = checkPair(opts.stride, 1, `${what} stride`, 1),
    dilation = checkPair(opts.dilation, 1, `${what} dilation`, 1);
  const [[ph, ph1], [pw, pw1]] = resolvePadding(opts.padding, k, stride, dilation, what);
  if (ph !== ph1 || pw !== pw1)
    throw new ArgumentError(
      `${what}: padding 'same' with kernel ${describe(kernel)} and dilation ${describe(opts.dilation ?? 1)} needs ` +
        `one more zero at the end than at the start, which the layer cannot hold; use an odd kernel or kn.conv2d`,
    );
  return [ph, pw];
}

/**
 * 2-D convolution over NCHW input; weight [out, in/groups, kH, kW]. Padding 'same' and 'valid' are resolved to
 * numbers when the layer is built.
 * @example new kn.nn.Conv2d(1, 4, 3, { padding: 1 }).call(kn.ones([2, 1, 8, 8])).shape // [2, 4, 8, 8]
 */
export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  /** The options given, with padding 'same' or 'valid' resolved to numbers. */
  readonly opts: Conv2dLayerOptions & { padding?: Pair };
  private readonly conv: Conv2dOptions;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: Pair,
    opts: Conv2dLayerOptions = {},
  ) {
    super();
    checkOptions(opts, 'Conv2d', ['bias', 'init', 'stride', 'padding', 'dilation', 'groups']);
    this.opts =
      typeof opts.padding === 'string'
        ? { ...opts, padding: layerPadding(opts, kernelSize, 'Conv2d') }
        : (opts as Conv2dLayerOptions & { padding?: Pair });
    this.conv = convOptions(this.opts);
    posInt(inChannels, 'Conv2d inChannels');
    posInt(outChannels, 'Conv2d outChannels');
    const groups = posInt(opts.groups ?? 1, 'Conv2d groups');
    if (inChannels % groups || outChannels % groups)
      throw new ShapeError(`Conv2d: channels ${inChannels} and ${outChannels} must be divisible by groups ${groups}`);
    const [kh, kw] = checkPair(kernelSize ?? NaN, NaN, 'Conv2d kernelSize', 1); // no default: left out is an error
    this.weight = this.registerParameter('weight', initWeight([outChannels, inChannels / groups, kh!, kw!], opts.init));
    this.bias =
      opts.bias === false
        ? null
        : this.registerParameter('bias', initBias(outChannels, (inChannels / groups) * kh! * kw!, opts.init));
  }
  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, this.conv);
  }
  protected override extraRepr(): string {
    return `${this.inChannels}, ${this.outChannels}, kernel=${String(this.kernelSize)}`;
  }
}

/**
 * Max pooling over NCHW input (stride defaults to the kernel size).
 * @example new kn.nn.MaxPool2d(2).call(kn.ones([1, 1, 4, 4])).shape // [1, 1, 2, 2]
 */
export class MaxPool2d extends Module {
  constructor(
    readonly kernelSize: Pair,
    readonly opts: { stride?: Pair; padding?: Pair } = {},
  ) {
    super();
    checkOptions(opts, 'MaxPool2d', ['stride', 'padding']);
  }
  forward(x: Tensor): Tensor {
    return maxPool2d(x, this.kernelSize, this.opts);
  }
}

/**
 * Flattens dims [startAxis, endAxis] (default: all but the batch dim).
 * @example new kn.nn.Flatten().call(kn.ones([2, 3, 4])).shape // [2, 12]
 */
export class Flatten extends Module {
  constructor(
    readonly startAxis = 1,
    readonly endAxis = -1,
  ) {
    super();
  }
  forward(x: Tensor): Tensor {
    return flatten(x, this.startAxis, this.endAxis);
  }
}

/**
 * max(x, 0).
 * @example new kn.nn.ReLU().call(kn.tensor([-1, 2])).toList() // [0, 2]
 */
export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return relu(x);
  }
}
/**
 * Exact (erf) GELU.
 * @example new kn.nn.GELU().call(kn.tensor([0])).item() // 0
 */
export class GELU extends Module {
  forward(x: Tensor): Tensor {
    return gelu(x);
  }
}
/**
 * tanh.
 * @example new kn.nn.Tanh().call(kn.tensor([0])).item() // 0
 */
export class Tanh extends Module {
  forward(x: Tensor): Tensor {
    return tanh(x);
  }
}
/**
 * Logistic sigmoid.
 * @example new kn.nn.Sigmoid().call(kn.tensor([0])).item() // 0.5
 */
export class Sigmoid extends Module {
  forward(x: Tensor): Tensor {
    return sigmoid(x);
  }
}

/**
 * Inverted dropout: in training, zeroes each value with probability p and scales the rest by 1/(1-p);
 * identity in eval mode. The mask comes from kiln's seeded generator.
 * @example new kn.nn.Dropout(0.5).eval().call(kn.ones([4])).toList() // [1, 1, 1, 1]
 */
export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    if (typeof p !== 'number' || !(p >= 0 && p < 1))
      throw new ArgumentError(`Dropout p must be in [0, 1), got ${describe(p)}`);
  }
  forward(x: Tensor): Tensor {
    if (!this.training || this.p === 0) return x;
    const keep = keepMask(x.shape, this.p);
    const y = mul(x, keep);
    keep.dispose();
    return y;
  }
}

/**
 * Inverted dropout's multiplier: 1/(1-p) where a value is kept (probability 1-p), 0 where it is dropped, drawn from
 * kiln's seeded generator (no gradient). Dropout, attention weights and the layers between LSTM/GRU layers use it.
 */
export function keepMask(shape: readonly number[], p: number): Tensor {
  return noGrad(() => {
    const u = rand(shape);
    const k = where(u.ge(p), 1 / (1 - p), 0);
    u.dispose();
    return k;
  });
}

/**
 * Lookup table: int32 indices of any shape -> [...shape, dim]. Weight N(0, 1) like PyTorch. With `paddingIdx`
 * (the padding token; negative counts from the end, as in PyTorch), that row starts at zeros and gets no
 * gradient, so padding stays a zero vector through training.
 * @example new kn.nn.Embedding(10, 4).call(kn.tensor(new Int32Array([1, 2]), [2])).shape // [2, 4]
 */
export class Embedding extends Module {
  readonly weight: Tensor;
  /** The padding row (non-negative), or null. */
  readonly paddingIdx: number | null;
  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
    opts: { paddingIdx?: number | null } = {},
  ) {
    super();
    checkOptions(opts, 'Embedding', ['paddingIdx']);
    posInt(numEmbeddings, 'Embedding numEmbeddings');
    posInt(embeddingDim, 'Embedding embeddingDim');
    const p = opts.paddingIdx ?? null;
    if (p !== null && !(Number.isInteger(p) && p >= -numEmbeddings && p < numEmbeddings))
      throw new ArgumentError(
        `Embedding paddingIdx must be an integer in [-${numEmbeddings}, ${numEmbeddings}), got ${describe(p)}`,
      );
    this.paddingIdx = p === null ? null : p < 0 ? p + numEmbeddings : p;
    const w = randn([numEmbeddings, embeddingDim]);
    if (this.paddingIdx !== null) {
      const row = zeros([1, embeddingDim]);
      noGrad(() => w.slice([this.paddingIdx!], [this.paddingIdx! + 1]).assign(row));
      row.dispose();
    }
    this.weight = this.registerParameter('weight', w);
  }
  forward(idx: Tensor): Tensor {
    if (idx.dtype !== 'int32' && idx.dtype !== 'int8' && idx.dtype !== 'uint8') {
      throw new DTypeError(`Embedding takes integer indices (int32, int8 or uint8), got ${idx.dtype}`);
    }
    const flat = reshape(idx, [idx.size]);
    let rows = gather(this.weight, flat, 0);
    if (this.paddingIdx !== null && rows.requiresGrad) {
      // the padding row's value as it is, its gradient stopped
      const keep = reshape(ne(flat, this.paddingIdx), [idx.size, 1]);
      const kept = where(keep, rows, rows.detach());
      [keep, rows].forEach((t) => t.dispose());
      rows = kept;
    }
    const y = reshape(rows, [...idx.shape, this.embeddingDim]);
    flat.dispose();
    rows.dispose();
    return y;
  }
}

/** BatchNorm's state names before they followed PyTorch's (num_batches_tracked came with the rename). */
const BN_FORMER: StateAliases = {
  aliases: [
    { name: 'running_mean', from: 'runningMean' },
    { name: 'running_var', from: 'runningVar' },
  ],
  optionalWithAlias: ['num_batches_tracked'],
};

/** BatchNorm's constructor options. */
export interface BatchNormOptions {
  eps?: number;
  /** Weight of each batch in the running averages (default 0.1); null for their cumulative average (PyTorch's None). */
  momentum?: number | null;
  affine?: boolean;
}

/**
 * Shared by BatchNorm1d/2d: normalises over every axis except the channel axis (1). State as PyTorch's:
 * `weight`, `bias`, buffers `running_mean`, `running_var` and `num_batches_tracked` (int32).
 */
abstract class BatchNorm extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly runningMean: Tensor;
  readonly runningVar: Tensor;
  /** Training batches seen (PyTorch's num_batches_tracked); with momentum null each weighs 1 / this. */
  readonly numBatchesTracked: Tensor;
  readonly eps: number;
  readonly momentum: number | null;
  constructor(
    readonly numFeatures: number,
    opts: BatchNormOptions,
  ) {
    super();
    checkOptions(opts, new.target.name, ['eps', 'momentum', 'affine']);
    posInt(numFeatures, `${new.target.name} numFeatures`);
    this.eps = opts.eps ?? 1e-5;
    this.momentum = opts.momentum === undefined ? 0.1 : opts.momentum;
    if (!(this.eps > 0)) throw new ArgumentError(`BatchNorm eps must be > 0, got ${describe(opts.eps)}`);
    if (this.momentum !== null && !(this.momentum >= 0 && this.momentum <= 1))
      throw new ArgumentError(`BatchNorm momentum must be in [0, 1] or null, got ${describe(opts.momentum)}`);
    const affine = opts.affine ?? true;
    this.weight = affine ? this.registerParameter('weight', ones([numFeatures])) : null;
    this.bias = affine ? this.registerParameter('bias', zeros([numFeatures])) : null;
    this.runningMean = this.registerBuffer('running_mean', zeros([numFeatures]));
    this.runningVar = this.registerBuffer('running_var', ones([numFeatures]));
    this.numBatchesTracked = this.registerBuffer('num_batches_tracked', zeros([], { dtype: 'int32' }));
  }
  override stateAliases(): StateAliases {
    return BN_FORMER;
  }
  protected abstract checkInput(x: Tensor): void;
  forward(x: Tensor): Tensor {
    this.checkInput(x);
    const C = this.numFeatures;
    const axes = [0, ...Array.from({ length: x.ndim - 2 }, (_, i) => i + 2)];
    const bshape = [1, C, ...Array.from({ length: x.ndim - 2 }, () => 1)];
    let mu: Tensor, v: Tensor;
    if (this.training) {
      const count = x.size / C;
      if (count < 2)
        throw new ShapeError(
          `${this.constructor.name} in training needs more than one value per channel, got input ${shapeStr(x.shape)}`,
        );
      mu = mean(x, axes, true);
      v = variance(x, axes, { correction: 0, keepdims: true });
      noGrad(() => this.track(reshape(mu, [C]), reshape(v, [C]).mul(count / (count - 1))));
    } else {
      mu = reshape(this.runningMean, bshape);
      v = reshape(this.runningVar, bshape);
    }
    let y = sub(x, mu).div(v.add(this.eps).sqrt());
    if (this.weight && this.bias) y = add(mul(y, reshape(this.weight, bshape)), reshape(this.bias, bshape));
    return y;
  }
  /**
   * Counts the batch and moves the running averages toward its mean and unbiased variance, as PyTorch:
   * run = f * stat + (1 - f) * run with f = momentum, or 1 / batches seen when momentum is null.
   */
  private track(batchMean: Tensor, unbiasedVar: Tensor): void {
    const n = this.numBatchesTracked.add(1);
    this.numBatchesTracked.assign(n);
    const f = this.momentum ?? div(1, cast(n, 'float32'));
    const keep = typeof f === 'number' ? 1 - f : sub(1, f);
    for (const [run, stat] of [
      [this.runningMean, batchMean],
      [this.runningVar, unbiasedVar],
    ] as const) {
      const next = mul(stat, f).add(mul(run, keep));
      run.assign(next);
      next.dispose();
    }
    n.dispose();
  }
}

/**
 * Batch normalisation over [N, C] or [N, C, L] (statistics per channel; running averages for eval).
 * @example new kn.nn.BatchNorm1d(3).call(kn.randn([8, 3])).shape // [8, 3]
 */
export class BatchNorm1d extends BatchNorm {
  constructor(numFeatures: number, opts: BatchNormOptions = {}) {
    super(numFeatures, opts);
  }
  protected checkInput(x: Tensor): void {
    if ((x.ndim !== 2 && x.ndim !== 3) || x.shape[1] !== this.numFeatures) {
      throw new ShapeError(
        `BatchNorm1d(${this.numFeatures}) expects [N, ${this.numFeatures}] or [N, ${this.numFeatures}, L], got ${shapeStr(x.shape)}`,
      );
    }
  }
}

/**
 * Batch normalisation over [N, C, H, W].
 * @example new kn.nn.BatchNorm2d(2).call(kn.randn([2, 2, 3, 3])).shape // [2, 2, 3, 3]
 */
export class BatchNorm2d extends BatchNorm {
  constructor(numFeatures: number, opts: BatchNormOptions = {}) {
    super(numFeatures, opts);
  }
  protected checkInput(x: Tensor): void {
    if (x.ndim !== 4 || x.shape[1] !== this.numFeatures) {
      throw new ShapeError(
        `BatchNorm2d(${this.numFeatures}) expects [N, ${this.numFeatures}, H, W], got ${shapeStr(x.shape)}`,
      );
    }
  }
}

/**
 * Layer normalisation over the trailing `normalizedShape` dims, with elementwise affine weight and bias.
 * @example new kn.nn.LayerNorm([4]).call(kn.randn([2, 4])).shape // [2, 4]
 */
export class LayerNorm extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly normalizedShape: readonly number[];
  constructor(
    normalizedShape: number | readonly number[],
    readonly opts: { eps?: number; affine?: boolean } = {},
  ) {
    super();
    checkOptions(opts, 'LayerNorm', ['eps', 'affine']);
    if (typeof normalizedShape !== 'number' && !Array.isArray(normalizedShape))
      throw new ArgumentError(
        `LayerNorm normalizedShape must be a size or a list of sizes, got ${describe(normalizedShape)}`,
      );
    this.normalizedShape = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape];
    if (this.normalizedShape.length === 0) throw new ArgumentError('LayerNorm needs at least one normalized dimension');
    this.normalizedShape.forEach((d) => posInt(d, 'LayerNorm dimension'));
    const affine = opts.affine ?? true;
    this.weight = affine ? this.registerParameter('weight', ones(this.normalizedShape)) : null;
    this.bias = affine ? this.registerParameter('bias', zeros(this.normalizedShape)) : null;
  }
  forward(x: Tensor): Tensor {
    return layerNormFn(x, this.normalizedShape, this.weight, this.bias, this.opts.eps ?? 1e-5);
  }
}

/**
 * Group normalisation (Wu and He 2018): the channels of [N, C, ...] split into `numGroups` groups of
 * C / numGroups, each normalised over its channels and every position (statistics per example, so the same
 * in training and eval, and any batch size), then a per-channel affine weight and bias. numGroups 1 normalises
 * over all of C and the positions, numGroups C each channel alone (instance normalisation). PyTorch's
 * nn.GroupNorm, with the same state names; the normalisation runs layerNorm's fused kernel on [N, G, rest].
 * @example new kn.nn.GroupNorm(2, 4).call(kn.randn([3, 4, 5, 5])).shape // [3, 4, 5, 5]
 */
export class GroupNorm extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly eps: number;
  constructor(
    readonly numGroups: number,
    readonly numChannels: number,
    opts: { eps?: number; affine?: boolean } = {},
  ) {
    super();
    checkOptions(opts, 'GroupNorm', ['eps', 'affine']);
    posInt(numGroups, 'GroupNorm numGroups');
    posInt(numChannels, 'GroupNorm numChannels');
    if (numChannels % numGroups !== 0)
      throw new ArgumentError(`GroupNorm: numChannels ${numChannels} must be divisible by numGroups ${numGroups}`);
    this.eps = opts.eps ?? 1e-5;
    if (!(this.eps > 0) || !Number.isFinite(this.eps))
      throw new ArgumentError(`GroupNorm eps must be a finite number > 0, got ${describe(opts.eps)}`);
    const affine = opts.affine ?? true;
    this.weight = affine ? this.registerParameter('weight', ones([numChannels])) : null;
    this.bias = affine ? this.registerParameter('bias', zeros([numChannels])) : null;
  }
  forward(x: Tensor): Tensor {
    const C = this.numChannels,
      G = this.numGroups;
    if (x.ndim < 2 || x.shape[1] !== C)
      throw new ShapeError(`GroupNorm(${G}, ${C}) expects [N, ${C}, ...], got ${shapeStr(x.shape)}`);
    const N = x.shape[0]!;
    const rest = (C / G) * x.shape.slice(2).reduce((a, d) => a * d, 1);
    const y = reshape(layerNormFn(reshape(x, [N, G, rest]), [rest], null, null, this.eps), x.shape);
    if (!this.weight || !this.bias) return y;
    const per = [1, C, ...x.shape.slice(2).map(() => 1)];
    return add(mul(y, reshape(this.weight, per)), reshape(this.bias, per));
  }
  protected override extraRepr(): string {
    return `${this.numGroups}, ${this.numChannels}, eps=${this.eps}, affine=${this.weight !== null}`;
  }
}

/**
 * Layer normalisation of x over its trailing `normalizedShape` dims (PyTorch's F.layer_norm); weight and bias
 * (both or neither) are shaped like normalizedShape. float32 runs one fused kernel each way.
 * @example kn.nn.layerNorm(kn.tensor([[1, 2, 3]]), [3]).toList() // [[-1.2247357, 0, 1.2247357]]
 */
export function layerNormFn(
  x: Tensor,
  normalizedShape: readonly number[],
  weight: Tensor | null = null,
  bias: Tensor | null = null,
  eps = 1e-5,
): Tensor {
  const k = normalizedShape.length;
  if (k === 0 || x.ndim < k || normalizedShape.some((d, i) => x.shape[x.ndim - k + i] !== d)) {
    throw new ShapeError(`LayerNorm expects inputs ending in ${shapeStr(normalizedShape)}, got ${shapeStr(x.shape)}`);
  }
  if ((weight === null) !== (bias === null))
    throw new ArgumentError('layerNorm takes both weight and bias, or neither');
  if (typeof eps !== 'number' || !(eps >= 0) || !Number.isFinite(eps))
    throw new ArgumentError(`layerNorm eps must be a finite number >= 0, got ${describe(eps)}`);
  const C = normalizedShape.reduce((a, b) => a * b, 1);
  for (const t of [weight, bias])
    if (t && t.size !== C)
      throw new ShapeError(`layerNorm weight and bias must be ${shapeStr(normalizedShape)}, got ${shapeStr(t.shape)}`);
  // float32: one fused kernel each way
  if (x.dtype === 'float32') return layerNorm(x, C, weight, bias, eps);
  const axes = Array.from({ length: k }, (_, i) => x.ndim - k + i);
  const mu = mean(x, axes, true);
  const v = variance(x, axes, { correction: 0, keepdims: true });
  let y = sub(x, mu).div(v.add(eps).sqrt());
  if (weight && bias) y = add(mul(y, weight), bias);
  return y;
}

/** A layer class whose forward can take the next layer's activation into the same kernel. */
interface ActivationFusing {
  readonly fusedActivations: readonly FusedActivation[];
}
/** A layer instance of such a class. */
interface FusingLayer extends Module {
  forwardAct(x: Tensor, act: FusedActivation): Tensor;
}
/** A layer whose class declares `fusedMaxPool` (QuantConv2d): a max pool may follow (its activation) in its kernel. */
interface PoolFusingLayer extends Module {
  forwardPool(x: Tensor, act: FusedActivation, pool: number): Tensor;
}

/** Whether layer m may run next inside its own kernel: m's own class (not a subclass, which may override forward)
 * declares `flag`, and neither layer has an instance-level forward override (which quantization calibration uses). */
function mayFuse(m: Module, flag: 'fusedActivations' | 'fusedMaxPool', next: Module): boolean {
  const own = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);
  return own(m.constructor, flag) && !own(m, 'forward') && !own(next, 'forward');
}

/** The activation a layer + next-layer pair can fuse: a layer that mayFuse by `fusedActivations` (Linear,
 * QuantConv2d), followed by a plain ReLU or GELU it lists. */
function fusableActivation(m: Module, next: Module | undefined): FusedActivation | null {
  if (!next || !mayFuse(m, 'fusedActivations', next)) return null;
  const cls = m.constructor as unknown as ActivationFusing;
  const act = next.constructor === ReLU ? 'relu' : next.constructor === GELU ? 'gelu' : null;
  return act !== null && cls.fusedActivations.includes(act) ? act : null;
}

/** The window k of a plain MaxPool2d(k) (stride k, no padding; k >= 2) after a layer that mayFuse by
 * `fusedMaxPool` (QuantConv2d); else null. */
function fusablePool(m: Module, next: Module | undefined): number | null {
  if (next?.constructor !== MaxPool2d || !mayFuse(m, 'fusedMaxPool', next)) return null;
  const p = next as MaxPool2d;
  const sq = (v: Pair | undefined): number | null =>
    v === undefined ? null : typeof v === 'number' ? v : v[0] === v[1] ? v[0] : null;
  const k = sq(p.kernelSize);
  const stride = p.opts.stride === undefined ? k : sq(p.opts.stride);
  const pad = p.opts.padding === undefined ? 0 : sq(p.opts.padding);
  return k !== null && Number.isInteger(k) && k >= 2 && stride === k && pad === 0 ? k : null;
}

/**
 * Runs modules in order.
 * @example new kn.nn.Sequential(new kn.nn.Linear(4, 8), new kn.nn.ReLU(), new kn.nn.Linear(8, 2)).call(kn.ones([1, 4])).shape // [1, 2]
 */
export class Sequential extends Module {
  private _layers: Module[];
  constructor(...layers: Module[]) {
    super();
    layers.forEach((m, i) => this.registerModule(String(i), m));
    this._layers = [...layers];
  }
  /** The layers, in order. */
  get layers(): readonly Module[] {
    return this._layers;
  }
  override replaceChild(name: string, m: Module): Module {
    const old = super.replaceChild(name, m);
    this._layers = this.children();
    return old;
  }
  forward(x: Tensor): Tensor {
    let h = x;
    const ls = this._layers;
    for (let i = 0; i < ls.length; i++) {
      const m = ls[i]!;
      let next: Tensor;
      const act = fusableActivation(m, ls[i + 1]);
      const pool = fusablePool(m, ls[i + (act ? 2 : 1)]);
      if (act || pool) {
        // Linear (QuantConv2d) then ReLU/GELU: bias and activation in one kernel (fewer ops and passes per step);
        // QuantConv2d (then ReLU) then MaxPool2d(k): the pool too, on results still in cache
        h.assertAlive(m.constructor.name);
        const rec = activeRecorder;
        if (rec !== null) rec.enterModule(m);
        try {
          next = pool
            ? (m as PoolFusingLayer).forwardPool(h, act ?? 'none', pool)
            : (m as FusingLayer).forwardAct(h, act!);
        } finally {
          if (rec !== null) rec.exitModule();
        }
        i += (act ? 1 : 0) + (pool ? 1 : 0);
      } else {
        next = m.call(h);
      }
      if (h !== x && next !== h) h.dispose();
      h = next;
    }
    return h;
  }
}

// ---- descriptions (nn/registry.ts): each layer's spec both ways and what model transforms need ----

const pair = (p: number | readonly [number, number]): Pair2 => (typeof p === 'number' ? p : [p[0], p[1]]);
const area = (k: Pair2): number => (typeof k === 'number' ? k * k : k[0] * k[1]);
const finitePos = (x: number): boolean => x > 0 && Number.isFinite(x);

registerLayer(Linear, {
  type: 'Linear',
  toSpec: (l) => ({ type: 'Linear', inFeatures: l.inFeatures, outFeatures: l.outFeatures, bias: l.bias !== null }),
  params: (o, r, path) => {
    const out = r.int(o, 'outFeatures', path, 1);
    return r.int(o, 'inFeatures', path, 1) * out + (r.bool(o, 'bias', path, true) ? out : 0);
  },
  fromSpec: (o, r, path) =>
    new Linear(r.int(o, 'inFeatures', path, 1), r.int(o, 'outFeatures', path, 1), {
      bias: r.bool(o, 'bias', path, true),
    }),
  inputFeatures: (l) => l.inFeatures,
});

registerLayer(Conv2d, {
  type: 'Conv2d',
  toSpec: (c) => ({
    type: 'Conv2d',
    inChannels: c.inChannels,
    outChannels: c.outChannels,
    kernelSize: pair(c.kernelSize),
    stride: pair(c.opts.stride ?? 1),
    padding: pair(c.opts.padding ?? 0),
    dilation: pair(c.opts.dilation ?? 1),
    groups: c.opts.groups ?? 1,
    bias: c.bias !== null,
  }),
  params: (o, r, path) => {
    const ci = r.int(o, 'inChannels', path, 1),
      co = r.int(o, 'outChannels', path, 1);
    const k = r.pair(o, 'kernelSize', path, 1),
      groups = r.int(o, 'groups', path, 1, 1);
    if (ci % groups || co % groups) r.fail(path, `channels ${ci} and ${co} must be divisible by groups ${groups}`);
    r.pair(o, 'stride', path, 1, 1);
    r.pair(o, 'padding', path, 0, 0);
    r.pair(o, 'dilation', path, 1, 1);
    return co * (ci / groups) * area(k) + (r.bool(o, 'bias', path, true) ? co : 0);
  },
  fromSpec: (o, r, path) =>
    new Conv2d(r.int(o, 'inChannels', path, 1), r.int(o, 'outChannels', path, 1), r.pair(o, 'kernelSize', path, 1), {
      stride: r.pair(o, 'stride', path, 1, 1),
      padding: r.pair(o, 'padding', path, 0, 0),
      dilation: r.pair(o, 'dilation', path, 1, 1),
      groups: r.int(o, 'groups', path, 1, 1),
      bias: r.bool(o, 'bias', path, true),
    }),
});

/** @internal A pooling layer's kernel/stride/padding read from a spec (stride absent = the kernel size). */
export function poolFields(
  o: SpecFields,
  r: SpecReader,
  path: string,
): { kernel: Pair2; stride?: Pair2; padding: Pair2 } {
  const kernel = r.pair(o, 'kernelSize', path, 1);
  const padding = r.pair(o, 'padding', path, 0, 0);
  return o.stride !== undefined ? { kernel, stride: r.pair(o, 'stride', path, 1), padding } : { kernel, padding };
}
/** @internal The kernelSize/stride/padding spec fields of a pooling layer. */
export function poolSpec(
  kernel: Pair,
  opts: { stride?: Pair; padding?: Pair },
): { kernelSize: Pair2; stride?: Pair2; padding: Pair2 } {
  const s: { kernelSize: Pair2; stride?: Pair2; padding: Pair2 } = {
    kernelSize: pair(kernel),
    padding: pair(opts.padding ?? 0),
  };
  if (opts.stride !== undefined) s.stride = pair(opts.stride);
  return s;
}

registerLayer(MaxPool2d, {
  type: 'MaxPool2d',
  toSpec: (p) => ({ type: 'MaxPool2d', ...poolSpec(p.kernelSize, p.opts) }),
  params: (o, r, path) => (poolFields(o, r, path), 0),
  fromSpec: (o, r, path) => {
    const f = poolFields(o, r, path);
    return new MaxPool2d(f.kernel, { ...(f.stride ? { stride: f.stride } : {}), padding: f.padding });
  },
  keepsFeatures: true,
});

const axis = (o: SpecFields, r: SpecReader, path: string, k: string, dflt: number): number =>
  r.num(o, k, path, Number.isInteger, 'an integer', dflt);
registerLayer(Flatten, {
  type: 'Flatten',
  toSpec: (f) => ({ type: 'Flatten', startAxis: f.startAxis, endAxis: f.endAxis }),
  params: (o, r, path) => (axis(o, r, path, 'startAxis', 1), axis(o, r, path, 'endAxis', -1), 0),
  fromSpec: (o, r, path) => new Flatten(axis(o, r, path, 'startAxis', 1), axis(o, r, path, 'endAxis', -1)),
});

for (const [cls, type] of [
  [ReLU, 'ReLU'],
  [GELU, 'GELU'],
  [Tanh, 'Tanh'],
  [Sigmoid, 'Sigmoid'],
] as const) {
  registerLayer<Module>(cls, {
    type,
    toSpec: () => ({ type }),
    params: () => 0,
    fromSpec: () => new cls(),
    keepsFeatures: true,
  });
}

const dropoutP = (o: SpecFields, r: SpecReader, path: string): number =>
  r.num(o, 'p', path, (p) => p >= 0 && p < 1, 'in [0, 1)', 0.5);
registerLayer(Dropout, {
  type: 'Dropout',
  toSpec: (d) => ({ type: 'Dropout', p: d.p }),
  params: (o, r, path) => (dropoutP(o, r, path), 0),
  fromSpec: (o, r, path) => new Dropout(dropoutP(o, r, path)),
  keepsFeatures: true,
});

registerLayer(Embedding, {
  type: 'Embedding',
  toSpec: (e) => ({
    type: 'Embedding',
    numEmbeddings: e.numEmbeddings,
    embeddingDim: e.embeddingDim,
    ...(e.paddingIdx === null ? {} : { paddingIdx: e.paddingIdx }),
  }),
  params: (o, r, path) => r.int(o, 'numEmbeddings', path, 1) * r.int(o, 'embeddingDim', path, 1),
  fromSpec: (o, r, path) => {
    const n = r.int(o, 'numEmbeddings', path, 1);
    const padding = Object.hasOwn(o, 'paddingIdx') ? r.int(o, 'paddingIdx', path, 0) : null;
    if (padding !== null && padding >= n)
      r.fail(path, `'paddingIdx' must be below numEmbeddings (${n}), got ${padding}`);
    return new Embedding(n, r.int(o, 'embeddingDim', path, 1), { paddingIdx: padding });
  },
  takesIds: true,
});

const bnOpts = (o: SpecFields, r: SpecReader, path: string): Required<BatchNormOptions> => ({
  eps: r.num(o, 'eps', path, finitePos, 'a finite number > 0', 1e-5),
  momentum:
    own(o, 'momentum') === null ? null : r.num(o, 'momentum', path, (x) => x >= 0 && x <= 1, 'in [0, 1] or null', 0.1),
  affine: r.bool(o, 'affine', path, true),
});
for (const [cls, type] of [
  [BatchNorm1d, 'BatchNorm1d'],
  [BatchNorm2d, 'BatchNorm2d'],
] as const) {
  registerLayer<BatchNorm>(cls, {
    type,
    toSpec: (b) => ({ type, numFeatures: b.numFeatures, eps: b.eps, momentum: b.momentum, affine: b.weight !== null }),
    params: (o, r, path) => r.int(o, 'numFeatures', path, 1) * (bnOpts(o, r, path).affine ? 4 : 2) + 1,
    fromSpec: (o, r, path) => new cls(r.int(o, 'numFeatures', path, 1), bnOpts(o, r, path)),
  });
}

function lnShape(o: SpecFields, r: SpecReader, path: string): number[] {
  const s = o.normalizedShape;
  if (!Array.isArray(s) || s.length === 0 || s.length > 8)
    r.fail(path, `'normalizedShape' must be a list of 1-8 integers, got ${describe(s)}`);
  return s.map((d, i) => r.int({ d }, 'd', `${path}.normalizedShape[${i}]`, 1));
}
const lnOpts = (o: SpecFields, r: SpecReader, path: string): { eps: number; affine: boolean } => ({
  eps: r.num(o, 'eps', path, finitePos, 'a finite number > 0', 1e-5),
  affine: r.bool(o, 'affine', path, true),
});
registerLayer(LayerNorm, {
  type: 'LayerNorm',
  toSpec: (l) => ({
    type: 'LayerNorm',
    normalizedShape: [...l.normalizedShape],
    eps: l.opts.eps ?? 1e-5,
    affine: l.weight !== null,
  }),
  params: (o, r, path) => {
    const n = lnShape(o, r, path).reduce((a, b) => a * b, 1);
    return lnOpts(o, r, path).affine ? 2 * n : 0;
  },
  fromSpec: (o, r, path) => new LayerNorm(lnShape(o, r, path), lnOpts(o, r, path)),
});

registerLayer(GroupNorm, {
  type: 'GroupNorm',
  toSpec: (l) => ({
    type: 'GroupNorm',
    numGroups: l.numGroups,
    numChannels: l.numChannels,
    eps: l.eps,
    affine: l.weight !== null,
  }),
  params: (o, r, path) => {
    const G = r.int(o, 'numGroups', path, 1),
      C = r.int(o, 'numChannels', path, 1);
    if (C % G !== 0) r.fail(path, `'numChannels' (${C}) must be divisible by 'numGroups' (${G})`);
    return lnOpts(o, r, path).affine ? 2 * C : 0;
  },
  fromSpec: (o, r, path) =>
    new GroupNorm(r.int(o, 'numGroups', path, 1), r.int(o, 'numChannels', path, 1), lnOpts(o, r, path)),
});

registerLayer(Sequential, {
  type: 'Sequential',
  toSpec: (s, child) => ({ type: 'Sequential', layers: s.layers.map((c, i) => child(c, i)) }),
  params: () => 0,
  children: (o: SpecFields, r: SpecReader, path: string) => {
    const ls = o.layers;
    if (!Array.isArray(ls)) r.fail(path, `'layers' must be a list, got ${describe(ls)}`);
    return ls as unknown[];
  },
  fromSpec: (o, _r, _path, child) => new Sequential(...(o.layers as unknown[]).map((_, i) => child(i))),
});
