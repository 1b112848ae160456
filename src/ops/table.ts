/**
 * The single list of kernel-level ops. Everything else derives from it:
 * `native/include/kiln/op_ids.h` is generated from this table (`npm run gen`), the addon reports its own
 * op names at load time and the binding refuses to run if they differ, and the test suite checks that every
 * op with a kernel has one on every backend.
 *
 * `attrs` are passed to kernels as a Float64Array in exactly this order.
 * `dtypes`: which input dtypes the kernel takes natively. 'float' = float32 only (others are promoted by the
 * dispatcher), 'numeric' = float32 and int32, 'any' = every storage dtype.
 */
export type OpFamily = 'elementwise' | 'reduce' | 'matmul' | 'conv' | 'movement' | 'random';
export type KernelDTypes = 'float' | 'numeric' | 'any';

export interface OpSpec {
  readonly name: string;
  readonly family: OpFamily;
  /** Number of tensor inputs; -1 = variadic (at least one). */
  readonly inputs: number;
  readonly attrs: readonly string[];
  readonly dtypes: KernelDTypes;
}

export type Spec<N extends string> = OpSpec & { readonly name: N };
const op = <N extends string>(name: N, family: OpFamily, inputs: number, attrs: readonly string[], dtypes: KernelDTypes): Spec<N> =>
  ({ name, family, inputs, attrs, dtypes });

const unaryF = <N extends string>(name: N): Spec<N> => op(name, 'elementwise', 1, [], 'float');
const unaryN = <N extends string>(name: N): Spec<N> => op(name, 'elementwise', 1, [], 'numeric');
const binaryN = <N extends string>(name: N): Spec<N> => op(name, 'elementwise', 2, [], 'numeric');
const binaryF = <N extends string>(name: N): Spec<N> => op(name, 'elementwise', 2, [], 'float');
const compare = <N extends string>(name: N): Spec<N> => op(name, 'elementwise', 2, [], 'numeric');
const RNG = ['key0', 'key1', 'ctrLo', 'ctrHi'] as const;
const CONV = ['strideH', 'strideW', 'padH', 'padW', 'dilationH', 'dilationW', 'groups'] as const;
const POOL = ['kernelH', 'kernelW', 'strideH', 'strideW', 'padH', 'padW'] as const;

export const OP_TABLE = [
  // creation
  op('fill', 'elementwise', 0, ['value'], 'any'),
  op('arange', 'elementwise', 0, ['start', 'step'], 'numeric'),
  // elementwise, unary
  unaryN('neg'), unaryN('abs'), unaryN('sign'), unaryN('relu'),
  unaryF('exp'), unaryF('log'), unaryF('sqrt'), unaryF('tanh'), unaryF('sigmoid'), unaryF('gelu'),
  op('clamp', 'elementwise', 1, ['min', 'max'], 'numeric'),
  op('cast', 'elementwise', 1, [], 'any'),
  // elementwise, binary (inputs arrive already broadcast to the output shape, as stride-0 views)
  binaryN('add'), binaryN('sub'), binaryN('mul'), binaryF('div'), binaryF('pow'),
  binaryN('maximum'), binaryN('minimum'),
  compare('eq'), compare('ne'), compare('lt'), compare('le'), compare('gt'), compare('ge'),
  binaryF('geluGrad'),
  op('where', 'elementwise', 3, [], 'any'),
  // reductions (input contiguous; reduce over the axis range [axisStart, axisEnd))
  op('sum', 'reduce', 1, ['axisStart', 'axisEnd'], 'numeric'),
  op('max', 'reduce', 1, ['axisStart', 'axisEnd'], 'numeric'),
  op('min', 'reduce', 1, ['axisStart', 'axisEnd'], 'numeric'),
  op('argmax', 'reduce', 1, ['axis'], 'numeric'),
  op('argmin', 'reduce', 1, ['axis'], 'numeric'),
  op('softmax', 'reduce', 1, ['axis'], 'float'),
  op('logSoftmax', 'reduce', 1, ['axis'], 'float'),
  // matmul: a [...batch, M, K] x b [...batch, K, N]; batch dims already broadcast; last two dims may be transposed
  op('matmul', 'matmul', 2, [], 'float'),
  // conv / pooling, NCHW
  op('conv2d', 'conv', 2, CONV, 'float'),
  op('conv2dBackwardInput', 'conv', 2, [...CONV, 'inH', 'inW'], 'float'),
  op('conv2dBackwardWeight', 'conv', 2, [...CONV, 'kernelH', 'kernelW'], 'float'),
  op('maxPool2d', 'conv', 1, POOL, 'float'),
  op('maxPool2dBackward', 'conv', 2, POOL, 'float'),
  op('avgPool2d', 'conv', 1, [...POOL, 'countIncludePad'], 'float'),
  op('avgPool2dBackward', 'conv', 1, [...POOL, 'countIncludePad', 'inH', 'inW'], 'float'),
  // movement
  op('copy', 'movement', 1, [], 'any'),
  op('concat', 'movement', -1, ['axis'], 'any'),
  op('gather', 'movement', 2, ['axis'], 'any'),
  op('scatterAdd', 'movement', 2, ['axis', 'size'], 'numeric'),
  // random (counter-based Philox4x32-10; identical numbers on every backend)
  op('randomUniform', 'random', 0, [...RNG, 'low', 'high'], 'float'),
  op('randomNormal', 'random', 0, [...RNG, 'mean', 'std'], 'float'),
  op('randomInt', 'random', 0, [...RNG, 'low', 'high'], 'numeric'),
] as const satisfies readonly OpSpec[];

export type OpName = (typeof OP_TABLE)[number]['name'];
export const OP_COUNT = OP_TABLE.length;
export const OP_IDS: Readonly<Record<OpName, number>> = Object.fromEntries(
  OP_TABLE.map((o, i) => [o.name, i]),
) as Record<OpName, number>;
export const OP_BY_NAME: Readonly<Record<OpName, OpSpec>> = Object.fromEntries(
  OP_TABLE.map((o) => [o.name, o]),
) as Record<OpName, OpSpec>;
