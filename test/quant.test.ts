// Quantized kernels: the int8 linear kernel against the float64 reference and across instruction sets
// (integer accumulation makes every ISA bit-identical), its argument checks, and its accuracy against the
// float product it approximates.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { loadAddon } from '../src/backends/native/binding.js';

const { addon } = loadAddon();

function weights(N: number, K: number, seed: number): { w: kn.Tensor; wq: kn.Tensor; ws: kn.Tensor } {
  kn.seed(seed);
  const w = kn.randn([N, K]).mul(0.1);
  const amax = w.abs().max(1, true);
  const ws = amax.div(127);
  const wq = w.div(ws).cast('int32').clamp(-127, 127).cast('int8'); // truncation is fine for a test operand
  amax.dispose();
  return { w, wq, ws: ws.reshape([N]) };
}

test('every ISA computes the same integers (VNNI and portable paths): exact against js with exact scales', () => {
  // power-of-two scales and no bias make the float epilogue exact, so any integer difference would show
  const run = (): Float64Array[] => {
    const out: Float64Array[] = [];
    for (const [M, K, N] of [[1, 5, 3], [13, 67, 33], [40, 300, 70], [3, 1024, 40]] as const) {
      kn.seed(M * 1000 + K + N);
      const x = kn.randn([M, K]).mul(2);
      const wq = kn.randint([N, K], -127, 128).cast('int8');
      const ws = kn.full([N], 2 ** -7);
      out.push(kn.qlinearInt8(x, wq, ws, null, { scale: 2 ** -5, zeroPoint: 120 }).toFloat64Array());
      [x, wq, ws].forEach((t) => t.dispose());
    }
    return out;
  };
  const prevB = kn.getBackend();
  kn.setBackend('js');
  const ref = run();
  kn.setBackend(prevB);
  if (!addon) return;
  const prev = addon.info().isa;
  try {
    for (const isa of addon.info().supportedIsas) {
      addon.setIsa(isa);
      kn.setBackend('cpu');
      run().forEach((got, i) => assert.equal(Array.from(got), Array.from(ref[i]!), `${isa}: case ${i} differs from js`));
    }
  } finally {
    addon.setIsa(prev);
    kn.setBackend(prevB);
  }
});

test('dynamic int8 linear tracks the float product within the quantization error', () => {
  for (const b of kn.backends().filter((n) => n === 'js' || n === 'cpu')) {
    kn.setBackend(b);
    const { w, wq, ws } = weights(64, 256, 3);
    const x = kn.randn([32, 256]);
    const yf = x.matmul(w.transpose());
    const yq = kn.qlinearInt8(x, wq, ws);
    const err = yq.sub(yf).abs().max().item(), ref = yf.abs().max().item();
    assert.ok(err / ref < 0.03, `${b}: relative max error ${err / ref}`);
    // SQNR in dB: signal power over error power
    const sqnr = 10 * Math.log10(yf.mul(yf).mean().item() / yq.sub(yf).pow(2).mean().item());
    assert.ok(sqnr > 30, `${b}: SQNR ${sqnr.toFixed(1)} dB`);
    [w, wq, ws, x, yf, yq].forEach((t) => t.dispose());
  }
  kn.setBackend(addon ? 'cpu' : 'js');
});

test('qlinearInt8 refuses bad operands with clear errors', () => {
  const wq = kn.tensor(new Int8Array([1, 2, 3, 4, 5, 6]), [2, 3]), ws = kn.tensor([0.1, 0.2]);
  const t = (f: () => unknown, cls: new (...a: never[]) => Error, re: RegExp): void => {
    try { f(); assert.unreachable('no error'); } catch (e) {
      assert.instance(e, cls, String(e));
      assert.match((e as Error).message, re);
    }
  };
  for (const b of kn.backends().filter((n) => n === 'js' || n === 'cpu')) {
    kn.setBackend(b);
    const x = kn.tensor([[1, 2, 3]]);
    const wqb = kn.tensor(new Int8Array([1, 2, 3, 4, 5, 6]), [2, 3]), wsb = kn.tensor([0.1, 0.2]);
    t(() => kn.qlinearInt8(kn.tensor([[1, NaN, 3]]), wqb, wsb), kn.ArgumentError, /NaN or infinite/);
    t(() => kn.qlinearInt8(kn.tensor([[1, Infinity, 3]]), wqb, wsb, null, { scale: 0.1, zeroPoint: 0 }), kn.ArgumentError, /NaN or infinite/);
    t(() => kn.qlinearInt8(x, kn.ones([2, 3]), wsb), kn.DTypeError, /wq must be int8, got float32/);
    t(() => kn.qlinearInt8(kn.ones([1, 4]), wqb, wsb), kn.ShapeError, /x must end in K = 3/);
    t(() => kn.qlinearInt8(x, wqb, kn.ones([3])), kn.ShapeError, /wscale must have 2 values/);
    t(() => kn.qlinearInt8(x, wqb, wsb, kn.ones([5])), kn.ShapeError, /bias must have 2 values/);
    t(() => kn.qlinearInt8(x, wqb, wsb, null, { scale: -1, zeroPoint: 0 }), kn.ArgumentError, /'dynamic' or \{scale > 0/);
    t(() => kn.qlinearInt8(x, wqb, wsb, null, { scale: 1, zeroPoint: 256 }), kn.ArgumentError, /zeroPoint in 0..255/);
    t(() => kn.qlinearInt8(x, wqb, wsb, null, 'static' as never), kn.ArgumentError, /activation quantization/);
    [x, wqb, wsb].forEach((v) => v.dispose());
  }
  kn.setBackend(addon ? 'cpu' : 'js');
  [wq, ws].forEach((v) => v.dispose());
});

test('the addon checks qlinearInt8 descriptors itself (called directly, bypassing the TS checks)', () => {
  if (!addon) return;
  const op = kn.OP_TABLE.findIndex((o) => o.name === 'qlinearInt8');
  const cpu = kn.tensor([[1, 2, 3]]);
  // K over the int32-safe limit is refused before any memory is touched
  const big = kn.zeros([1, 70000]), wbig = kn.zeros([1, 70000], { dtype: 'int8' }), s1 = kn.ones([1]);
  try {
    kn.qlinearInt8(big, wbig, s1);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, kn.KilnError);
    assert.match((e as Error).message, /K = 70000 is over 65536/);
  }
  assert.ok(op >= 0);
  [cpu, big, wbig, s1].forEach((t) => t.dispose());
});

test.run();
