// fit's loss argument: a function of (output, target) or the name of a built-in loss.
import { ArgumentError, describe } from '../errors.js';
import { bce, bceWithLogits, crossEntropy, mse } from '../nn/loss.js';
import type { Tensor } from '../tensor/tensor.js';

/** A loss: (model output, target) -> scalar tensor, or the name of a built-in one. */
export type LossFn = ((output: Tensor, target: Tensor) => Tensor) | 'crossEntropy' | 'mse' | 'bce' | 'bceWithLogits';

/** A loss function from a LossFn (a built-in name; crossEntropy with class weights when given). */
export function lossFn(l: LossFn, weight: Tensor | null = null): (o: Tensor, t: Tensor) => Tensor {
  if (typeof l === 'function') return l;
  switch (l) {
    case 'crossEntropy':
      return (o, t) => crossEntropy(o, t, { weight });
    case 'mse':
      return (o, t) => mse(o, t);
    case 'bce':
      return (o, t) => bce(o, t);
    case 'bceWithLogits':
      return (o, t) => bceWithLogits(o, t);
    default:
      throw new ArgumentError(
        `loss must be a function or one of crossEntropy, mse, bce, bceWithLogits; got ${describe(l)}`,
      );
  }
}
