// Estimated floating-point operations of one kernel call, from its op, input shapes and output shape. A
// multiply-add counts 2 (as GFLOP/s figures everywhere do); elementwise arithmetic counts 1 per output element;
// transcendental functions count a fixed small cost per element (what their polynomial kernels spend, roughly);
// data movement, casts, fills and random numbers count 0 (their cost is bytes, reported separately).
import type { OpName } from '../ops/table.js';

const numel = (s: readonly number[] | undefined): number => (s ? s.reduce((a, b) => a * b, 1) : 0);

/** Per-element cost of the elementwise ops that are not one arithmetic instruction. */
const ELEMENT_COST: Partial<Record<OpName, number>> = {
  exp: 10,
  log: 10,
  sqrt: 1,
  tanh: 12,
  sigmoid: 12,
  gelu: 16,
  silu: 12,
  pow: 20,
  div: 1,
  geluGrad: 24,
  reluGrad: 1,
  clamp: 2,
  biasAct: 2,
  where: 1,
};

const ZERO = new Set<OpName>([
  'fill',
  'arange',
  'cast',
  'copy',
  'concat',
  'gather',
  'randomUniform',
  'randomNormal',
  'randomInt',
  'rowHash',
]);

/**
 * Estimated FLOPs of one call of `op` with these input shapes and output shape (attrs as the op table lays
 * them out). Used by kn.profile for achieved GFLOP/s; an estimate, not a count of instructions.
 */
export function estimateFlops(
  op: OpName,
  inputs: readonly (readonly number[])[],
  out: readonly number[],
  attrs: readonly number[],
): number {
  if (ZERO.has(op)) return 0;
  const n = numel(out);
  switch (op) {
    case 'matmul':
    case 'matmulBf16': {
      const a = inputs[0] ?? [];
      return 2 * n * (a[a.length - 1] ?? 0);
    }
    case 'qlinearInt8':
    case 'qlinearInt4': {
      const x = inputs[0] ?? [];
      return 2 * n * (x[x.length - 1] ?? 0);
    }
    case 'conv2d': {
      // w [O, C/g, KH, KW]: each output element is C/g*KH*KW multiply-adds
      const w = inputs[1] ?? [];
      return 2 * n * numel(w.slice(1));
    }
    case 'conv2dBackwardInput': {
      // (grad [N, O, OH, OW], w [O, C/g, KH, KW]): the forward's multiply-adds, transposed
      const w = inputs[1] ?? [];
      return 2 * numel(inputs[0]) * numel(w.slice(1));
    }
    case 'conv2dBackwardWeight': {
      // (x, grad [N, O, OH, OW]) -> [O, C/g, KH, KW]
      return 2 * numel(inputs[1]) * numel(out.slice(1));
    }
    case 'maxPool2d':
    case 'avgPool2d':
      return n * (attrs[0] ?? 1) * (attrs[1] ?? 1);
    case 'maxPool2dBackward':
    case 'avgPool2dBackward':
      return numel(inputs[inputs.length - 1]) * (attrs[0] ?? 1) * (attrs[1] ?? 1);
    case 'sum':
    case 'max':
    case 'min':
    case 'argmax':
    case 'argmin':
    case 'scatterAdd':
      return numel(inputs[0]);
    case 'softmax':
    case 'logSoftmax':
    case 'softmaxCrossEntropy':
    case 'softmaxCrossEntropyBackward':
      return 14 * numel(inputs[0]);
    case 'nanQuantile':
    case 'nanColumnStats':
      return 5 * numel(inputs[0]);
    case 'adamStep':
      return 14 * numel(inputs[0]);
    case 'adamStepMulti':
      return 14 * inputs.reduce((s, shape, i) => s + (i % 4 === 0 ? numel(shape) : 0), 0);
    case 'sgdStep':
      return 5 * numel(inputs[0]);
    case 'sgdStepMulti':
      return 5 * inputs.reduce((s, shape, i) => s + (i % 3 === 0 ? numel(shape) : 0), 0);
    default:
      return n * (ELEMENT_COST[op] ?? 1);
  }
}
