// ONNX export of models made of kiln's standard and quantized layers (opset 17), encoded with onnx-proto.
// Float layers map to their ONNX ops; quantized layers are written in QDQ form (QuantizeLinear /
// DequantizeLinear around float ops, int8 weights with per-channel scales), which onnxruntime fuses into its
// integer kernels. The batch dimension is symbolic ('batch').
import { createRequire } from 'node:module';
import type { onnx as OnnxNs } from 'onnx-proto';
import { ArgumentError, ValidationError, checkOptions, describe, optionKeys } from '../errors.js';
import {
  BatchNorm1d,
  BatchNorm2d,
  Conv2d,
  Embedding,
  Flatten,
  LayerNorm,
  GroupNorm,
  Linear,
  MaxPool2d,
  Sequential,
} from '../nn/layers.js';
import {
  LearnedPositionalEmbedding,
  MultiheadAttention,
  SinusoidalPositionalEncoding,
  TransformerEncoderLayer,
} from '../nn/attention.js';
import { Graph } from '../nn/graph.js';
import { Module } from '../nn/module.js';
import { AdaptiveAvgPool2d, AvgPool2d, Conv1d, Residual, SequencePool, Upsample } from '../nn/pooling.js';
import { GRU, LSTM } from '../nn/recurrent.js';
import { layerOf } from '../nn/registry.js';
import { inferInputShape, type LayerSpec } from '../nn/spec.js';
import { Int4Linear, QuantConv2d, QuantLinear } from '../quant/layers.js';
import type { Tensor } from '../tensor/tensor.js';
import { writeFileAtomic } from './atomic.js';

const require = createRequire(import.meta.url);

/** exportOnnx options. */
export interface OnnxExportOptions {
  /** Shape of one example (no batch dim); default: from a first Linear layer. */
  inputShape?: readonly number[];
  /** Input dtype: 'float32' (default) or 'int32' (for a model that starts with Embedding). */
  inputDtype?: 'float32' | 'int32';
  /** Graph / producer names. */
  name?: string;
}

type Pair = [number, number];
const pair = (v: number | readonly number[] | undefined, d: number): Pair =>
  v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : [v[0]!, v[1]!];

class GraphBuilder {
  readonly onnx: typeof OnnxNs;
  readonly nodes: OnnxNs.INodeProto[] = [];
  readonly inits: OnnxNs.ITensorProto[] = [];
  private n = 0;
  constructor() {
    this.onnx = (require('onnx-proto') as { onnx: typeof OnnxNs }).onnx;
  }
  fresh(p: string): string {
    return `${p}_${this.n++}`;
  }
  node(op: string, inputs: string[], attrs: OnnxNs.IAttributeProto[] = [], outName?: string): string {
    const out = outName ?? this.fresh(op.toLowerCase());
    this.nodes.push({ opType: op, input: inputs, output: [out], name: this.fresh(`n_${op}`), attribute: attrs });
    return out;
  }
  ints(name: string, v: readonly number[]): OnnxNs.IAttributeProto {
    return { name, type: this.onnx.AttributeProto.AttributeType.INTS, ints: [...v] };
  }
  int(name: string, v: number): OnnxNs.IAttributeProto {
    return { name, type: this.onnx.AttributeProto.AttributeType.INT, i: v };
  }
  str(name: string, v: string): OnnxNs.IAttributeProto {
    return { name, type: this.onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode(v) };
  }
  float(name: string, v: number): OnnxNs.IAttributeProto {
    return { name, type: this.onnx.AttributeProto.AttributeType.FLOAT, f: v };
  }
  /** An initializer from host values. */
  init(
    p: string,
    dims: readonly number[],
    values: ArrayLike<number>,
    dtype: 'float32' | 'int8' | 'uint8' | 'int64',
  ): string {
    const name = this.fresh(p);
    const T = this.onnx.TensorProto.DataType;
    let raw: Uint8Array;
    if (dtype === 'float32') raw = new Uint8Array(Float32Array.from(values).buffer);
    else if (dtype === 'int8') raw = new Uint8Array(Int8Array.from(values).buffer);
    else if (dtype === 'uint8') raw = Uint8Array.from(values);
    else raw = new Uint8Array(BigInt64Array.from(Array.from(values, (v) => BigInt(v))).buffer);
    const dataType = dtype === 'float32' ? T.FLOAT : dtype === 'int8' ? T.INT8 : dtype === 'uint8' ? T.UINT8 : T.INT64;
    this.inits.push({ name, dims: [...dims], dataType, rawData: raw });
    return name;
  }
  tensor(p: string, t: Tensor): string {
    const dtype = t.dtype === 'int8' ? 'int8' : t.dtype === 'uint8' ? 'uint8' : 'float32';
    return this.init(p, t.shape, t.toArray() as ArrayLike<number>, dtype);
  }
}

function host(t: Tensor): number[] {
  return Array.from(t.toArray() as ArrayLike<number>);
}

/** x -> QuantizeLinear -> DequantizeLinear with the layer's static input parameters, or dynamic per tensor. */
function qdqInput(g: GraphBuilder, x: string, inputQuant: Tensor): string {
  const [scale, zero] = host(inputQuant) as [number, number];
  if (scale > 0) {
    const s = g.init('x_scale', [], [scale], 'float32'),
      z = g.init('x_zero', [], [zero], 'uint8');
    return g.node('DequantizeLinear', [g.node('QuantizeLinear', [x, s, z]), s, z]);
  }
  // dynamic: onnxruntime's DynamicQuantizeLinear (per tensor; kiln's kernels quantize per row or per image)
  const y = g.fresh('dq_y'),
    s = g.fresh('dq_s'),
    z = g.fresh('dq_z');
  g.nodes.push({
    opType: 'DynamicQuantizeLinear',
    input: [x],
    output: [y, s, z],
    name: g.fresh('n_DynamicQuantizeLinear'),
  });
  return g.node('DequantizeLinear', [y, s, z]);
}

/** int8 weight -> DequantizeLinear along axis 0 (per output channel). */
function dqWeight(g: GraphBuilder, wq: Tensor, ws: Tensor): string {
  const w = g.tensor('w_q', wq);
  const s = g.tensor('w_scale', ws);
  const z = g.init('w_zero', [ws.size], new Array<number>(ws.size).fill(0), 'int8');
  return g.node('DequantizeLinear', [w, s, z], [g.int('axis', 0)]);
}

type Emitter = (g: GraphBuilder, m: Module, x: string, path: string) => string;

function linearOut(g: GraphBuilder, y: string, bias: Tensor | null): string {
  return bias ? g.node('Add', [y, g.tensor('bias', bias)]) : y;
}

function convOut(g: GraphBuilder, m: Conv2d | QuantConv2d, x: string): string {
  const isQ = m instanceof QuantConv2d;
  const o = isQ ? { stride: m.stride, padding: m.padding, dilation: m.dilation, groups: 1 } : m.opts;
  const k = isQ ? m.kernelSize : [m.weight.shape[2]!, m.weight.shape[3]!];
  const [ph, pw] = pair(o.padding, 0);
  const attrs = [
    g.ints('kernel_shape', k),
    g.ints('strides', pair(o.stride, 1)),
    g.ints('dilations', pair(o.dilation, 1)),
    g.ints('pads', [ph, pw, ph, pw]),
    g.int('group', o.groups ?? 1),
  ];
  const w = isQ ? dqWeight(g, m.weightQ, m.weightScale) : g.tensor('weight', m.weight);
  const xin = isQ ? qdqInput(g, x, m.inputQuant) : x;
  return g.node('Conv', m.bias ? [xin, w, g.tensor('bias', m.bias)] : [xin, w], attrs);
}

function batchNormOut(g: GraphBuilder, m: BatchNorm1d | BatchNorm2d, x: string): string {
  const C = m.numFeatures;
  const scale = m.weight
    ? g.tensor('bn_scale', m.weight)
    : g.init('bn_scale', [C], new Array<number>(C).fill(1), 'float32');
  const bias = m.bias ? g.tensor('bn_bias', m.bias) : g.init('bn_bias', [C], new Array<number>(C).fill(0), 'float32');
  return g.node(
    'BatchNormalization',
    [x, scale, bias, g.tensor('bn_mean', m.runningMean), g.tensor('bn_var', m.runningVar)],
    [g.float('epsilon', m.eps)],
  );
}

/** The child `name` of a composite layer, emitted. */
function emitChild(g: GraphBuilder, m: Module, name: string, x: string, path: string): string {
  const c = m.namedChildren().find(([n]) => n === name)![1];
  return emit(g, c, x, `${path}.${name}`);
}

/** A 1-element int64 initializer. */
const i64 = (g: GraphBuilder, v: number): string => g.init('i64', [1], [v], 'int64');

/** Dimension `axis` of x as a 1-element int64 tensor (from Shape, so the graph keeps a symbolic length). */
function dimOf(g: GraphBuilder, x: string, axis: number): string {
  return g.node('Gather', [g.node('Shape', [x]), i64(g, axis)], [g.int('axis', 0)]);
}

/** Self-attention in ONNX ops, batch first: projections, heads, masked softmax, merge, output projection. */
function attentionOut(g: GraphBuilder, m: MultiheadAttention, x: string, path: string): string {
  if (m.rotary)
    throw new ValidationError(`${path}: ONNX export does not cover rotary position embeddings in MultiheadAttention`);
  const H = m.numHeads,
    D = m.headDim;
  const xb = m.batchFirst ? x : g.node('Transpose', [x], [g.ints('perm', [1, 0, 2])]);
  const heads = (name: string, perm: number[]): string =>
    g.node(
      'Transpose',
      [g.node('Reshape', [emitChild(g, m, name, xb, path), g.init('shape', [4], [0, 0, H, D], 'int64')])],
      [g.ints('perm', perm)],
    );
  const q = heads('q_proj', [0, 2, 1, 3]),
    kt = heads('k_proj', [0, 2, 3, 1]),
    v = heads('v_proj', [0, 2, 1, 3]);
  let s = g.node('Mul', [g.node('MatMul', [q, kt]), g.init('scale', [], [1 / Math.sqrt(D)], 'float32')]);
  if (m.causal) {
    const range = (axis: number): string =>
      g.node('Range', [
        g.init('zero', [], [0], 'int64'),
        g.node('Squeeze', [dimOf(g, s, axis), i64(g, 0)]),
        g.init('one', [], [1], 'int64'),
      ]);
    const rows = g.node('Unsqueeze', [range(2), i64(g, 1)]),
      cols = g.node('Unsqueeze', [range(3), i64(g, 0)]);
    const allowed = g.node('LessOrEqual', [cols, rows]);
    s = g.node('Where', [allowed, s, g.init('neg_inf', [], [-Infinity], 'float32')]);
  }
  const o = g.node('MatMul', [g.node('Softmax', [s], [g.int('axis', -1)]), v]);
  const merged = g.node('Reshape', [
    g.node('Transpose', [o], [g.ints('perm', [0, 2, 1, 3])]),
    g.init('shape', [3], [0, 0, m.embedDim], 'int64'),
  ]);
  const y = emitChild(g, m, 'out_proj', merged, path);
  return m.batchFirst ? y : g.node('Transpose', [y], [g.ints('perm', [1, 0, 2])]);
}

/** A Transformer encoder layer: attention and feed-forward blocks with residuals and LayerNorms. */
function encoderOut(g: GraphBuilder, m: TransformerEncoderLayer, x: string, path: string): string {
  const sa = (h: string): string => emitChild(g, m, 'self_attn', h, path);
  const ff = (h: string): string => {
    const z = emitChild(g, m, 'linear1', h, path);
    return emitChild(g, m, 'linear2', EMITTERS[m.activation === 'relu' ? 'ReLU' : 'GELU'](g, m, z, path), path);
  };
  const norm = (n: string, h: string): string => emitChild(g, m, n, h, path);
  if (m.normFirst) {
    const h = g.node('Add', [x, sa(norm('norm1', x))]);
    return g.node('Add', [h, ff(norm('norm2', h))]);
  }
  const h = norm('norm1', g.node('Add', [x, sa(x)]));
  return norm('norm2', g.node('Add', [h, ff(h)]));
}

/** x plus rows [0, L) of a position table (L read from x's shape). */
function addPositions(g: GraphBuilder, x: string, table: string, batchFirst: boolean, d: number): string {
  const L = dimOf(g, x, batchFirst ? 1 : 0);
  let pe = g.node('Slice', [table, i64(g, 0), L, i64(g, 0)]);
  if (!batchFirst) pe = g.node('Reshape', [pe, g.init('shape', [3], [-1, 1, d], 'int64')]);
  return g.node('Add', [x, pe]);
}

/** Rows of a [k * H, ...] gate-stacked weight reordered by gate: block `perm[j]` of the source becomes block j. */
function gateRows(t: Tensor | null, perm: readonly number[], H: number, rowLen: number): number[] {
  if (!t) return new Array<number>(perm.length * H * rowLen).fill(0);
  const v = host(t);
  return perm.flatMap((k) => v.slice(k * H * rowLen, (k + 1) * H * rowLen));
}

/**
 * LSTM / GRU layers as ONNX LSTM / GRU nodes, one per layer: PyTorch's gate order (i, f, g, o and r, z, n)
 * reordered to ONNX's (i, o, f, c and z, r, h), GRU with linear_before_reset as PyTorch computes it, and the
 * [L, dirs, N, H] output folded to [L, N, dirs * H] for the next layer.
 */
function recurrentOut(g: GraphBuilder, m: LSTM | GRU, x: string, lstm: boolean): string {
  const H = m.hiddenSize,
    dirs = m.bidirectional ? 2 : 1,
    G = lstm ? 4 : 3;
  const perm = lstm ? [0, 3, 1, 2] : [1, 0, 2];
  let h = m.batchFirst ? g.node('Transpose', [x], [g.ints('perm', [1, 0, 2])]) : x;
  for (let l = 0; l < m.numLayers; l++) {
    const F = l === 0 ? m.inputSize : H * dirs;
    const ws = (m.bidirectional ? ['', '_reverse'] : ['']).map((sfx) => m.weightsOf(l, sfx));
    const W = g.init(
      'W',
      [dirs, G * H, F],
      ws.flatMap((w) => gateRows(w.wih, perm, H, F)),
      'float32',
    );
    const R = g.init(
      'R',
      [dirs, G * H, H],
      ws.flatMap((w) => gateRows(w.whh, perm, H, H)),
      'float32',
    );
    const B = g.init(
      'B',
      [dirs, 2 * G * H],
      ws.flatMap((w) => [...gateRows(w.bih, perm, H, 1), ...gateRows(w.bhh, perm, H, 1)]),
      'float32',
    );
    const attrs = [g.int('hidden_size', H), g.str('direction', m.bidirectional ? 'bidirectional' : 'forward')];
    if (!lstm) attrs.push(g.int('linear_before_reset', 1));
    const y = g.node(lstm ? 'LSTM' : 'GRU', [h, W, R, B], attrs);
    h = g.node('Reshape', [
      g.node('Transpose', [y], [g.ints('perm', [0, 2, 1, 3])]),
      g.init('shape', [3], [0, 0, dirs * H], 'int64'),
    ]);
  }
  return m.batchFirst ? g.node('Transpose', [h], [g.ints('perm', [1, 0, 2])]) : h;
}

/** One ONNX emitter per registered layer type (the type checker wants one for every LayerSpec type). */
const EMITTERS: { readonly [T in LayerSpec['type']]: Emitter } = {
  Sequential: (g, m, x, path) => (m as Sequential).layers.reduce((h, l, i) => emit(g, l, h, `${path}.${i}`), x),
  Linear: (g, m, x) => {
    const l = m as Linear;
    return linearOut(g, g.node('MatMul', [x, g.tensor('weight_t', l.weight.transpose().contiguous())]), l.bias);
  },
  QuantLinear: (g, m, x) => {
    const q = m as QuantLinear;
    const w = dqWeight(g, q.weightQ, q.weightScale);
    const wt = g.node('Transpose', [w], [g.ints('perm', [1, 0])]);
    return linearOut(g, g.node('MatMul', [qdqInput(g, x, q.inputQuant), wt]), q.bias);
  },
  Int4Linear: (g, m, x) => {
    // ONNX int4 needs opset 21; the weight goes out dequantized (float32)
    const q = m as Int4Linear;
    const w = q.dequantized();
    const wt = g.tensor('weight_t', w.transpose().contiguous());
    w.dispose();
    return linearOut(g, g.node('MatMul', [x, wt]), q.bias);
  },
  Conv2d: (g, m, x) => convOut(g, m as Conv2d, x),
  QuantConv2d: (g, m, x) => convOut(g, m as QuantConv2d, x),
  MaxPool2d: (g, m, x) => {
    const p = m as MaxPool2d;
    const k = pair(p.kernelSize as number | Pair, 1);
    const [ph, pw] = pair(p.opts.padding as number | Pair | undefined, 0);
    return g.node(
      'MaxPool',
      [x],
      [
        g.ints('kernel_shape', k),
        g.ints('strides', pair((p.opts.stride ?? p.kernelSize) as number | Pair, 1)),
        g.ints('pads', [ph, pw, ph, pw]),
      ],
    );
  },
  Flatten: (g, m, x, path) => {
    const f = m as Flatten;
    if (f.startAxis !== 1 || f.endAxis !== -1)
      throw new ValidationError(
        `${path}: ONNX export supports Flatten(1, -1) only, got Flatten(${f.startAxis}, ${f.endAxis})`,
      );
    return g.node('Flatten', [x], [g.int('axis', 1)]);
  },
  ReLU: (g, _m, x) => g.node('Relu', [x]),
  Sigmoid: (g, _m, x) => g.node('Sigmoid', [x]),
  Tanh: (g, _m, x) => g.node('Tanh', [x]),
  GELU: (g, _m, x) => {
    // exact GELU: 0.5 x (1 + erf(x / sqrt 2))
    const e = g.node('Erf', [g.node('Div', [x, g.init('sqrt2', [], [Math.SQRT2], 'float32')])]);
    const one = g.node('Add', [e, g.init('one', [], [1], 'float32')]);
    return g.node('Mul', [g.node('Mul', [x, one]), g.init('half', [], [0.5], 'float32')]);
  },
  Dropout: (g, _m, x) => g.node('Identity', [x]),
  BatchNorm1d: (g, m, x) => batchNormOut(g, m as BatchNorm1d, x),
  BatchNorm2d: (g, m, x) => batchNormOut(g, m as BatchNorm2d, x),
  LayerNorm: (g, m, x) => {
    const l = m as LayerNorm;
    const shape = l.normalizedShape;
    const n = shape.reduce((a, b) => a * b, 1);
    const scale = l.weight
      ? g.tensor('ln_scale', l.weight)
      : g.init('ln_scale', shape, new Array<number>(n).fill(1), 'float32');
    const bias = l.bias
      ? g.tensor('ln_bias', l.bias)
      : g.init('ln_bias', shape, new Array<number>(n).fill(0), 'float32');
    return g.node(
      'LayerNormalization',
      [x, scale, bias],
      [g.int('axis', -shape.length), g.float('epsilon', l.opts.eps ?? 1e-5)],
    );
  },
  GroupNorm: (g, m, x) => {
    // [N, G, rest] through InstanceNormalization (per example and group), back to x's shape, then the
    // per-channel affine as a BatchNormalization with mean 0, variance 1 and epsilon 0 (any rank, channel axis 1)
    const l = m as GroupNorm;
    const G = l.numGroups,
      C = l.numChannels;
    const grouped = g.node('Reshape', [x, g.init('shape', [3], [0, G, -1], 'int64')]);
    const normed = g.node(
      'InstanceNormalization',
      [
        grouped,
        g.init('gn_ones', [G], new Array<number>(G).fill(1), 'float32'),
        g.init('gn_zeros', [G], new Array<number>(G).fill(0), 'float32'),
      ],
      [g.float('epsilon', l.eps)],
    );
    const y = g.node('Reshape', [normed, g.node('Shape', [x])]);
    if (!l.weight || !l.bias) return y;
    return g.node(
      'BatchNormalization',
      [
        y,
        g.tensor('gn_scale', l.weight),
        g.tensor('gn_bias', l.bias),
        g.init('gn_mean', [C], new Array<number>(C).fill(0), 'float32'),
        g.init('gn_var', [C], new Array<number>(C).fill(1), 'float32'),
      ],
      [g.float('epsilon', 0)],
    );
  },
  Conv1d: (g, m, x) => {
    const c = m as Conv1d;
    const attrs = [
      g.ints('kernel_shape', [c.kernelSize]),
      g.ints('strides', [c.stride]),
      g.ints('dilations', [c.dilation]),
      g.ints('pads', [c.padding, c.padding]),
      g.int('group', c.groups),
    ];
    const w = g.tensor('weight', c.weight);
    return g.node('Conv', c.bias ? [x, w, g.tensor('bias', c.bias)] : [x, w], attrs);
  },
  AvgPool2d: (g, m, x) => {
    const p = m as AvgPool2d;
    const [ph, pw] = pair(p.opts.padding as number | Pair | undefined, 0);
    return g.node(
      'AveragePool',
      [x],
      [
        g.ints('kernel_shape', pair(p.kernelSize as number | Pair, 1)),
        g.ints('strides', pair((p.opts.stride ?? p.kernelSize) as number | Pair, 1)),
        g.ints('pads', [ph, pw, ph, pw]),
        g.int('count_include_pad', (p.opts.countIncludePad ?? true) ? 1 : 0),
      ],
    );
  },
  Upsample: (g, m, x) => {
    // PyTorch's mapping: nearest is 'asymmetric' with floor, bilinear 'pytorch_half_pixel' (or 'align_corners');
    // a scale factor goes as Resize's scales, a size as its sizes (batch and channels read from x)
    const u = m as Upsample;
    const attrs =
      u.mode === 'nearest'
        ? [
            g.str('mode', 'nearest'),
            g.str('coordinate_transformation_mode', 'asymmetric'),
            g.str('nearest_mode', 'floor'),
          ]
        : [
            g.str('mode', 'linear'),
            g.str('coordinate_transformation_mode', u.alignCorners ? 'align_corners' : 'pytorch_half_pixel'),
          ];
    if (u.scaleFactor !== null)
      return g.node('Resize', [x, '', g.init('scales', [4], [1, 1, ...u.scaleFactor], 'float32')], attrs);
    const nc = g.node('Slice', [g.node('Shape', [x]), i64(g, 0), i64(g, 2)]);
    const sizes = g.node('Concat', [nc, g.init('hw', [2], [...u.size!], 'int64')], [g.int('axis', 0)]);
    return g.node('Resize', [x, '', '', sizes], attrs);
  },
  AdaptiveAvgPool2d: (g, m, x, path) => {
    const [oh, ow] = (m as AdaptiveAvgPool2d).outputSize;
    if (oh !== 1 || ow !== 1)
      throw new ValidationError(`${path}: ONNX export covers AdaptiveAvgPool2d(1) only, got [${oh}, ${ow}]`);
    return g.node('GlobalAveragePool', [x]);
  },
  GlobalAvgPool2d: (g, _m, x) => g.node('Flatten', [g.node('GlobalAveragePool', [x])], [g.int('axis', 1)]),
  SequencePool: (g, m, x) => {
    const p = m as SequencePool;
    const ax = p.batchFirst ? 1 : 0;
    if (p.mode === 'mean' || p.mode === 'max')
      return g.node(p.mode === 'mean' ? 'ReduceMean' : 'ReduceMax', [x], [g.ints('axes', [ax]), g.int('keepdims', 0)]);
    return g.node('Gather', [x, g.init('at', [], [p.mode === 'first' ? 0 : -1], 'int64')], [g.int('axis', ax)]);
  },
  Residual: (g, m, x, path) => {
    const r = m as Residual;
    const y = emitChild(g, r, 'body', x, path);
    return g.node('Add', [y, r.shortcut ? emitChild(g, r, 'shortcut', x, path) : x]);
  },
  MultiheadAttention: (g, m, x, path) => attentionOut(g, m as MultiheadAttention, x, path),
  TransformerEncoderLayer: (g, m, x, path) => encoderOut(g, m as TransformerEncoderLayer, x, path),
  TransformerDecoderLayer: (_g, _m, _x, path) => {
    throw new ValidationError(
      `${path}: a TransformerDecoderLayer needs the encoder output as a second input, which a one-input ONNX graph lacks`,
    );
  },
  Graph: (g, m, x, path) => {
    const gr = m as Graph;
    const vals: string[] = [];
    const layers = gr.layers;
    gr.nodes.forEach((n, i) => {
      if (n.op === 'input') vals[i] = x;
      else if (n.op === 'layer') vals[i] = emit(g, layers[n.layer]!, vals[n.inputs[0]]!, `${path}.${n.layer}`);
      else if (n.op === 'concat')
        vals[i] = g.node(
          'Concat',
          n.inputs.map((k) => vals[k]!),
          [g.int('axis', n.axis)],
        );
      else
        vals[i] = n.inputs
          .slice(1)
          .reduce((acc, k) => g.node(n.op === 'add' ? 'Add' : 'Mul', [acc, vals[k]!]), vals[n.inputs[0]!]!);
    });
    return vals[gr.outputNode]!;
  },
  LSTM: (g, m, x) => recurrentOut(g, m as LSTM, x, true),
  GRU: (g, m, x) => recurrentOut(g, m as GRU, x, false),
  SinusoidalPositionalEncoding: (g, m, x) => {
    const p = m as SinusoidalPositionalEncoding;
    return addPositions(g, x, g.init('pe', [p.maxLen, p.dModel], p.table(p.maxLen), 'float32'), p.batchFirst, p.dModel);
  },
  LearnedPositionalEmbedding: (g, m, x) => {
    const p = m as LearnedPositionalEmbedding;
    return addPositions(g, x, g.tensor('pos', p.weight), p.batchFirst, p.dModel);
  },
  Embedding: (g, m, x) => g.node('Gather', [g.tensor('embedding', (m as Embedding).weight), x], [g.int('axis', 0)]),
};

function emit(g: GraphBuilder, m: Module, x: string, path: string): string {
  // the registry's exact class: a subclass may override forward, so it is not exported as its parent
  const type = layerOf(m)?.type;
  if (type === undefined)
    throw new ValidationError(
      `${path} is a ${m.constructor.name}, which ONNX export does not support (it covers kiln's standard and quantized layers)`,
    );
  return EMITTERS[type](g, m, x, path);
}

const ONNX_OPTIONS = optionKeys<OnnxExportOptions>({ inputShape: true, inputDtype: true, name: true });

function checkOnnxOptions(opts: OnnxExportOptions, where: string): void {
  checkOptions(opts, where, ONNX_OPTIONS);
  if (opts.inputDtype !== undefined && opts.inputDtype !== 'float32' && opts.inputDtype !== 'int32')
    throw new ArgumentError(`${where}: inputDtype must be 'float32' or 'int32', got ${describe(opts.inputDtype)}`);
  if (opts.name !== undefined && (typeof opts.name !== 'string' || opts.name === ''))
    throw new ArgumentError(`${where}: name must be a non-empty string, got ${describe(opts.name)}`);
}

/** The ONNX model (bytes) for a kiln model. */
export function toOnnx(model: Module, opts: OnnxExportOptions = {}): Uint8Array {
  checkOnnxOptions(opts, 'toOnnx');
  if (!(model instanceof Module)) throw new ArgumentError(`exportOnnx takes a kn.nn.Module, got ${describe(model)}`);
  const inputShape = opts.inputShape ?? inferInputShape(model);
  if (!inputShape || !Array.isArray(inputShape) || inputShape.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new ArgumentError(`exportOnnx needs inputShape (one example, no batch dim), got ${describe(inputShape)}`);
  }
  const was = model.training;
  model.eval();
  try {
    const g = new GraphBuilder();
    const out = emit(g, model, 'input', 'model');
    g.nodes.push({ opType: 'Identity', input: [out], output: ['output'], name: 'n_output' });
    const T = g.onnx.TensorProto.DataType;
    const elem = opts.inputDtype === 'int32' ? T.INT32 : T.FLOAT;
    const m = g.onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'kiln',
      producerVersion: '0.1.0',
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: opts.name ?? 'kiln',
        node: g.nodes,
        initializer: g.inits,
        input: [
          {
            name: 'input',
            type: {
              tensorType: {
                elemType: elem,
                shape: { dim: [{ dimParam: 'batch' }, ...inputShape.map((d) => ({ dimValue: d }))] },
              },
            },
          },
        ],
        output: [{ name: 'output', type: { tensorType: { elemType: T.FLOAT } } }],
      },
    });
    return g.onnx.ModelProto.encode(m).finish();
  } finally {
    model.train(was);
  }
}

/**
 * Writes `model` as an ONNX file (atomically). Float layers export as their ONNX ops, int8 layers in QDQ form.
 */
export async function exportOnnx(model: Module, path: string, opts: OnnxExportOptions = {}): Promise<void> {
  checkOnnxOptions(opts, 'exportOnnx');
  if (typeof path !== 'string' || path === '')
    throw new ArgumentError(`exportOnnx needs a file path, got ${describe(path)}`);
  await writeFileAtomic(path, [toOnnx(model, opts)]);
}
