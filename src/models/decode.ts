// Incremental decoding for kn.models.generate: a KV cache over a language model built of layers that either
// work position by position (embeddings, Linear and its quantized forms, LayerNorm, activations, Dropout in
// eval) or are causal self-attention (TransformerEncoderLayer), such as charLM. Each attention layer keeps the
// keys and values of every position decoded so far, so a new token costs one position's work, not the whole
// context's: the prompt runs once, then each step feeds only the token it sampled.
import { withGrad } from '../autograd/tape.js';
import { ShapeError } from '../errors.js';
import { tensor } from '../ops/creation.js';
import {
  LearnedPositionalEmbedding,
  SinusoidalPositionalEncoding,
  TransformerEncoderLayer,
  type KVCache,
} from '../nn/attention.js';
import { Dropout, Embedding, GELU, LayerNorm, Linear, ReLU, Sequential, Sigmoid, Tanh } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import { Int4Linear, QuantLinear } from '../quant/layers.js';
import type { Tensor } from '../tensor/tensor.js';

type PositionTable = LearnedPositionalEmbedding | SinusoidalPositionalEncoding;
type Stage =
  | { kind: 'pointwise'; m: Module }
  | { kind: 'position'; m: PositionTable }
  | { kind: 'attention'; m: TransformerEncoderLayer; cache: KVCache };

/**
 * Layers whose output at a position depends on that position's input only. Exact classes: a subclass may
 * override forward with anything. QuantLinear quantizes dynamic inputs per row, so it is one of them.
 */
const POINTWISE: ReadonlySet<unknown> = new Set([
  Embedding,
  Linear,
  QuantLinear,
  Int4Linear,
  LayerNorm,
  Dropout,
  ReLU,
  GELU,
  Tanh,
  Sigmoid,
]);

/** Layers indexed by absolute position: they bound a model's context and take forwardAt(x, from). */
const POSITION_TABLES = [LearnedPositionalEmbedding, SinusoidalPositionalEncoding] as const;

/** @internal Whether `m` is a position table or a subclass of one (then its maxLen bounds the context). */
export function isPositionTable(m: Module): m is PositionTable {
  return POSITION_TABLES.some((C) => m instanceof C);
}

/** @internal A KV-cached decoder over one model (see the file comment). Call dispose() when done. */
export class KVDecoder {
  /** Positions decoded so far. */
  length = 0;
  private constructor(private readonly stages: readonly Stage[]) {}

  /**
   * A decoder for `model` (in eval mode), or null when some layer is not one it can run a position at a time
   * with the same result: then the caller runs the whole context each step.
   */
  static for(model: Module): KVDecoder | null {
    const stages: Stage[] = [];
    const walk = (m: Module): boolean => {
      const c = m.constructor;
      if (Object.prototype.hasOwnProperty.call(m, 'forward')) return false; // a forward replaced on the instance
      if (c === Sequential) return m.children().every(walk);
      if (POINTWISE.has(c)) stages.push({ kind: 'pointwise', m });
      else if (POSITION_TABLES.some((C) => c === C)) {
        const p = m as PositionTable;
        if (!p.batchFirst) return false;
        stages.push({ kind: 'position', m: p });
      } else if (c === TransformerEncoderLayer) {
        const t = m as TransformerEncoderLayer;
        if (!t.cacheable) return false;
        stages.push({ kind: 'attention', m: t, cache: { k: null, v: null, length: 0 } });
      } else return false;
      return true;
    };
    if (model.training || !walk(model)) return null;
    return new KVDecoder(stages);
  }

  /**
   * Runs the next tokens `ids` (positions length..length+L-1) through the model and returns its output for
   * them ([1, L, ...], the logits of a language model), without recording gradients; every attention layer's
   * cache grows by L.
   */
  step(ids: readonly number[]): Tensor {
    // no graph: a cached key recorded for autograd would chain every step's graph to the next
    return withGrad(false, () => this.run(ids));
  }

  private run(ids: readonly number[]): Tensor {
    const from = this.length;
    let h = tensor(Int32Array.from(ids), [1, ids.length]);
    for (const s of this.stages) {
      if (s.kind === 'pointwise') h = s.m.call(h);
      else if (s.kind === 'position') h = s.m.forwardAt(h, from);
      else {
        if (s.cache.length !== from)
          throw new ShapeError(`KV cache holds ${s.cache.length} positions, the decoder ${from}`);
        h = s.m.encodeCached(h, s.cache);
      }
    }
    this.length = from + ids.length;
    return h;
  }

  /** Frees every cached key and value. */
  dispose(): void {
    for (const s of this.stages) {
      if (s.kind !== 'attention') continue;
      s.cache.k?.dispose();
      s.cache.v?.dispose();
      Object.assign(s.cache, { k: null, v: null, length: 0 });
    }
    this.length = 0;
  }
}
