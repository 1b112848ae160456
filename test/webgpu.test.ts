// The webgpu backend (Dawn in a worker thread; Mesa's llvmpipe through OpenGL ES in CI): every conformance case
// against the float64 js reference, synchronous and async reads, and errors the GPU finds. The backend is opt-in
// (KILN_WEBGPU=1) until its issue is done; this suite turns it on for itself.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { webgpuStatus } from '../src/backends/webgpu/index.js';
import { CASES, makeInputs } from './cases.js';
import { allclose, onBackend, rng } from './helpers.js';

process.env.KILN_WEBGPU = '1'; // read when the backend first starts, below

// random numbers: uniform and normal are computed in float32 on the GPU, so they are within an ulp or two of the
// other backends, not bit-identical (yet); those cases are compared with a tolerance below instead
const INEXACT = new Set(['rand', 'large rand (threads)']);

const status = webgpuStatus();

test('a WebGPU adapter is found (Mesa llvmpipe in CI) and the backend is listed', () => {
  assert.ok(status.available, status.reason);
  assert.ok(kn.backends().includes('webgpu'));
  assert.type(status.adapter!.description, 'string');
  assert.ok(status.adapter!.limits.maxStorageBufferBindingSize! > 0);
});

function evaluate(b: kn.BackendName, i: number): { values: Float64Array; shape: readonly number[]; dtype: kn.DType } {
  const c = CASES[i]!;
  return onBackend(b, () => kn.tidy(() => {
    const y = c.run(...makeInputs(c, rng(1000 + i)));
    return { values: y.toFloat64Array(), shape: y.shape.slice(), dtype: y.dtype };
  }));
}

CASES.forEach((c, i) => {
  test(`${c.name}: webgpu matches js`, () => {
    const ref = evaluate('js', i);
    const got = evaluate('webgpu', i);
    assert.equal(got.shape, ref.shape, 'shape');
    assert.is(got.dtype, ref.dtype, 'dtype');
    const refVals = ref.dtype === 'float32' ? ref.values.map((v) => Math.fround(v)) : ref.values;
    const [atol, rtol] = INEXACT.has(c.name) ? [1e-3, 1e-3] : [c.atol ?? 1e-5, c.rtol ?? 1e-4];
    const r = allclose(got.values, refVals, atol, rtol, true);
    assert.ok(r.ok, `webgpu vs js: ${r.message}`);
  });
});

test('toArray reads synchronously and await t.data() without blocking; both see queued kernels', async () => {
  onBackend('webgpu', () => kn.tidy(() => {
    const x = kn.arange(0, 1000);
    assert.is(x.mul(2).sum().item(), 999000);
  }));
  const prev = kn.getBackend();
  kn.setBackend('webgpu');
  try {
    const x = kn.tensor([1, 2, 3]).exp();
    const v = await x.data();
    assert.ok(allclose(v, [Math.E, Math.E ** 2, Math.E ** 3].map(Math.fround), 1e-6, 1e-6).ok);
    x.dispose();
  } finally {
    kn.setBackend(prev);
  }
});

test('an out-of-range gather index found on the GPU is an ArgumentError at the next read', () => {
  onBackend('webgpu', () => kn.tidy(() => {
    const x = kn.tensor([1, 2, 3]);
    const bad = kn.tensor([0, 5], undefined, { dtype: 'int32' });
    assert.throws(() => x.gather(bad).toArray(), (e: Error) => e instanceof kn.ArgumentError && /gather: an index was out of range/.test(e.message));
    // the flag is cleared: the next read succeeds
    assert.equal(Array.from(x.add(1).toArray()), [2, 3, 4]);
  }));
});

test('sub-word dtypes pack several elements per word: int8/bool/bfloat16 round-trip and slice at odd offsets', () => {
  onBackend('webgpu', () => kn.tidy(() => {
    const v = [-128, -1, 0, 1, 5, 127, 3];
    const t = kn.tensor(v, undefined, { dtype: 'int8' });
    assert.equal(Array.from(t.toArray()), v);
    assert.equal(Array.from(t.slice([1], [6], [2]).contiguous().toArray()), [-1, 1, 127]);
    const b = kn.tensor([1.5, -2.25, 3e10], undefined, { dtype: 'bfloat16' });
    assert.equal(Array.from(b.cast('float32').toArray()), Array.from(kn.tensor([1.5, -2.25, 3e10]).cast('bfloat16').cast('float32').toArray()));
  }));
});

test.run();
