// Host-side inputs of evaluation and explanation: numbers from tensors or arrays (with their shape, read by
// hostValues in metrics/labels.ts), and a predictor (a Module or a function) run without recording a graph.
import { noGrad } from '../autograd/tape.js';
import { ArgumentError, describe } from '../errors.js';
import { inEvalMode, type Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';

export { hostValues } from '../metrics/labels.js';

/** Numbers: a Tensor, a typed array or a number array. */
export type Values = Tensor | ArrayLike<number>;
/** A model or any function from a batch of inputs to a batch of outputs (logits or scores). */
export type Predictor = Module | ((x: Tensor) => Tensor);

/** Runs a predictor without recording a graph (a Module in eval mode, restored afterwards). */
export function runPredictor(model: Predictor, x: Tensor): Tensor {
  if (typeof model === 'function') return noGrad(() => model(x));
  if (model === null || typeof model !== 'object' || typeof (model as Module).call !== 'function')
    throw new ArgumentError(`model must be a kn.nn.Module or a function (x) => Tensor, got ${describe(model)}`);
  return inEvalMode(model, () => noGrad(() => model.call(x)));
}
