// Every op case on every available backend against the float64 js reference.
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

test.run();
