// The op cases shared by the conformance and gradient-check suites. `ops` lists the kernel-level ops a
// case exercises; the conformance suite checks that together they cover src/ops/table.ts.
import * as kn from '../src/index.js';
import type { OpName } from '../src/ops/table.js';

export interface InputSpec {
  shape: number[];
  dtype?: kn.DType;
  lo?: number;
  hi?: number;
  /** integer values in [lo, hi) */
  int?: boolean;
  /** make the tensor non-contiguous: store transposed and hand over a transposed view */
  transposed?: boolean;
}

export interface OpCase {
  name: string;
  ops: OpName[];
  inputs: InputSpec[];
  run: (...xs: kn.Tensor[]) => kn.Tensor;
  /** differentiable in every float input: gradcheck it */
  grad?: boolean;
  atol?: number;
  rtol?: number;
  /** [atol, rtol] on webgpu, which maps random bits to floats in float32 where the others use double */
  float32Tol?: [number, number];
}

const f = (shape: number[], extra: Partial<InputSpec> = {}): InputSpec => ({ shape, ...extra });
const pos = (shape: number[]): InputSpec => ({ shape, lo: 0.2, hi: 3 });
const ints = (shape: number[], lo: number, hi: number, dtype: kn.DType = 'int32'): InputSpec => ({
  shape,
  lo,
  hi,
  int: true,
  dtype,
});

const unary: [string, OpName, (x: kn.Tensor) => kn.Tensor, boolean][] = [
  ['neg', 'neg', (x) => x.neg(), false],
  ['abs', 'abs', (x) => x.abs(), false],
  ['sign', 'sign', (x) => x.sign(), false],
  ['relu', 'relu', (x) => x.relu(), false],
  ['exp', 'exp', (x) => x.exp(), false],
  ['tanh', 'tanh', (x) => x.tanh(), false],
  ['sigmoid', 'sigmoid', (x) => x.sigmoid(), false],
  ['gelu', 'gelu', (x) => x.gelu(), false],
  ['silu', 'silu', (x) => x.silu(), false],
];

/**
 * A multi-tensor optimizer case: 11 parameters of different sizes (1 to 1000 elements, so a thread's range spans
 * several) cut from p, three steps of `make`'s optimizer on gradients cut from g (scaled 1, -0.5, 3), parameter 3
 * without a gradient in step `skip`.
 */
function multiTensorCase(
  name: string,
  ops: OpCase['ops'],
  make: (ws: kn.Tensor[]) => kn.optim.Optimizer,
  skip: number,
): OpCase {
  return {
    name: `optimizer step: ${name} over 11 parameters (multi-tensor)`,
    ops,
    inputs: [f([7, 300]), f([7, 300])],
    atol: 1e-5,
    run: (p: kn.Tensor, g: kn.Tensor) => {
      const sizes = [1, 5, 17, 64, 100, 3, 300, 7, 9, 1000, 594];
      const starts = sizes.map((_, k) => sizes.slice(0, k).reduce((a, b) => a + b, 0));
      const pf = p.reshape([-1]),
        gf = g.reshape([-1]);
      const ws = sizes.map((n, k) => {
        const w = pf.slice([starts[k]!], [starts[k]! + n]).clone();
        w.requiresGrad = true;
        return w;
      });
      const opt = make(ws);
      for (let step = 1; step <= 3; step++) {
        ws.forEach((w, k) => {
          w.grad =
            step === skip && k === 3
              ? null
              : gf.slice([starts[k]!], [starts[k]! + sizes[k]!]).mul(step === 2 ? -0.5 : step);
        });
        opt.step();
      }
      opt.dispose();
      const out = kn.concat(ws, 0);
      for (const w of ws) w.dispose();
      return out;
    },
  };
}

export const CASES: OpCase[] = [
  // creation
  { name: 'full float32', ops: ['fill'], inputs: [], run: () => kn.full([2, 3], 2.5) },
  { name: 'full int32 size-0', ops: ['fill'], inputs: [], run: () => kn.full([0, 3], 7, { dtype: 'int32' }) },
  {
    name: 'full NaN',
    ops: ['fill'],
    inputs: [],
    run: () => {
      const a = kn.full([3], NaN);
      return a.ne(a);
    },
  },
  { name: 'arange', ops: ['arange'], inputs: [], run: () => kn.arange(-3, 10, 2.5) },
  { name: 'arange int32', ops: ['arange'], inputs: [], run: () => kn.arange(2, 17, 3, { dtype: 'int32' }) },
  // unary on several shapes, incl. size-0, size-1, scalar and non-contiguous
  ...unary.flatMap(
    ([n, op, fn]) =>
      [
        {
          name: `${n} [3,4]`,
          ops: [op],
          inputs: [f([3, 4], { lo: -4, hi: 4 })],
          run: fn,
          grad: n !== 'sign' && n !== 'abs' && n !== 'relu',
        },
        { name: `${n} [0,5]`, ops: [op], inputs: [f([0, 5])], run: fn },
        { name: `${n} scalar`, ops: [op], inputs: [f([])], run: fn },
        { name: `${n} transposed`, ops: [op], inputs: [f([4, 3], { transposed: true })], run: fn },
      ] as OpCase[],
  ),
  {
    name: 'abs/relu grad (away from 0)',
    ops: ['abs', 'relu'],
    inputs: [f([3, 4], { lo: 0.1, hi: 2 })],
    run: (x) => x.neg().abs().add(x.relu()),
    grad: true,
  },
  {
    name: 'exp large/small',
    ops: ['exp'],
    inputs: [f([64], { lo: -100, hi: 88 })],
    run: (x) => x.exp(),
    rtol: 1e-5,
    atol: 1e-30,
  },
  { name: 'log', ops: ['log'], inputs: [pos([5, 3])], run: (x) => x.log(), grad: true },
  { name: 'sqrt', ops: ['sqrt'], inputs: [pos([5, 3])], run: (x) => x.sqrt(), grad: true },
  {
    name: 'tanh/sigmoid wide range',
    ops: ['tanh', 'sigmoid'],
    inputs: [f([200], { lo: -30, hi: 30 })],
    run: (x) => x.tanh().add(x.sigmoid()),
  },
  { name: 'gelu wide range', ops: ['gelu'], inputs: [f([200], { lo: -12, hi: 12 })], run: (x) => x.gelu(), atol: 1e-6 },
  {
    name: 'silu wide range',
    ops: ['silu'],
    inputs: [f([200], { lo: -120, hi: 120 })],
    run: (x) => x.silu(),
    atol: 1e-6,
  },
  {
    // NaN through relu and the bias + ReLU kernel stays NaN on every backend; infinities and -0 as well
    name: 'relu and biasAct relu keep NaN, infinities and -0',
    ops: ['relu', 'biasAct'],
    inputs: [f([2, 6])],
    run: (x) => {
      const xs = kn.concat([x, kn.tensor([[NaN, -Infinity, Infinity, -0, -1, 2]])], 0);
      return kn.concat([xs.relu(), kn.biasAct(xs, kn.tensor([0, 0, 0, NaN, 0, 0]), 'relu')], 0);
    },
  },
  {
    name: 'int32 neg/abs/sign/relu',
    ops: ['neg', 'abs', 'sign', 'relu'],
    inputs: [ints([7], -5, 5)],
    run: (x) => x.neg().abs().add(x.sign()).add(x.relu()),
  },
  { name: 'clamp', ops: ['clamp'], inputs: [f([4, 5])], run: (x) => x.clamp(-0.5, 0.7), grad: true },
  { name: 'clamp one-sided int32', ops: ['clamp'], inputs: [ints([9], -9, 9)], run: (x) => x.clamp(null, 3) },
  // casts
  {
    name: 'cast float->int32->float',
    ops: ['cast'],
    inputs: [f([13], { lo: -50, hi: 50 })],
    run: (x) => x.cast('int32').cast('float32'),
  },
  {
    name: 'cast float16 roundtrip',
    ops: ['cast'],
    inputs: [f([50], { lo: -70000, hi: 70000 })],
    run: (x) => x.cast('float16').cast('float32'),
  },
  {
    name: 'cast float16 small',
    ops: ['cast'],
    inputs: [f([50], { lo: -1e-4, hi: 1e-4 })],
    run: (x) => x.cast('float16').cast('float32'),
    atol: 0,
    rtol: 0,
  },
  {
    name: 'cast bfloat16 roundtrip',
    ops: ['cast'],
    inputs: [f([50], { lo: -1e30, hi: 1e30 })],
    run: (x) => x.cast('bfloat16').cast('float32'),
    atol: 0,
    rtol: 0,
  },
  {
    name: 'cast int8/uint8/bool',
    ops: ['cast'],
    inputs: [f([20], { lo: -300, hi: 300 })],
    run: (x) => x.cast('int8').cast('int32').add(x.cast('uint8').cast('int32')).add(x.cast('bool').cast('int32')),
  },
  // finite differences cannot see through float16 rounding (a step function): cast's gradient is checked in autograd.test.ts
  {
    name: 'cast float16 then mul',
    ops: ['cast'],
    inputs: [f([6])],
    run: (x) => x.cast('float16').cast('float32').mul(x),
    atol: 5e-3,
  },
  // binary with broadcasting
  ...(
    [
      ['add', (a: kn.Tensor, b: kn.Tensor) => a.add(b)],
      ['sub', (a: kn.Tensor, b: kn.Tensor) => a.sub(b)],
      ['mul', (a: kn.Tensor, b: kn.Tensor) => a.mul(b)],
      ['div', (a: kn.Tensor, b: kn.Tensor) => a.div(b.abs().add(0.5))],
      ['maximum', (a: kn.Tensor, b: kn.Tensor) => a.maximum(b)],
      ['minimum', (a: kn.Tensor, b: kn.Tensor) => a.minimum(b)],
    ] as [OpName, (a: kn.Tensor, b: kn.Tensor) => kn.Tensor][]
  ).flatMap(
    ([op, fn]) =>
      [
        { name: `${op} broadcast [3,1,4]x[2,4]`, ops: [op], inputs: [f([3, 1, 4]), f([2, 4])], run: fn, grad: true },
        {
          name: `${op} same shape transposed`,
          ops: [op],
          inputs: [f([3, 5], { transposed: true }), f([3, 5])],
          run: fn,
        },
        { name: `${op} size-0`, ops: [op], inputs: [f([0, 4]), f([1, 4])], run: fn },
        { name: `${op} scalar operand`, ops: [op], inputs: [f([]), f([2, 3])], run: fn, grad: true },
      ] as OpCase[],
  ),
  {
    name: 'int32 add/sub/mul/max/min',
    ops: ['add', 'sub', 'mul', 'maximum', 'minimum'],
    inputs: [ints([4, 3], -100, 100), ints([3], -100, 100)],
    run: (a, b) => a.add(b).mul(b).sub(a).maximum(b).minimum(a.mul(3)),
  },
  {
    name: 'int32 overflow wraps',
    ops: ['mul', 'add'],
    inputs: [ints([6], 100000, 200000)],
    run: (a) => a.mul(a).add(a.mul(40000)),
  },
  { name: 'int32 div is float', ops: ['div'], inputs: [ints([6], 1, 20), ints([6], 1, 7)], run: (a, b) => a.div(b) },
  { name: 'pow', ops: ['pow'], inputs: [pos([3, 4]), f([4], { lo: -2, hi: 2 })], run: (a, b) => a.pow(b), grad: true },
  { name: 'pow scalar exponent', ops: ['pow'], inputs: [f([3, 4])], run: (a) => a.pow(2), grad: true },
  { name: 'mixed dtype promotion', ops: ['add', 'cast'], inputs: [ints([5], -5, 5), f([5])], run: (a, b) => a.add(b) },
  // comparisons (integer-valued floats so ties happen)
  ...(['eq', 'ne', 'lt', 'le', 'gt', 'ge'] as const).map((op): OpCase => ({
    name: `${op} broadcast with ties`,
    ops: [op],
    inputs: [ints([3, 4], -2, 3, 'float32'), ints([4], -2, 3, 'float32')],
    run: (a, b) => (a as unknown as Record<string, (b: kn.Tensor) => kn.Tensor>)[op]!(b),
  })),
  {
    name: 'compare int32 with scalar',
    ops: ['gt', 'le'],
    inputs: [ints([8], -4, 4)],
    run: (a) => a.gt(0).cast('int32').add(a.le(-2).cast('int32')),
  },
  {
    name: 'where broadcast',
    ops: ['where', 'gt'],
    inputs: [f([3, 4]), f([4]), f([3, 1])],
    run: (c, a, b) => kn.where(c.gt(0), a, b),
    grad: true,
  },
  {
    // the cpu kernel's contiguous fast paths: scalar second branch (the ReLU mask), scalar first branch, both full
    name: 'where contiguous with scalar branches',
    ops: ['where'],
    inputs: [f([37, 5]), f([37, 5]), f([37, 5])],
    run: (c, a, b) => kn.concat([kn.where(c.gt(0), a, 0), kn.where(c.gt(0.3), 2, b), kn.where(c.lt(0), a, b)], 0),
    grad: true,
  },
  {
    name: 'where int32',
    ops: ['where'],
    inputs: [f([5]), ints([5], 0, 9), ints([5], 10, 19)],
    run: (c, a, b) => kn.where(c.gt(0), a, b),
  },
  {
    name: 'geluGrad via backward',
    ops: ['geluGrad'],
    inputs: [f([17], { lo: -6, hi: 6 })],
    run: (x) => kn.grad((t) => t.gelu().sum())(x) as kn.Tensor,
  },
  {
    // relu's gradient as one kernel: through relu (its input) and through biasAct's relu (its output); zeros,
    // a NaN and negatives in x; a broadcast g
    name: 'reluGrad via backward',
    ops: ['reluGrad'],
    inputs: [f([4, 17], { lo: -3, hi: 3 })],
    run: (x) => {
      const xs = kn.concat([x, kn.tensor([[0, -0, NaN, -1, 2, 0.5, -7, 3, 0, 1, -1, 1, -1, 1, -1, 1, 0]])], 0);
      const g1 = kn.grad((t) => t.relu().mul(kn.arange(17).add(1)).sum())(xs) as kn.Tensor;
      const g2 = kn.grad((t) => kn.biasAct(t, kn.full([17], -0.25), 'relu').sum())(xs) as kn.Tensor;
      return kn.concat([g1, g2], 0);
    },
  },
  // reductions
  { name: 'sum all', ops: ['sum'], inputs: [f([4, 5, 6])], run: (x) => x.sum(), grad: true },
  { name: 'sum axis 1 keepdims', ops: ['sum'], inputs: [f([4, 5, 6])], run: (x) => x.sum(1, true), grad: true },
  {
    name: 'sum axes [0,2] transposed',
    ops: ['sum', 'copy'],
    inputs: [f([4, 5, 6], { transposed: true })],
    run: (x) => x.sum([0, 2]),
    grad: true,
  },
  { name: 'sum long row', ops: ['sum'], inputs: [f([3, 5000])], run: (x) => x.sum(-1), rtol: 1e-4, atol: 1e-3 },
  {
    // column sums down 2100 rows (cpu: blocks of 1024 rows and a tail, for two slices and for one)
    name: 'sum down a long axis, few outputs',
    ops: ['sum'],
    inputs: [f([2, 2100, 7])],
    run: (x) => kn.concat([x.sum(1).reshape([-1]), x.sum(0).reshape([-1]), x.sum([0, 1])]),
    rtol: 1e-4,
    atol: 1e-3,
  },
  // long enough to be cut into chunks: the cpu's 16384-value blocks, CUDA's 32768-value row chunks (a whole-tensor
  // sum, max and min) and 512-value column chunks (few outputs over a long axis 0), float and int32
  { name: 'sum of a long tensor', ops: ['sum'], inputs: [f([70013])], run: (x) => x.sum(), rtol: 1e-4, atol: 1e-2 },
  {
    name: 'max and min of long rows',
    ops: ['max', 'min'],
    inputs: [f([2, 40000])],
    run: (x) => x.max(1).add(x.min(1)),
  },
  {
    name: 'sum over a long first axis',
    ops: ['sum'],
    inputs: [f([1500, 7])],
    run: (x) => x.sum(0),
    rtol: 1e-4,
    atol: 1e-3,
  },
  { name: 'sum int32 over a long axis', ops: ['sum'], inputs: [ints([1200, 3], -1000, 1000)], run: (x) => x.sum(0) },
  { name: 'sum size-0 axis', ops: ['sum'], inputs: [f([3, 0, 2])], run: (x) => x.sum(1) },
  { name: 'sum int32', ops: ['sum'], inputs: [ints([4, 6], -1000, 1000)], run: (x) => x.sum(0) },
  { name: 'mean', ops: ['sum', 'div'], inputs: [f([3, 4, 5])], run: (x) => x.mean([1, 2]), grad: true },
  { name: 'max axis', ops: ['max'], inputs: [f([4, 5, 6])], run: (x) => x.max(1), grad: true },
  { name: 'min all', ops: ['min'], inputs: [f([4, 5])], run: (x) => x.min(), grad: true },
  {
    name: 'max with ties int-valued',
    ops: ['max', 'min'],
    inputs: [ints([6, 4], -2, 2, 'float32')],
    run: (x) => x.max(0).add(x.min(1, true).sum()),
  },
  { name: 'max int32', ops: ['max'], inputs: [ints([5, 3], -50, 50)], run: (x) => x.max(-1) },
  {
    name: 'argmax/argmin',
    ops: ['argmax', 'argmin'],
    inputs: [f([4, 7])],
    run: (x) => x.argmax(1).add(x.argmin(0).sum()),
  },
  { name: 'argmax flattened', ops: ['argmax'], inputs: [f([3, 4, 2], { transposed: true })], run: (x) => x.argmax() },
  { name: 'var', ops: ['sum', 'sub', 'mul'], inputs: [f([5, 6])], run: (x) => x.var(1), grad: true },
  { name: 'var population', ops: ['sum'], inputs: [f([30])], run: (x) => x.var(undefined, { correction: 0 }) },
  {
    name: 'softmax last axis',
    ops: ['softmax'],
    inputs: [f([4, 9], { lo: -10, hi: 10 })],
    run: (x) => x.softmax(),
    grad: true,
  },
  { name: 'softmax axis 0', ops: ['softmax'], inputs: [f([5, 3, 2])], run: (x) => x.softmax(0), grad: true },
  {
    // softmax down a middle axis: 37 rows (not a multiple of the 8 row groups), 40 columns (a tile and a part),
    // 3 slices; column 5 of slice 1 all -Infinity, column 7 of slice 2 holding a NaN, column 9 one +Infinity
    name: 'softmax and logSoftmax over axis 1 of [3, 37, 40], with infinities and a NaN',
    ops: ['softmax', 'logSoftmax'],
    inputs: [f([3, 37, 40], { lo: -20, hi: 20 })],
    run: (x) => {
      // where each special value goes: (slice, column, row or -1 for the whole column)
      const mask = (o: number, j: number, r: number): kn.Tensor =>
        kn.tensor(
          Uint8Array.from({ length: 3 * 37 * 40 }, (_, i) =>
            Math.floor(i / 1480) === o && i % 40 === j && (r < 0 || Math.floor(i / 40) % 37 === r) ? 1 : 0,
          ),
          [3, 37, 40],
          { dtype: 'bool' },
        );
      const xs = kn.where(
        mask(0, 9, 3),
        Infinity,
        kn.where(mask(2, 7, 3), NaN, kn.where(mask(1, 5, -1), -Infinity, x)),
      );
      return kn.concat([xs.softmax(1), xs.logSoftmax(1), x.slice([0, 0, 0], [3, 37, 20]).softmax(1)], 2);
    },
  },
  {
    name: 'logSoftmax last axis',
    ops: ['logSoftmax'],
    inputs: [f([4, 9], { lo: -30, hi: 30 })],
    run: (x) => x.logSoftmax(),
    grad: true,
  },
  {
    name: 'logSoftmax axis 1 transposed',
    ops: ['logSoftmax'],
    inputs: [f([3, 4], { transposed: true })],
    run: (x) => x.logSoftmax(0),
    grad: true,
  },
  // fused bias + activation
  ...(['none', 'relu', 'gelu'] as const).map((act) => ({
    name: `biasAct ${act}`,
    ops: ['biasAct'] as OpName[],
    inputs: [f([5, 37]), f([37])],
    run: (x: kn.Tensor, b: kn.Tensor) => kn.biasAct(x, b, act),
    grad: true,
  })),
  {
    name: 'biasAct relu 3-D x, view input',
    ops: ['biasAct'],
    inputs: [f([2, 7, 3], { transposed: true }), f([3])],
    run: (x, b) => kn.biasAct(x, b, 'relu'),
    grad: true,
  },
  {
    name: 'biasAct gelu large rows (threads)',
    ops: ['biasAct'],
    inputs: [f([300, 129]), f([129])],
    run: (x, b) => kn.biasAct(x, b, 'gelu'),
  },
  // matmul
  {
    name: 'matmul [5,7]x[7,3]',
    ops: ['matmul'],
    inputs: [f([5, 7]), f([7, 3])],
    run: (a, b) => a.matmul(b),
    grad: true,
  },
  {
    name: 'matmul odd sizes',
    ops: ['matmul'],
    inputs: [f([33, 31]), f([31, 37])],
    run: (a, b) => a.matmul(b),
    atol: 1e-4,
  },
  {
    name: 'matmul 257 (blocking edges)',
    ops: ['matmul'],
    inputs: [f([257, 65]), f([65, 70])],
    run: (a, b) => a.matmul(b),
    atol: 1e-4,
  },
  {
    name: 'matmul batched broadcast',
    ops: ['matmul'],
    inputs: [f([2, 1, 4, 5]), f([3, 5, 6])],
    run: (a, b) => a.matmul(b),
    grad: true,
  },
  {
    name: 'matmul transposed operands',
    ops: ['matmul'],
    inputs: [f([5, 6], { transposed: true }), f([6, 4], { transposed: true })],
    run: (a, b) => a.matmul(b),
    grad: true,
  },
  {
    // x W^T as Linear runs it: B column-contiguous (transposed panels), A row-major (transposed A panels) with a
    // short last panel, K over one block and not a multiple of the vector width, a partial last B panel
    name: 'matmul x W^T (transposed packing, uneven K blocks)',
    ops: ['matmul'],
    inputs: [f([45, 531]), f([531, 70], { transposed: true })],
    run: (a, b) => a.matmul(b),
    atol: 2e-4,
  },
  {
    // 11 row blocks: on 2+ threads each block's columns are split in two so the tasks divide evenly
    name: 'matmul 11 row blocks (column chunks for an even task split)',
    ops: ['matmul'],
    inputs: [f([1000, 20]), f([20, 70])],
    run: (a, b) => a.matmul(b),
    atol: 1e-4,
  },
  {
    // few 64x64 tiles and a long k: CUDA's exact GEMM splits k into chunks of 128 and adds their partial products
    name: 'matmul 3 batched products split over k',
    ops: ['matmul'],
    inputs: [f([3, 10, 300]), f([3, 300, 20])],
    run: (a, b) => a.matmul(b),
    atol: 2e-4,
  },
  {
    // 160 products: on a GPU with up to 160 SMs, CUDA's exact float32 GEMM takes its 128x128-tile kernel (a tile
    // for every SM); partial tiles in M and N, and rows whose float4 stores are aligned or not
    name: 'matmul 160 batched products (one 128x128 tile each)',
    ops: ['matmul'],
    inputs: [f([160, 33, 20]), f([160, 20, 70])],
    run: (a, b) => a.matmul(b),
    atol: 1e-4,
  },
  {
    name: 'matmul 150 batched products, both operands transposed',
    ops: ['matmul'],
    inputs: [f([150, 9, 130], { transposed: true }), f([150, 130, 6], { transposed: true })],
    run: (a, b) => a.matmul(b),
    atol: 2e-4,
  },
  { name: 'matmul 1-D', ops: ['matmul'], inputs: [f([5]), f([5, 3])], run: (a, b) => a.matmul(b), grad: true },
  { name: 'matmul vec.vec', ops: ['matmul'], inputs: [f([7]), f([7])], run: (a, b) => a.matmul(b), grad: true },
  { name: 'matmul K=0', ops: ['matmul'], inputs: [f([3, 0]), f([0, 4])], run: (a, b) => a.matmul(b) },
  { name: 'matmul M=0', ops: ['matmul'], inputs: [f([0, 3]), f([3, 4])], run: (a, b) => a.matmul(b) },
  // fused layer norm (forward and backward)
  {
    name: 'layerNorm affine over [5, 7]',
    ops: ['layerNorm', 'layerNormBackward'],
    inputs: [f([3, 5, 7]), f([5, 7]), f([5, 7])],
    run: (x, w, b) => kn.nn.layerNorm(x, [5, 7], w, b),
    grad: true,
  },
  {
    name: 'layerNorm plain, eps 0.1',
    ops: ['layerNorm', 'layerNormBackward'],
    inputs: [f([4, 6], { lo: -3, hi: 5 })],
    run: (x) => kn.nn.layerNorm(x, [6], null, null, 0.1),
    grad: true,
  },
  {
    name: 'layerNorm wide rows and many rows (threads), backward',
    ops: ['layerNorm', 'layerNormBackward'],
    inputs: [f([700, 300]), f([300]), f([300]), f([700, 300])],
    atol: 1e-4,
    run: (x, w, b, g) => {
      const [xx, ww, bb] = [x, w, b].map((t) => {
        const c = t.clone();
        c.requiresGrad = true;
        return c;
      }) as [kn.Tensor, kn.Tensor, kn.Tensor];
      kn.nn.layerNorm(xx, [300], ww, bb).mul(g).sum().backward();
      return kn.concat([xx.grad!.flatten(), ww.grad!, bb.grad!]);
    },
  },
  {
    name: 'layerNorm plain over 45 values (the row kernels on webgpu), 13 rows',
    ops: ['layerNorm', 'layerNormBackward'],
    inputs: [f([13, 45], { lo: -2, hi: 6 })],
    run: (x) => kn.nn.layerNorm(x, [45]),
    grad: true,
  },
  {
    name: 'layerNorm plain over 45 values, 13 rows: y and dx',
    ops: ['layerNorm', 'layerNormBackward'],
    inputs: [f([13, 45], { lo: -2, hi: 6 }), f([13, 45])],
    run: (x, g) => {
      const xx = x.clone();
      xx.requiresGrad = true;
      const y = kn.nn.layerNorm(xx, [45]);
      y.mul(g).sum().backward();
      return kn.concat([y.detach().flatten(), xx.grad!.flatten()]);
    },
  },
  { name: 'layerNorm no rows', ops: ['layerNorm'], inputs: [f([0, 4])], run: (x) => kn.nn.layerNorm(x, [4]) },
  // fused attention (forward and backward; the gradient cases go through gradcheck and gradgradcheck)
  {
    name: 'attention [2,5,4] over [2,7,4]',
    ops: ['attention', 'attentionBackward'],
    inputs: [f([2, 5, 4]), f([2, 7, 4]), f([2, 7, 3])],
    run: (q, k, v) => kn.nn.scaledDotProductAttention(q, k, v),
    grad: true,
  },
  {
    name: 'attention causal, additive mask, shared batch dims',
    ops: ['attention', 'attentionBackward'],
    inputs: [f([2, 2, 4, 3]), f([1, 2, 4, 3]), f([2, 1, 4, 2]), f([4, 4])],
    run: (q, k, v, m) => kn.nn.scaledDotProductAttention(q, k, v, { isCausal: true, attnMask: m, scale: 0.8 }),
    grad: true,
  },
  ...([false, true] as const).map((causal) => ({
    name: `attention blocks past 64, bool mask, backward (causal=${causal})`,
    ops: ['attention', 'attentionBackward'] as OpName[],
    inputs: [f([3, 70, 16]), f([3, 130, 16]), f([3, 130, 8]), f([3, 70, 8])],
    atol: 1e-4,
    run: (q: kn.Tensor, k: kn.Tensor, v: kn.Tensor, g: kn.Tensor) => {
      const [qq, kk, vv] = [q, k, v].map((t) => {
        const c = t.clone();
        c.requiresGrad = true;
        return c;
      }) as [kn.Tensor, kn.Tensor, kn.Tensor];
      const bits = Uint8Array.from({ length: 3 * 130 }, (_, i) => (i % 7 === 3 ? 0 : 1));
      const mask = kn.tensor(bits, [3, 1, 130], { dtype: 'bool', backend: q.backend });
      const o = kn.nn.scaledDotProductAttention(qq, kk, vv, { isCausal: causal, attnMask: mask });
      o.mul(g).sum().backward();
      return kn.concat([o.flatten(), qq.grad!.flatten(), kk.grad!.flatten(), vv.grad!.flatten()]);
    },
  })),
  {
    name: 'attention dropout: the same weights dropped on every backend',
    ops: ['attention', 'attentionBackward'],
    inputs: [f([2, 9, 4]), f([2, 11, 4]), f([2, 11, 5]), f([2, 9, 5])],
    atol: 1e-4,
    run: (q, k, v, g) => {
      const vv = v.clone();
      vv.requiresGrad = true;
      kn.seed(77);
      const o = kn.nn.scaledDotProductAttention(q, k, vv, { dropoutP: 0.4 });
      o.mul(g).sum().backward();
      return kn.concat([o.flatten(), vv.grad!.flatten()]);
    },
  },
  {
    name: 'attention L=0',
    ops: ['attention'],
    inputs: [f([2, 0, 4]), f([2, 3, 4]), f([2, 3, 2])],
    run: (q, k, v) => kn.nn.scaledDotProductAttention(q, k, v),
  },
  // conv / pool
  {
    name: 'conv2d 3x3 pad 1',
    ops: ['conv2d', 'conv2dBackwardInput', 'conv2dBackwardWeight'],
    inputs: [f([2, 3, 6, 5]), f([4, 3, 3, 3])],
    run: (x, w) => kn.conv2d(x, w, null, { padding: 1 }),
    grad: true,
    atol: 1e-4,
  },
  {
    name: 'conv2d stride 2 dilation 2 bias',
    ops: ['conv2d'],
    inputs: [f([1, 2, 9, 8]), f([3, 2, 3, 2]), f([3])],
    run: (x, w, b) => kn.conv2d(x, w, b, { stride: 2, dilation: [2, 1], padding: [1, 0] }),
    grad: true,
    atol: 1e-4,
  },
  {
    name: 'conv2d groups',
    ops: ['conv2d'],
    inputs: [f([2, 4, 5, 5]), f([6, 2, 3, 3])],
    run: (x, w) => kn.conv2d(x, w, null, { groups: 2, padding: 1 }),
    grad: true,
    atol: 1e-4,
  },
  {
    name: 'conv2d 1x1',
    ops: ['conv2d'],
    inputs: [f([3, 4, 3, 3]), f([5, 4, 1, 1])],
    run: (x, w) => kn.conv2d(x, w),
    grad: true,
  },
  {
    // CUDA's implicit GEMM: two 64-row tiles of output channels, K = 72 taps over five k-steps
    name: 'conv2d 70 output channels',
    ops: ['conv2d'],
    inputs: [f([2, 8, 6, 6]), f([70, 8, 3, 3])],
    run: (x, w) => kn.conv2d(x, w, null, { padding: 1 }),
    atol: 1e-4,
  },
  {
    // the input gradient's implicit GEMM: 72 input channels a group (two row tiles), stride 2 skipping taps
    name: 'conv2d backward input, 2 groups of 72 channels',
    ops: ['conv2dBackwardInput'],
    inputs: [f([1, 144, 5, 5]), f([6, 72, 3, 3])],
    run: (x, w) => kn.grad((t) => kn.conv2d(t, w, null, { stride: 2, padding: 1, groups: 2 }).sum())(x) as kn.Tensor,
    atol: 1e-4,
  },
  {
    name: 'conv2d backward input',
    ops: ['conv2dBackwardInput'],
    inputs: [f([2, 3, 7, 6]), f([4, 3, 3, 3])],
    run: (x, w) => kn.grad((t) => kn.conv2d(t, w, null, { stride: 2, padding: 1 }).mul(t.sum()).sum())(x) as kn.Tensor,
    atol: 1e-3,
    rtol: 1e-3,
  },
  {
    name: 'conv2d backward weight',
    ops: ['conv2dBackwardWeight'],
    inputs: [f([3, 2, 7, 6]), f([4, 2, 3, 3])],
    run: (x, w) => kn.grad((t) => kn.conv2d(x, t, null, { stride: [1, 2], padding: 1 }).sum())(w) as kn.Tensor,
    atol: 1e-3,
  },
  {
    // 20 maps of 7x5 outputs: webgpu's 256 invocations per weight each take several positions, stepping by
    // (7 maps, 2 rows, 1 column) with a carry into the row and the map
    name: 'conv2d backward weight, many small maps',
    ops: ['conv2dBackwardWeight'],
    inputs: [f([20, 2, 7, 5]), f([3, 2, 3, 3])],
    run: (x, w) =>
      kn.grad((t) => {
        const y = kn.conv2d(x, t, null, { padding: 1 });
        return y.mul(y).sum();
      })(w) as kn.Tensor,
    atol: 1e-3,
  },
  // large enough for several row tiles per image (the cpu kernels tile im2col/col2im at ~128 KiB of columns)
  // and for the backward weight's per-thread partial sums (N >= threads), with groups, stride and dilation
  {
    name: 'conv2d in row tiles',
    ops: ['conv2d'],
    inputs: [f([3, 32, 24, 24]), f([8, 16, 3, 3])],
    run: (x, w) => kn.conv2d(x, w, null, { groups: 2, stride: [2, 1], dilation: [1, 2], padding: [1, 2] }),
    atol: 1e-3,
    rtol: 1e-4,
  },
  {
    name: 'conv2d backward input in row tiles',
    ops: ['conv2dBackwardInput'],
    inputs: [f([3, 32, 24, 24]), f([8, 16, 3, 3])],
    run: (x, w) =>
      kn.grad((t) => kn.conv2d(t, w, null, { groups: 2, stride: [2, 1], dilation: [1, 2], padding: [1, 2] }).sum())(
        x,
      ) as kn.Tensor,
    atol: 1e-3,
    rtol: 1e-4,
  },
  {
    name: 'conv2d backward weight in row tiles',
    ops: ['conv2dBackwardWeight'],
    inputs: [f([3, 32, 24, 24]), f([8, 16, 3, 3])],
    run: (x, w) =>
      kn.grad((t) => kn.conv2d(x, t, null, { groups: 2, stride: [2, 1], dilation: [1, 2], padding: [1, 2] }).sum())(
        w,
      ) as kn.Tensor,
    atol: 1e-2,
    rtol: 1e-4,
  },
  {
    // 32 output channels of 144 columns: the weight gradient's GEMM runs transposed
    name: 'conv2d backward weight, transposed GEMM, row tiles',
    ops: ['conv2dBackwardWeight'],
    inputs: [f([3, 16, 20, 20]), f([32, 16, 3, 3])],
    run: (x, w) => kn.grad((t) => kn.conv2d(x, t, null, { padding: 1 }).sum())(w) as kn.Tensor,
    atol: 1e-2,
    rtol: 1e-4,
  },
  {
    // 1260 output positions: CUDA's weight-gradient GEMM cuts them into two chunks (640 and 620, which is not a
    // whole number of 16-position k-steps) and adds the partial sums in order; groups, stride and dilation
    name: 'conv2d backward weight over chunks of positions',
    ops: ['conv2dBackwardWeight'],
    inputs: [f([12, 4, 15, 13]), f([6, 2, 3, 3])],
    run: (x, w) =>
      kn.grad((t) => {
        const y = kn.conv2d(x, t, null, { groups: 2, stride: [1, 2], dilation: [2, 1], padding: [2, 1] });
        return y.mul(y).sum();
      })(w) as kn.Tensor,
    atol: 1e-2,
    rtol: 1e-4,
  },
  {
    name: 'maxPool2d 2x2',
    ops: ['maxPool2d', 'maxPool2dBackward'],
    inputs: [f([2, 3, 6, 6])],
    run: (x) => kn.maxPool2d(x, 2),
    grad: true,
  },
  {
    name: 'maxPool2d 3x3 s2 pad 1',
    ops: ['maxPool2d'],
    inputs: [f([1, 2, 7, 5])],
    run: (x) => kn.maxPool2d(x, 3, { stride: 2, padding: 1 }),
    grad: true,
  },
  {
    // windows that tile the input (stride = kernel) with rows and columns left over, and ties (relu's zeros):
    // the cpu kernel's non-overlapping path
    name: 'maxPool2d backward, tiled windows with a remainder and ties',
    ops: ['maxPool2dBackward'],
    inputs: [f([2, 3, 7, 5])],
    run: (x) => kn.grad((t) => kn.maxPool2d(t.relu(), [3, 2]).mul(2).sum())(x) as kn.Tensor,
  },
  {
    name: 'maxPool2d backward',
    ops: ['maxPool2dBackward'],
    inputs: [f([2, 2, 5, 5])],
    run: (x) => kn.grad((t) => kn.maxPool2d(t, [2, 3], { stride: 1 }).mul(2).sum())(x) as kn.Tensor,
  },
  {
    name: 'avgPool2d',
    ops: ['avgPool2d', 'avgPool2dBackward'],
    inputs: [f([2, 3, 6, 4])],
    run: (x) => kn.avgPool2d(x, 2),
    grad: true,
  },
  {
    name: 'avgPool2d pad exclude',
    ops: ['avgPool2d'],
    inputs: [f([1, 2, 5, 5])],
    run: (x) => kn.avgPool2d(x, 3, { stride: 2, padding: 1, countIncludePad: false }),
    grad: true,
  },
  {
    name: 'avgPool2d backward',
    ops: ['avgPool2dBackward'],
    inputs: [f([1, 3, 5, 6])],
    run: (x) => kn.grad((t) => kn.avgPool2d(t, 3, { stride: 2, padding: 1 }).sum())(x) as kn.Tensor,
  },
  // movement
  {
    name: 'contiguous of transposed',
    ops: ['copy'],
    inputs: [f([3, 4, 5], { transposed: true })],
    run: (x) => x.permute([2, 0, 1]).contiguous(),
    grad: true,
  },
  {
    name: 'reshape of transposed (copy)',
    ops: ['copy'],
    inputs: [f([4, 6], { transposed: true })],
    run: (x) => x.reshape([3, 8]),
    grad: true,
  },
  {
    name: 'slice with steps',
    ops: ['copy', 'scatterAdd'],
    inputs: [f([7, 8])],
    run: (x) => x.slice([1, -6], [null, 7], [2, 3]).contiguous(),
    grad: true,
  },
  { name: 'expand + add', ops: ['add'], inputs: [f([3, 1])], run: (x) => x.expand([3, 4]).add(1), grad: true },
  {
    name: 'concat axis 1',
    ops: ['concat'],
    inputs: [f([2, 3]), f([2, 1]), f([2, 4], { transposed: true })],
    run: (a, b, c) => kn.concat([a, b, c], 1),
    grad: true,
  },
  { name: 'concat with size-0', ops: ['concat'], inputs: [f([0, 3]), f([2, 3])], run: (a, b) => kn.concat([a, b], 0) },
  {
    name: 'stack axis 1',
    ops: ['concat'],
    inputs: [f([2, 3]), f([2, 3])],
    run: (a, b) => kn.stack([a, b], 1),
    grad: true,
  },
  // contiguous kernels fed offset views (a batch sliced from a dataset): they must start at the view's offset
  {
    name: 'reductions, softmax and gather on offset slices',
    ops: ['sum', 'max', 'argmax', 'softmax', 'logSoftmax', 'gather', 'scatterAdd'],
    inputs: [f([7, 5]), ints([6], 0, 5)],
    run: (x, i) => {
      const s = x.slice([2], [6]);
      const j = i.slice([3]);
      return kn.concat([
        s.sum(1),
        s.max(1),
        s.argmax(1).cast('float32'),
        s.softmax(1).sum(0),
        s.logSoftmax(0).mean(1),
        s.gather(j, 1).reshape([-1]),
      ]);
    },
    grad: true,
  },
  {
    name: 'conv2d, pooling and crossEntropy on offset slices',
    ops: ['conv2d', 'maxPool2d', 'avgPool2d', 'softmaxCrossEntropy'],
    inputs: [f([3, 2, 5, 5]), f([3, 2, 3, 3]), ints([5], 0, 3)],
    run: (x, w, y) => {
      const xs = x.slice([1]);
      const c = kn.conv2d(xs, w, null, { padding: 1 });
      const pooled = kn.concat([kn.maxPool2d(c, 2).reshape([2, -1]), kn.avgPool2d(c, 2).reshape([2, -1])], 1);
      return kn.nn.loss
        .crossEntropy(pooled.slice([0], [2], [1]).reshape([2, -1]).slice([0, 0], [2, 3]), y.slice([3]).cast('int32'))
        .reshape([1]);
    },
    grad: true,
    atol: 1e-4,
  },
  {
    name: 'gather axis 0',
    ops: ['gather', 'scatterAdd'],
    inputs: [f([5, 3]), ints([4], 0, 5)],
    run: (x, i) => x.gather(i, 0),
    grad: true,
  },
  {
    name: 'gather axis 1 with 2-D index',
    ops: ['gather'],
    inputs: [f([2, 6, 3]), ints([2, 2], 0, 6)],
    run: (x, i) => x.gather(i, 1),
    grad: true,
  },
  {
    name: 'gather int32 data',
    ops: ['gather'],
    inputs: [ints([6], 0, 100), ints([3], 0, 6)],
    run: (x, i) => x.gather(i),
  },
  {
    name: 'scatterAdd via gather grad (repeats)',
    ops: ['scatterAdd'],
    inputs: [f([4, 3]), ints([9], 0, 4)],
    run: (x, i) => kn.grad((t) => t.gather(i).mul(t.gather(i)).sum())(x) as kn.Tensor,
  },
  // webgpu groups the positions by row in blocks of 256 and scans the rows in slices: 700 positions over 300 rows
  // take three blocks and two rows a slice; an empty index gives zeros
  {
    name: 'scatterAdd via gather grad: repeats across blocks, no positions',
    ops: ['scatterAdd'],
    inputs: [f([300, 3]), ints([700], 0, 300), f([700, 3]), ints([0], 0, 1)],
    run: (x, i, w, none) =>
      kn.concat([
        kn.grad((t) => t.gather(i).mul(w).sum())(x) as kn.Tensor,
        kn.grad((t) => t.gather(none, 1).sum().add(t.sum()))(x) as kn.Tensor,
      ]),
  },
  // large enough to take the multi-threaded paths (grain is 16k elements)
  {
    name: 'large broadcast add + exp (threads)',
    ops: ['add', 'exp'],
    inputs: [f([300, 257]), f([257])],
    run: (a, b) => a.add(b).exp(),
  },
  {
    name: 'large transposed tanh (threads)',
    ops: ['tanh'],
    inputs: [f([257, 300], { transposed: true })],
    run: (x) => x.tanh(),
  },
  {
    name: 'large sum both axes (threads)',
    ops: ['sum'],
    inputs: [f([300, 257])],
    run: (x) => kn.concat([x.sum(0), x.sum(1)]),
    atol: 1e-4,
  },
  {
    // the reductions down a long middle axis with few outputs (webgpu tiles them: 32 outputs a workgroup, 8
    // groups down the axis): 100 values (not a multiple of 8), 40 columns (a tile and a part), 3 slices. NaNs in
    // slice 1 column 3 at k = 65 and 58 (group 1 holds the later one, so the combine must pick by k); ties in the
    // truncated floats and the small ints (the first index wins); int32 sums that wrap past 2^31 as every backend's
    name: 'sum, max, min, argmax and argmin over axis 1 of [3, 100, 40], float with NaNs and ties, and int32',
    ops: ['sum', 'max', 'min', 'argmax', 'argmin'],
    inputs: [f([3, 100, 40], { lo: -5, hi: 5 }), ints([3, 100, 40], -2e8, 2e8), ints([3, 100, 40], -3, 3)],
    run: (x, k, small) => {
      const nan = kn.tensor(
        Uint8Array.from({ length: 12000 }, (_, i) => (i === 4000 + 65 * 40 + 3 || i === 4000 + 58 * 40 + 3 ? 1 : 0)),
        [3, 100, 40],
        { dtype: 'bool' },
      );
      const xs = kn.where(nan, NaN, x);
      const tied = kn.where(nan, NaN, x.cast('int32').cast('float32')); // whole numbers in (-5, 5): ties
      const f32 = (t: kn.Tensor): kn.Tensor => t.cast('float32');
      return kn.concat([
        xs.sum(1),
        xs.max(1),
        xs.min(1),
        x.sum(1),
        f32(k.sum(1)),
        f32(k.max(1)),
        f32(k.min(1)),
        f32(tied.argmax(1)),
        f32(tied.argmin(1)),
        f32(x.argmax(1)),
        f32(small.argmax(1)),
        f32(small.argmin(1)),
      ]);
    },
    atol: 1e-4,
  },
  {
    // argmax/argmin of 3 rows of 1100 (webgpu: a workgroup a row, cuda: a block a row): truncated floats (many
    // ties), NaNs in row 1 at k = 250 and 260, row 2's maximum alone at k = 230; small ints (ties)
    name: 'argmax and argmin of long rows, with ties and NaNs',
    ops: ['argmax', 'argmin', 'max'],
    inputs: [f([3, 1100], { lo: -5, hi: 5 }), ints([3, 1100], -3, 3)],
    run: (x, k) => {
      const at = (...is: number[]): kn.Tensor =>
        kn.tensor(
          Uint8Array.from({ length: 3300 }, (_, i) => (is.includes(i) ? 1 : 0)),
          [3, 1100],
          { dtype: 'bool' },
        );
      const t = kn.where(at(1350, 1360), NaN, kn.where(at(2430), 1e9, x.cast('int32').cast('float32')));
      const f32 = (a: kn.Tensor): kn.Tensor => a.cast('float32');
      return kn.concat([f32(t.argmax(1)), f32(t.argmin(1)), f32(k.argmax(1)), f32(k.argmin(1)), t.max(1)]);
    },
  },
  {
    name: 'large max/softmax (threads)',
    ops: ['max', 'softmax', 'logSoftmax'],
    inputs: [f([300, 257])],
    run: (x) => kn.concat([x.max(0), x.softmax(1).sum(0), x.logSoftmax(0).sum(1)]),
    atol: 1e-4,
  },
  {
    name: 'large conv2d batch (threads)',
    ops: ['conv2d'],
    inputs: [f([6, 3, 20, 20]), f([8, 3, 3, 3])],
    run: (x, w) => kn.conv2d(x, w, null, { padding: 1 }),
    atol: 1e-4,
  },
  {
    name: 'large conv2d backward (threads)',
    ops: ['conv2dBackwardInput', 'conv2dBackwardWeight'],
    inputs: [f([4, 3, 16, 16]), f([5, 3, 3, 3])],
    run: (x, w) => {
      const [gx, gw] = kn.grad((a, b) => kn.conv2d(a, b, null, { padding: 1, stride: 2 }).sum())(x, w) as kn.Tensor[];
      return kn.concat([gx!.flatten(), gw!.flatten()]);
    },
    atol: 1e-3,
  },
  {
    name: 'large pools (threads)',
    ops: ['maxPool2d', 'avgPool2d'],
    inputs: [f([4, 8, 24, 24])],
    run: (x) => kn.maxPool2d(x, 2).add(kn.avgPool2d(x, 2)),
  },
  {
    name: 'large gather/copy (threads)',
    ops: ['gather', 'copy'],
    inputs: [f([500, 64]), ints([700], 0, 500)],
    run: (x, i) => x.gather(i).transpose().contiguous(),
  },
  {
    name: 'large batched small matmuls (batch-parallel path)',
    ops: ['matmul'],
    inputs: [f([64, 8, 9]), f([64, 9, 7])],
    run: (a, b) => a.matmul(b),
  },
  {
    name: 'large matmul M=1 (N-split path)',
    ops: ['matmul'],
    inputs: [f([1, 300]), f([300, 700])],
    run: (a, b) => a.matmul(b),
    atol: 1e-4,
  },
  {
    name: 'large rand (threads)',
    ops: ['randomUniform', 'randomNormal'],
    inputs: [],
    run: () => {
      kn.seed(21);
      return kn.rand([40000]).add(kn.randn([40000]));
    },
    atol: 1e-6,
    rtol: 0,
    float32Tol: [5e-6, 0],
  },
  // half and small integer dtypes compute through promotion and are cast back
  {
    name: 'float16 add + exp',
    ops: ['add', 'exp', 'cast'],
    inputs: [f([5, 6], { dtype: 'float16' }), f([6], { dtype: 'float16' })],
    run: (a, b) => a.add(b).exp(),
    rtol: 1e-3,
  },
  {
    name: 'bfloat16 matmul',
    ops: ['matmulBf16', 'cast'],
    inputs: [f([4, 5], { dtype: 'bfloat16' }), f([5, 3], { dtype: 'bfloat16' })],
    run: (a, b) => a.matmul(b),
    rtol: 1e-2,
    atol: 1e-2,
  },
  {
    name: 'bfloat16 matmul odd sizes (panels, odd K)',
    ops: ['matmulBf16'],
    inputs: [f([33, 65], { dtype: 'bfloat16' }), f([65, 37], { dtype: 'bfloat16' })],
    run: (a, b) => a.matmul(b),
    rtol: 1e-2,
    atol: 2e-2,
  },
  {
    name: 'bfloat16 matmul K over a block (accumulate)',
    ops: ['matmulBf16'],
    inputs: [f([13, 1031], { dtype: 'bfloat16' }), f([1031, 20], { dtype: 'bfloat16' })],
    run: (a, b) => a.matmul(b).cast('float32'),
    rtol: 1e-2,
    atol: 1e-1,
  },
  {
    // 140 products: on a GPU with up to 140 SMs, CUDA's 128x128-tile tensor-core kernel (k-steps of 32, partial
    // tiles, a plain A and a transposed B)
    name: 'bfloat16 matmul 140 batched products',
    ops: ['matmulBf16'],
    inputs: [f([140, 20, 70], { dtype: 'bfloat16' }), f([140, 70, 24], { dtype: 'bfloat16', transposed: true })],
    run: (a, b) => a.matmul(b),
    rtol: 1e-2,
    atol: 5e-2,
  },
  {
    // several 128x128 tiles (both halves of a tile, partial edge tiles); on Hopper's wgmma path (KILN_CUDA_WGMMA=1)
    // both operands are read in place as K-major: A's rows and B's columns are 136 contiguous values
    name: 'bfloat16 matmul over several 128x128 tiles, K-major operands',
    ops: ['matmulBf16'],
    inputs: [f([200, 136], { dtype: 'bfloat16' }), f([136, 150], { dtype: 'bfloat16', transposed: true })],
    run: (a, b) => a.matmul(b),
    rtol: 1e-2,
    atol: 5e-2,
  },
  {
    // a plain B [K, N]: the wgmma path reads it in place MN-major (rows of 200 aligned values), A K-major
    name: 'bfloat16 matmul over several 128x128 tiles, a plain B',
    ops: ['matmulBf16'],
    inputs: [f([260, 72], { dtype: 'bfloat16' }), f([72, 200], { dtype: 'bfloat16' })],
    run: (a, b) => a.matmul(b),
    rtol: 1e-2,
    atol: 5e-2,
  },
  {
    // a transposed A (M contiguous) and a plain B: both MN-major on the wgmma path
    name: 'bfloat16 matmul over several 128x128 tiles, a transposed A and a plain B',
    ops: ['matmulBf16'],
    inputs: [f([264, 72], { dtype: 'bfloat16', transposed: true }), f([72, 200], { dtype: 'bfloat16' })],
    run: (a, b) => a.matmul(b),
    rtol: 1e-2,
    atol: 5e-2,
  },
  {
    // a plain B whose rows of 201 values break the 16-byte alignment: the wgmma path packs it K-major first
    name: 'bfloat16 matmul over several 128x128 tiles, a plain B with unaligned rows',
    ops: ['matmulBf16'],
    inputs: [f([260, 72], { dtype: 'bfloat16' }), f([72, 201], { dtype: 'bfloat16' })],
    run: (a, b) => a.matmul(b),
    rtol: 1e-2,
    atol: 5e-2,
  },
  {
    name: 'bfloat16 matmul transposed views, batched broadcast',
    ops: ['matmulBf16'],
    inputs: [f([2, 1, 6, 7], { dtype: 'bfloat16' }), f([3, 5, 7], { dtype: 'bfloat16', transposed: true })],
    run: (a, b) => a.matmul(b.transpose()),
    rtol: 1e-2,
    atol: 2e-2,
  },
  {
    name: 'int8 add saturates on cast back',
    ops: ['add', 'cast'],
    inputs: [ints([12], -128, 127, 'int8'), ints([12], -128, 127, 'int8')],
    run: (a, b) => a.add(b),
  },
  {
    name: 'uint8 max / sum',
    ops: ['max', 'sum'],
    inputs: [ints([4, 6], 0, 255, 'uint8')],
    run: (x) => x.max(1).add(x.sum(1)),
  },
  // NaN-ignoring column quantiles (sorted order statistics, interpolated)
  ...[0, 0.25, 0.5, 0.9, 1].map((q) => ({
    name: `nanQuantile q=${q}`,
    ops: ['nanQuantile'] as OpName[],
    inputs: [f([9, 4])],
    run: (x: kn.Tensor) => kn.nanQuantile(kn.where(x.gt(1.5), NaN, x), q),
  })),
  {
    name: 'nanQuantile: all-NaN column, one row, no rows',
    ops: ['nanQuantile'],
    inputs: [f([1, 3])],
    run: (x: kn.Tensor) => {
      const a = kn.nanQuantile(kn.full([4, 2], NaN), 0.5),
        c = kn.nanQuantile(kn.zeros([0, 2]), 0.5);
      return kn.concat([a.ne(a).cast('float32'), kn.nanQuantile(x, 0.3), c.ne(c).cast('float32')]);
    },
  },
  {
    name: 'nanColumnStats with NaN and an all-NaN column',
    ops: ['nanColumnStats'],
    inputs: [f([7, 3])],
    run: (x: kn.Tensor) => {
      const s = kn.nanColumnStats(kn.concat([kn.where(x.gt(1), NaN, x), kn.full([7, 1], NaN)], 1));
      return kn.where(s.ne(s), -999, s);
    },
  },
  {
    name: 'nanColumnStats large (threads, chunk merge)',
    ops: ['nanColumnStats'],
    inputs: [f([9000, 5], { lo: 100, hi: 101 })],
    run: (x: kn.Tensor) => kn.nanColumnStats(x),
    rtol: 1e-5,
  },
  {
    name: 'rowHash (NaN payloads hash alike; identical on every backend)',
    ops: ['rowHash'],
    inputs: [f([40, 3])],
    atol: 0,
    rtol: 0,
    run: (x: kn.Tensor) => kn.rowHash(kn.concat([kn.where(x.gt(1.5), NaN, x), x.slice([0, 0], [40, 1])], 1)),
  },
  {
    name: 'nanQuantile large (threads)',
    ops: ['nanQuantile'],
    inputs: [f([5000, 7])],
    run: (x: kn.Tensor) => kn.nanQuantile(x, 0.75),
  },
  // fused softmax cross-entropy (forward and backward kernels), with weights and label smoothing, large logits;
  // with 40 classes too, where webgpu runs 32 invocations per row and 8 rows per workgroup (6 rows: 2 absent)
  ...[5, 40].flatMap((c) =>
    (
      [
        [false, 0],
        [false, 0.1],
        [true, 0],
        [true, 0.3],
      ] as [boolean, number][]
    ).map(([w, eps]) => ({
      name: `crossEntropy weight=${w} smoothing=${eps}${c === 5 ? '' : ` C=${c}`}`,
      ops: ['softmaxCrossEntropy', 'softmaxCrossEntropyBackward'] as OpName[],
      inputs: [f([6, c], { lo: -6, hi: 6 }), ints([6], 0, c)],
      grad: false,
      atol: 1e-5,
      run: (x: kn.Tensor, y: kn.Tensor) => {
        const lg = x.clone();
        lg.requiresGrad = true;
        const values = c === 5 ? [0.5, 2, 1, 3, 0.2] : Array.from({ length: c }, (_, k) => 0.2 + (k % 7) * 0.45);
        const weight = w ? kn.tensor(values, undefined, { backend: x.backend }) : null;
        const l = kn.nn.loss.crossEntropy(lg, y, { weight, labelSmoothing: eps, reduction: 'none' });
        l.mul(kn.tensor([1, -2, 0.5, 3, 1, 2], undefined, { backend: x.backend }))
          .sum()
          .backward();
        return kn.concat([l, lg.grad!.flatten()]);
      },
    })),
  ),
  {
    name: 'crossEntropy large rows (threads)',
    ops: ['softmaxCrossEntropy'],
    inputs: [f([3000, 37], { lo: -50, hi: 50 }), ints([3000], 0, 37)],
    run: (x: kn.Tensor, y: kn.Tensor) => kn.nn.loss.crossEntropy(x, y, { reduction: 'none' }),
    atol: 1e-4,
  },
  // fused optimizer steps, in place (three steps so momentum/moments/bias correction all matter)
  ...(
    [
      ['adam', (w: kn.Tensor) => new kn.optim.Adam([w], { lr: 0.05 })],
      [
        'adam L2 + amsgrad',
        (w: kn.Tensor) => new kn.optim.Adam([w], { lr: 0.05, weightDecay: 0.1, amsgrad: true, betas: [0.8, 0.9] }),
      ],
      ['adamw', (w: kn.Tensor) => new kn.optim.AdamW([w], { lr: 0.05, weightDecay: 0.2 })],
      ['sgd plain + decay', (w: kn.Tensor) => new kn.optim.SGD([w], { lr: 0.1, weightDecay: 0.1 })],
      ['sgd momentum dampening', (w: kn.Tensor) => new kn.optim.SGD([w], { lr: 0.1, momentum: 0.9, dampening: 0.3 })],
      ['sgd nesterov', (w: kn.Tensor) => new kn.optim.SGD([w], { lr: 0.1, momentum: 0.9, nesterov: true })],
    ] as [string, (w: kn.Tensor) => kn.optim.Optimizer][]
  ).map(([n, make]) => ({
    name: `optimizer step: ${n}`,
    ops: [n.startsWith('sgd') ? 'sgdStep' : 'adamStep'] as OpName[],
    inputs: [f([7, 300]), f([7, 300])],
    atol: 1e-5,
    run: (p: kn.Tensor, g: kn.Tensor) => {
      const w = p.clone();
      w.requiresGrad = true;
      const opt = make(w);
      for (let k = 1; k <= 3; k++) {
        w.grad = g.mul(k === 2 ? -0.5 : k);
        opt.step();
      }
      opt.dispose();
      w.grad?.dispose();
      return w;
    },
  })),
  // Adam without AMSGrad batches parameters through adamStepMulti, 8 per call. Parameter 3 has no gradient in step
  // 2, so steps 2 and 3 run two step counts (two batches, and a batch of one that goes through adamStep)
  multiTensorCase(
    'adamw',
    ['adamStepMulti', 'adamStep'],
    (ws) => new kn.optim.AdamW(ws, { lr: 0.05, weightDecay: 0.1 }),
    2,
  ),
  // SGD with momentum batches them through sgdStepMulti, grouped by whether their buffers are new: parameter 3 has
  // no gradient in step 1, so step 2 runs 10 parameters with buffers (8 + 2) and parameter 3's first step on its
  // own (sgdStep); Nesterov and weight decay on
  multiTensorCase(
    'sgd nesterov',
    ['sgdStepMulti', 'sgdStep'],
    (ws) => new kn.optim.SGD(ws, { lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 0.1 }),
    1,
  ),
  // int8 linear (the quantization is bit-identical across backends; only the float epilogue rounds)
  // int4 weight-only linear: packed bytes are any uint8 (two nibbles each), K not a multiple of the group (padding)
  {
    name: 'qlinearInt4 bias, K = 45 in groups of 32',
    ops: ['qlinearInt4'],
    inputs: [f([5, 45]), ints([7, 32], 0, 256, 'uint8'), f([7, 2], { lo: 0.01, hi: 0.2 }), f([7])],
    run: (x, w, s, b) => kn.qlinearInt4(x, w, s, b, 32),
    atol: 1e-4,
  },
  {
    name: 'qlinearInt4 with 1-3 rows (row by row, no GEMM): K = 130 in groups of 64, and N = 2000 over threads',
    ops: ['qlinearInt4'],
    inputs: [f([3, 130]), ints([2000, 96], 0, 256, 'uint8'), f([2000, 3], { lo: 0.01, hi: 0.1 }), f([2000])],
    run: (x, w, s, b) => {
      const y1 = kn.qlinearInt4(kn.slice(x, [0, 0], [1, 130]), w, s, b, 64);
      const y3 = kn.qlinearInt4(x, kn.slice(w, [0, 0], [7, 96]), kn.slice(s, [0, 0], [7, 3]), null, 64);
      return kn.concat([y1, y3].map((y) => y.reshape([y.size])));
    },
    atol: 1e-3,
  },
  {
    // 13 rows take the GEMM with W dequantized into its panels: K = 601 runs as two K blocks (304 + 297), the
    // second starting inside a group of 64 and ending on an odd element, and N = 45 leaves a partial panel; 8
    // rows, the most that go row by row
    name: 'qlinearInt4 dequantized into GEMM panels: K = 601 in two blocks, groups of 64, N = 45; and 8 rows',
    ops: ['qlinearInt4'],
    inputs: [f([13, 601]), ints([45, 320], 0, 256, 'uint8'), f([45, 10], { lo: 0.01, hi: 0.1 }), f([45])],
    run: (x, w, s, b) => {
      const y13 = kn.qlinearInt4(x, w, s, b, 64);
      const y8 = kn.qlinearInt4(kn.slice(x, [0, 0], [8, 601]), w, s, b, 64);
      return kn.concat([y13, y8].map((y) => y.reshape([y.size])));
    },
    atol: 1e-3,
  },
  {
    name: 'qlinearInt4 large (tiles, threads), 3-D x, groups of 64',
    ops: ['qlinearInt4'],
    inputs: [f([2, 70, 128]), ints([100, 64], 0, 256, 'uint8'), f([100, 2], { lo: 0.01, hi: 0.1 })],
    run: (x, w, s) => kn.qlinearInt4(x, w, s, null, 64),
    atol: 1e-3,
  },
  {
    name: 'qlinearInt8 dynamic + bias',
    ops: ['qlinearInt8'],
    inputs: [f([5, 37]), ints([7, 37], -127, 127, 'int8'), f([7], { lo: 0.001, hi: 0.02 }), f([7])],
    run: (x, w, s, b) => kn.qlinearInt8(x, w, s, b),
    atol: 1e-4,
  },
  {
    name: 'qlinearInt8 static, clamped, no bias, 3-D x',
    ops: ['qlinearInt8'],
    inputs: [f([2, 3, 9], { lo: -3, hi: 3 }), ints([4, 9], -127, 127, 'int8'), f([4], { lo: 0.001, hi: 0.02 })],
    run: (x, w, s) => kn.qlinearInt8(x, w, s, null, { scale: 0.02, zeroPoint: 128 }),
    atol: 1e-4,
  },
  {
    name: 'qlinearInt8 large (panels, threads)',
    ops: ['qlinearInt8'],
    inputs: [f([70, 301]), ints([100, 301], -127, 127, 'int8'), f([100], { lo: 0.001, hi: 0.01 }), f([100])],
    run: (x, w, s, b) => kn.qlinearInt8(x, w, s, b),
    atol: 1e-4,
  },
  {
    // K a multiple of 4: word loads of the weight (CUDA's tiled kernel for 72 rows, a warp per output for 3)
    name: 'qlinearInt8 72 rows, K = 128',
    ops: ['qlinearInt8'],
    inputs: [f([72, 128]), ints([66, 128], -127, 127, 'int8'), f([66], { lo: 0.001, hi: 0.01 }), f([66])],
    run: (x, w, s, b) => kn.qlinearInt8(x, w, s, b),
    atol: 1e-4,
  },
  {
    name: 'qlinearInt8 3 rows, K = 64, static',
    ops: ['qlinearInt8'],
    inputs: [f([3, 64], { lo: -3, hi: 3 }), ints([40, 64], -127, 127, 'int8'), f([40], { lo: 0.001, hi: 0.02 })],
    run: (x, w, s) => kn.qlinearInt8(x, w, s, null, { scale: 0.025, zeroPoint: 120 }),
    atol: 1e-4,
  },
  {
    name: 'qlinearInt8 constant row and K=1',
    ops: ['qlinearInt8'],
    inputs: [f([3, 1]), ints([2, 1], -127, 127, 'int8'), f([2], { lo: 0.01, hi: 0.02 })],
    run: (x, w, s) => kn.qlinearInt8(kn.concat([x, kn.zeros([1, 1])]), w, s),
    atol: 1e-5,
  },
  // int8 convolution: the copy with channel blocks, stride phases and spare positions (cpu), and the direct sum
  // of in-bounds taps where that copy would be huge; every image quantized on its own
  {
    name: 'qconv2dInt8 dynamic + bias, padding 1, C = 6 and O = 11 (partial blocks)',
    ops: ['qconv2dInt8'],
    inputs: [f([3, 6, 9, 10]), ints([11, 6, 3, 3], -127, 127, 'int8'), f([11], { lo: 0.001, hi: 0.02 }), f([11])],
    run: (x, w, s, b) => kn.qconv2dInt8(x, w, s, b, { padding: 1 }),
    atol: 1e-4,
  },
  {
    name: 'qconv2dInt8 with the ReLU in the kernel (direct and summed-taps paths)',
    ops: ['qconv2dInt8'],
    inputs: [f([2, 5, 7, 6]), ints([10, 5, 3, 3], -127, 127, 'int8'), f([10], { lo: 0.001, hi: 0.02 }), f([10])],
    run: (x, w, s, b) => {
      const y1 = kn.qconv2dInt8(x, w, s, b, { padding: 1, relu: true });
      const y2 = kn.qconv2dInt8(x, w, s, b, { stride: [900, 1], padding: [20000, 1], dilation: [7000, 1], relu: true });
      return kn.concat([y1, y2].map((y) => y.reshape([y.size])));
    },
    atol: 1e-4,
  },
  {
    name: 'qconv2dInt8 static, clamped, stride 2, dilation, uneven padding',
    ops: ['qconv2dInt8'],
    inputs: [
      f([2, 5, 13, 12], { lo: -3, hi: 3 }),
      ints([7, 5, 3, 2], -127, 127, 'int8'),
      f([7], { lo: 0.001, hi: 0.02 }),
    ],
    run: (x, w, s) =>
      kn.qconv2dInt8(x, w, s, null, {
        stride: [2, 3],
        padding: [1, 2],
        dilation: [2, 1],
        act: { scale: 0.02, zeroPoint: 128 },
      }),
    atol: 1e-4,
  },
  {
    name: 'qconv2dInt8 large (row blocks, threads), 1 channel, 1x1 stride 3, constant image',
    ops: ['qconv2dInt8'],
    inputs: [f([5, 16, 20, 23]), ints([33, 16, 3, 3], -127, 127, 'int8'), f([33], { lo: 0.001, hi: 0.01 }), f([33])],
    run: (x, w, s, b) => {
      const y1 = kn.qconv2dInt8(x, w, s, b, { padding: 1 });
      const x1 = kn.slice(x, [0, 0, 0, 0], [2, 1, 20, 23]).contiguous();
      const w1 = kn.slice(w, [0, 0, 0, 0], [33, 1, 3, 3]).contiguous();
      const y2 = kn.qconv2dInt8(x1, w1, s, b, { padding: [2, 0] });
      const y3 = kn.qconv2dInt8(x, kn.slice(w, [0, 0, 1, 1], [33, 16, 2, 2]).contiguous(), s, null, { stride: 3 });
      const y4 = kn.qconv2dInt8(kn.full([1, 16, 4, 4], 0.7), w, s, b, { padding: 1 });
      return kn.concat([y1, y2, y3, y4].map((y) => y.reshape([y.size])));
    },
    atol: 1e-3,
  },
  {
    name: 'qconv2dInt8 with 1-3 channels (words of channel and kernel-column pairs), row stride 2, dilation',
    ops: ['qconv2dInt8'],
    inputs: [f([2, 3, 12, 11]), ints([9, 3, 5, 3], -127, 127, 'int8'), f([9], { lo: 0.001, hi: 0.02 }), f([9])],
    run: (x, w, s, b) => {
      const y1 = kn.qconv2dInt8(x, w, s, b, { stride: [2, 1], padding: 2 });
      const x2 = kn.slice(x, [0, 0, 0, 0], [2, 2, 12, 11]).contiguous();
      const w2 = kn.slice(w, [0, 0, 0, 0], [9, 2, 3, 3]).contiguous();
      const y2 = kn.qconv2dInt8(x2, w2, s, null, {
        padding: [2, 1],
        dilation: [1, 2],
        act: { scale: 0.03, zeroPoint: 90 },
      });
      return kn.concat([y1, y2].map((y) => y.reshape([y.size])));
    },
    atol: 1e-4,
  },
  {
    name: 'qconv2dInt8 with a max pool in the kernel: odd sides, 1-3 and 6 channels, pool 2 and 3, both paths',
    ops: ['qconv2dInt8'],
    inputs: [f([3, 6, 15, 13]), ints([11, 6, 3, 3], -127, 127, 'int8'), f([11], { lo: 0.001, hi: 0.02 }), f([11])],
    run: (x, w, s, b) => {
      const y1 = kn.qconv2dInt8(x, w, s, b, { padding: 1, relu: true, pool: 2 });
      const y2 = kn.qconv2dInt8(x, w, s, null, { stride: 2, pool: 3, act: { scale: 0.01, zeroPoint: 120 } });
      const x1 = kn.slice(x, [0, 0, 0, 0], [3, 1, 15, 13]).contiguous();
      const w1 = kn.slice(w, [0, 0, 0, 0], [11, 1, 3, 3]).contiguous();
      const y3 = kn.qconv2dInt8(x1, w1, s, b, { padding: 1, relu: true, pool: 2 });
      // the summed-taps path (the padded copy would be far larger than the image): only the middle kernel row
      // reaches the image, so every window pools real sums
      const far = { padding: [3000, 1] as [number, number], dilation: [3000, 1] as [number, number] };
      const y4 = kn.qconv2dInt8(x, w, s, b, { ...far, relu: true, pool: 2 });
      const y5 = kn.qconv2dInt8(x, w, s, b, { ...far, pool: 3 });
      return kn.concat([y1, y2, y3, y4, y5].map((y) => y.reshape([y.size])));
    },
    atol: 1e-4,
  },
  {
    name: 'qconv2dInt8 huge padding and dilation (taps summed directly)',
    ops: ['qconv2dInt8'],
    inputs: [f([2, 3, 2, 3]), ints([4, 3, 2, 2], -127, 127, 'int8'), f([4], { lo: 0.01, hi: 0.02 }), f([4])],
    run: (x, w, s, b) => kn.qconv2dInt8(x, w, s, b, { stride: [1000, 1], padding: [30000, 2], dilation: [30001, 2] }),
    atol: 1e-4,
  },
  // random (exactly the same numbers on every backend)
  {
    name: 'rand',
    ops: ['randomUniform'],
    inputs: [],
    run: () => {
      kn.seed(11);
      return kn.rand([3, 7], { low: -2, high: 5 });
    },
    atol: 0,
    rtol: 0,
    float32Tol: [5e-7, 0],
  },
  {
    name: 'randn',
    ops: ['randomNormal'],
    inputs: [],
    run: () => {
      kn.seed(12);
      return kn.randn([33], { mean: 1, std: 2 });
    },
    atol: 1e-6,
    rtol: 0,
  },
  {
    name: 'randint',
    ops: ['randomInt'],
    inputs: [],
    run: () => {
      kn.seed(13);
      return kn.randint([25], -7, 1000);
    },
    atol: 0,
    rtol: 0,
  },
  {
    name: 'randint wide range',
    ops: ['randomInt'],
    inputs: [],
    run: () => {
      kn.seed(14);
      return kn.randint([9], -2000000000, 2000000000);
    },
    atol: 0,
    rtol: 0,
  },
];

/** Builds a case's input tensors on the current backend from the case's seeded values. */
export function makeInputs(c: OpCase, r: () => number): kn.Tensor[] {
  return c.inputs.map((s) => {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const lo = s.lo ?? -2,
      hi = s.hi ?? 2;
    const vals = Array.from({ length: n }, () =>
      s.int ? Math.floor(lo + (hi - lo) * r()) : Math.fround(lo + (hi - lo) * r()),
    );
    const dtype = s.dtype ?? 'float32';
    if (s.transposed && s.shape.length >= 2) {
      // store with the last two dims swapped, then transpose back: same logical values, non-contiguous
      const sh = s.shape;
      const R = sh[sh.length - 2]!,
        C = sh[sh.length - 1]!,
        B = n / (R * C);
      const stored = new Array<number>(n);
      for (let b = 0; b < B; b++)
        for (let i = 0; i < R; i++)
          for (let j = 0; j < C; j++) stored[b * R * C + j * R + i] = vals[b * R * C + i * C + j]!;
      const t = kn.tensor(stored, [...sh.slice(0, -2), C, R], { dtype });
      const v = t.transpose();
      t.dispose();
      return v;
    }
    return kn.tensor(vals, s.shape, { dtype });
  });
}
