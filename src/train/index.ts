// kn.train: the training loop and the pre-training sanity checks.
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
