// kn.models: proven architectures from the literature as constructors with sensible defaults. Every model is a
// tree of standard layers, so it saves with its architecture (kn.io.save / loadModel), serves, quantizes,
// prunes and (where ONNX has the ops) exports like any other.
import { quiet } from '../autograd/tape.js';
import { ArgumentError, ShapeError, ValidationError, checkOptions, describe, optionKeys } from '../errors.js';
import { tensor } from '../ops/creation.js';
import { rand } from '../ops/random.js';
import { LearnedPositionalEmbedding, TransformerEncoderLayer, dropoutRate } from '../nn/attention.js';
import {
  BatchNorm1d,
  BatchNorm2d,
  Conv2d,
  Dropout,
  Embedding,
  Flatten,
  GELU,
  LayerNorm,
  Linear,
  MaxPool2d,
  ReLU,
  Sequential,
  Tanh,
  posInt,
} from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { AvgPool2d, GlobalAvgPool2d, Residual, SequencePool, type SequencePoolMode } from '../nn/pooling.js';
import { shapeStr } from '../tensor/shape.js';
import { KVDecoder, isPositionTable } from './decode.js';

const rate = dropoutRate;

/** Options of {@link mlp}. */
export interface MlpOptions {
  /** Hidden activation (default 'relu'). */
  activation?: 'relu' | 'gelu' | 'tanh';
  /** Dropout after each hidden activation (default 0). */
  dropout?: number;
  /** BatchNorm1d after each hidden Linear (default false). */
  batchNorm?: boolean;
}

/**
 * A multilayer perceptron: Linear layers of the given hidden sizes with an activation (and optional batch norm
 * and dropout) between them, ending in a Linear to `outFeatures` (logits).
 * @example kn.models.mlp(784, [256], 10).call(kn.zeros([2, 784])).shape // [2, 10]
 */
export function mlp(
  inFeatures: number,
  hidden: readonly number[],
  outFeatures: number,
  opts: MlpOptions = {},
): Sequential {
  checkOptions(opts, 'mlp', ['activation', 'dropout', 'batchNorm']);
  posInt(inFeatures, 'mlp inFeatures');
  posInt(outFeatures, 'mlp outFeatures');
  if (!Array.isArray(hidden)) throw new ArgumentError(`mlp hidden sizes must be a list, got ${describe(hidden)}`);
  const act = opts.activation ?? 'relu';
  if (act !== 'relu' && act !== 'gelu' && act !== 'tanh')
    throw new ArgumentError(`mlp activation must be 'relu', 'gelu' or 'tanh', got ${describe(opts.activation)}`);
  const p = rate(opts.dropout ?? 0, 'mlp dropout');
  const layers: Module[] = [];
  let width = inFeatures;
  for (const [i, h] of hidden.entries()) {
    layers.push(new Linear(width, posInt(h, `mlp hidden[${i}]`)));
    if (opts.batchNorm) layers.push(new BatchNorm1d(h));
    layers.push(act === 'relu' ? new ReLU() : act === 'gelu' ? new GELU() : new Tanh());
    if (p > 0) layers.push(new Dropout(p));
    width = h;
  }
  layers.push(new Linear(width, outFeatures));
  return new Sequential(...layers);
}

/** Options of {@link lenet5}. */
export interface LeNetOptions {
  /** Input channels (default 1). */
  inChannels?: number;
  /** Output classes (default 10). */
  numClasses?: number;
  /** Square input size (default 28, as MNIST; the first conv pads by 2 so C1 sees 32x32 as in the paper). */
  imageSize?: number;
  /** 'relu' and max pooling (default), or 'tanh' with average pooling as in LeCun et al. 1998. */
  activation?: 'relu' | 'tanh';
}

/**
 * LeNet-5 (LeCun et al. 1998): C1 conv 6@5x5, S2 pool, C3 conv 16@5x5, S4 pool, C5 120, F6 84, output. Input
 * [N, inChannels, imageSize, imageSize]; logits out.
 * @example kn.models.lenet5().call(kn.zeros([2, 1, 28, 28])).shape // [2, 10]
 */
export function lenet5(opts: LeNetOptions = {}): Sequential {
  checkOptions(
    opts,
    'lenet5',
    optionKeys<LeNetOptions>({ inChannels: true, numClasses: true, imageSize: true, activation: true }),
  );
  const C = posInt(opts.inChannels ?? 1, 'lenet5 inChannels');
  const K = posInt(opts.numClasses ?? 10, 'lenet5 numClasses');
  const S = posInt(opts.imageSize ?? 28, 'lenet5 imageSize');
  const act = opts.activation ?? 'relu';
  if (act !== 'relu' && act !== 'tanh')
    throw new ArgumentError(`lenet5 activation must be 'relu' or 'tanh', got ${describe(opts.activation)}`);
  const pad = S < 32 ? Math.ceil((32 - S) / 2) : 0;
  const side = Math.floor((Math.floor((S + 2 * pad - 4) / 2) - 4) / 2);
  if (side < 1) throw new ArgumentError(`lenet5 imageSize ${S} is too small (needs at least 12)`);
  const a = (): Module => (act === 'relu' ? new ReLU() : new Tanh());
  const pool = (): Module => (act === 'relu' ? new MaxPool2d(2) : new AvgPool2d(2));
  return new Sequential(
    new Conv2d(C, 6, 5, { padding: pad }),
    a(),
    pool(),
    new Conv2d(6, 16, 5),
    a(),
    pool(),
    new Flatten(),
    new Linear(16 * side * side, 120),
    a(),
    new Linear(120, 84),
    a(),
    new Linear(84, K),
  );
}

/** Options of {@link resnet}. */
export interface ResNetOptions {
  /** Input channels (default 3). */
  inChannels?: number;
  /** Output classes (default 10). */
  numClasses?: number;
  /** Channels of each stage (default [16, 32, 64], the CIFAR ResNets of He et al. 2016). */
  widths?: readonly number[];
  /** Basic blocks per stage (default 3: ResNet-20; 5 gives ResNet-32, 9 ResNet-56). */
  blocks?: number;
}

/** A basic residual block: conv3x3-BN-ReLU-conv3x3-BN plus the input (projected when the shape changes), ReLU. */
function basicBlock(cin: number, cout: number, stride: number): Module[] {
  const body = new Sequential(
    new Conv2d(cin, cout, 3, { stride, padding: 1, bias: false }),
    new BatchNorm2d(cout),
    new ReLU(),
    new Conv2d(cout, cout, 3, { padding: 1, bias: false }),
    new BatchNorm2d(cout),
  );
  const shortcut =
    stride !== 1 || cin !== cout
      ? new Sequential(new Conv2d(cin, cout, 1, { stride, bias: false }), new BatchNorm2d(cout))
      : null;
  return [new Residual(body, shortcut), new ReLU()];
}

/**
 * A small ResNet for images (He et al. 2016, the CIFAR variant): a 3x3 stem, stages of basic residual blocks
 * (the first block of each later stage halves the resolution with a projection shortcut), global average
 * pooling and a Linear head. Any input size of at least 4x4.
 * @example kn.models.resnet({ blocks: 1 }).call(kn.zeros([2, 3, 16, 16])).shape // [2, 10]
 */
export function resnet(opts: ResNetOptions = {}): Sequential {
  checkOptions(
    opts,
    'resnet',
    optionKeys<ResNetOptions>({ inChannels: true, numClasses: true, widths: true, blocks: true }),
  );
  const C = posInt(opts.inChannels ?? 3, 'resnet inChannels');
  const K = posInt(opts.numClasses ?? 10, 'resnet numClasses');
  const widths = opts.widths ?? [16, 32, 64];
  if (!Array.isArray(widths) || widths.length === 0)
    throw new ArgumentError(`resnet widths must be a non-empty list, got ${describe(opts.widths)}`);
  widths.forEach((w, i) => posInt(w, `resnet widths[${i}]`));
  const n = posInt(opts.blocks ?? 3, 'resnet blocks');
  const layers: Module[] = [
    new Conv2d(C, widths[0]!, 3, { padding: 1, bias: false }),
    new BatchNorm2d(widths[0]!),
    new ReLU(),
  ];
  let cin = widths[0]!;
  widths.forEach((w, s) => {
    for (let b = 0; b < n; b++) {
      layers.push(...basicBlock(cin, w, s > 0 && b === 0 ? 2 : 1));
      cin = w;
    }
  });
  layers.push(new GlobalAvgPool2d(), new Linear(cin, K));
  return new Sequential(...layers);
}

/** Options shared by the Transformer models. */
export interface TransformerModelOptions {
  /** Model width (default 128). */
  dModel?: number;
  /** Attention heads (default 4). */
  nHead?: number;
  /** Encoder layers (default 2 for the classifier, 4 for the language model). */
  numLayers?: number;
  /** Feed-forward width (default 4 * dModel). */
  dimFeedforward?: number;
  /** Dropout (default 0.1). */
  dropout?: number;
}

function encoderStack(
  layers: Module[],
  d: number,
  o: TransformerModelOptions,
  depth: number,
  extra: { causal?: boolean },
): void {
  posInt(d, 'dModel');
  const h = posInt(o.nHead ?? 4, 'nHead');
  if (d % h) throw new ArgumentError(`dModel ${d} must be divisible by nHead ${h}`);
  const ff = posInt(o.dimFeedforward ?? 4 * d, 'dimFeedforward');
  const p = rate(o.dropout ?? 0.1, 'dropout');
  for (let i = 0; i < posInt(o.numLayers ?? depth, 'numLayers'); i++)
    layers.push(
      new TransformerEncoderLayer(d, h, {
        dimFeedforward: ff,
        dropout: p,
        activation: 'gelu',
        normFirst: true,
        batchFirst: true,
        causal: extra.causal ?? false,
      }),
    );
  layers.push(new LayerNorm(d));
}

/** Options of {@link transformerClassifier}. */
const TRANSFORMER_KEYS = optionKeys<TransformerModelOptions>({
  dModel: true,
  nHead: true,
  numLayers: true,
  dimFeedforward: true,
  dropout: true,
});

export interface TransformerClassifierOptions extends TransformerModelOptions {
  /** Token ids are in [0, vocabSize). */
  vocabSize: number;
  numClasses: number;
  /** Longest sequence (default 512). */
  maxLen?: number;
  /** How the sequence becomes one vector: 'mean' (default), 'max', 'first' (a [CLS] token) or 'last'. */
  pool?: SequencePoolMode;
}

/**
 * A Transformer text classifier (an encoder in the style of BERT, pre-norm): token embedding plus learned
 * positions, encoder layers, a final LayerNorm, pooling over positions and a Linear head. Input int32 token ids
 * [N, L] (L <= maxLen); logits [N, numClasses].
 * @example kn.models.transformerClassifier({ vocabSize: 50, numClasses: 3, dModel: 16, nHead: 2 }).call(kn.zeros([2, 7], { dtype: 'int32' })).shape // [2, 3]
 */
export function transformerClassifier(opts: TransformerClassifierOptions): Sequential {
  if (opts === null || typeof opts !== 'object')
    throw new ArgumentError(`transformerClassifier needs {vocabSize, numClasses}, got ${describe(opts)}`);
  checkOptions(opts, 'transformerClassifier', [...TRANSFORMER_KEYS, 'vocabSize', 'numClasses', 'maxLen', 'pool']);
  const V = posInt(opts.vocabSize, 'transformerClassifier vocabSize');
  const K = posInt(opts.numClasses, 'transformerClassifier numClasses');
  const d = opts.dModel ?? 128;
  const layers: Module[] = [
    new Embedding(V, posInt(d, 'dModel')),
    new LearnedPositionalEmbedding(posInt(opts.maxLen ?? 512, 'maxLen'), d),
  ];
  encoderStack(layers, d, opts, 2, {});
  layers.push(new SequencePool(opts.pool ?? 'mean'), new Linear(d, K));
  return new Sequential(...layers);
}

/** Options of {@link charLM}. */
export interface CharLMOptions extends TransformerModelOptions {
  /** Number of distinct tokens (characters). */
  vocabSize: number;
  /** Context length (default 64). */
  blockSize?: number;
}

/**
 * A GPT-style decoder-only language model (Radford et al. 2018/2019): token and learned position embeddings,
 * causal pre-norm Transformer layers with GELU, a final LayerNorm and a Linear to next-token logits. Input int32
 * ids [N, L] (L <= blockSize); output logits [N, L, vocabSize]. Sample from it with {@link generate}.
 * @example kn.models.charLM({ vocabSize: 28, blockSize: 16, dModel: 16, nHead: 2, numLayers: 1 }).call(kn.zeros([1, 5], { dtype: 'int32' })).shape // [1, 5, 28]
 */
export function charLM(opts: CharLMOptions): Sequential {
  if (opts === null || typeof opts !== 'object')
    throw new ArgumentError(`charLM needs {vocabSize}, got ${describe(opts)}`);
  checkOptions(opts, 'charLM', [...TRANSFORMER_KEYS, 'vocabSize', 'blockSize']);
  const V = posInt(opts.vocabSize, 'charLM vocabSize');
  const d = opts.dModel ?? 128;
  const layers: Module[] = [
    new Embedding(V, posInt(d, 'dModel')),
    new LearnedPositionalEmbedding(posInt(opts.blockSize ?? 64, 'blockSize'), d),
  ];
  encoderStack(layers, d, opts, 4, { causal: true });
  layers.push(new Linear(d, V));
  return new Sequential(...layers);
}

/** Options of {@link generate}. */
export interface GenerateOptions {
  /** Tokens to add (default 32). */
  maxNewTokens?: number;
  /** Softmax temperature (default 1; lower is greedier). */
  temperature?: number;
  /** Sample among the k most likely tokens only (default: all). */
  topK?: number;
  /**
   * Nucleus sampling: among the fewest most likely tokens whose probabilities (after temperature and topK) sum
   * to at least topP, in (0, 1] (default 1: all).
   */
  topP?: number;
  /** Stop after this token is generated (it is included). */
  stopToken?: number;
  /**
   * The model's context length: only the last `blockSize` tokens are fed. Default: the length of the model's
   * position table (charLM's blockSize), or the whole sequence for a model without one.
   */
  blockSize?: number;
  /**
   * Keep each attention layer's keys and values between steps so a step runs one new position, not the whole
   * context (default true). Used while the context has not slid past blockSize and every layer is one that
   * decodes a position at a time (charLM's are); otherwise each step runs the whole context.
   */
  kvCache?: boolean;
}

/** The longest context the model's position tables hold (the smallest maxLen), or undefined without one. */
function contextOf(model: Module): number | undefined {
  let n: number | undefined;
  for (const [, m] of model.namedModules()) if (isPositionTable(m)) n = Math.min(n ?? Infinity, m.maxLen);
  return n;
}

/**
 * Draws a token from one row of logits: softmax(logits / temperature) over the topK most likely tokens, then
 * over the fewest most likely whose probabilities sum to topP or more (nucleus sampling, Holtzman et al. 2020).
 */
function sampleToken(last: number[], temp: number, topK: number | undefined, topP: number, step: number): number {
  const V = last.length;
  const bad = last.findIndex((v) => Number.isNaN(v) || v === Infinity);
  if (bad >= 0)
    throw new ValidationError(
      `generate: the model's logit for token ${bad} is ${last[bad]} at step ${step}; logits must be finite or -Infinity`,
    );
  if (topK !== undefined && topK < V) {
    const cut = [...last].sort((a, b) => b - a)[topK - 1]!;
    for (let i = 0; i < V; i++) if (last[i]! < cut) last[i] = -Infinity;
  }
  const m = last.reduce((a, v) => Math.max(a, v), -Infinity);
  if (m === -Infinity) throw new ValidationError(`generate: every logit is -Infinity at step ${step}`);
  // softmax(logits / temperature), shifted before the division so a small temperature cannot overflow
  const p = last.map((v) => Math.exp((v - m) / temp));
  let total = p.reduce((a, b) => a + b, 0);
  if (topP < 1) {
    // most likely first (ties by index); the token that brings the sum to topP is kept, every later one dropped
    const order = p.map((_, i) => i).sort((a, b) => p[b]! - p[a]! || a - b);
    let acc = 0,
      k = 0;
    while (k < V && acc < topP * total) acc += p[order[k++]!]!;
    for (const i of order.slice(k)) p[i] = 0;
    total = acc;
  }
  let u = quiet(() => rand([1]).item()) * total;
  for (let i = 0; i < V; i++) {
    u -= p[i]!;
    if (u < 0) return i;
  }
  // rounding left u >= 0 after the last term: the last token with any probability (never a masked one)
  return p.reduce((k, x, i) => (x > 0 ? i : k), 0);
}

/**
 * Samples a continuation from a language model whose output is next-token logits [1, L, V] (such as charLM),
 * in eval mode without gradients. Draws come from kiln's RNG, so kn.seed makes them reproducible.
 * @example kn.models.generate(kn.models.charLM({ vocabSize: 5, blockSize: 8, dModel: 8, nHead: 2, numLayers: 1 }), [0], { maxNewTokens: 3 }).length // 4
 */
export function generate(model: Module, prompt: readonly number[], opts: GenerateOptions = {}): number[] {
  if (!(model instanceof Module)) throw new ArgumentError(`generate takes a kn.nn.Module, got ${describe(model)}`);
  if (!Array.isArray(prompt) || prompt.length === 0 || prompt.some((t) => !Number.isInteger(t) || t < 0))
    throw new ArgumentError(`generate needs a non-empty list of token ids, got ${describe(prompt)}`);
  checkOptions(
    opts,
    'generate',
    optionKeys<GenerateOptions>({
      maxNewTokens: true,
      temperature: true,
      topK: true,
      topP: true,
      stopToken: true,
      blockSize: true,
      kvCache: true,
    }),
  );
  const n = opts.maxNewTokens ?? 32;
  if (!Number.isInteger(n) || n < 0)
    throw new ArgumentError(`maxNewTokens must be an integer >= 0, got ${describe(n)}`);
  const temp = opts.temperature ?? 1;
  if (typeof temp !== 'number' || !(temp > 0) || !Number.isFinite(temp))
    throw new ArgumentError(`temperature must be a finite number > 0, got ${describe(opts.temperature)}`);
  const topK = opts.topK;
  if (topK !== undefined) posInt(topK, 'topK');
  const topP = opts.topP ?? 1;
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1))
    throw new ArgumentError(`topP must be a number in (0, 1], got ${describe(opts.topP)}`);
  if (opts.blockSize !== undefined) posInt(opts.blockSize, 'blockSize');
  const block = opts.blockSize ?? contextOf(model);
  const useCache = opts.kvCache ?? true;
  if (typeof useCache !== 'boolean')
    throw new ArgumentError(`kvCache must be a boolean, got ${describe(opts.kvCache)}`);
  const out = [...prompt];
  const was = model.training;
  model.eval();
  let dec = useCache ? KVDecoder.for(model) : null;
  try {
    for (let step = 0; step < n; step++) {
      if (dec && block !== undefined && out.length > block) {
        dec.dispose(); // the window slides: positions shift, so the cached keys no longer apply
        dec = null;
      }
      // the tokens the model runs this step: the cache's new ones, or the whole (windowed) context
      const feed = dec ? out.slice(dec.length) : block ? out.slice(-block) : out;
      // each step's tensors (the ids, every activation, the logits) are freed when it ends, not left to the GC
      const logits = quiet(() => {
        const y = dec ? dec.step(feed) : model.call(tensor(Int32Array.from(feed), [1, feed.length]));
        if (y.ndim !== 3 || y.shape[0] !== 1 || y.shape[1] !== feed.length)
          throw new ShapeError(
            `generate needs a model that maps [1, L] ids to [1, L, V] logits, got ${shapeStr(y.shape)}`,
          );
        return y.toArray();
      });
      const V = logits.length / feed.length;
      const next = sampleToken(Array.from(logits.subarray((feed.length - 1) * V), Number), temp, topK, topP, step);
      out.push(next);
      if (next === opts.stopToken) break;
    }
  } finally {
    dec?.dispose();
    model.train(was);
  }
  return out;
}
