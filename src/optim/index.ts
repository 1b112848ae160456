// kn.optim: optimizers (fused native update kernels), gradient clipping and learning-rate schedules.
export { Optimizer, type OptimizerState } from './optimizer.js';
export { SGD, type SGDOptions } from './sgd.js';
export { Adam, AdamW, type AdamOptions } from './adam.js';
export { clipGradNorm, gradNorm } from './clip.js';
export { LRScheduler, StepLR, CosineLR, WarmupLR } from './schedulers.js';
