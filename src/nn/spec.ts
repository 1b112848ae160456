// Architecture specs: a JSON description of a model built from kiln's standard layers, so a weights file can
// carry its own architecture (kn.io.save writes it into the safetensors metadata) and `kiln serve`,
// `kiln quantize` and kn.io.loadModel can rebuild the model without the code that defined it.
// Specs read from files are untrusted: fromSpec checks every field and the total size before allocating.
import { ArgumentError, FormatError, describe } from '../errors.js';
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
  Sigmoid,
  Tanh,
} from './layers.js';
import type { Module } from './module.js';
import { Int4Linear, QuantConv2d, QuantLinear } from '../quant/layers.js';

type Pair2 = number | [number, number];

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
  | { type: 'Embedding'; numEmbeddings: number; embeddingDim: number }
  | { type: 'BatchNorm1d' | 'BatchNorm2d'; numFeatures: number; eps: number; momentum: number; affine: boolean }
  | { type: 'LayerNorm'; normalizedShape: number[]; eps: number; affine: boolean }
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
  | { type: 'Int4Linear'; inFeatures: number; outFeatures: number; groupSize: number; bias: boolean };

/** Metadata key under which kn.io.save stores a model's spec. */
export const SPEC_METADATA_KEY = 'kiln.spec';

const pair = (p: number | readonly [number, number]): Pair2 => (typeof p === 'number' ? p : [p[0], p[1]]);

/**
 * The architecture of a model made of kiln's standard layers (Sequential trees of them). Throws
 * ArgumentError naming the first module that is not a standard layer (a custom Module subclass).
 * @example kn.nn.toSpec(new kn.nn.Linear(2, 3)) // {"type": "Linear", "inFeatures": 2, "outFeatures": 3, "bias": true}
 */
export function toSpec(m: Module): LayerSpec {
  return specOf(m, 'model');
}

function specOf(m: Module, path: string): LayerSpec {
  // exact class checks: a subclass may change forward, so it has no faithful spec
  switch (m.constructor) {
    case Linear: {
      const l = m as Linear;
      return { type: 'Linear', inFeatures: l.inFeatures, outFeatures: l.outFeatures, bias: l.bias !== null };
    }
    case Conv2d: {
      const c = m as Conv2d;
      return {
        type: 'Conv2d',
        inChannels: c.inChannels,
        outChannels: c.outChannels,
        kernelSize: pair(c.kernelSize),
        stride: pair(c.opts.stride ?? 1),
        padding: pair(c.opts.padding ?? 0),
        dilation: pair(c.opts.dilation ?? 1),
        groups: c.opts.groups ?? 1,
        bias: c.bias !== null,
      };
    }
    case MaxPool2d: {
      const p = m as MaxPool2d;
      const s: LayerSpec = { type: 'MaxPool2d', kernelSize: pair(p.kernelSize), padding: pair(p.opts.padding ?? 0) };
      if (p.opts.stride !== undefined) s.stride = pair(p.opts.stride);
      return s;
    }
    case Flatten: {
      const f = m as Flatten;
      return { type: 'Flatten', startAxis: f.startAxis, endAxis: f.endAxis };
    }
    case ReLU:
      return { type: 'ReLU' };
    case GELU:
      return { type: 'GELU' };
    case Tanh:
      return { type: 'Tanh' };
    case Sigmoid:
      return { type: 'Sigmoid' };
    case Dropout:
      return { type: 'Dropout', p: (m as Dropout).p };
    case Embedding: {
      const e = m as Embedding;
      return { type: 'Embedding', numEmbeddings: e.numEmbeddings, embeddingDim: e.embeddingDim };
    }
    case BatchNorm1d:
    case BatchNorm2d: {
      const b = m as BatchNorm1d;
      return {
        type: m.constructor === BatchNorm1d ? 'BatchNorm1d' : 'BatchNorm2d',
        numFeatures: b.numFeatures,
        eps: b.eps,
        momentum: b.momentum,
        affine: b.weight !== null,
      };
    }
    case LayerNorm: {
      const l = m as LayerNorm;
      return {
        type: 'LayerNorm',
        normalizedShape: [...l.normalizedShape],
        eps: l.opts.eps ?? 1e-5,
        affine: l.weight !== null,
      };
    }
    case Sequential:
      return { type: 'Sequential', layers: (m as Sequential).layers.map((c, i) => specOf(c, `${path}.${i}`)) };
    case QuantLinear: {
      const q = m as QuantLinear;
      return { type: 'QuantLinear', inFeatures: q.inFeatures, outFeatures: q.outFeatures, bias: q.bias !== null };
    }
    case QuantConv2d: {
      const q = m as QuantConv2d;
      return {
        type: 'QuantConv2d',
        inChannels: q.inChannels,
        outChannels: q.outChannels,
        kernelSize: [...q.kernelSize],
        stride: [...q.stride],
        padding: [...q.padding],
        dilation: [...q.dilation],
        bias: q.bias !== null,
      };
    }
    case Int4Linear: {
      const q = m as Int4Linear;
      return {
        type: 'Int4Linear',
        inFeatures: q.inFeatures,
        outFeatures: q.outFeatures,
        groupSize: q.groupSize,
        bias: q.bias !== null,
      };
    }
    default:
      throw new ArgumentError(
        `${path} is a ${m.constructor.name}, which is not one of kiln's standard layers, so it has no ` +
          'architecture spec; save and load its weights with kn.io.save/load and rebuild it in code',
      );
  }
}

// ---- reading specs (untrusted) ----

const MAX_DIM = 2 ** 31 - 1;
/** Upper bound on the values a spec may declare (4 G values = 16 GiB of float32). */
const MAX_PARAMS = 2 ** 32;
const MAX_DEPTH = 64;
const MAX_LAYERS = 100_000;

class SpecReader {
  params = 0;
  layers = 0;
  constructor(
    private readonly where: string,
    private readonly maxParams = MAX_PARAMS,
  ) {}
  fail(path: string, msg: string): never {
    throw new FormatError(`${this.where}: ${path}: ${msg}`);
  }
  obj(v: unknown, path: string): Record<string, unknown> {
    if (v === null || typeof v !== 'object' || Array.isArray(v))
      this.fail(path, `expected an object, got ${describe(v)}`);
    return v as Record<string, unknown>;
  }
  int(o: Record<string, unknown>, k: string, path: string, min: number, dflt?: number): number {
    const v = o[k] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > MAX_DIM) {
      this.fail(path, `'${k}' must be an integer >= ${min}, got ${describe(v)}`);
    }
    return v;
  }
  num(
    o: Record<string, unknown>,
    k: string,
    path: string,
    ok: (x: number) => boolean,
    rule: string,
    dflt?: number,
  ): number {
    const v = o[k] ?? dflt;
    if (typeof v !== 'number' || !ok(v)) this.fail(path, `'${k}' must be ${rule}, got ${describe(v)}`);
    return v;
  }
  bool(o: Record<string, unknown>, k: string, path: string, dflt: boolean): boolean {
    const v = o[k] ?? dflt;
    if (typeof v !== 'boolean') this.fail(path, `'${k}' must be a boolean, got ${describe(v)}`);
    return v;
  }
  /** A number or a pair, kept in the form the spec used (so toSpec(fromSpec(s)) equals s). */
  pair(o: Record<string, unknown>, k: string, path: string, min: number, dflt?: number): Pair2 {
    const v = o[k] ?? dflt;
    if (typeof v === 'number') return this.int({ [k]: v }, k, path, min);
    if (!Array.isArray(v) || v.length !== 2)
      this.fail(path, `'${k}' must be an integer or a pair of integers, got ${describe(v)}`);
    return [this.int({ [k]: v[0] }, k, path, min), this.int({ [k]: v[1] }, k, path, min)];
  }
  addParams(n: number, path: string): void {
    this.params += n;
    if (this.params > this.maxParams) this.fail(path, `the spec declares more than ${this.maxParams} parameter values`);
  }

  build(v: unknown, path: string, depth: number): Module {
    if (depth > MAX_DEPTH) this.fail(path, `nesting deeper than ${MAX_DEPTH}`);
    if (++this.layers > MAX_LAYERS) this.fail(path, `more than ${MAX_LAYERS} layers`);
    const o = this.obj(v, path);
    const type = o.type;
    switch (type) {
      case 'Linear': {
        const i = this.int(o, 'inFeatures', path, 1),
          out = this.int(o, 'outFeatures', path, 1);
        const bias = this.bool(o, 'bias', path, true);
        this.addParams(i * out + (bias ? out : 0), path);
        return new Linear(i, out, { bias });
      }
      case 'Conv2d': {
        const ci = this.int(o, 'inChannels', path, 1),
          co = this.int(o, 'outChannels', path, 1);
        const k = this.pair(o, 'kernelSize', path, 1),
          groups = this.int(o, 'groups', path, 1, 1);
        const [kh, kw] = typeof k === 'number' ? [k, k] : k;
        if (ci % groups || co % groups)
          this.fail(path, `channels ${ci} and ${co} must be divisible by groups ${groups}`);
        const bias = this.bool(o, 'bias', path, true);
        this.addParams(co * (ci / groups) * kh * kw + (bias ? co : 0), path);
        return new Conv2d(ci, co, k, {
          stride: this.pair(o, 'stride', path, 1, 1),
          padding: this.pair(o, 'padding', path, 0, 0),
          dilation: this.pair(o, 'dilation', path, 1, 1),
          groups,
          bias,
        });
      }
      case 'MaxPool2d':
        return new MaxPool2d(this.pair(o, 'kernelSize', path, 1), {
          ...(o.stride !== undefined ? { stride: this.pair(o, 'stride', path, 1) } : {}),
          padding: this.pair(o, 'padding', path, 0, 0),
        });
      case 'Flatten': {
        const s = this.num(o, 'startAxis', path, Number.isInteger, 'an integer', 1);
        const e = this.num(o, 'endAxis', path, Number.isInteger, 'an integer', -1);
        return new Flatten(s, e);
      }
      case 'ReLU':
        return new ReLU();
      case 'GELU':
        return new GELU();
      case 'Tanh':
        return new Tanh();
      case 'Sigmoid':
        return new Sigmoid();
      case 'Dropout':
        return new Dropout(this.num(o, 'p', path, (p) => p >= 0 && p < 1, 'in [0, 1)', 0.5));
      case 'Embedding': {
        const n = this.int(o, 'numEmbeddings', path, 1),
          d = this.int(o, 'embeddingDim', path, 1);
        this.addParams(n * d, path);
        return new Embedding(n, d);
      }
      case 'BatchNorm1d':
      case 'BatchNorm2d': {
        const n = this.int(o, 'numFeatures', path, 1);
        const affine = this.bool(o, 'affine', path, true);
        this.addParams(n * (affine ? 4 : 2), path);
        const opts = {
          eps: this.num(o, 'eps', path, (x) => x > 0 && Number.isFinite(x), 'a finite number > 0', 1e-5),
          momentum: this.num(o, 'momentum', path, (x) => x >= 0 && x <= 1, 'in [0, 1]', 0.1),
          affine,
        };
        return type === 'BatchNorm1d' ? new BatchNorm1d(n, opts) : new BatchNorm2d(n, opts);
      }
      case 'LayerNorm': {
        const s = o.normalizedShape;
        if (!Array.isArray(s) || s.length === 0 || s.length > 8)
          this.fail(path, `'normalizedShape' must be a list of 1-8 integers, got ${describe(s)}`);
        const dims = s.map((d, i) => this.int({ d }, 'd', `${path}.normalizedShape[${i}]`, 1));
        const affine = this.bool(o, 'affine', path, true);
        if (affine) this.addParams(2 * dims.reduce((a, b) => a * b, 1), path);
        return new LayerNorm(dims, {
          eps: this.num(o, 'eps', path, (x) => x > 0 && Number.isFinite(x), 'a finite number > 0', 1e-5),
          affine,
        });
      }
      case 'QuantLinear': {
        const i = this.int(o, 'inFeatures', path, 1),
          out = this.int(o, 'outFeatures', path, 1);
        this.addParams((i * out) / 4 + out + 2, path);
        return new QuantLinear(i, out, { bias: this.bool(o, 'bias', path, true) });
      }
      case 'QuantConv2d': {
        const ci = this.int(o, 'inChannels', path, 1),
          co = this.int(o, 'outChannels', path, 1);
        const k = this.pair(o, 'kernelSize', path, 1);
        const [kh, kw] = typeof k === 'number' ? [k, k] : k;
        this.addParams((co * ci * kh * kw) / 4 + co + 2, path);
        const p2 = (v: Pair2): [number, number] => (typeof v === 'number' ? [v, v] : v);
        return new QuantConv2d(ci, co, [kh, kw], {
          stride: p2(this.pair(o, 'stride', path, 1, 1)),
          padding: p2(this.pair(o, 'padding', path, 0, 0)),
          dilation: p2(this.pair(o, 'dilation', path, 1, 1)),
          bias: this.bool(o, 'bias', path, true),
        });
      }
      case 'Int4Linear': {
        const i = this.int(o, 'inFeatures', path, 1),
          out = this.int(o, 'outFeatures', path, 1);
        const g = this.int(o, 'groupSize', path, 1);
        if (![32, 64, 128].includes(g)) this.fail(path, `'groupSize' must be 32, 64 or 128, got ${g}`);
        this.addParams((i * out) / 8 + out * Math.ceil(i / g) + out, path);
        return new Int4Linear(i, out, g, { bias: this.bool(o, 'bias', path, true) });
      }
      case 'Sequential': {
        const ls = o.layers;
        if (!Array.isArray(ls)) this.fail(path, `'layers' must be a list, got ${describe(ls)}`);
        return new Sequential(...ls.map((l, i) => this.build(l, `${path}.${i}`, depth + 1)));
      }
      default:
        this.fail(
          path,
          `unknown layer type ${describe(type)} (kiln knows Linear, Conv2d, MaxPool2d, Flatten, ReLU, GELU, ` +
            'Tanh, Sigmoid, Dropout, Embedding, BatchNorm1d, BatchNorm2d, LayerNorm, Sequential, QuantLinear, QuantConv2d, Int4Linear)',
        );
    }
  }
  /** Dry run: validates a subtree and counts its parameters without allocating. */
  check(v: unknown, path: string, depth: number): void {
    const dry = new SpecReader(this.where, this.maxParams);
    dry.params = this.params;
    dry.layers = this.layers;
    dry.dryRun(v, path, depth);
  }
  private dryRun(v: unknown, path: string, depth: number): void {
    if (depth > MAX_DEPTH) this.fail(path, `nesting deeper than ${MAX_DEPTH}`);
    if (++this.layers > MAX_LAYERS) this.fail(path, `more than ${MAX_LAYERS} layers`);
    const o = this.obj(v, path);
    if (o.type === 'Sequential') {
      if (!Array.isArray(o.layers)) this.fail(path, `'layers' must be a list, got ${describe(o.layers)}`);
      o.layers.forEach((l, i) => this.dryRun(l, `${path}.${i}`, depth + 1));
      return;
    }
    const k = o.type;
    const I = (f: string, min = 1): number => this.int(o, f, path, min);
    if (k === 'Linear') this.addParams(I('inFeatures') * I('outFeatures'), path);
    else if (k === 'Conv2d') {
      const ks = this.pair(o, 'kernelSize', path, 1);
      this.addParams(I('inChannels') * I('outChannels') * (typeof ks === 'number' ? ks * ks : ks[0] * ks[1]), path);
    } else if (k === 'Embedding') this.addParams(I('numEmbeddings') * I('embeddingDim'), path);
    else if (k === 'QuantLinear' || k === 'Int4Linear') this.addParams((I('inFeatures') * I('outFeatures')) / 8, path);
    else if (k === 'BatchNorm1d' || k === 'BatchNorm2d') this.addParams(4 * I('numFeatures'), path);
  }
}

/**
 * Builds a model from a spec (the object toSpec returns, or its JSON text). Malformed or oversized specs throw
 * FormatError naming the field; the weights are freshly initialised (load a state dict into it next).
 * @example kn.nn.fromSpec({ type: 'Linear', inFeatures: 2, outFeatures: 3, bias: true }).call(kn.ones([1, 2])).shape // [1, 3]
 */
export function fromSpec(spec: unknown, opts: { where?: string; maxParams?: number } = {}): Module {
  const where = opts.where ?? 'architecture spec';
  let v = spec;
  if (typeof spec === 'string') {
    try {
      v = JSON.parse(spec);
    } catch (e) {
      throw new FormatError(`${where}: not valid JSON (${(e as Error).message})`);
    }
  }
  const r = new SpecReader(where, Math.min(opts.maxParams ?? MAX_PARAMS, MAX_PARAMS));
  r.check(v, 'model', 0);
  return r.build(v, 'model', 0);
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
  let m: unknown = model;
  while (m instanceof Sequential && m.layers.length) m = m.layers[0];
  return m instanceof Linear || m instanceof QuantLinear || m instanceof Int4Linear ? [m.inFeatures] : null;
}
