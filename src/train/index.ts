// kn.train: the training loop, the pre-training sanity checks and knowledge distillation.
export {
  fit,
  evaluate,
  type FitOptions,
  type FitResult,
  type FitProfileOptions,
  type EpochLog,
  type EarlyStopping,
  type LossFn,
  type MetricName,
} from './fit.js';
export * as checks from './checks.js';
export { distill, Distiller } from './distill.js';
