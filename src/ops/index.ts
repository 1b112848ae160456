// Every op function. Importing this module also attaches the op methods to Tensor (src/tensor/methods.ts).
import '../tensor/methods.js';
export * from './creation.js';
export * from './elementwise.js';
export {
  sum,
  mean,
  max,
  min,
  argmax,
  argmin,
  variance,
  softmax,
  logSoftmax,
  sumTo,
  nanQuantile,
  nanColumnStats,
  rowHash,
} from './reduce.js';
export * from './movement.js';
export { matmul } from './matmul.js';
export { conv2d, maxPool2d, avgPool2d, type Conv2dOptions, type Pool2dOptions, type Pair } from './conv.js';
export * from './random.js';
export { qconv2dInt8, qlinearInt4, qlinearInt8, type ActivationQuant, type QConv2dOptions } from './quant.js';
