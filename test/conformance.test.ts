// Every op case on every available backend against the float64 js reference.
import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { runKernel } from '../src/engine/dispatch.js';
import { OP_TABLE } from '../src/ops/table.js';
import { loadAddon } from '../src/backends/native/binding.js';
import { CASES, makeInputs } from './cases.js';
import { allclose, nativeBackends, onBackend, rng } from './helpers.js';

function evaluate(b: kn.BackendName, i: number): { values: Float64Array; shape: readonly number[]; dtype: kn.DType } {
  const c = CASES[i]!;
  return onBackend(b, () =>
    kn.tidy(() => {
      const xs = makeInputs(c, rng(1000 + i));
      const y = c.run(...xs);
      return { values: y.toFloat64Array(), shape: y.shape.slice(), dtype: y.dtype };
    }),
  );
}

test('the cases cover every op in the table', () => {
  const covered = new Set(CASES.flatMap((c) => c.ops));
  const missing = OP_TABLE.map((o) => o.name).filter((n) => !covered.has(n));
  assert.equal(missing, [], `ops without a conformance case: ${missing.join(', ')}`);
});

test('a native backend is available to compare (cpu must load in CI)', () => {
  assert.ok(nativeBackends().includes('cpu'), `cpu backend missing: ${JSON.stringify(kn.info().backends)}`);
});

// the cpu backend is checked once per instruction set the CPU supports (AVX-512, AVX2, baseline)
const addon = loadAddon().addon;
const isas = addon ? addon.info().supportedIsas : [];
interface Target {
  backend: kn.BackendName;
  isa?: string;
}
const targets: Target[] = nativeBackends().flatMap((b): Target[] =>
  b === 'cpu' ? isas.map((isa) => ({ backend: b, isa })) : [{ backend: b }],
);

CASES.forEach((c, i) => {
  test(`${c.name}: js reference runs`, () => {
    const r = evaluate('js', i);
    assert.ok(r.values.length >= 0);
  });
  for (const { backend: b, isa } of targets) {
    test(`${c.name}: ${b}${isa ? `/${isa}` : ''} matches js`, () => {
      const ref = evaluate('js', i);
      const prev = addon?.info().isa;
      if (isa) addon!.setIsa(isa);
      let got: ReturnType<typeof evaluate>;
      try {
        got = evaluate(b, i);
      } finally {
        if (isa && prev) addon!.setIsa(prev);
      }
      assert.equal(got.shape, ref.shape, 'shape');
      assert.is(got.dtype, ref.dtype, 'dtype');
      const refVals = ref.dtype === 'float32' ? ref.values.map((v) => Math.fround(v)) : ref.values;
      // Philox bits are identical everywhere; webgpu turns them into floats in float32 (within an ulp or a few)
      const [atol, rtol] = b === 'webgpu' && c.float32Tol ? c.float32Tol : [c.atol ?? 1e-5, c.rtol ?? 1e-4];
      const r = allclose(got.values, refVals, atol, rtol, true);
      assert.ok(r.ok, `${b} vs js: ${r.message}`);
    });
  }
});

test('NaN never passes the comparison helper', () => {
  assert.not.ok(allclose([NaN], [1]).ok);
  assert.not.ok(allclose([1], [NaN]).ok);
  assert.not.ok(allclose([NaN], [NaN]).ok);
  assert.ok(allclose([NaN], [NaN], 0, 0, true).ok);
});

test('NaN propagates through reductions and max on every backend', () => {
  for (const b of ['js', ...nativeBackends()] as kn.BackendName[]) {
    onBackend(b, () =>
      kn.tidy(() => {
        const x = kn.tensor([1, NaN, 3]);
        assert.ok(Number.isNaN(x.max().item()), `${b} max`);
        assert.ok(Number.isNaN(x.sum().item()), `${b} sum`);
        assert.ok(Number.isNaN(x.softmax().toArray()[0]!), `${b} softmax`);
        assert.is(x.argmax().item(), 1, `${b} argmax picks NaN`);
      }),
    );
  }
});

test('long float32 sums stay within a few ulps of exact on every backend', () => {
  // 2^22 copies of 0.1f, whole and down a column of 2^18 rows: float lanes that each added thousands of values
  // were 2.4e-6 (cpu) and 1.5e-4 / 2.6e-4 (webgpu) off; PyTorch is 3e-7 off on the first
  const tenth = Math.fround(0.1);
  for (const b of ['js', ...nativeBackends()] as kn.BackendName[]) {
    onBackend(b, () =>
      kn.tidy(() => {
        const whole = kn
          .full([1 << 22], 0.1)
          .sum()
          .item();
        assert.ok(Math.abs(whole - tenth * 2 ** 22) <= 1e-6 * tenth * 2 ** 22, `${b}: whole sum ${whole}`);
        const cols = Array.from(
          kn
            .full([1 << 18, 4], 0.1)
            .sum(0)
            .toArray() as Float32Array,
        );
        for (const c of cols) assert.ok(Math.abs(c - tenth * 2 ** 18) <= 1e-6 * tenth * 2 ** 18, `${b}: column ${c}`);
      }),
    );
  }
});

test('matmulBf16 writes float32 (against the reference) or bfloat16 (that result rounded) on every backend', () => {
  // matmul of two bfloat16 tensors asks for bfloat16; the float32 output stays part of the op and is checked here
  const r = rng(29);
  const vals = (n: number) => Float32Array.from({ length: n }, () => Math.round((r() * 4 - 2) * 64) / 64);
  const a0 = vals(9 * 70),
    b0 = vals(70 * 13);
  const run = (be: kn.BackendName, dtype: 'float32' | 'bfloat16') =>
    onBackend(be, () =>
      kn.tidy(() => {
        const a = kn.tensor(a0, [9, 70]).cast('bfloat16'),
          b = kn.tensor(b0, [70, 13]).transpose().contiguous().transpose().cast('bfloat16');
        return runKernel('matmulBf16', [a, b], [], [9, 13], dtype).cast('float32').toArray() as Float32Array;
      }),
    );
  const want = run('js', 'float32');
  for (const be of kn.backends()) {
    const f32 = run(be, 'float32'),
      bf = run(be, 'bfloat16');
    assert.ok(allclose(f32, want, 1e-5, 1e-5), `${be}: matmulBf16 to float32 differs from the reference`);
    const rounded = onBackend('cpu', () => kn.tensor(f32, [9, 13]).cast('bfloat16').cast('float32').toArray());
    assert.equal(Array.from(bf), Array.from(rounded as Float32Array), `${be}: bfloat16 out is not the float32 rounded`);
  }
});

// ---- PyTorch's results on special values (test/ref/special_torch.py): signed zeros, infinities, NaN, subnormals
// and huge values through the elementwise ops, reductions, (log-)softmax, cross-entropy and casts, with gradients
// at ties, zeros and bounds, on every backend. Where kiln chose otherwise on purpose, DIVERGES says so and why.
type Num = number | 'nan' | 'inf' | '-inf' | '-0';
interface SpecialCase {
  name: string;
  op: string;
  inputs: { values: Num[]; shape: number[] }[];
  out: Num[];
  axis?: number;
  lo?: number | null;
  hi?: number | null;
  to?: kn.DType;
  grad?: true | Num[];
  gradB?: Num[];
  labels?: number[];
  smoothing?: number;
  weight?: Num[] | null;
  rowGrad?: number[];
}
const special = JSON.parse(readFileSync(new URL('./ref/special_torch.json', import.meta.url), 'utf8')) as {
  cases: SpecialCase[];
};
const num = (v: Num): number =>
  v === 'nan' ? NaN : v === 'inf' ? Infinity : v === '-inf' ? -Infinity : v === '-0' ? -0 : v;
const nums = (vs: Num[]): number[] => vs.map(num);

/**
 * Deliberate differences from PyTorch: where `applies` (backend, case, the inputs of entry i), a value that
 * differs is excused for `reason`. A rule marked `always` must excuse something on every backend, so one that no
 * longer matches any difference (kiln now agrees, or the reference changed) fails instead of lingering.
 */
const DIVERGES: {
  reason: string;
  always: boolean;
  applies: (b: kn.BackendName, c: SpecialCase, xs: number[][], i: number) => boolean;
}[] = [
  // NumPy's answer; PyTorch's 0 is its open issue 41245
  {
    reason: 'sign(NaN) is NaN',
    always: true,
    applies: (_, c, xs, i) => c.op === 'sign' && !c.grad && Number.isNaN(xs[0]![i]!),
  },
  // kn.pow documents the exponent's gradient as y log(a) where a > 0 and 0 elsewhere; PyTorch gives NaN (a < 0),
  // or +-inf at a = 0 with b < 0
  {
    reason: 'pow d/db is 0 where a <= 0',
    always: true,
    applies: (_, c, xs, i) => c.op === 'pow' && !!c.gradB && xs[0]![i]! <= 0 && !(xs[0]![i] === 0 && xs[1]![i]! >= 0),
  },
  // WGSL lets an implementation flush subnormal operands and results to zero (Mesa's llvmpipe does; a GPU may not)
  {
    reason: 'subnormals flushed',
    always: false,
    applies: (b, c, xs, i) =>
      b === 'webgpu' && c.op === 'pow' && xs.some((x) => Math.abs(x[i]!) < 1.2e-38 && x[i] !== 0),
  },
];

function runSpecial(c: SpecialCase): { out: number[]; grad?: number[]; gradB?: number[] } {
  return kn.tidy(() => {
    const xs = c.inputs.map((t) => kn.tensor(nums(t.values), t.shape, { requiresGrad: !!c.grad && c.op !== 'cast' }));
    const [a, b] = xs as [kn.Tensor, kn.Tensor];
    const call = kn as unknown as Record<string, (...args: unknown[]) => kn.Tensor>;
    let y: kn.Tensor;
    if (c.op === 'clamp') y = kn.clamp(a, c.lo, c.hi);
    else if (c.op === 'cast') y = kn.cast(a, c.to!);
    else if (c.op === 'var') y = kn.var(a, c.axis);
    else if (c.op === 'crossEntropy') {
      const weight = c.weight ? kn.tensor(nums(c.weight)) : undefined;
      const labels = kn.tensor(c.labels!, undefined, { dtype: 'int32' });
      y = kn.nn.loss.crossEntropy(a, labels, { weight, labelSmoothing: c.smoothing, reduction: 'none' });
      kn.backward(y, kn.tensor(c.rowGrad!));
    } else if (c.axis !== undefined) y = call[c.op]!(a, c.axis);
    else y = call[c.op]!(...xs);
    if (c.grad === true) y.sum().backward();
    // as float32 (the js reference holds float64; every result here is float32 or fits one exactly)
    const vals = (t: kn.Tensor | null): number[] => Array.from(t!.toFloat64Array(), Math.fround);
    if (c.op === 'crossEntropy') return { out: vals(y), grad: vals(a.grad) };
    if (c.grad) return { out: vals(a.grad), ...(b ? { gradB: vals(b.grad) } : {}) };
    return { out: vals(y) };
  });
}

/** The entries of got that differ from want: bits (signed zeros too) where rtol and atol are 0, else within
 * rtol |want| + atol. */
function specialDiffs(
  b: kn.BackendName,
  c: SpecialCase,
  got: number[],
  want: number[],
  rtol: number,
  atol: number,
  excused: Set<string>,
): string[] {
  const xs = c.inputs.map((t) => nums(t.values));
  const out: string[] = [];
  if (got.length !== want.length) return [`${got.length} values, expected ${want.length}`];
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!,
      w = want[i]!;
    const ok = Number.isNaN(w)
      ? Number.isNaN(g)
      : Object.is(g, w) ||
        (g === w && rtol > 0) ||
        (Number.isFinite(w) && Math.abs(g - w) <= rtol * Math.abs(w) + atol);
    if (ok) continue;
    const rule = DIVERGES.find((d) => d.applies(b, c, xs, i));
    if (rule) {
      excused.add(rule.reason);
      continue;
    }
    const at =
      c.inputs.length > 1 || c.inputs[0]!.values.length === want.length ? xs.map((x) => x[i]).join(', ') : `#${i}`;
    out.push(`at (${at}): ${g}, PyTorch ${w}`);
  }
  return out;
}

const EXACT = new Set([
  'neg',
  'abs',
  'sign',
  'relu',
  'add',
  'sub',
  'mul',
  'div',
  'maximum',
  'minimum',
  'clamp',
  'cast',
  'eq',
  'ne',
  'lt',
  'le',
  'gt',
  'ge',
  'max',
  'min',
  'argmax',
  'argmin',
]);

for (const b of ['js', ...nativeBackends()] as kn.BackendName[]) {
  test(`special values: ${b} matches PyTorch (${special.cases.length} cases)`, () => {
    const bad: string[] = [];
    const excused = new Set<string>();
    for (const c of special.cases) {
      const r = onBackend(b, () => runSpecial(c));
      // Exact ops match bit for bit. Rounded math within a few float32 ulps and 2.5e-7 (PyTorch sums a softmax row
      // in float32, kiln in double; webgpu's exp/log/tanh are WGSL builtins).
      const exact = EXACT.has(c.op) && !c.grad;
      const [rtol, atol] = exact ? [0, 0] : [b === 'webgpu' ? 4e-6 : 2e-6, 2.5e-7];
      const d = [
        ...specialDiffs(b, c, r.out, nums(c.out), rtol, atol, excused),
        ...(c.op === 'crossEntropy'
          ? specialDiffs(b, c, r.grad!, nums(c.grad as Num[]), rtol, atol, excused).map((m) => `d/dx ${m}`)
          : []),
        ...(c.gradB ? specialDiffs(b, c, r.gradB!, nums(c.gradB), rtol, atol, excused).map((m) => `d/db ${m}`) : []),
      ];
      if (d.length) bad.push(`${c.name}: ${d.slice(0, 6).join('; ')}${d.length > 6 ? ` (${d.length} in all)` : ''}`);
    }
    assert.equal(bad, [], bad.join('\n'));
    for (const d of DIVERGES)
      if (d.always) assert.ok(excused.has(d.reason), `${b}: DIVERGES '${d.reason}' excused nothing; remove it`);
  });
}

test.run();
