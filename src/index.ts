/**
 * kiln: machine learning for Node.js with native kernels.
 * @example
 * import * as kn from 'kiln';
 * kn.seed(0);
 * const x = kn.randn([4, 3]), w = kn.randn([3, 2]), loss = x.matmul(w).relu().sum();
 * @packageDocumentation
 */
// attaches the op methods to Tensor first (the ops import no tensor method at load time)
import './tensor/methods.js';
export {
  KilnError,
  ShapeError,
  DTypeError,
  BackendError,
  FormatError,
  ValidationError,
  ArgumentError,
  DistributedError,
  TrackingError,
} from './errors.js';
export { Tensor, isTensor, type AxisArg } from './tensor/tensor.js';
export type { TensorLike } from './ops/define.js';
export type { BinaryOp } from './ops/elementwise.js';
export type { NestedArray } from './ops/creation.js';
export type { Pair } from './ops/conv.js';
export type { OpSpec, Spec, OpFamily, KernelDTypes, OutRule, FixedDType } from './ops/table.js';
export type { DType, HostArray } from './tensor/dtype.js';
export type { BackendName } from './backends/backend.js';
export { setBackend, getBackend, backends, ready, emptyCache } from './backends/registry.js';
export { tidy, keep, memory, resetPeakMemory, type MemoryInfo } from './engine/memory.js';
export { noGrad } from './autograd/tape.js';
export { backward, grad, type BackwardOptions } from './autograd/backward.js';
export { vjp, jvp, jacobian, hessian, hvp, checkpoint, type FunctionalOptions } from './autograd/functional.js';
export { gradcheck, gradgradcheck, type GradcheckOptions, type GradcheckResult } from './autograd/gradcheck.js';
export {
  tensor,
  zeros,
  ones,
  full,
  zerosLike,
  onesLike,
  arange,
  type TensorOptions,
  rand,
  randn,
  randint,
  seed,
  lastSeed,
  getRngState,
  setRngState,
  add,
  sub,
  mul,
  div,
  neg,
  abs,
  sign,
  exp,
  log,
  sqrt,
  pow,
  tanh,
  sigmoid,
  relu,
  gelu,
  silu,
  clamp,
  cast,
  maximum,
  minimum,
  eq,
  ne,
  lt,
  le,
  gt,
  ge,
  where,
  biasAct,
  type FusedActivation,
  sum,
  mean,
  max,
  min,
  argmax,
  argmin,
  variance as var,
  softmax,
  logSoftmax,
  nanQuantile,
  nanColumnStats,
  rowHash,
  matmul,
  conv2d,
  maxPool2d,
  avgPool2d,
  type Conv2dOptions,
  type Pool2dOptions,
  qconv2dInt8,
  qlinearInt4,
  qlinearInt8,
  type ActivationQuant,
  type QConv2dOptions,
  reshape,
  transpose,
  permute,
  slice,
  concat,
  stack,
  gather,
  expand,
  squeeze,
  unsqueeze,
  flatten,
  contiguous,
  clone,
} from './ops/index.js';
export { info, type KilnInfo } from './info.js';
export * as nn from './nn/index.js';
export * as models from './models/index.js';
export * as optim from './optim/index.js';
export * as metrics from './metrics/index.js';
export * as evaluate from './evaluate/index.js';
export * as explain from './explain/index.js';
export * as track from './track/index.js';
export * as registry from './track/registry.js';
export * as io from './io/index.js';
export * as data from './data/index.js';
export * as train from './train/index.js';
export * as serve from './serve/index.js';
export * as quant from './quant/index.js';
export * as prune from './prune/index.js';
export * as distributed from './distributed/index.js';
export * from './profile/index.js';
export { OP_TABLE } from './ops/table.js';
