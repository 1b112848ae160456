// Host-side inputs of evaluation and explanation: numbers from tensors or arrays (with their shape), and a
// predictor (a Module or a function) run without recording a graph.
import { noGrad } from '../autograd/tape.js';
import { ArgumentError, ShapeError, ValidationError, describe } from '../errors.js';
import { inEvalMode, type Module } from '../nn/module.js';
import { isTensor, type Tensor } from '../tensor/tensor.js';

/** Numbers: a Tensor, a typed array or a number array. */
export type Values = Tensor | ArrayLike<number>;
/** A model or any function from a batch of inputs to a batch of outputs (logits or scores). */
export type Predictor = Module | ((x: Tensor) => Tensor);

/** Host copy of a tensor or array, with its shape ([n] for arrays). */
export function hostValues(
  x: Values | readonly (readonly number[])[],
  what: string,
): { v: Float64Array; shape: number[] } {
  if (isTensor(x)) {
    x.assertAlive(what);
    return { v: Float64Array.from(x.toArray() as ArrayLike<number>), shape: [...x.shape] };
  }
  if (x === null || typeof x !== 'object' || typeof (x as ArrayLike<unknown>).length !== 'number')
    throw new ArgumentError(`${what} must be a Tensor or an array of numbers, got ${describe(x)}`);
  const a = x as ArrayLike<number | readonly number[]>;
  if (a.length > 0 && Array.isArray(a[0])) {
    const rows = a as ArrayLike<readonly number[]>;
    const c = rows[0]!.length;
    const v = new Float64Array(rows.length * c);
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      if (!Array.isArray(r) || r.length !== c)
        throw new ShapeError(`${what} must be rectangular: row ${i} has ${describe(r)} entries, row 0 has ${c}`);
      for (let j = 0; j < c; j++) v[i * c + j] = num(r[j], `${what}[${i}][${j}]`);
    }
    return { v, shape: [rows.length, c] };
  }
  const v = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) v[i] = num(a[i], `${what}[${i}]`);
  return { v, shape: [a.length] };
}

function num(x: unknown, what: string): number {
  if (typeof x !== 'number' || Number.isNaN(x))
    throw new ValidationError(`${what} must be a number, got ${describe(x)}`);
  return x;
}

/** Runs a predictor without recording a graph (a Module in eval mode, restored afterwards). */
export function runPredictor(model: Predictor, x: Tensor): Tensor {
  if (typeof model === 'function') return noGrad(() => model(x));
  if (model === null || typeof model !== 'object' || typeof (model as Module).call !== 'function')
    throw new ArgumentError(`model must be a kn.nn.Module or a function (x) => Tensor, got ${describe(model)}`);
  return inEvalMode(model, () => noGrad(() => model.call(x)));
}
