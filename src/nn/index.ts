// kn.nn: modules, layers, initialisers and losses.
export { Module, type StateDict } from './module.js';
export {
  Linear,
  Conv2d,
  MaxPool2d,
  Flatten,
  ReLU,
  GELU,
  Tanh,
  Sigmoid,
  Dropout,
  Embedding,
  BatchNorm1d,
  BatchNorm2d,
  LayerNorm,
  GroupNorm,
  Sequential,
  layerNormFn as layerNorm,
  type LayerOptions,
  type BatchNormOptions,
  type Conv2dLayerOptions,
} from './layers.js';
export {
  MultiheadAttention,
  TransformerEncoderLayer,
  TransformerDecoderLayer,
  SinusoidalPositionalEncoding,
  LearnedPositionalEmbedding,
  scaledDotProductAttention,
  applyRotary,
  type AttentionOptions,
  type MultiheadAttentionOptions,
  type MultiheadMasks,
  type TransformerLayerOptions,
} from './attention.js';
export {
  Conv1d,
  AvgPool2d,
  AdaptiveAvgPool2d,
  GlobalAvgPool2d,
  SequencePool,
  Residual,
  Upsample,
  interpolate,
  type Conv1dLayerOptions,
  type SequencePoolMode,
  type InterpolateMode,
  type InterpolateOptions,
} from './pooling.js';
export { LSTM, GRU, type RecurrentOptions, type RecurrentInput, type RecurrentOutput } from './recurrent.js';
export { Graph, GraphValue, type GraphNode } from './graph.js';
export * as init from './init.js';
export * as loss from './loss.js';
export type { InitName } from './init.js';
export { toSpec, fromSpec, cloneModule, inferInputShape, takesIds, SPEC_METADATA_KEY, type LayerSpec } from './spec.js';
