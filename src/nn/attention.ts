// Attention and transformers: scaled dot-product attention (masks, dropout, rotary positions), the
// MultiheadAttention layer, Transformer encoder/decoder layers (post- and pre-norm) and positional encodings.
// Layouts, parameter names and mask conventions follow PyTorch, so models and state dicts port across
// (MultiheadAttention keeps its projections as four Linear children, `q_proj`/`k_proj`/`v_proj`/`out_proj`,
// which quantization and pruning treat like any Linear). Each layer describes itself in nn/registry.ts.
import { ArgumentError, DTypeError, ShapeError, checkOptions, describe, optionKeys } from '../errors.js';
import { tensor } from '../ops/creation.js';
import { add, eq, mul, neg, relu, gelu, where } from '../ops/elementwise.js';
import { attentionProbs, fusedAttention, matmul } from '../ops/matmul.js';
import { keep } from '../engine/memory.js';
import { concat, expand, permute, reshape, slice, transpose } from '../ops/movement.js';
import { randn } from '../ops/random.js';
import { isGradEnabled, noGrad } from '../autograd/tape.js';
import { broadcastShapes, shapeStr } from '../tensor/shape.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';
import { Dropout, LayerNorm, Linear, keepMask, lastDim, posInt } from './layers.js';
import { Module, type StateAliases } from './module.js';
import { registerLayer, type SpecFields } from './registry.js';
import { adoptChildren, compositeChildren } from './spec.js';
import type { SpecReader } from './spec_reader.js';

/** Options of {@link scaledDotProductAttention}. */
export interface AttentionOptions {
  /**
   * Broadcast to [..., L, S]. A bool mask marks with true the pairs that take part in attention (PyTorch's
   * scaled_dot_product_attention convention); a float mask is added to the scores (-Infinity removes a pair).
   */
  attnMask?: Tensor | null;
  /** Query i attends to keys 0..i only (top-left aligned, as PyTorch's is_causal). */
  isCausal?: boolean;
  /** Dropout on the attention weights (applied whenever > 0: pass 0 at evaluation). */
  dropoutP?: number;
  /** Score scale; 1/sqrt(E) by default. */
  scale?: number;
}

function checkAttentionInputs(q: Tensor, k: Tensor, v: Tensor): void {
  for (const [t, n] of [
    [q, 'query'],
    [k, 'key'],
    [v, 'value'],
  ] as const) {
    if (!isTensor(t)) throw new ArgumentError(`attention: ${n} must be a Tensor, got ${describe(t)}`);
    t.assertAlive(`attention ${n}`);
    if (t.ndim < 2) throw new ShapeError(`attention: ${n} must be [..., seq, dim], got ${shapeStr(t.shape)}`);
  }
  if (q.shape[q.ndim - 1] !== k.shape[k.ndim - 1])
    throw new ShapeError(
      `attention: query and key must share their last dimension, got ${shapeStr(q.shape)} and ${shapeStr(k.shape)}`,
    );
  if (k.shape[k.ndim - 2] !== v.shape[v.ndim - 2])
    throw new ShapeError(
      `attention: key and value must have the same sequence length, got ${shapeStr(k.shape)} and ${shapeStr(v.shape)}`,
    );
}

/** The checked scale, dropout and mask of an attention call. */
function attentionSettings(q: Tensor, opts: AttentionOptions): { scale: number; p: number; mask: Tensor | null } {
  const scale = opts.scale ?? 1 / Math.sqrt(q.shape[q.ndim - 1]!);
  if (typeof scale !== 'number' || !Number.isFinite(scale))
    throw new ArgumentError(`attention: scale must be a finite number, got ${describe(opts.scale)}`);
  const p = opts.dropoutP ?? 0;
  if (typeof p !== 'number' || !(p >= 0 && p < 1))
    throw new ArgumentError(`attention: dropoutP must be in [0, 1), got ${describe(opts.dropoutP)}`);
  const m = opts.attnMask;
  if (m === undefined || m === null) return { scale, p, mask: null };
  if (!isTensor(m)) throw new ArgumentError(`attention: attnMask must be a Tensor, got ${describe(m)}`);
  m.assertAlive('attention attnMask');
  return { scale, p, mask: m };
}

/** The attention weights softmax(q k^T * scale + masks) with dropout, and their product with v. */
function attend(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): { out: Tensor; weights: Tensor } {
  checkAttentionInputs(q, k, v);
  const { scale, p, mask: m } = attentionSettings(q, opts);
  let w = attentionProbs(q, k, scale, opts.isCausal ?? false, m);
  if (p > 0) {
    w = mul(w, keepMask(w.shape, p));
  }
  return { out: matmul(w, v), weights: w };
}

/**
 * Scaled dot-product attention: softmax(q k^T / sqrt(E) + mask) v over the last two axes, with causal and
 * boolean/additive masks and dropout on the weights. q [..., L, E], k [..., S, E], v [..., S, Ev] (leading axes
 * broadcast) -> [..., L, Ev]. float32 inputs run the fused kernel: blockwise with an online softmax, so memory
 * grows linearly with the sequence lengths, not with L * S (other dtypes, and a float mask that requires grad,
 * run the same maths in ops). A query
 * row whose keys are all masked gives zeros and passes no gradient back, as PyTorch's since 2.5 (not NaN).
 * @example kn.nn.scaledDotProductAttention(kn.ones([2, 3, 4]), kn.ones([2, 5, 4]), kn.ones([2, 5, 6])).shape // [2, 3, 6]
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  checkOptions(
    opts,
    'scaledDotProductAttention',
    optionKeys<AttentionOptions>({ attnMask: true, isCausal: true, dropoutP: true, scale: true }),
  );
  checkAttentionInputs(q, k, v);
  const { scale, p, mask } = attentionSettings(q, opts);
  // the ops path for other dtypes and for a learned additive mask (the fused kernel gives no mask gradient)
  if (
    q.dtype !== 'float32' ||
    k.dtype !== 'float32' ||
    v.dtype !== 'float32' ||
    (mask?.requiresGrad && isGradEnabled())
  )
    return attend(q, k, v, opts).out;
  const L = q.shape[q.ndim - 2]!,
    S = k.shape[k.ndim - 2]!,
    E = q.shape[q.ndim - 1]!,
    Ev = v.shape[v.ndim - 1]!;
  const lead = (t: Tensor): readonly number[] => t.shape.slice(0, -2);
  const batch = broadcastShapes(broadcastShapes(lead(q), lead(k), 'attention'), lead(v), 'attention');
  const B = batch.reduce((a, b) => a * b, 1);
  const to3 = (t: Tensor, rows: number, cols: number): Tensor =>
    reshape(expand(t, [...batch, rows, cols]), [B, rows, cols]);
  let m3: Tensor | null = null;
  if (mask) {
    const mf =
      mask.dtype === 'bool' ? where(mask, 0, -Infinity) : mask.dtype === 'float32' ? mask : mask.cast('float32');
    const ml = mf.shape.slice(0, -2);
    if (ml.reduce((a, b) => a * b, 1) === 1) {
      const last2 = [...new Array<number>(Math.max(0, 2 - mf.ndim)).fill(1), ...mf.shape.slice(-2)];
      m3 = expand(reshape(mf, [1, ...last2]), [1, L, S]);
    } else m3 = to3(mf, L, S);
  }
  const out = fusedAttention(to3(q, L, E), to3(k, S, E), to3(v, S, Ev), {
    mask: m3,
    causal: opts.isCausal === true,
    scale,
    dropoutP: p,
  });
  return reshape(out, [...batch, L, Ev]);
}

/**
 * Rotary position embedding (RoPE, the rotate-half form of GPT-NeoX and LLaMA) applied to x [..., L, D] (D even):
 * position p rotates the pairs (x_i, x_{i+D/2}) by p * base^(-2i/D). `offset` is the first position.
 * @example kn.nn.applyRotary(kn.ones([1, 3, 4])).shape // [1, 3, 4]
 */
export function applyRotary(x: Tensor, opts: { base?: number; offset?: number } = {}): Tensor {
  checkOptions(opts, 'applyRotary', ['base', 'offset']);
  if (!isTensor(x)) throw new ArgumentError(`applyRotary: x must be a Tensor, got ${describe(x)}`);
  const D = x.shape[x.ndim - 1]!,
    L = x.shape[x.ndim - 2]!;
  if (x.ndim < 2 || D % 2 !== 0)
    throw new ShapeError(`applyRotary expects [..., seq, dim] with an even dim, got ${shapeStr(x.shape)}`);
  const base = opts.base ?? 10000,
    off = opts.offset ?? 0;
  if (!(base > 1) || !Number.isFinite(base))
    throw new ArgumentError(`applyRotary: base must be a finite number > 1, got ${describe(opts.base)}`);
  if (!Number.isInteger(off) || off < 0)
    throw new ArgumentError(`applyRotary: offset must be an integer >= 0, got ${describe(opts.offset)}`);
  const h = D / 2;
  const cos = new Float32Array(L * D),
    sin = new Float32Array(L * D);
  for (let p = 0; p < L; p++) {
    for (let i = 0; i < h; i++) {
      const a = (p + off) * Math.pow(base, (-2 * i) / D);
      cos[p * D + i] = cos[p * D + i + h] = Math.cos(a);
      sin[p * D + i] = sin[p * D + i + h] = Math.sin(a);
    }
  }
  const be = { backend: x.backendInstance.name };
  const lo = slice(x, [...new Array<number>(x.ndim - 1).fill(0), 0], [...x.shape.slice(0, -1), h]);
  const hi = slice(x, [...new Array<number>(x.ndim - 1).fill(0), h]);
  const rotated = concat([neg(hi), lo], -1);
  return add(mul(x, tensor(cos, [L, D], be)), mul(rotated, tensor(sin, [L, D], be)));
}

/** Options of {@link MultiheadAttention}. */
export interface MultiheadAttentionOptions {
  /** Dropout on the attention weights in training mode (default 0). */
  dropout?: number;
  /** Inputs are [N, L, E] (true) or [L, N, E] (false, the default, as PyTorch). */
  batchFirst?: boolean;
  /** Biases on the four projections (default true). */
  bias?: boolean;
  /** `forward(x)` masks future positions (a decoder-only / GPT block). Default false. */
  causal?: boolean;
  /** Rotary position embedding on queries and keys (head dim must be even). Default false. */
  rotary?: boolean;
}
const MHA_OPTIONS = optionKeys<MultiheadAttentionOptions>({
  dropout: true,
  batchFirst: true,
  bias: true,
  causal: true,
  rotary: true,
});

/** Masks for {@link MultiheadAttention.attend}, in PyTorch's nn.MultiheadAttention conventions. */
export interface MultiheadMasks {
  /** bool [N, S]: true marks padding keys that no query attends to. */
  keyPaddingMask?: Tensor | null;
  /** [L, S] or [N*numHeads, L, S]: bool true marks pairs NOT allowed to attend; a float mask is added. */
  attnMask?: Tensor | null;
  /** Masks future positions (in addition to the layer's own `causal`). */
  isCausal?: boolean;
  /** Also return the attention weights averaged over heads, [N, L, S]. */
  needWeights?: boolean;
}
const MASK_KEYS = optionKeys<MultiheadMasks>({
  keyPaddingMask: true,
  attnMask: true,
  isCausal: true,
  needWeights: true,
});
/** A layer's masks: the weights are the attention module's own business. */
const LAYER_MASK_KEYS = MASK_KEYS.filter((k) => k !== 'needWeights');

/**
 * @internal What incremental decoding keeps of one self-attention: the keys and values [N, H, length, D] of
 * every position decoded so far (rotary already applied), kept out of tidy scopes; null before the first step.
 */
export interface KVCache {
  k: Tensor | null;
  v: Tensor | null;
  length: number;
}

/**
 * Multi-head attention (Vaswani et al. 2017) with PyTorch's layout: four Linear projections named q_proj,
 * k_proj, v_proj and out_proj. `forward(x)` is self-attention; `attend(q, k, v, masks)` takes separate
 * query/key/value inputs (cross-attention) and masks.
 * @example new kn.nn.MultiheadAttention(8, 2, { batchFirst: true }).call(kn.randn([2, 5, 8])).shape // [2, 5, 8]
 */
export class MultiheadAttention extends Module {
  readonly headDim: number;
  readonly dropout: number;
  readonly batchFirst: boolean;
  readonly causal: boolean;
  readonly rotary: boolean;
  constructor(
    readonly embedDim: number,
    readonly numHeads: number,
    opts: MultiheadAttentionOptions = {},
  ) {
    super();
    checkOptions(opts, 'MultiheadAttention', MHA_OPTIONS);
    posInt(embedDim, 'MultiheadAttention embedDim');
    posInt(numHeads, 'MultiheadAttention numHeads');
    if (embedDim % numHeads !== 0)
      throw new ArgumentError(`MultiheadAttention: embedDim ${embedDim} must be divisible by numHeads ${numHeads}`);
    this.headDim = embedDim / numHeads;
    this.dropout = dropoutRate(opts.dropout ?? 0, 'MultiheadAttention dropout');
    this.batchFirst = opts.batchFirst ?? false;
    this.causal = opts.causal ?? false;
    this.rotary = opts.rotary ?? false;
    if (this.rotary && this.headDim % 2 !== 0)
      throw new ArgumentError(`MultiheadAttention: rotary needs an even head dim, got ${this.headDim}`);
    const bias = opts.bias ?? true;
    for (const n of ['q_proj', 'k_proj', 'v_proj', 'out_proj'])
      this.registerModule(n, new Linear(embedDim, embedDim, { bias }));
  }
  /** PyTorch's fused input projection: in_proj_weight [3E, E] and in_proj_bias [3E] stack q, k and v's rows. */
  override stateAliases(): StateAliases {
    const E = this.embedDim;
    return {
      aliases: ['q_proj', 'k_proj', 'v_proj'].flatMap((n, j) =>
        (['weight', 'bias'] as const).map((leaf) => ({
          name: `${n}.${leaf}`,
          from: `in_proj_${leaf}`,
          rows: [j * E, (j + 1) * E] as const,
          fusedRows: 3 * E,
        })),
      ),
      optionalWithAlias: [],
    };
  }
  forward(x: Tensor): Tensor {
    return this.attend(x, x, x).output;
  }
  /**
   * Attention of `query` over `key`/`value` ([N, L, E] / [N, S, E] with batchFirst, else [L, N, E] / [S, N, E]).
   * Returns the output in the query's layout and, with needWeights, the head-averaged weights [N, L, S].
   */
  attend(query: Tensor, key: Tensor, value: Tensor, masks: MultiheadMasks = {}): { output: Tensor; weights?: Tensor } {
    checkOptions(masks, 'MultiheadAttention.attend masks', MASK_KEYS);
    const E = this.embedDim,
      H = this.numHeads;
    for (const [t, n] of [
      [query, 'query'],
      [key, 'key'],
      [value, 'value'],
    ] as const) {
      if (!isTensor(t)) throw new ArgumentError(`MultiheadAttention: ${n} must be a Tensor, got ${describe(t)}`);
      if (t.ndim !== 3)
        throw new ShapeError(
          `MultiheadAttention expects ${n} ${this.batchFirst ? '[N, L, E]' : '[L, N, E]'}, got ${shapeStr(t.shape)}`,
        );
      lastDim(t, E, 'MultiheadAttention');
    }
    const bf = (t: Tensor): Tensor => (this.batchFirst ? t : transpose(t, 0, 1));
    const [q0, k0, v0] = [bf(query), bf(key), bf(value)];
    const N = q0.shape[0]!,
      L = q0.shape[1]!,
      S = k0.shape[1]!;
    if (k0.shape[0] !== N || v0.shape[0] !== N || v0.shape[1] !== S)
      throw new ShapeError(
        `MultiheadAttention: query, key and value disagree on batch or key length: ${shapeStr(query.shape)}, ` +
          `${shapeStr(key.shape)}, ${shapeStr(value.shape)}`,
      );
    const { q, k, v } = this.project(q0, k0, v0, 0);
    const o: AttentionOptions = {
      attnMask: this.combinedMask(masks, N, L, S),
      isCausal: this.causal || masks.isCausal === true,
      dropoutP: this.training ? this.dropout : 0,
    };
    // the fused kernel unless the weights themselves are asked for
    const { out, weights } = masks.needWeights
      ? attend(q, k, v, o)
      : { out: scaledDotProductAttention(q, k, v, o), weights: null };
    const y = this.merge(out);
    const output = this.batchFirst ? y : transpose(y, 0, 1);
    if (!masks.needWeights) return { output };
    return { output, weights: reshape(weights!, [N, H, L, S]).mean(1) };
  }
  /**
   * @internal Causal self-attention of the newest positions `x` ([N, L, E], batchFirst) over themselves and the
   * keys and values of the `cache.length` positions before them, which `cache` keeps (and this extends): one
   * step of incremental decoding. Evaluation only (no dropout, no masks); the cached tensors are kept out of
   * any tidy scope, and the ones they replace disposed.
   */
  attendCached(x: Tensor, cache: KVCache): Tensor {
    if (!this.batchFirst || !this.causal || this.training)
      throw new ArgumentError('MultiheadAttention.attendCached needs a causal, batchFirst layer in eval mode');
    if (!isTensor(x) || x.ndim !== 3)
      throw new ShapeError(`MultiheadAttention.attendCached expects [N, L, E], got ${describe(x)}`);
    lastDim(x, this.embedDim, 'MultiheadAttention');
    const L = x.shape[1]!;
    const T = cache.length;
    const { q, k, v } = this.project(x, x, x, T);
    const kAll = keep(cache.k ? concat([cache.k, k], 2) : k.clone());
    const vAll = keep(cache.v ? concat([cache.v, v], 2) : v.clone());
    cache.k?.dispose();
    cache.v?.dispose();
    [cache.k, cache.v, cache.length] = [kAll, vAll, T + L];
    // query i sits at position T + i and sees keys 0..T + i: PyTorch's top-left causal mask when T is 0, none
    // for one new position, else a bool mask aligned bottom-right
    let mask: Tensor | null = null;
    if (L > 1 && T > 0) {
      const allowed = new Uint8Array(L * (T + L));
      for (let i = 0; i < L; i++) allowed.fill(1, i * (T + L), i * (T + L) + T + i + 1);
      mask = tensor(allowed, [L, T + L], { dtype: 'bool', backend: x.backendInstance.name });
    }
    return this.merge(scaledDotProductAttention(q, kAll, vAll, { attnMask: mask, isCausal: T === 0 && L > 1 }));
  }
  /**
   * q_proj, k_proj and v_proj of batch-first inputs ([N, L, E], [N, S, E]) split into heads ([N, H, T, D]),
   * rotated from position `offset` when the layer is rotary.
   */
  private project(query: Tensor, key: Tensor, value: Tensor, offset: number): { q: Tensor; k: Tensor; v: Tensor } {
    const heads = (t: Tensor): Tensor =>
      permute(reshape(t, [t.shape[0]!, t.shape[1]!, this.numHeads, this.headDim]), [0, 2, 1, 3]);
    let q = heads(this.child('q_proj').call(query));
    let k = heads(this.child('k_proj').call(key));
    const v = heads(this.child('v_proj').call(value));
    if (this.rotary) {
      q = applyRotary(q, { offset });
      k = applyRotary(k, { offset });
    }
    return { q, k, v };
  }
  /** Heads [N, H, L, D] merged back to [N, L, E] and through out_proj. */
  private merge(out: Tensor): Tensor {
    const [N, , L] = out.shape as [number, number, number, number];
    return this.child('out_proj').call(reshape(permute(out, [0, 2, 1, 3]), [N, L, this.embedDim]));
  }

  /** One additive or bool-allowed mask broadcastable to [N, H, L, S] from the PyTorch-style masks, or null. */
  private combinedMask(masks: MultiheadMasks, N: number, L: number, S: number): Tensor | null {
    let allowed: Tensor | null = null;
    let additive: Tensor | null = null;
    const kpm = masks.keyPaddingMask;
    if (kpm !== undefined && kpm !== null) {
      if (!isTensor(kpm) || kpm.dtype !== 'bool')
        throw new DTypeError(`MultiheadAttention: keyPaddingMask must be a bool Tensor [N, S], got ${describe(kpm)}`);
      if (kpm.ndim !== 2 || kpm.shape[0] !== N || kpm.shape[1] !== S)
        throw new ShapeError(`MultiheadAttention: keyPaddingMask must be [${N}, ${S}], got ${shapeStr(kpm.shape)}`);
      allowed = reshape(eq(kpm, 0), [N, 1, 1, S]);
    }
    const am = masks.attnMask;
    if (am !== undefined && am !== null) {
      if (!isTensor(am)) throw new ArgumentError(`MultiheadAttention: attnMask must be a Tensor, got ${describe(am)}`);
      const H = this.numHeads;
      let m: Tensor;
      if (am.ndim === 2 && am.shape[0] === L && am.shape[1] === S) m = am;
      else if (am.ndim === 3 && am.shape[0] === N * H && am.shape[1] === L && am.shape[2] === S)
        m = reshape(am, [N, H, L, S]);
      else
        throw new ShapeError(
          `MultiheadAttention: attnMask must be [${L}, ${S}] or [${N * H}, ${L}, ${S}], got ${shapeStr(am.shape)}`,
        );
      if (m.dtype === 'bool') {
        const ok = eq(m, 0);
        allowed = allowed ? where(allowed, ok, false) : ok;
      } else additive = m;
    }
    if (allowed && additive) return where(allowed, additive, -Infinity);
    return allowed ?? additive;
  }
  protected override extraRepr(): string {
    return `${this.embedDim}, heads=${this.numHeads}`;
  }
}

/** @internal A dropout probability in [0, 1), or ArgumentError naming it. */
export function dropoutRate(p: unknown, what: string): number {
  if (typeof p !== 'number' || !(p >= 0 && p < 1))
    throw new ArgumentError(`${what} must be in [0, 1), got ${describe(p)}`);
  return p;
}

/** Options of the Transformer layers. */
export interface TransformerLayerOptions {
  /** Hidden size of the feed-forward block (default 2048, as PyTorch). */
  dimFeedforward?: number;
  /** Dropout after attention, inside and after the feed-forward block (default 0.1). */
  dropout?: number;
  /** Feed-forward activation (default 'relu'). */
  activation?: 'relu' | 'gelu';
  /** LayerNorm epsilon (default 1e-5). */
  layerNormEps?: number;
  /** Pre-norm (LayerNorm before each block, GPT-2 style) instead of post-norm (the 2017 paper). Default false. */
  normFirst?: boolean;
  /** Inputs are [N, L, E] (true) or [L, N, E] (false, the default). */
  batchFirst?: boolean;
  /** Self-attention masks future positions (decoder-only language models). Default false. */
  causal?: boolean;
  /** Rotary position embedding in self-attention. Default false. */
  rotary?: boolean;
}
const TRANSFORMER_OPTIONS = optionKeys<TransformerLayerOptions>({
  dimFeedforward: true,
  dropout: true,
  activation: true,
  layerNormEps: true,
  normFirst: true,
  batchFirst: true,
  causal: true,
  rotary: true,
});

/** What the encoder and decoder layers share: their settings, the feed-forward block and the norms. */
abstract class TransformerLayer extends Module {
  readonly dimFeedforward: number;
  readonly dropoutP: number;
  readonly activation: 'relu' | 'gelu';
  readonly layerNormEps: number;
  readonly normFirst: boolean;
  readonly batchFirst: boolean;
  readonly causal: boolean;
  readonly rotary: boolean;
  constructor(
    layer: string,
    readonly dModel: number,
    readonly nHead: number,
    o: TransformerLayerOptions,
  ) {
    super();
    checkOptions(o, layer, TRANSFORMER_OPTIONS);
    posInt(dModel, `${layer} dModel`);
    posInt(nHead, `${layer} nHead`);
    const activation = o.activation ?? 'relu';
    if (activation !== 'relu' && activation !== 'gelu')
      throw new ArgumentError(`${layer} activation must be 'relu' or 'gelu', got ${describe(o.activation)}`);
    const eps = o.layerNormEps ?? 1e-5;
    if (typeof eps !== 'number' || !(eps > 0) || !Number.isFinite(eps))
      throw new ArgumentError(`${layer} layerNormEps must be a finite number > 0, got ${describe(o.layerNormEps)}`);
    this.dimFeedforward = posInt(o.dimFeedforward ?? 2048, `${layer} dimFeedforward`);
    this.dropoutP = dropoutRate(o.dropout ?? 0.1, `${layer} dropout`);
    this.activation = activation;
    this.layerNormEps = eps;
    this.normFirst = o.normFirst ?? false;
    this.batchFirst = o.batchFirst ?? false;
    this.causal = o.causal ?? false;
    this.rotary = o.rotary ?? false;
  }
  /** linear1, dropout, linear2, then the LayerNorms and residual dropouts (registered after the attention). */
  protected registerFeedForward(norms: readonly string[], dropouts: readonly string[]): void {
    this.registerModule('linear1', new Linear(this.dModel, this.dimFeedforward));
    this.registerModule('dropout', new Dropout(this.dropoutP));
    this.registerModule('linear2', new Linear(this.dimFeedforward, this.dModel));
    for (const n of norms) this.registerModule(n, new LayerNorm(this.dModel, { eps: this.layerNormEps }));
    for (const n of dropouts) this.registerModule(n, new Dropout(this.dropoutP));
  }
  /** linear2(dropout(act(linear1(x)))), fusing bias and activation when linear1 is a plain Linear. */
  protected feedForward(x: Tensor): Tensor {
    const l1 = this.child('linear1');
    let h: Tensor;
    if (l1.constructor === Linear && !Object.prototype.hasOwnProperty.call(l1, 'forward'))
      h = (l1 as Linear).forwardAct(x, this.activation);
    else {
      const z = l1.call(x);
      h = this.activation === 'relu' ? relu(z) : gelu(z);
    }
    return this.child('linear2').call(this.child('dropout').call(h));
  }
  protected override extraRepr(): string {
    return `${this.dModel}, heads=${this.nHead}, ff=${this.dimFeedforward}${this.normFirst ? ', pre-norm' : ''}`;
  }
}

/**
 * One Transformer encoder layer: self-attention then a feed-forward block, each with a residual connection,
 * dropout and LayerNorm (post-norm by default, pre-norm with normFirst). PyTorch's child names (self_attn,
 * linear1, linear2, norm1, norm2, dropout, dropout1, dropout2).
 * @example new kn.nn.TransformerEncoderLayer(8, 2, { dimFeedforward: 16, batchFirst: true }).call(kn.randn([2, 5, 8])).shape // [2, 5, 8]
 */
export class TransformerEncoderLayer extends TransformerLayer {
  constructor(dModel: number, nHead: number, opts: TransformerLayerOptions = {}) {
    super('TransformerEncoderLayer', dModel, nHead, opts);
    this.registerModule(
      'self_attn',
      new MultiheadAttention(dModel, nHead, {
        dropout: this.dropoutP,
        batchFirst: this.batchFirst,
        causal: this.causal,
        rotary: this.rotary,
      }),
    );
    this.registerFeedForward(['norm1', 'norm2'], ['dropout1', 'dropout2']);
  }
  forward(x: Tensor): Tensor {
    return this.encode(x);
  }
  /** forward with masks for the self-attention (see MultiheadAttention.attend). */
  encode(x: Tensor, masks: Omit<MultiheadMasks, 'needWeights'> = {}): Tensor {
    checkOptions(masks, 'TransformerEncoderLayer.encode masks', LAYER_MASK_KEYS);
    return this.residuals(x, (h) => this.child<MultiheadAttention>('self_attn').attend(h, h, h, masks).output);
  }
  /**
   * @internal encode() of the newest positions of a causal, batchFirst layer in eval mode, their self-attention
   * reading and extending `cache` (MultiheadAttention.attendCached): one step of incremental decoding.
   */
  encodeCached(x: Tensor, cache: KVCache): Tensor {
    if (!this.cacheable)
      throw new ArgumentError('TransformerEncoderLayer.encodeCached needs a causal, batchFirst layer');
    return this.residuals(x, (h) => this.child<MultiheadAttention>('self_attn').attendCached(h, cache));
  }
  /** @internal Whether encodeCached can run this layer: batchFirst, its self_attn a causal MultiheadAttention. */
  get cacheable(): boolean {
    const sa = this.child('self_attn');
    return this.batchFirst && sa.constructor === MultiheadAttention && (sa as MultiheadAttention).causal;
  }
  /** The layer around its self-attention `attn`: dropouts, feed-forward, residuals and norms (pre or post). */
  private residuals(x: Tensor, attn: (h: Tensor) => Tensor): Tensor {
    const sa = (h: Tensor): Tensor => this.child('dropout1').call(attn(h));
    const ff = (h: Tensor): Tensor => this.child('dropout2').call(this.feedForward(h));
    const n1 = this.child('norm1'),
      n2 = this.child('norm2');
    if (this.normFirst) {
      const h = add(x, sa(n1.call(x)));
      return add(h, ff(n2.call(h)));
    }
    const h = n1.call(add(x, sa(x)));
    return n2.call(add(h, ff(h)));
  }
}

/**
 * One Transformer decoder layer: causal self-attention over the target, cross-attention over the encoder's
 * output (`memory`), then a feed-forward block (post- or pre-norm). Call `decode(tgt, memory)`; `forward(x)`
 * alone has no memory and throws.
 * @example new kn.nn.TransformerDecoderLayer(8, 2, { dimFeedforward: 16, batchFirst: true }).decode(kn.randn([2, 4, 8]), kn.randn([2, 6, 8])).shape // [2, 4, 8]
 */
export class TransformerDecoderLayer extends TransformerLayer {
  constructor(dModel: number, nHead: number, opts: TransformerLayerOptions = {}) {
    super('TransformerDecoderLayer', dModel, nHead, { causal: true, ...opts });
    const mha = (causal: boolean, rotary: boolean): MultiheadAttention =>
      new MultiheadAttention(dModel, nHead, { dropout: this.dropoutP, batchFirst: this.batchFirst, causal, rotary });
    this.registerModule('self_attn', mha(this.causal, this.rotary));
    this.registerModule('multihead_attn', mha(false, false));
    this.registerFeedForward(['norm1', 'norm2', 'norm3'], ['dropout1', 'dropout2', 'dropout3']);
  }
  forward(x: Tensor): Tensor {
    throw new ArgumentError(
      `TransformerDecoderLayer needs the encoder output: call decode(tgt, memory) instead of forward(${shapeStr(x.shape)})`,
    );
  }
  /** The layer on target `tgt` attending to `memory`, with optional masks for each attention. */
  decode(
    tgt: Tensor,
    memory: Tensor,
    masks: { tgt?: Omit<MultiheadMasks, 'needWeights'>; memory?: Omit<MultiheadMasks, 'needWeights'> } = {},
  ): Tensor {
    checkOptions(masks, 'TransformerDecoderLayer.decode masks', ['tgt', 'memory']);
    checkOptions(masks.tgt, 'TransformerDecoderLayer.decode masks.tgt', LAYER_MASK_KEYS);
    checkOptions(masks.memory, 'TransformerDecoderLayer.decode masks.memory', LAYER_MASK_KEYS);
    const sa = (h: Tensor): Tensor =>
      this.child('dropout1').call(this.child<MultiheadAttention>('self_attn').attend(h, h, h, masks.tgt).output);
    const ca = (h: Tensor): Tensor =>
      this.child('dropout2').call(
        this.child<MultiheadAttention>('multihead_attn').attend(h, memory, memory, masks.memory).output,
      );
    const ff = (h: Tensor): Tensor => this.child('dropout3').call(this.feedForward(h));
    const [n1, n2, n3] = ['norm1', 'norm2', 'norm3'].map((n) => this.child(n));
    if (this.normFirst) {
      let h = add(tgt, sa(n1!.call(tgt)));
      h = add(h, ca(n2!.call(h)));
      return add(h, ff(n3!.call(h)));
    }
    let h = n1!.call(add(tgt, sa(tgt)));
    h = n2!.call(add(h, ca(h)));
    return n3!.call(add(h, ff(h)));
  }
}

/** Rows from..from+L-1 of the sinusoidal table of Vaswani et al.: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...). */
function sinusoidTable(L: number, d: number, from = 0): Float32Array {
  const pe = new Float32Array(L * d);
  for (let p = 0; p < L; p++) {
    for (let i = 0; i < d; i += 2) {
      const a = (from + p) / Math.pow(10000, i / d);
      pe[p * d + i] = Math.sin(a);
      if (i + 1 < d) pe[p * d + i + 1] = Math.cos(a);
    }
  }
  return pe;
}

/** Checks a [N, L, d] / [L, N, d] input at positions from..from+L-1 against the table length and returns L. */
function seqLen(x: Tensor, d: number, maxLen: number, batchFirst: boolean, layer: string, from: number): number {
  if (x.ndim !== 3 || x.shape[2] !== d)
    throw new ShapeError(`${layer} expects ${batchFirst ? '[N, L, ' : '[L, N, '}${d}], got ${shapeStr(x.shape)}`);
  const L = x.shape[batchFirst ? 1 : 0]!;
  if (from + L > maxLen) throw new ShapeError(`${layer}: sequence length ${from + L} exceeds maxLen ${maxLen}`);
  return L;
}

/**
 * Adds the fixed sinusoidal position encoding (no parameters) to x [N, L, d] (batchFirst, the default here)
 * or [L, N, d].
 * @example new kn.nn.SinusoidalPositionalEncoding(8).call(kn.zeros([1, 3, 8])).shape // [1, 3, 8]
 */
export class SinusoidalPositionalEncoding extends Module {
  readonly batchFirst: boolean;
  constructor(
    readonly dModel: number,
    readonly maxLen = 5000,
    opts: { batchFirst?: boolean } = {},
  ) {
    super();
    checkOptions(opts, 'SinusoidalPositionalEncoding', ['batchFirst']);
    posInt(dModel, 'SinusoidalPositionalEncoding dModel');
    posInt(maxLen, 'SinusoidalPositionalEncoding maxLen');
    this.batchFirst = opts.batchFirst ?? true;
  }
  /** @internal The first `L` rows of the table, [L, dModel] row-major. */
  table(L: number): Float32Array {
    return sinusoidTable(L, this.dModel);
  }
  forward(x: Tensor): Tensor {
    return this.forwardAt(x, 0);
  }
  /** @internal forward for the positions from..from+L-1 (incremental decoding). */
  forwardAt(x: Tensor, from: number): Tensor {
    const L = seqLen(x, this.dModel, this.maxLen, this.batchFirst, 'SinusoidalPositionalEncoding', from);
    const pe = tensor(sinusoidTable(L, this.dModel, from), this.batchFirst ? [L, this.dModel] : [L, 1, this.dModel], {
      backend: x.backendInstance.name,
    });
    return add(x, pe);
  }
}

/**
 * Adds a learned position embedding (parameter `weight` [maxLen, d], N(0, 0.02) like GPT-2) to x [N, L, d]
 * (batchFirst, the default here) or [L, N, d].
 * @example new kn.nn.LearnedPositionalEmbedding(16, 8).call(kn.zeros([1, 3, 8])).shape // [1, 3, 8]
 */
export class LearnedPositionalEmbedding extends Module {
  readonly weight: Tensor;
  readonly batchFirst: boolean;
  constructor(
    readonly maxLen: number,
    readonly dModel: number,
    opts: { batchFirst?: boolean } = {},
  ) {
    super();
    checkOptions(opts, 'LearnedPositionalEmbedding', ['batchFirst']);
    posInt(maxLen, 'LearnedPositionalEmbedding maxLen');
    posInt(dModel, 'LearnedPositionalEmbedding dModel');
    this.batchFirst = opts.batchFirst ?? true;
    this.weight = this.registerParameter(
      'weight',
      noGrad(() => mul(randn([maxLen, dModel]), 0.02)),
    );
  }
  forward(x: Tensor): Tensor {
    return this.forwardAt(x, 0);
  }
  /** @internal forward for the positions from..from+L-1 (incremental decoding). */
  forwardAt(x: Tensor, from: number): Tensor {
    const L = seqLen(x, this.dModel, this.maxLen, this.batchFirst, 'LearnedPositionalEmbedding', from);
    const w = slice(this.weight, [from, 0], [from + L, this.dModel]);
    return add(x, this.batchFirst ? w : reshape(w, [L, 1, this.dModel]));
  }
}

// ---- descriptions (nn/registry.ts) ----

const rate = (o: SpecFields, r: SpecReader, path: string): number =>
  r.num(o, 'dropout', path, (p) => p >= 0 && p < 1, 'in [0, 1)', 0);

registerLayer(MultiheadAttention, {
  type: 'MultiheadAttention',
  toSpec: (m, child) => ({
    type: 'MultiheadAttention',
    embedDim: m.embedDim,
    numHeads: m.numHeads,
    dropout: m.dropout,
    batchFirst: m.batchFirst,
    causal: m.causal,
    rotary: m.rotary,
    layers: m.children().map((c, i) => child(c, i)),
  }),
  params: (o, r, path) => {
    const E = r.int(o, 'embedDim', path, 1),
      H = r.int(o, 'numHeads', path, 1);
    if (E % H) r.fail(path, `embedDim ${E} must be divisible by numHeads ${H}`);
    if (r.bool(o, 'rotary', path, false) && (E / H) % 2) r.fail(path, `rotary needs an even head dim, got ${E / H}`);
    rate(o, r, path);
    r.bool(o, 'batchFirst', path, false);
    r.bool(o, 'causal', path, false);
    return 0; // the four projections are counted as children
  },
  children: (o, r, path) => compositeChildren(o, r, path, 4),
  fromSpec: (o, r, path, child) => {
    const m = new MultiheadAttention(r.int(o, 'embedDim', path, 1), r.int(o, 'numHeads', path, 1), {
      dropout: rate(o, r, path),
      batchFirst: r.bool(o, 'batchFirst', path, false),
      causal: r.bool(o, 'causal', path, false),
      rotary: r.bool(o, 'rotary', path, false),
    });
    adoptChildren(m, r, path, child);
    return m;
  },
});

function transformerOpts(o: SpecFields, r: SpecReader, path: string, causal: boolean): TransformerLayerOptions {
  const act = o.activation ?? 'relu';
  if (act !== 'relu' && act !== 'gelu') r.fail(path, `'activation' must be 'relu' or 'gelu', got ${describe(act)}`);
  return {
    dimFeedforward: r.int(o, 'dimFeedforward', path, 1, 2048),
    dropout: rate(o, r, path),
    activation: act,
    layerNormEps: r.num(o, 'layerNormEps', path, (x) => x > 0 && Number.isFinite(x), 'a finite number > 0', 1e-5),
    normFirst: r.bool(o, 'normFirst', path, false),
    batchFirst: r.bool(o, 'batchFirst', path, false),
    causal: r.bool(o, 'causal', path, causal),
    rotary: r.bool(o, 'rotary', path, false),
  };
}
for (const [cls, type, causal, kids] of [
  [TransformerEncoderLayer, 'TransformerEncoderLayer', false, 8],
  [TransformerDecoderLayer, 'TransformerDecoderLayer', true, 12],
] as const) {
  registerLayer<TransformerLayer>(cls, {
    type,
    toSpec: (m, child) => ({
      type,
      dModel: m.dModel,
      nHead: m.nHead,
      dimFeedforward: m.dimFeedforward,
      dropout: m.dropoutP,
      activation: m.activation,
      layerNormEps: m.layerNormEps,
      normFirst: m.normFirst,
      batchFirst: m.batchFirst,
      causal: m.causal,
      rotary: m.rotary,
      layers: m.children().map((c, i) => child(c, i)),
    }),
    params: (o, r, path) => {
      const d = r.int(o, 'dModel', path, 1),
        h = r.int(o, 'nHead', path, 1);
      if (d % h) r.fail(path, `dModel ${d} must be divisible by nHead ${h}`);
      transformerOpts(o, r, path, causal);
      return 0; // attention, feed-forward and norms are counted as children
    },
    children: (o, r, path) => compositeChildren(o, r, path, kids),
    fromSpec: (o, r, path, child) => {
      const m = new cls(r.int(o, 'dModel', path, 1), r.int(o, 'nHead', path, 1), transformerOpts(o, r, path, causal));
      adoptChildren(m, r, path, child);
      return m;
    },
  });
}

registerLayer(SinusoidalPositionalEncoding, {
  type: 'SinusoidalPositionalEncoding',
  toSpec: (m) => ({
    type: 'SinusoidalPositionalEncoding',
    dModel: m.dModel,
    maxLen: m.maxLen,
    batchFirst: m.batchFirst,
  }),
  params: (o, r, path) => (r.int(o, 'dModel', path, 1), r.int(o, 'maxLen', path, 1, 5000), 0),
  fromSpec: (o, r, path) =>
    new SinusoidalPositionalEncoding(r.int(o, 'dModel', path, 1), r.int(o, 'maxLen', path, 1, 5000), {
      batchFirst: r.bool(o, 'batchFirst', path, true),
    }),
  keepsFeatures: true,
});

registerLayer(LearnedPositionalEmbedding, {
  type: 'LearnedPositionalEmbedding',
  toSpec: (m) => ({ type: 'LearnedPositionalEmbedding', maxLen: m.maxLen, dModel: m.dModel, batchFirst: m.batchFirst }),
  params: (o, r, path) => r.int(o, 'maxLen', path, 1) * r.int(o, 'dModel', path, 1),
  fromSpec: (o, r, path) =>
    new LearnedPositionalEmbedding(r.int(o, 'maxLen', path, 1), r.int(o, 'dModel', path, 1), {
      batchFirst: r.bool(o, 'batchFirst', path, true),
    }),
});
