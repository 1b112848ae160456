/**
 * The single list of kernel-level ops. Everything else derives from it:
 * `native/include/kiln/op_ids.h` is generated from this table (`npm run gen`), the addon reports its own
 * op names at load time and the binding refuses to run if they differ, and the test suite checks that every
 * op with a kernel has one on every backend.
 *
 * `attrs` are passed to kernels as a Float64Array in exactly this order.
 * `dtypes`: which input dtypes the kernel takes natively. 'float' = float32 only (others are promoted by the
 * dispatcher), 'numeric' = float32 and int32, 'any' = every storage dtype.
 * `out`: the dtype the kernel writes. 'compute' = the dtype it computes in (its first input's, after promotion),
 * 'requested' = whatever the caller asks for, or a fixed dtype. The dispatcher casts to the caller's dtype after.
 * `contiguous`: the kernel needs contiguous inputs (the dispatcher copies views first).
 * `fixedInputs`: inputs with a dtype of their own (indices, conditions), cast to it instead of promoted.
 * `inplace`: inputs the kernel updates in place (optimizer state). They must be contiguous float32 tensors whose
 * buffers no other input shares; such ops write no output (the dispatcher hands them an empty one). Indices are
 * below 32 (the addon's mask of them is 32 bits, and it refuses more than 32 inputs to such an op).
 */
/**
 * The op families, in the order every backend registers them. One file per family, with the same stem, in
 * src/backends/js/, src/backends/webgpu/, kernels/wgsl/, native/cpu/ and kernels/cuda/; the native build's
 * family list (KILN_FAMILIES, cmake/families.cmake) is generated from this one.
 */
export const FAMILIES = ['elementwise', 'reduce', 'matmul', 'conv', 'movement', 'random', 'optim', 'quant'] as const;
export type OpFamily = (typeof FAMILIES)[number];
export type KernelDTypes = 'float' | 'numeric' | 'any';

export type OutRule = 'compute' | 'requested' | 'bool' | 'int32';
/** Storage dtype names, repeated here so the table has no imports (scripts/gen-tables.ts reads it). */
export type FixedDType = 'bool' | 'int32' | 'int8' | 'uint8' | 'bfloat16';

export interface OpSpec {
  readonly name: string;
  readonly family: OpFamily;
  /** Number of tensor inputs; -1 = variadic (at least one). */
  readonly inputs: number;
  readonly attrs: readonly string[];
  readonly dtypes: KernelDTypes;
  readonly out: OutRule;
  readonly contiguous: boolean;
  readonly fixedInputs: Readonly<Record<number, FixedDType>>;
  readonly inplace: readonly number[];
}

interface Extra {
  inplace?: readonly number[];
  out?: OutRule;
  contiguous?: boolean;
  fixedInputs?: Readonly<Record<number, FixedDType>>;
}

export type Spec<N extends string, A extends readonly string[] = readonly string[]> = OpSpec & {
  readonly name: N;
  readonly attrs: A;
};
const op = <N extends string, const A extends readonly string[] = readonly []>(
  name: N,
  family: OpFamily,
  inputs: number,
  attrs: A,
  dtypes: KernelDTypes,
  extra: Extra = {},
): Spec<N, A> => ({
  name,
  family,
  inputs,
  attrs,
  dtypes,
  out: extra.out ?? (dtypes === 'any' ? 'requested' : 'compute'),
  contiguous: extra.contiguous ?? false,
  fixedInputs: extra.fixedInputs ?? {},
  inplace: inplaceIndices(name, extra.inplace ?? []),
});
function inplaceIndices(name: string, ix: readonly number[]): readonly number[] {
  if (ix.some((i) => !Number.isInteger(i) || i < 0 || i >= 32))
    throw new Error(`op table: ${name}'s in-place inputs must be indices 0..31, got [${ix}]`);
  return ix;
}
const C = { contiguous: true } as const;

const unaryF = <N extends string>(name: N): Spec<N> => op(name, 'elementwise', 1, [], 'float');
const unaryN = <N extends string>(name: N): Spec<N> => op(name, 'elementwise', 1, [], 'numeric');
const binaryN = <N extends string>(name: N): Spec<N> => op(name, 'elementwise', 2, [], 'numeric');
const binaryF = <N extends string>(name: N): Spec<N> => op(name, 'elementwise', 2, [], 'float');
const compare = <N extends string>(name: N): Spec<N> => op(name, 'elementwise', 2, [], 'numeric', { out: 'bool' });

/**
 * Attribute layouts that several ops start with. A kernel helper shared by those ops (conv geometry, pool
 * windows, the Philox key) reads the group's generated names: ATTR_CONV_STRIDE_H in C++/CUDA,
 * `ATTR_GROUPS.conv` indices in TypeScript. Every op listed under a group must start with its attributes
 * (checked by test/codegen.test.ts).
 */
export const ATTR_GROUPS = {
  axes: ['axisStart', 'axisEnd'],
  conv: ['strideH', 'strideW', 'padH', 'padW', 'dilationH', 'dilationW', 'groups'],
  pool: ['kernelH', 'kernelW', 'strideH', 'strideW', 'padH', 'padW'],
  rng: ['key0', 'key1', 'ctrLo', 'ctrHi'],
} as const;
const { axes: AXES, conv: CONV, pool: POOL, rng: RNG } = ATTR_GROUPS;

/**
 * The kernel-level op table (name, family, inputs, attributes, dtype rules), in op-id order.
 * @example kn.OP_TABLE.length > 40 // true
 */
export const OP_TABLE = [
  // creation
  op('fill', 'elementwise', 0, ['value'], 'any'),
  op('arange', 'elementwise', 0, ['start', 'step'], 'numeric'),
  // elementwise, unary
  unaryN('neg'),
  unaryN('abs'),
  unaryN('sign'),
  unaryN('relu'),
  unaryF('exp'),
  unaryF('log'),
  unaryF('sqrt'),
  unaryF('tanh'),
  unaryF('sigmoid'),
  unaryF('gelu'),
  unaryF('silu'),
  op('clamp', 'elementwise', 1, ['min', 'max'], 'numeric'),
  op('cast', 'elementwise', 1, [], 'any'),
  // elementwise, binary (inputs arrive already broadcast to the output shape, as stride-0 views)
  binaryN('add'),
  binaryN('sub'),
  binaryN('mul'),
  binaryF('div'),
  binaryF('pow'),
  binaryN('maximum'),
  binaryN('minimum'),
  compare('eq'),
  compare('ne'),
  compare('lt'),
  compare('le'),
  compare('gt'),
  compare('ge'),
  binaryF('geluGrad'),
  // relu's gradient: (x, g) -> x > 0 ? g : 0 (x may be relu's input or output)
  binaryF('reluGrad'),
  // fused bias + activation over the last dim: (x [M, N], bias [N]) -> act(x + bias); act 0 none, 1 relu, 2 gelu
  op('biasAct', 'elementwise', 2, ['act'], 'float', C),
  op('where', 'elementwise', 3, [], 'any', { fixedInputs: { 0: 'bool' } }),
  // reductions (input contiguous; reduce over the axis range [axisStart, axisEnd))
  op('sum', 'reduce', 1, AXES, 'numeric', C),
  op('max', 'reduce', 1, AXES, 'numeric', C),
  op('min', 'reduce', 1, AXES, 'numeric', C),
  op('argmax', 'reduce', 1, ['axis'], 'numeric', { ...C, out: 'int32' }),
  op('argmin', 'reduce', 1, ['axis'], 'numeric', { ...C, out: 'int32' }),
  op('softmax', 'reduce', 1, ['axis'], 'float', C),
  op('logSoftmax', 'reduce', 1, ['axis'], 'float', C),
  // fused layer normalisation over the last axis of x [R, C] with optional affine weight and bias [C] (both or
  // neither); the backward takes (x, dy[, weight]) and writes dx [R, C], then dweight [C] and dbias [C], flat
  op('layerNorm', 'reduce', -1, ['eps'], 'float', C),
  op('layerNormBackward', 'reduce', -1, ['eps'], 'float', C),
  // NaN-ignoring quantile of each column of [N, F] (linear interpolation, like NumPy's default) -> [F]
  op('nanQuantile', 'reduce', 1, ['q'], 'float', C),
  // NaN-ignoring column statistics of [N, F] in one pass -> [5, F]: count, mean, population variance, min, max
  op('nanColumnStats', 'reduce', 1, [], 'float', C),
  // two 32-bit hashes of each row's float32 bit patterns (every NaN hashes alike) -> int32 [N, 2]
  op('rowHash', 'reduce', 1, [], 'float', { ...C, out: 'int32' }),
  // fused softmax cross-entropy per row: (logits [N, C], labels int32 [N][, weight [C]]) -> loss [N]
  op('softmaxCrossEntropy', 'reduce', -1, ['labelSmoothing'], 'float', { ...C, fixedInputs: { 1: 'int32' } }),
  // (logits, labels, rowGrad [N][, weight]) -> dlogits [N, C]
  op('softmaxCrossEntropyBackward', 'reduce', -1, ['labelSmoothing'], 'float', { ...C, fixedInputs: { 1: 'int32' } }),
  // matmul: a [...batch, M, K] x b [...batch, K, N]; batch dims already broadcast; last two dims may be transposed
  op('matmul', 'matmul', 2, [], 'float'),
  // bfloat16 x bfloat16 with float32 accumulation -> float32 (AVX512-BF16 where the CPU has it)
  op('matmulBf16', 'matmul', 2, [], 'float', { fixedInputs: { 0: 'bfloat16', 1: 'bfloat16' }, out: 'requested' }),
  // fused scaled dot-product attention, blockwise with an online softmax: q [B, L, D], k [B, S, D], v [B, S, Dv]
  // and an optional additive mask [1 | B, L, S] -> [B, L, Dv + 1] (the output rows, then each row's log-sum-exp).
  // Dropout keeps a weight when a hash of (seed, its index) >= dropoutThreshold (0 = no dropout).
  op('attention', 'matmul', -1, ['scale', 'causal', 'dropoutThreshold', 'seed'], 'float', C),
  // its gradient: (q, k, v, the forward's packed output, dOut [B, L, Dv][, mask]) -> dq, dk, dv flat, in that order
  op('attentionBackward', 'matmul', -1, ['scale', 'causal', 'dropoutThreshold', 'seed'], 'float', C),
  // conv / pooling, NCHW
  op('conv2d', 'conv', 2, CONV, 'float', C),
  op('conv2dBackwardInput', 'conv', 2, [...CONV, 'inH', 'inW'], 'float', C),
  op('conv2dBackwardWeight', 'conv', 2, [...CONV, 'kernelH', 'kernelW'], 'float', C),
  op('maxPool2d', 'conv', 1, POOL, 'float', C),
  op('maxPool2dBackward', 'conv', 2, POOL, 'float', C),
  op('avgPool2d', 'conv', 1, [...POOL, 'countIncludePad'], 'float', C),
  op('avgPool2dBackward', 'conv', 1, [...POOL, 'countIncludePad', 'inH', 'inW'], 'float', C),
  // movement
  op('copy', 'movement', 1, [], 'any'),
  op('concat', 'movement', -1, ['axis'], 'any'),
  op('gather', 'movement', 2, ['axis'], 'any', { ...C, fixedInputs: { 1: 'int32' } }),
  op('scatterAdd', 'movement', 2, ['axis', 'size'], 'numeric', { ...C, fixedInputs: { 1: 'int32' } }),
  // random (counter-based Philox4x32-10; identical numbers on every backend)
  op('randomUniform', 'random', 0, [...RNG, 'low', 'high'], 'float'),
  op('randomNormal', 'random', 0, [...RNG, 'mean', 'std'], 'float'),
  op('randomInt', 'random', 0, [...RNG, 'low', 'high'], 'numeric'),
  // optimizer updates, one fused pass per parameter, in place.
  // adamStep(param, grad, m, v[, vmax]): with vmax it is AMSGrad. bias1/bias2 = 1 - beta^t.
  op('adamStep', 'optim', -1, ['lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'decoupled', 'bias1', 'bias2'], 'float', {
    ...C,
    inplace: [0, 2, 3, 4],
  }),
  // adamStepMulti(p0, g0, m0, v0, p1, g1, m1, v1, ...): Adam/AdamW (no AMSGrad) over 1-8 parameters with the
  // same step count in one call, one pass over all their elements
  op(
    'adamStepMulti',
    'optim',
    -1,
    ['lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'decoupled', 'bias1', 'bias2'],
    'float',
    { ...C, inplace: Array.from({ length: 32 }, (_, i) => i).filter((i) => i % 4 !== 1) },
  ),
  // sgdStep(param, grad[, momentumBuffer])
  op('sgdStep', 'optim', -1, ['lr', 'momentum', 'dampening', 'weightDecay', 'nesterov', 'firstStep'], 'float', {
    ...C,
    inplace: [0, 2],
  }),
  // sgdStepMulti(p0, g0, b0, p1, g1, b1, ...): SGD with momentum over 1-8 parameters whose buffers are all new
  // (firstStep) or all not, in one call, one pass over all their elements
  op('sgdStepMulti', 'optim', -1, ['lr', 'momentum', 'dampening', 'weightDecay', 'nesterov', 'firstStep'], 'float', {
    ...C,
    inplace: Array.from({ length: 24 }, (_, i) => i).filter((i) => i % 3 !== 1),
  }),
  // int8 linear: (x float32 [M, K], wq int8 [N, K], wscale [N][, bias [N]]) -> float32 [M, N]; x is quantized to
  // uint8 with (xScale, xZero), or per row from its range when xScale = 0 (dynamic quantization)
  op('qlinearInt8', 'quant', -1, ['xScale', 'xZero'], 'float', { ...C, fixedInputs: { 1: 'int8' } }),
  // int4 weight-only linear: (x float32 [M, K], packed uint8 [N, G*g/2], scales [N, G][, bias [N]]) -> [M, N]
  // = x . dequant(W)^T (+ bias), W in the layout of src/quant/layout.ts with group size g
  op('qlinearInt4', 'quant', -1, ['groupSize'], 'float', { ...C, fixedInputs: { 1: 'uint8' } }),
  // int8 convolution: (x float32 [N, C, H, W], wq int8 [O, C, kH, kW], wscale [O][, bias [O]]) -> float32
  // [N, O, OH, OW], one group; each image is quantized to uint8 with (xScale, xZero), or from its own range when
  // xScale = 0 (dynamic, per image), and padding stands for 0 (the zero point); relu = 1 applies max(y, 0);
  // pool = k >= 2 then takes the max of each k x k window at stride k, as MaxPool2d(k) would (output [N, O,
  // floor(OH / k), floor(OW / k)]); 1 = none
  op('qconv2dInt8', 'quant', -1, [...CONV, 'xScale', 'xZero', 'relu', 'pool'], 'float', {
    ...C,
    fixedInputs: { 1: 'int8' },
  }),
] as const satisfies readonly OpSpec[];

export type OpName = (typeof OP_TABLE)[number]['name'];
/** The attribute names of one op, as the table declares them. */
export type AttrName<O extends OpName> = Extract<(typeof OP_TABLE)[number], { name: O }>['attrs'][number];
/** One op's attributes by name. */
export type Attrs<O extends OpName> = { readonly [K in AttrName<O>]: number };
export const OP_COUNT = OP_TABLE.length;
export const OP_IDS: Readonly<Record<OpName, number>> = Object.fromEntries(
  OP_TABLE.map((o, i) => [o.name, i]),
) as Record<OpName, number>;
export const OP_BY_NAME: Readonly<Record<OpName, OpSpec>> = Object.fromEntries(
  OP_TABLE.map((o) => [o.name, o]),
) as Record<OpName, OpSpec>;

/** Attribute index by op and name: `ATTR.conv2d.padH` is where `padH` sits in conv2d's attribute array. */
export const ATTR = Object.fromEntries(
  OP_TABLE.map((o) => [o.name, Object.fromEntries(o.attrs.map((a: string, i: number) => [a, i]))]),
) as { readonly [O in OpName]: { readonly [K in AttrName<O>]: number } };

/**
 * One op's attribute array read by name: `const { strideH, padH } = attrsOf('conv2d', attrs)`. Kernels read
 * attributes this way (C++ and CUDA through the generated ATTR_<OP>_<NAME> constants), never by position.
 */
export function attrsOf<O extends OpName>(name: O, attrs: readonly number[]): Attrs<O> {
  const spec = OP_BY_NAME[name];
  const r: Record<string, number> = {};
  spec.attrs.forEach((a, i) => {
    r[a] = attrs[i] ?? NaN;
  });
  return r as Attrs<O>;
}

/** A group's attributes by name (kernel helpers shared by every op that starts with the group). */
export function groupAttrs<G extends keyof typeof ATTR_GROUPS>(
  group: G,
  attrs: readonly number[],
): { readonly [K in (typeof ATTR_GROUPS)[G][number]]: number } {
  const r: Record<string, number> = {};
  ATTR_GROUPS[group].forEach((a, i) => {
    r[a] = attrs[i] ?? NaN;
  });
  return r as { readonly [K in (typeof ATTR_GROUPS)[G][number]]: number };
}

/**
 * Op codes of the strided elementwise `map` kernel that the webgpu (kernels/wgsl/elementwise.wgsl) and CUDA
 * (kernels/cuda/elementwise.cu) backends share: MAP_<NAME> in both, generated. `bias*` are biasAct's three
 * activations. The order matters: kernels test ranges (binary ops from `add` on, comparisons `eq`..`ge`).
 */
export const MAP_OPS = [
  'fill',
  'arange',
  'neg',
  'abs',
  'sign',
  'relu',
  'exp',
  'log',
  'sqrt',
  'tanh',
  'sigmoid',
  'gelu',
  'silu',
  'clamp',
  'cast',
  'copy',
  'add',
  'sub',
  'mul',
  'div',
  'pow',
  'maximum',
  'minimum',
  'eq',
  'ne',
  'lt',
  'le',
  'gt',
  'ge',
  'geluGrad',
  'reluGrad',
  'bias',
  'biasRelu',
  'biasGelu',
  'where',
] as const;
export type MapOp = (typeof MAP_OPS)[number];
export const MAP_OP_CODES = Object.fromEntries(MAP_OPS.map((m, i) => [m, i])) as Readonly<Record<MapOp, number>>;

/**
 * Bad data that only a device kernel can see (CUDA and WGSL): each kind is a slot of error flags that the
 * kernel sets with the first bad element's position, value, bound and an extra word (FLAG_<NAME>, generated).
 * The host turns a set flag into the user's ArgumentError with `message` (placeholders {pos} {value} {bound}
 * {extra}), or `unknown` when the position was not recorded.
 */
export const DEVICE_FLAGS = [
  {
    name: 'gatherIndex',
    message: 'gather index {value} at position {pos} is out of range for axis {extra} of size {bound}',
    unknown: 'gather: an index is out of range',
  },
  {
    name: 'scatterIndex',
    message: 'scatterAdd index {value} at position {pos} is out of range for size {bound}',
    unknown: 'scatterAdd: an index is out of range',
  },
  {
    name: 'label',
    message:
      'crossEntropy label {value} at index {pos} is out of range; expected a class in [0, {bound}) (set ignoreIndex to leave padding rows out)',
    unknown: 'crossEntropy: a label is out of range (set ignoreIndex to leave padding rows out)',
  },
  {
    name: 'quantNan',
    message: 'int8 kernel: x has NaN or infinite values (cannot be quantized) at element {pos}',
    unknown: 'int8 kernel: x has NaN or infinite values (cannot be quantized)',
  },
] as const;

/** A device flag's message with its recorded words filled in. */
export function deviceFlagMessage(
  kind: number,
  w: { pos: number; value: number; bound: number; extra: number } | null,
): string {
  const f = DEVICE_FLAGS[kind];
  if (!f) return `device error flag ${kind}`;
  if (!w) return f.unknown;
  return f.message.replace(/\{(pos|value|bound|extra)\}/g, (_m, k: 'pos' | 'value' | 'bound' | 'extra') =>
    String(w[k]),
  );
}
