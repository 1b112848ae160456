// Architecture specs: a JSON description of a model built from kiln's standard layers, so a weights file can
// carry its own architecture (kn.io.save writes it into the safetensors metadata) and `kiln serve`,
// `kiln quantize` and kn.io.loadModel can rebuild the model without the code that defined it.
// Specs read from files are untrusted: fromSpec checks every field and the total size before allocating.
// Every layer describes its own spec in the layer registry (nn/registry.ts); this module walks model trees.
import { ArgumentError, FormatError, checkOptions, describe } from '../errors.js';
import { Sequential } from './layers.js';
import type { Module } from './module.js';
import { layerByType, layerOf, layerTypes } from './registry.js';
import { MAX_DEPTH, MAX_LAYERS, MAX_PARAMS, SpecReader, type Pair2 } from './spec_reader.js';

/** One layer of an architecture spec (the `type` names the kn.nn class). */
export type LayerSpec =
  | { type: 'Linear'; inFeatures: number; outFeatures: number; bias: boolean }
  | {
      type: 'Conv2d';
      inChannels: number;
      outChannels: number;
      kernelSize: Pair2;
      stride: Pair2;
      padding: Pair2;
      dilation: Pair2;
      groups: number;
      bias: boolean;
    }
  | { type: 'MaxPool2d'; kernelSize: Pair2; stride?: Pair2; padding: Pair2 }
  | { type: 'Flatten'; startAxis: number; endAxis: number }
  | { type: 'ReLU' }
  | { type: 'GELU' }
  | { type: 'Tanh' }
  | { type: 'Sigmoid' }
  | { type: 'Dropout'; p: number }
  | { type: 'Embedding'; numEmbeddings: number; embeddingDim: number; paddingIdx?: number }
  | { type: 'BatchNorm1d' | 'BatchNorm2d'; numFeatures: number; eps: number; momentum: number | null; affine: boolean }
  | { type: 'LayerNorm'; normalizedShape: number[]; eps: number; affine: boolean }
  | { type: 'GroupNorm'; numGroups: number; numChannels: number; eps: number; affine: boolean }
  | { type: 'Sequential'; layers: LayerSpec[] }
  | { type: 'QuantLinear'; inFeatures: number; outFeatures: number; bias: boolean }
  | {
      type: 'QuantConv2d';
      inChannels: number;
      outChannels: number;
      kernelSize: Pair2;
      stride: Pair2;
      padding: Pair2;
      dilation: Pair2;
      bias: boolean;
    }
  | { type: 'Int4Linear'; inFeatures: number; outFeatures: number; groupSize: number; bias: boolean }
  | {
      type: 'Conv1d';
      inChannels: number;
      outChannels: number;
      kernelSize: number;
      stride: number;
      padding: number;
      dilation: number;
      groups: number;
      bias: boolean;
    }
  | { type: 'AvgPool2d'; kernelSize: Pair2; stride?: Pair2; padding: Pair2; countIncludePad: boolean }
  | { type: 'AdaptiveAvgPool2d'; outputSize: [number, number] }
  | {
      type: 'Upsample';
      size?: [number, number];
      scaleFactor?: [number, number];
      mode: 'nearest' | 'bilinear';
      alignCorners: boolean;
    }
  | { type: 'GlobalAvgPool2d' }
  | { type: 'SequencePool'; mode: 'mean' | 'max' | 'first' | 'last'; batchFirst: boolean }
  | { type: 'Residual'; layers: LayerSpec[] }
  | {
      type: 'MultiheadAttention';
      embedDim: number;
      numHeads: number;
      dropout: number;
      batchFirst: boolean;
      causal: boolean;
      rotary: boolean;
      layers: LayerSpec[];
    }
  | {
      type: 'TransformerEncoderLayer' | 'TransformerDecoderLayer';
      dModel: number;
      nHead: number;
      dimFeedforward: number;
      dropout: number;
      activation: 'relu' | 'gelu';
      layerNormEps: number;
      normFirst: boolean;
      batchFirst: boolean;
      causal: boolean;
      rotary: boolean;
      layers: LayerSpec[];
    }
  | { type: 'SinusoidalPositionalEncoding'; dModel: number; maxLen: number; batchFirst: boolean }
  | { type: 'LearnedPositionalEmbedding'; maxLen: number; dModel: number; batchFirst: boolean }
  | {
      type: 'Graph';
      layers: LayerSpec[];
      nodes: import('./graph.js').GraphNode[];
      output: number;
    }
  | {
      type: 'LSTM' | 'GRU';
      inputSize: number;
      hiddenSize: number;
      numLayers: number;
      bias: boolean;
      batchFirst: boolean;
      dropout: number;
      bidirectional: boolean;
    };

/** Metadata key under which kn.io.save stores a model's spec. */
export const SPEC_METADATA_KEY = 'kiln.spec';

/**
 * The architecture of a model made of kiln's standard layers (Sequential trees of them). Throws
 * ArgumentError naming the first module that is not a standard layer (a custom Module subclass).
 * @example kn.nn.toSpec(new kn.nn.Linear(2, 3)) // {"type": "Linear", "inFeatures": 2, "outFeatures": 3, "bias": true}
 */
export function toSpec(m: Module): LayerSpec {
  if (m === null || typeof m !== 'object' || typeof (m as Partial<Module>).namedParameters !== 'function')
    throw new ArgumentError(`toSpec takes a kn.nn Module, got ${describe(m)}`);
  return specOf(m, 'model');
}

function specOf(m: Module, path: string): LayerSpec {
  // exact class only: a subclass may change forward, so it has no faithful spec
  const d = layerOf(m);
  if (!d) {
    throw new ArgumentError(
      `${path} is a ${m.constructor.name}, which is not one of kiln's standard layers, so it has no ` +
        'architecture spec; save and load its weights with kn.io.save/load and rebuild it in code',
    );
  }
  return d.toSpec(m, (c, i) => specOf(c, `${path}.${i}`));
}

// ---- reading specs (untrusted) ----

/** The registered description of a spec node, or a FormatError naming the known types. */
function describeNode(r: SpecReader, v: unknown, path: string, depth: number) {
  if (depth > MAX_DEPTH) r.fail(path, `nesting deeper than ${MAX_DEPTH}`);
  if (++r.layers > MAX_LAYERS) r.fail(path, `more than ${MAX_LAYERS} layers`);
  const o = r.obj(v, path);
  const d = layerByType(o.type);
  if (!d) r.fail(path, `unknown layer type ${describe(o.type)} (kiln knows ${layerTypes().join(', ')})`);
  return { o, d };
}

/** Dry run: checks every field of the tree and bounds its parameter count before anything is allocated. */
function check(r: SpecReader, v: unknown, path: string, depth: number): void {
  const { o, d } = describeNode(r, v, path, depth);
  r.addParams(d.params(o, r, path), path);
  d.children?.(o, r, path).forEach((c, i) => check(r, c, `${path}.${i}`, depth + 1));
}

function build(r: SpecReader, v: unknown, path: string, depth: number): Module {
  const { o, d } = describeNode(r, v, path, depth);
  const kids = d.children?.(o, r, path) ?? [];
  return d.fromSpec(o, r, path, (i) => build(r, kids[i], `${path}.${i}`, depth + 1));
}

/** The fields that fix a layer's shapes: a composite's rebuilt child must agree with its default on them. */
const SHAPE_FIELDS = ['inFeatures', 'outFeatures', 'normalizedShape', 'embedDim', 'numHeads'] as const;

/**
 * @internal Gives a composite layer built from its spec's settings (MultiheadAttention, the Transformer layers)
 * the children its spec lists, in registration order: each must be of the default child's type (a Linear may be
 * quantized) and shape, so a hostile spec cannot wire mismatched layers in. The defaults are disposed.
 */
export function adoptChildren(m: Module, r: SpecReader, path: string, child: (index: number) => Module): void {
  m.namedChildren().forEach(([name, old], i) => {
    const c = child(i);
    const want = toSpec(old),
      got = layerOf(c) ? toSpec(c) : null;
    const linearLike = want.type === 'Linear' && (got?.type === 'QuantLinear' || got?.type === 'Int4Linear');
    if (!got || (got.type !== want.type && !linearLike))
      r.fail(`${path}.${i}`, `must be a ${want.type} (the layer's ${name}), got ${got?.type ?? 'an unknown layer'}`);
    const a = want as Record<string, unknown>,
      b = got as Record<string, unknown>;
    for (const k of SHAPE_FIELDS) {
      if (k in a && JSON.stringify(a[k]) !== JSON.stringify(b[k]))
        r.fail(`${path}.${i}`, `${name}'s ${k} must be ${JSON.stringify(a[k])}, got ${describe(b[k])}`);
    }
    m.replaceChild(name, c).dispose();
  });
}

/** @internal The `layers` list of a composite spec, which must hold exactly `count` child specs. */
export function compositeChildren(o: Record<string, unknown>, r: SpecReader, path: string, count: number): unknown[] {
  const ls = o.layers;
  if (!Array.isArray(ls) || ls.length !== count)
    r.fail(path, `'layers' must be a list of ${count} layer specs, got ${describe(ls)}`);
  return ls as unknown[];
}

/**
 * Builds a model from a spec (the object toSpec returns, or its JSON text). Malformed or oversized specs throw
 * FormatError naming the field; the weights are freshly initialised (load a state dict into it next).
 * @example kn.nn.fromSpec({ type: 'Linear', inFeatures: 2, outFeatures: 3, bias: true }).call(kn.ones([1, 2])).shape // [1, 3]
 */
export function fromSpec(spec: unknown, opts: { where?: string; maxParams?: number } = {}): Module {
  checkOptions(opts, 'fromSpec', ['where', 'maxParams']);
  if (opts.where !== undefined && (typeof opts.where !== 'string' || opts.where === ''))
    throw new ArgumentError(`fromSpec: where must be a non-empty string, got ${describe(opts.where)}`);
  if (opts.maxParams !== undefined && !(Number.isSafeInteger(opts.maxParams) && opts.maxParams >= 0))
    throw new ArgumentError(`fromSpec: maxParams must be an integer >= 0, got ${describe(opts.maxParams)}`);
  const where = opts.where ?? 'architecture spec';
  let v = spec;
  if (typeof spec === 'string') {
    try {
      v = JSON.parse(spec);
    } catch (e) {
      throw new FormatError(`${where}: not valid JSON (${(e as Error).message})`);
    }
  }
  const maxParams = Math.min(opts.maxParams ?? MAX_PARAMS, MAX_PARAMS);
  check(new SpecReader(where, maxParams), v, 'model', 0);
  return build(new SpecReader(where, maxParams), v, 'model', 0);
}

/**
 * An independent copy of a model made of standard (or quantized) layers: rebuilt from its spec, then its
 * parameters and buffers copied in. Training mode follows the original.
 * @example kn.nn.cloneModule(new kn.nn.Linear(2, 3)).weight.shape // [3, 2]
 */
export function cloneModule<M extends Module>(m: M): M {
  const copy = fromSpec(toSpec(m));
  const sd = m.stateDict();
  try {
    copy.loadStateDict(sd);
  } finally {
    Object.values(sd).forEach((t) => t.dispose());
  }
  copy.train(m.training);
  return copy as M;
}

/**
 * The per-example input shape a model implies when its first layer (inside Sequentials) is a Linear or a
 * quantized Linear: [inFeatures]. Null otherwise (a convolution's spatial size is not in the model).
 * @example kn.nn.inferInputShape(new kn.nn.Sequential(new kn.nn.Linear(4, 2))) // [4]
 */
export function inferInputShape(model: Module | ((x: never) => unknown)): number[] | null {
  const m = firstLayer(model);
  const features = m && layerOf(m)?.inputFeatures?.(m);
  return features === undefined || features === null ? null : [features];
}

/** The first layer inside Sequentials (null for a function). */
function firstLayer(model: Module | ((x: never) => unknown)): Module | null {
  let m: unknown = model;
  while (m instanceof Sequential && m.layers.length) m = m.layers[0];
  return typeof m === 'function' ? null : (m as Module);
}

/**
 * Whether a model takes integer token ids (its first layer, inside Sequentials, is an Embedding), so callers
 * such as `kiln serve` build int32 inputs.
 * @example kn.nn.takesIds(kn.models.charLM({ vocabSize: 5, dModel: 8, nHead: 2, numLayers: 1 })) // true
 */
export function takesIds(model: Module | ((x: never) => unknown)): boolean {
  const m = firstLayer(model);
  return m !== null && layerOf(m)?.takesIds === true;
}
