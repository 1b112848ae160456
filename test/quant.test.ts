// Quantized kernels: the int8 linear kernel against the float64 reference and across instruction sets
// (integer accumulation makes every ISA bit-identical), its argument checks, and its accuracy against the
// float product it approximates.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { loadAddon } from '../src/backends/native/binding.js';
import { nativeBackends, onBackend, throwsKiln, trainedMnistMlp, tempDir } from './helpers.js';
import { rng } from './rng.js';

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
    for (const [M, K, N] of [
      [1, 5, 3],
      [2, 300, 17],
      [4, 64, 5],
      [5, 130, 9],
      [13, 67, 33],
      [40, 300, 70],
      [3, 1024, 40],
    ] as const) {
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
      run().forEach((got, i) =>
        assert.equal(Array.from(got), Array.from(ref[i]!), `${isa}: case ${i} differs from js`),
      );
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
    const err = yq.sub(yf).abs().max().item(),
      ref = yf.abs().max().item();
    assert.ok(err / ref < 0.03, `${b}: relative max error ${err / ref}`);
    // SQNR in dB: signal power over error power
    const sqnr = 10 * Math.log10(yf.mul(yf).mean().item() / yq.sub(yf).pow(2).mean().item());
    assert.ok(sqnr > 30, `${b}: SQNR ${sqnr.toFixed(1)} dB`);
    [w, wq, ws, x, yf, yq].forEach((t) => t.dispose());
  }
  kn.setBackend(addon ? 'cpu' : 'js');
});

test('qlinearInt8 refuses bad operands with clear errors', () => {
  const wq = kn.tensor(new Int8Array([1, 2, 3, 4, 5, 6]), [2, 3]),
    ws = kn.tensor([0.1, 0.2]);
  const t = throwsKiln;
  for (const b of kn.backends().filter((n) => n === 'js' || n === 'cpu')) {
    kn.setBackend(b);
    const x = kn.tensor([[1, 2, 3]]);
    const wqb = kn.tensor(new Int8Array([1, 2, 3, 4, 5, 6]), [2, 3]),
      wsb = kn.tensor([0.1, 0.2]);
    t(() => kn.qlinearInt8(kn.tensor([[1, NaN, 3]]), wqb, wsb), kn.ArgumentError, /NaN or infinite/);
    t(
      () => kn.qlinearInt8(kn.tensor([[1, Infinity, 3]]), wqb, wsb, null, { scale: 0.1, zeroPoint: 0 }),
      kn.ArgumentError,
      /NaN or infinite/,
    );
    t(() => kn.qlinearInt8(x, kn.ones([2, 3]), wsb), kn.DTypeError, /wq must be int8, got float32/);
    t(() => kn.qlinearInt8(kn.ones([1, 4]), wqb, wsb), kn.ShapeError, /x must end in K = 3/);
    t(() => kn.qlinearInt8(x, wqb, kn.ones([3])), kn.ShapeError, /wscale must have 2 values/);
    t(() => kn.qlinearInt8(x, wqb, wsb, kn.ones([5])), kn.ShapeError, /bias must have 2 values/);
    t(
      () => kn.qlinearInt8(x, wqb, wsb, null, { scale: -1, zeroPoint: 0 }),
      kn.ArgumentError,
      /'dynamic' or \{scale > 0/,
    );
    t(() => kn.qlinearInt8(x, wqb, wsb, null, { scale: 1, zeroPoint: 256 }), kn.ArgumentError, /zeroPoint in 0..255/);
    t(() => kn.qlinearInt8(x, wqb, wsb, null, 'static' as never), kn.ArgumentError, /activation quantization/);
    [x, wqb, wsb].forEach((v) => v.dispose());
  }
  kn.setBackend(addon ? 'cpu' : 'js');
  [wq, ws].forEach((v) => v.dispose());
});

test('qconv2dInt8 refuses bad operands with clear errors, on js and cpu alike', () => {
  const t = throwsKiln;
  for (const b of kn.backends().filter((n) => n === 'js' || n === 'cpu')) {
    kn.setBackend(b);
    const x = kn.ones([1, 2, 4, 4]);
    const wq = kn.full([3, 2, 3, 3], 1, { dtype: 'int8' }),
      ws = kn.full([3], 0.1);
    const nan = kn.tensor(
      Float32Array.from({ length: 32 }, (_, i) => (i === 21 ? NaN : i)),
      [1, 2, 4, 4],
    );
    t(() => kn.qconv2dInt8(nan, wq, ws), kn.ArgumentError, /NaN or infinite/);
    const inf = kn.tensor(
      Float32Array.from({ length: 32 }, (_, i) => (i === 3 ? -Infinity : i)),
      [1, 2, 4, 4],
    );
    t(() => kn.qconv2dInt8(inf, wq, ws, null, { act: { scale: 0.1, zeroPoint: 0 } }), kn.ArgumentError, /NaN or inf/);
    t(() => kn.qconv2dInt8(x, kn.ones([3, 2, 3, 3]), ws), kn.DTypeError, /wq must be int8, got float32/);
    t(() => kn.qconv2dInt8(kn.ones([2, 4, 4]), wq, ws), kn.ShapeError, /x must be \[N, C, H, W\]/);
    t(() => kn.qconv2dInt8(kn.ones([1, 3, 4, 4]), wq, ws), kn.ShapeError, /wq must be \[O, 3, kH, kW\]/);
    t(() => kn.qconv2dInt8(x, wq, kn.ones([2])), kn.ShapeError, /wscale must have 3 values/);
    t(() => kn.qconv2dInt8(x, wq, ws, kn.ones([4])), kn.ShapeError, /bias must have 3 values/);
    t(() => kn.qconv2dInt8(kn.ones([1, 2, 2, 2]), wq, ws), kn.ShapeError, /larger than the padded input 2x2/);
    const w0 = kn.zeros([3, 2, 0, 3], { dtype: 'int8' });
    t(() => kn.qconv2dInt8(x, w0, ws), kn.ShapeError, /kernel must be at least 1x1, got 0x3/);
    w0.dispose();
    t(() => kn.qconv2dInt8(x, wq, ws, null, { stride: 0 }), kn.ArgumentError, /stride must be an integer >= 1/);
    t(() => kn.qconv2dInt8(x, wq, ws, null, { act: { scale: 0, zeroPoint: 0 } }), kn.ArgumentError, /scale > 0/);
    for (const pool of [0, 2.5, 3, Number.NaN])
      t(
        () => kn.qconv2dInt8(x, wq, ws, null, { pool }),
        kn.ArgumentError,
        /pool must be an integer from 1 \(none\) to the output's smaller side 2/,
      );
    const big = kn.zeros([1, 8000, 3, 3]),
      wbig = kn.zeros([1, 8000, 3, 3], { dtype: 'int8' });
    t(() => kn.qconv2dInt8(big, wbig, kn.ones([1])), kn.ShapeError, /C\*kH\*kW = 72000 is over 65536/);
    [x, wq, ws, nan, inf, big, wbig].forEach((v) => v.dispose());
  }
  kn.setBackend(addon ? 'cpu' : 'js');
});

test('the addon checks qconv2dInt8 operands and attributes itself (raw descriptors)', () => {
  if (!addon) return;
  const op = kn.OP_TABLE.findIndex((o) => o.name === 'qconv2dInt8');
  const F32 = 0,
    I8 = 4;
  const buf = (dtype: number, n: number): number => addon.alloc(dtype, n);
  const x = buf(F32, 32),
    w = buf(I8, 54),
    ws = buf(F32, 3),
    y = buf(F32, 12),
    yp = buf(F32, 3);
  addon.write(x, new Float32Array(32).fill(0.5) as never, 0);
  addon.write(w, new Int8Array(54).fill(1) as never, 0);
  addon.write(ws, new Float32Array(3).fill(0.1) as never, 0);
  const view = (id: number, dtype: number, shape: number[]): number[] => {
    const st = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
    return [id, dtype, shape.length, 0, ...shape, ...st];
  };
  const good = [3, ...view(x, F32, [1, 2, 4, 4]), ...view(w, I8, [3, 2, 3, 3]), ...view(ws, F32, [3])];
  const run = (desc: number[], attrs: number[], out = [y, F32, 4, 1, 3, 2, 2]): string => {
    try {
      addon.run(op, Float64Array.from(desc), Float64Array.from(out), Float64Array.from(attrs));
      return 'ran';
    } catch (e) {
      return `${(e as { code?: string }).code}: ${(e as Error).message}`;
    }
  };
  assert.is(run(good, [1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 1]), 'ran');
  assert.match(run(good, [1, 1, 0, 0, 1, 1, 2, 0, 0, 0, 1]), /KILN_ARG: .*one group, got 2/);
  assert.match(
    run(good, [1, 1, 0, 0, 1, 1, 1, NaN, 0, 0, 1]),
    /KILN_ARG: .*attribute 7 is nan, expected a finite number/,
  );
  assert.match(run(good, [1, 1, 0, 0, 1, 1, 1, 0.1, 300, 0, 1]), /KILN_ARG: .*xZero an integer in \[0, 255\]/);
  assert.match(run(good, [1, 1, 0, 0, 1, 1, 1, 1e-50, 0, 0, 1]), /KILN_ARG: .*xScale must be >= 0/);
  assert.match(run(good, [0, 1, 0, 0, 1, 1, 1, 0, 0, 0, 1]), /KILN_ARG: .*stride >= 1/);
  assert.match(run(good, [1, 1, 0, 0, 1, 1, 1, 0, 0, 2, 1]), /KILN_ARG: .*relu must be 0 or 1, got 2/);
  // pool: 2 halves the 2x2 output; 1.5, 0 and more than the output's side are refused
  assert.is(run(good, [1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 2], [yp, F32, 4, 1, 3, 1, 1]), 'ran');
  assert.match(run(good, [1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 2]), /KILN_SHAPE: .*writes float32 \[1, 3, 1, 1\]/);
  for (const k of [0, 1.5, 3])
    assert.match(
      run(good, [1, 1, 0, 0, 1, 1, 1, 0, 0, 0, k]),
      /KILN_ARG: .*pool must be an integer from 1 \(none\) to the output's smaller side 2, got/,
    );
  assert.match(
    run(good, [1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 1], [y, F32, 4, 1, 3, 1, 4]),
    /KILN_SHAPE: .*writes float32 \[1, 3, 2, 2\]/,
  );
  const wrongW = [3, ...view(x, F32, [1, 2, 4, 4]), ...view(w, I8, [3, 1, 3, 3]), ...view(ws, F32, [3])];
  assert.match(
    run(wrongW, [1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 1]),
    /KILN_DTYPE: .*wq must be contiguous int8 \[O, 2, kH, kW\]/,
  );
  const wrongScale = [3, ...view(x, F32, [1, 2, 4, 4]), ...view(w, I8, [3, 2, 3, 3]), ...view(ws, F32, [2])];
  assert.match(run(wrongScale, [1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 1]), /KILN_SHAPE: .*wscale must be float32 \[3\]/);
  for (const b of [x, w, ws, y, yp]) addon.free(b);
});

test('the addon checks qlinearInt8 descriptors itself (called directly, bypassing the TS checks)', () => {
  if (!addon) return;
  const op = kn.OP_TABLE.findIndex((o) => o.name === 'qlinearInt8');
  const cpu = kn.tensor([[1, 2, 3]]);
  // K over the int32-safe limit is refused before any memory is touched
  const big = kn.zeros([1, 70000]),
    wbig = kn.zeros([1, 70000], { dtype: 'int8' }),
    s1 = kn.ones([1]);
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

// ---------------- kn.quant ----------------

test('roundHalfEven matches nearbyint on ties and ordinary values', () => {
  const xs = [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, -3.49, 3.51, 0, -0, 7.000001, -126.5, 126.5];
  const got = Array.from(kn.quant.roundHalfEven(kn.tensor(xs)).toArray() as Float32Array);
  assert.equal(
    got.map((v) => v + 0),
    [-2, -2, -0, 0, 2, 2, 4, -3, 4, 0, 0, 7, -126, 126].map((v) => v + 0),
  );
});

test('int8 per-channel weight quantization: scale = max|w| / 127, error within half a step', () => {
  const w = kn.tensor([
    [0.5, -1, 0.25],
    [0, 0, 0],
    [3, 2, -1],
  ]);
  const { q, scale } = kn.quant.quantizeWeightsInt8(w);
  assert.is(q.dtype, 'int8');
  assert.equal(Array.from(q.toArray() as Int8Array), [64, -127, 32, 0, 0, 0, 127, 85, -42]);
  const sc = Array.from(scale.toArray() as Float32Array);
  assert.ok(Math.abs(sc[0]! - 1 / 127) < 1e-9 && sc[1]! > 0 && Math.abs(sc[2]! - 3 / 127) < 1e-8);
  // per tensor: every channel takes the largest |w| of the whole tensor (3), so the first row loses precision
  const t = kn.quant.quantizeWeightsInt8(w, false);
  assert.equal(Array.from(t.scale.toArray() as Float32Array), [3 / 127, 3 / 127, 3 / 127].map(Math.fround));
  assert.equal(Array.from(t.q.toArray() as Int8Array), [21, -42, 11, 0, 0, 0, 127, 85, -42]);
  [w, q, scale, t.q, t.scale].forEach((x) => x.dispose());
});

test('int4 groups: the layout of the nibbles, the scales, and the round trip', () => {
  // one row, K = 40 with group 32: two groups, the second padded with zeros
  const vals = Array.from({ length: 40 }, (_, k) => (k < 32 ? ((k % 16) - 8) * 0.5 : (k - 36) * 0.25));
  const w = kn.tensor([vals]);
  const { packed, scale } = kn.quant.quantizeWeightsInt4(w, 32);
  assert.equal(packed.shape, [1, 32]);
  assert.equal(scale.shape, [1, 2]);
  const sc = Array.from(scale.toArray() as Float32Array);
  assert.ok(Math.abs(sc[0]! - 4 / 7) < 1e-6 && Math.abs(sc[1]! - 1 / 7) < 1e-6);
  const bytes = Array.from(packed.toArray() as Uint8Array);
  const { offset } = kn.quant.INT4_LAYOUT;
  // byte 0 holds element 0 (low nibble) and element 1 (high nibble)
  const q0 = Math.round(vals[0]! / sc[0]!) + offset,
    q1 = Math.round(vals[1]! / sc[0]!) + offset;
  assert.is(bytes[0], q0 | (q1 << 4));
  assert.ok(
    bytes.slice(20).every((b) => b === (offset | (offset << 4))),
    'the padding of the last group is zero',
  );
  const layer = new kn.quant.Int4Linear(40, 1, 32, { bias: false });
  layer.weightPacked.assign(packed);
  layer.weightScale.assign(scale);
  const back = Array.from(layer.dequantized().toArray() as Float32Array);
  back.forEach((v, k) =>
    assert.ok(Math.abs(v - vals[k]!) <= sc[k < 32 ? 0 : 1]! / 2 + 1e-6, `element ${k}: ${v} vs ${vals[k]}`),
  );
  // the C++ header says the same
  const h = readFileSync('native/include/kiln/int4_layout.h', 'utf8');
  assert.match(h, new RegExp(`kInt4Offset = ${offset};`));
  assert.match(h, new RegExp(`kInt4GroupSizes\\[3\\] = \\{${kn.quant.INT4_LAYOUT.groupSizes.join(', ')}\\}`));
  assert.throws(() => kn.quant.quantizeWeightsInt4(w, 48), /groupSize must be one of 32, 64, 128/);
  [w, packed, scale].forEach((t) => t.dispose());
});

/** Round half to even on a float64 (as nearbyint). */
const rhe = (v: number): number => {
  const f = Math.floor(v);
  return v - f !== 0.5 ? Math.round(v) : f % 2 === 0 ? f : f + 1;
};

/**
 * The float64 reference of symmetric int8 quantization along `axis` (null: per tensor), in float32 steps as the
 * kernels take them (one rounding per division): the integer values and the scales.
 */
function int8Reference(x: Float32Array, shape: number[], axis: number | null): { q: number[]; scale: number[] } {
  const C = axis === null ? 1 : shape[axis]!;
  const inner = axis === null ? x.length : shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const ch = (i: number): number => (axis === null ? 0 : Math.floor(i / inner) % C);
  const amax = new Array<number>(C).fill(0);
  x.forEach((v, i) => (amax[ch(i)] = Math.max(amax[ch(i)]!, Math.abs(v))));
  const scale = amax.map((a) => Math.max(Math.fround(a / 127), Math.fround(1e-12)));
  const q = Array.from(x, (v, i) => Math.min(127, Math.max(-127, rhe(Math.fround(v / scale[ch(i)]!)))));
  return { q, scale };
}

test('quantizeTensor / dequantize: int8 per channel on any axis and per tensor, exact against the reference on every backend', () => {
  const r = rng(41);
  const shape = [3, 4, 5];
  const data = Float32Array.from({ length: 60 }, (_, i) => (r() * 2 - 1) * (1 + (i % 5) * 3)); // columns of different size
  data[7] = 0.5 * Math.fround(2 / 127); // a tie: 0.5 of a step exactly, rounds to even (0)
  for (const b of ['js', ...nativeBackends()] as kn.BackendName[])
    onBackend(b, () => {
      const x = kn.tensor(data, shape);
      for (const [opts, axis] of [
        [{}, 0],
        [{ axis: 2 }, 2],
        [{ axis: -2 }, 1],
        [{ perChannel: false }, null],
      ] as const) {
        const q = kn.quant.quantizeTensor(x, opts);
        const ref = int8Reference(data, shape, axis);
        const at = `${b} ${JSON.stringify(opts)}`;
        assert.is(q.scheme, 'int8');
        assert.is(q.values.dtype, 'int8', at);
        assert.equal(q.values.shape, shape, at);
        assert.equal(q.scale.shape, axis === null ? [] : [shape[axis]!], at);
        assert.is(q.axis, axis, at);
        assert.is(q.zeroPoint, null);
        assert.equal(Array.from(q.scale.toArray() as Float32Array), ref.scale, `${at}: scales`);
        const got = Array.from(q.values.toArray() as Int8Array);
        // js and cpu divide exactly; WGSL's division may be off by an ulp, which can move a tie by one step
        const off = got.filter((v, i) => v !== ref.q[i]);
        if (b === 'js' || b === 'cpu') assert.equal(got, ref.q, `${at}: values`);
        else assert.ok(off.length <= 2 && got.every((v, i) => Math.abs(v - ref.q[i]!) <= 1), `${at}: values`);
        // back within half a step (plus the float32 rounding of the product)
        const back = q.dequantize().toArray() as Float32Array;
        const inner = axis === null ? 60 : shape.slice(axis + 1).reduce((a, c) => a * c, 1);
        back.forEach((v, i) => {
          const s = ref.scale[axis === null ? 0 : Math.floor(i / inner) % shape[axis]!]!;
          assert.ok(Math.abs(v - data[i]!) <= s * (b === 'js' || b === 'cpu' ? 0.5 : 1) + 1e-6, `${at} element ${i}`);
        });
        q.dispose();
      }
      x.dispose();
    });
});

test('quantizeTensor: per channel keeps a small channel that per tensor crushes; float16 input; exact values stay exact', () => {
  kn.seed(5);
  const w = kn.tidy(() => kn.concat([kn.randn([1, 64]).mul(30), kn.randn([7, 64])], 0));
  const perChannel = kn.quant.quantizeTensor(w);
  const perTensor = kn.quant.quantizeTensor(w, { perChannel: false });
  const small = (t: kn.Tensor): kn.Tensor => t.slice([1, 0], [8, 64]);
  const sqnrs = [perChannel, perTensor].map((q) => kn.tidy(() => kn.quant.sqnr(small(w), small(q.dequantize()))));
  assert.ok(
    sqnrs[0]! > 38 && sqnrs[1]! < 20,
    `small channels: ${sqnrs[0]!.toFixed(1)} dB per channel, ${sqnrs[1]!.toFixed(1)} per tensor`,
  );
  assert.is(perChannel.nbytes, 8 * 64 + 8 * 4);
  assert.is(perTensor.nbytes, 8 * 64 + 4);
  // the same integers quantize() stores for a layer's weight
  const ref = kn.quant.quantizeWeightsInt8(w);
  assert.equal(Array.from(perChannel.values.toArray()), Array.from(ref.q.toArray()));
  // a vector quantizes per tensor by default; integers up to 127 come back exactly (scale 1)
  const ints = kn.tensor(
    Float32Array.from({ length: 255 }, (_, i) => i - 127),
    [255],
    { dtype: 'float16' },
  );
  const qi = kn.quant.quantizeTensor(ints);
  assert.equal(qi.scale.shape, []);
  assert.equal(
    Array.from(kn.quant.dequantize(qi).toArray() as Float32Array),
    Array.from({ length: 255 }, (_, i) => i - 127),
  );
  [w, ref.q, ref.scale, ints].forEach((t) => t.dispose());
  [perChannel, perTensor, qi].forEach((q) => q.dispose());
});

test('quantizeTensor symmetric: false: uint8 with a zero point, 0 exact, the activation rule per tensor or channel', () => {
  const data = [-1, 0, 3, 0.5, 1, 2, 0.25, 0, 4, 2, 0, 1];
  const x = kn.tensor(data, [4, 3]);
  for (const [opts, rows] of [
    [{ symmetric: false, perChannel: false }, [data]],
    [{ symmetric: false, axis: 1 }, [0, 1, 2].map((c) => [0, 1, 2, 3].map((r) => data[r * 3 + c]!))],
  ] as const) {
    const q = kn.quant.quantizeTensor(x, opts);
    assert.is(q.values.dtype, 'uint8');
    const params = rows.map((row) => kn.quant.affineParams([Math.min(...row), Math.max(...row)]));
    assert.equal(
      Array.from(q.scale.toArray() as Float32Array),
      params.map((p) => p.scale),
    );
    assert.equal(
      Array.from(q.zeroPoint!.toArray() as Int32Array),
      params.map((p) => p.zeroPoint),
    );
    const back = Array.from(q.dequantize().toArray() as Float32Array);
    back.forEach((v, i) => {
      const p = params[q.axis === null ? 0 : i % 3]!;
      if (data[i] === 0) assert.is(v, 0, 'zero is exact');
      assert.ok(Math.abs(v - data[i]!) <= p.scale / 2 + 1e-6, `element ${i}: ${v} vs ${data[i]}`);
    });
    q.dispose();
  }
  // a range that does not hold 0 is widened to it, so a ReLU's output gets zero point 0
  const relu = kn.quant.quantizeTensor(kn.tensor([0.5, 1, 2]), { symmetric: false });
  assert.equal(Array.from(relu.zeroPoint!.toArray()), [0]);
  assert.equal(Array.from(relu.values.toArray()), [64, 127, 255]); // 1 / fround(2 / 255) is just under 127.5
  relu.dispose();
  x.dispose();
});

test('quantizeTensor int4: the groups of quantizeWeightsInt4 along the last axis, any rank, and back', () => {
  kn.seed(6);
  const w = kn.randn([4, 3, 70]);
  for (const g of [32, 64, 128]) {
    const q = kn.quant.quantizeTensor(w, { scheme: 'int4', groupSize: g });
    const G = Math.ceil(70 / g);
    assert.equal(
      [q.values.dtype, q.values.shape, q.scale.shape, q.groupSize],
      ['uint8', [12, (G * g) / 2], [12, G], g],
    );
    const ref = kn.tidy(() => kn.quant.quantizeWeightsInt4(w.reshape([12, 70]), g));
    assert.equal(Array.from(q.values.toArray()), Array.from(ref.packed.toArray()));
    const back = q.dequantize();
    assert.equal(back.shape, [4, 3, 70]);
    const scale = q.scale.toArray() as Float32Array;
    const bv = back.toArray() as Float32Array,
      wv = w.toArray() as Float32Array;
    wv.forEach((v, i) => {
      const row = Math.floor(i / 70),
        k = i % 70;
      assert.ok(Math.abs(bv[i]! - v) <= scale[row * G + Math.floor(k / g)]! / 2 + 1e-6, `g ${g} element ${i}`);
    });
    assert.is(q.nbytes, (12 * (G * g)) / 2 + 12 * G * 4);
    [back, ref.packed, ref.scale].forEach((t) => t.dispose());
    q.dispose();
  }
  w.dispose();
});

test('quantizeTensor refuses what it cannot quantize, and frees all it made', () => {
  const x = kn.ones([2, 3]);
  const live = kn.memory().numTensors;
  throwsKiln(() => kn.quant.quantizeTensor(kn.tensor([1, NaN, 2])), kn.ValidationError, /holds NaN or Infinity/);
  throwsKiln(() => kn.quant.quantizeTensor(kn.tensor([1, Infinity])), kn.ValidationError, /holds NaN or Infinity/);
  throwsKiln(
    () => kn.quant.quantizeTensor(kn.tensor(new Int32Array([1, 2]), [2])),
    kn.DTypeError,
    /float32, float16 or bfloat16 tensor, got int32/,
  );
  throwsKiln(() => kn.quant.quantizeTensor(kn.zeros([0, 3])), kn.ShapeError, /non-empty tensor, got shape \[0, 3\]/);
  throwsKiln(() => kn.quant.quantizeTensor([1, 2] as never), kn.ArgumentError, /takes a Tensor, got \[1, 2\]/);
  throwsKiln(
    () => kn.quant.quantizeTensor(x, { scheme: 'int2' as never }),
    kn.ArgumentError,
    /scheme must be 'int8' or 'int4'/,
  );
  throwsKiln(
    () => kn.quant.quantizeTensor(x, { axis: 2 }),
    kn.ArgumentError,
    /axis must be an integer in \[-2, 1\], got 2/,
  );
  throwsKiln(
    () => kn.quant.quantizeTensor(x, { perChannel: false, axis: 1 }),
    kn.ArgumentError,
    /axis is the channel axis of perChannel/,
  );
  throwsKiln(() => kn.quant.quantizeTensor(x, { groupSize: 32 }), kn.ArgumentError, /groupSize is for int4/);
  throwsKiln(
    () => kn.quant.quantizeTensor(x, { scheme: 'int4', perChannel: true }),
    kn.ArgumentError,
    /int4 takes no perChannel/,
  );
  throwsKiln(
    () => kn.quant.quantizeTensor(x, { scheme: 'int4', groupSize: 16 }),
    kn.ArgumentError,
    /groupSize must be one of 32, 64, 128, got 16/,
  );
  throwsKiln(() => kn.quant.quantizeTensor(kn.tensor(1), { scheme: 'int4' }), kn.ShapeError, /a scalar has none/);
  throwsKiln(
    () => kn.quant.quantizeTensor(kn.tensor(1), { perChannel: true }),
    kn.ShapeError,
    /a scalar has no channels/,
  );
  throwsKiln(() => kn.quant.dequantize({ values: x } as never), kn.ArgumentError, /dequantize takes a QuantizedTensor/);
  const q = kn.quant.quantizeTensor(x, { symmetric: false });
  assert.is(kn.memory().numTensors - live, 6 + 3, 'the six refused inputs above, then values, scale and zero point');
  q.dispose();
  const q4 = kn.quant.quantizeTensor(x, { scheme: 'int4' });
  kn.quant.dequantize(q4).dispose();
  q4.dispose();
  assert.is(kn.memory().numTensors - live, 6, 'nothing else stays live');
  x.dispose();
});

test('QuantConv2d matches the float convolution (stride, padding, dilation)', () => {
  for (const o of [{ padding: 1 }, { stride: 2, padding: [0, 1] as [number, number] }, { dilation: 2, padding: 2 }]) {
    kn.seed(9);
    const model = new kn.nn.Sequential(new kn.nn.Conv2d(3, 5, 3, o), new kn.nn.ReLU());
    const x = kn.randn([2, 3, 9, 8]);
    const r = kn.quant.quantize(model, { scheme: 'int8-dynamic' });
    const yf = model.call(x),
      yq = r.model.call(x);
    assert.equal(yq.shape, yf.shape);
    const db = kn.quant.sqnr(yf, yq);
    assert.ok(db > 30, `${JSON.stringify(o)}: SQNR ${db.toFixed(1)} dB`);
    [x, yf, yq].forEach((t) => t.dispose());
  }
});

test('Sequential runs QuantConv2d + ReLU (+ MaxPool2d) as one kernel, with the output of the layers run apart', () => {
  kn.seed(12);
  const model = new kn.nn.Sequential(
    new kn.nn.Conv2d(3, 8, 3, { padding: 1 }),
    new kn.nn.ReLU(),
    new kn.nn.MaxPool2d(2),
    new kn.nn.Conv2d(8, 6, 3),
    new kn.nn.ReLU(),
    new kn.nn.Conv2d(6, 5, 3, { padding: 1 }),
    new kn.nn.MaxPool2d([3, 3], { stride: 3, padding: 0 }),
    new kn.nn.Conv2d(5, 4, 1),
    new kn.nn.MaxPool2d(1, { stride: 1 }),
  );
  const x = kn.randn([2, 3, 19, 19]);
  const q = kn.quant.quantize(model, { scheme: 'int8', calibration: [x] }).model as kn.nn.Sequential;
  assert.instance(q.layers[0], kn.quant.QuantConv2d);
  const fused = q.call(x);
  const p = kn.profile(() => q.call(x).dispose());
  assert.equal(
    p.ops.map((o) => [o.op, o.count]).sort(),
    [
      ['maxPool2d', 1],
      ['qconv2dInt8', 4],
    ],
    'the ReLUs and the 2x2 and 3x3 pools run inside the int8 kernel (a 1x1 pool does not)',
  );
  let h = x;
  for (const m of q.layers) h = m.call(h); // one layer at a time: no fusion
  assert.equal(fused.shape, [2, 4, 2, 2]);
  assert.equal(h.shape, [2, 4, 2, 2]);
  const a = fused.toFloat64Array(),
    b = h.toFloat64Array();
  assert.ok(b.some((v) => v < 0) && b.some((v) => v > 0));
  // the same float32 values: the pool only picks among them
  for (let i = 0; i < a.length; i++) assert.ok(a[i] === b[i], `element ${i}: ${a[i]} vs ${b[i]}`);
  [x, fused, h].forEach((t) => t.dispose());
});

test('the pool in qconv2dInt8 lets a NaN win as maxPool2d does, on every backend', () => {
  // an infinite weight scale: outputs whose sum is 0 (taps all in the zero bottom-right block) are NaN, the
  // others +-inf, so windows across its edges have a NaN after infinities, along a row and down a column
  const [N, C, H, W, O] = [2, 3, 9, 11, 4];
  const r = rng(5);
  const xv = Float32Array.from({ length: N * C * H * W }, (_, i) =>
    i % W >= 6 && Math.floor(i / W) % H >= 4 ? 0 : r() * 2 - 1,
  );
  const wv = Int8Array.from({ length: O * C * 9 }, () => Math.floor(r() * 255) - 127);
  const sv = Float32Array.from([Infinity, 0.01, Infinity, 0.02]);
  for (const b of kn.backends())
    onBackend(b, () =>
      kn.tidy(() => {
        const x = kn.tensor(xv, [N, C, H, W]),
          w = kn.tensor(wv, [O, C, 3, 3], { dtype: 'int8' }),
          s = kn.tensor(sv);
        for (const pool of [2, 3])
          for (const relu of [false, true]) {
            const fused = kn.qconv2dInt8(x, w, s, null, { padding: 1, relu, pool }).toArray() as Float32Array;
            const apart = kn.maxPool2d(kn.qconv2dInt8(x, w, s, null, { padding: 1, relu }), pool).toArray();
            assert.ok(fused.some(Number.isNaN) && fused.some((v) => v === Infinity), `${b} pool ${pool} relu ${relu}`);
            fused.forEach((v, i) =>
              assert.ok(
                Object.is(v, apart[i]) || v === apart[i],
                `${b} pool ${pool} relu ${relu} [${i}]: ${v} vs ${apart[i]}`,
              ),
            );
          }
      }),
    );
});

test('Sequential leaves a pool it cannot fuse to MaxPool2d: stride, padding, an override, a pool too large', () => {
  // everything made here (the quantized models too) is freed when the tidy ends
  kn.tidy(() => {
    kn.seed(13);
    const x = kn.randn([1, 2, 6, 6]);
    const cases: [kn.nn.MaxPool2d, number][] = [
      [new kn.nn.MaxPool2d(2, { stride: 1 }), 1],
      [new kn.nn.MaxPool2d(2, { padding: 1 }), 1],
      [new kn.nn.MaxPool2d([2, 3]), 1],
      [new kn.nn.MaxPool2d(2), 0],
    ];
    for (const [pool, apart] of cases) {
      const q = kn.quant.quantize(new kn.nn.Sequential(new kn.nn.Conv2d(2, 3, 3, { padding: 1 }), pool), {
        scheme: 'int8-dynamic',
      }).model as kn.nn.Sequential;
      const p = kn.profile(() => q.call(x).dispose());
      assert.is(p.ops.find((o) => o.op === 'maxPool2d')?.count ?? 0, apart, JSON.stringify(pool.opts));
      const y = q.call(x),
        z = q.layers[1]!.call(q.layers[0]!.call(x));
      assert.equal(y.toFloat64Array(), z.toFloat64Array());
    }
    // an instance forward override (as calibration installs) keeps the layers apart
    const q = kn.quant.quantize(new kn.nn.Sequential(new kn.nn.Conv2d(2, 3, 3), new kn.nn.MaxPool2d(2)), {
      scheme: 'int8-dynamic',
    }).model as kn.nn.Sequential;
    const mp = q.layers[1]!;
    mp.forward = (t: kn.Tensor) => kn.maxPool2d(t, 2);
    assert.is(kn.profile(() => q.call(x).dispose()).ops.find((o) => o.op === 'maxPool2d')?.count, 1);
    // a 5x5 pool on a 4x4 output: maxPool2d's own error, not the fused kernel's
    const big = kn.quant.quantize(new kn.nn.Sequential(new kn.nn.Conv2d(2, 3, 3), new kn.nn.MaxPool2d(5)), {
      scheme: 'int8-dynamic',
    }).model;
    assert.throws(
      () => big.call(x),
      (e: Error) => e instanceof kn.KilnError && /maxPool2d/.test(e.message) && !/qconv2dInt8/.test(e.message),
    );
  });
});

test('quantize: schemes, the report, keepFloat, minSqnrDb, and a file that saves 4x and loads identically', async () => {
  kn.seed(4);
  const model = new kn.nn.Sequential(
    new kn.nn.Linear(64, 128),
    new kn.nn.ReLU(),
    new kn.nn.Linear(128, 64),
    new kn.nn.ReLU(),
    new kn.nn.Linear(64, 10),
  );
  const calib = [kn.randn([64, 64]), kn.randn([64, 64])];
  const before = kn.nn.toSpec(model);
  const s8 = kn.quant.quantize(model, { scheme: 'int8', calibration: calib });
  assert.equal(kn.nn.toSpec(model), before, 'the original model is untouched');
  assert.equal(
    s8.layers.map((l) => [l.name, l.quantized]),
    [
      ['0', 'int8'],
      ['2', 'int8'],
      ['4', 'int8'],
    ],
  );
  assert.ok(s8.sqnrDb! > 30, `int8 SQNR ${s8.sqnrDb}`);
  assert.ok(s8.layers.every((l) => l.sqnrDb! > s8.sqnrDb! - 1 && l.inputRange !== null));
  assert.ok(s8.layers[1]!.inputRange![0] === 0, 'a ReLU output range starts at 0');
  const pct = kn.quant.quantize(model, { scheme: 'int8', calibration: calib, method: 'percentile', percentile: 99 });
  assert.ok(pct.layers[0]!.inputRange![1] < s8.layers[0]!.inputRange![1], 'percentile ranges are tighter than min-max');
  const dyn = kn.quant.quantize(model, { scheme: 'int8-dynamic', calibration: calib, keepFloat: ['4'] });
  assert.equal(
    dyn.layers.map((l) => [l.quantized, l.reason]),
    [
      ['int8-dynamic', null],
      ['int8-dynamic', null],
      ['float', 'keepFloat'],
    ],
  );
  const dl = (dyn.model as kn.nn.Sequential).layers;
  assert.ok(dl[0] instanceof kn.quant.QuantLinear && dl[4] instanceof kn.nn.Linear);
  const i4 = kn.quant.quantize(model, { scheme: 'int4', groupSize: 64, calibration: calib, minSqnrDb: 1e9 });
  assert.ok(
    i4.layers.every((l) => l.quantized === 'float' && /sensitive/.test(l.reason!)),
    'every layer is below an impossible SQNR bar',
  );
  const i4b = kn.quant.quantize(model, { scheme: 'int4', calibration: calib });
  assert.ok(i4b.sqnrDb! > 15 && i4b.sqnrDb! < s8.sqnrDb!, `int4 SQNR ${i4b.sqnrDb} vs int8 ${s8.sqnrDb}`);
  // files: int8 weights are a quarter of float32 (plus scales), int4 about an eighth; reload is exact
  const dir = tempDir('kiln-quant-');
  const size = async (m: kn.nn.Module, f: string): Promise<number> => {
    await kn.io.save(join(dir, f), m);
    return statSync(join(dir, f)).size;
  };
  const fFloat = await size(model, 'f.safetensors'),
    f8 = await size(s8.model, 'q8.safetensors'),
    f4 = await size(i4b.model, 'q4.safetensors');
  assert.ok(fFloat / f8 > 3.5 && fFloat / f4 > 5.5, `sizes ${fFloat} / ${f8} / ${f4}`);
  for (const [m, f] of [
    [s8.model, 'q8.safetensors'],
    [i4b.model, 'q4.safetensors'],
  ] as const) {
    const { model: back } = await kn.io.loadModel(join(dir, f));
    assert.equal(Array.from(back.call(calib[0]!).toArray()), Array.from(m.call(calib[0]!).toArray()));
  }
  // the pinned call shape: calibrate is calibration under another name; perChannel false gives one weight scale
  // per tensor, a coarser grid (lower SQNR than per channel, still a working model)
  const pinned = kn.quant.quantize(model, { scheme: 'int8', perChannel: true, calibrate: calib });
  assert.equal(Array.from(pinned.model.call(calib[0]!).toArray()), Array.from(s8.model.call(calib[0]!).toArray()));
  // with one output channel of the last layer 30x the others, a per-tensor grid is too coarse for the rest
  const skewed = kn.nn.cloneModule(model) as kn.nn.Sequential;
  kn.noGrad(() => {
    const w = (skewed.layers[4] as kn.nn.Linear).weight;
    const f = kn.tensor(
      Float32Array.from({ length: 10 }, (_, i) => (i === 0 ? 30 : 1)),
      [10, 1],
    );
    const w2 = w.mul(f);
    w.assign(w2);
    [f, w2].forEach((t) => t.dispose());
  });
  const perTensor = kn.quant.quantize(skewed, { scheme: 'int8', perChannel: false, calibrate: calib });
  const perChan = kn.quant.quantize(skewed, { scheme: 'int8', calibrate: calib });
  const scales = (perTensor.model as kn.nn.Sequential).layers
    .filter((l): l is kn.quant.QuantLinear => l instanceof kn.quant.QuantLinear)
    .map((l) => new Set(l.weightScale.toArray() as Float32Array).size);
  assert.equal(scales, [1, 1, 1]);
  const last = (r: kn.quant.QuantizeResult): number => r.layers[2]!.sqnrDb!;
  assert.ok(
    last(perTensor) > 15 && last(perTensor) < last(perChan) - 6,
    `per tensor ${last(perTensor)} dB, per channel ${last(perChan)} dB`,
  );
  assert.throws(
    () => kn.quant.quantize(model, { scheme: 'int8', calibration: calib, calibrate: calib }),
    /calibration or calibrate .*not both/,
  );
  assert.throws(() => kn.quant.quantize(model, { scheme: 'int4', perChannel: false }), /perChannel false is for int8/);
  assert.throws(() => kn.quant.quantize(model, { scheme: 'int8', perChannel: 1 as never }), /perChannel must be true/);
  // errors
  assert.throws(() => kn.quant.quantize(model, { scheme: 'int8' }), /calibration data/);
  assert.throws(() => kn.quant.quantize(model, { scheme: 'int2' as never }), /scheme must be/);
  assert.throws(
    () => kn.quant.quantize(model, { scheme: 'int4', groupSize: 16 }),
    /groupSize must be one of 32, 64, 128/,
  );
  assert.throws(
    () => kn.quant.quantize(model, { scheme: 'int8-dynamic', calibration: [1] as never }),
    /calibration must be a Tensor/,
  );
  class Custom extends kn.nn.Module {
    l = this.registerModule('l', new kn.nn.Linear(2, 2));
    forward(x: kn.Tensor): kn.Tensor {
      return this.l.call(x);
    }
  }
  assert.throws(() => kn.quant.quantize(new Custom(), { scheme: 'int8-dynamic' }), /not one of kiln's standard layers/);
});

test('fakeQuant: the quant-dequant value and the straight-through gradient', () => {
  for (const b of kn.backends().filter((n) => n === 'js' || n === 'cpu')) {
    const x = kn.tensor([0.26, 5, -20, 0.05, 0.15], [5], { backend: b });
    x.requiresGrad = true;
    const y = kn.quant.fakeQuant(x, 0.1, 0, -127, 127);
    const v = Array.from(y.toArray() as Float32Array);
    [0.3, 5, -12.7, 0, 0.2].forEach((e, i) => assert.ok(Math.abs(v[i]! - e) < 1e-6, `${b}: ${v[i]} vs ${e}`));
    y.mul(kn.tensor([1, 2, 3, 4, 5], [5], { backend: b }))
      .sum()
      .backward();
    assert.equal(
      Array.from(x.grad!.toArray() as Float32Array),
      [1, 2, 0, 4, 5],
      'gradient passes inside the range only',
    );
    // per-channel scales broadcast; uint8 with a zero point
    const w = kn.tensor(
      [
        [1, -1],
        [10, -10],
      ],
      undefined,
      { backend: b },
    );
    const fq = kn.quant.fakeQuant(w, kn.tensor([[1 / 127], [10 / 127]], undefined, { backend: b }), 0, -127, 127);
    const fv = Array.from(fq.toArray() as Float32Array);
    [1, -1, 10, -10].forEach((e, i) => assert.ok(Math.abs(fv[i]! - e) < 1e-5));
    const u = Array.from(
      kn.quant.fakeQuant(kn.tensor([-1, 0, 0.5, 5], [4], { backend: b }), 0.02, 50, 0, 255).toArray() as Float32Array,
    );
    [-1, 0, 0.5, 4.1].forEach((e, i) => assert.ok(Math.abs(u[i]! - e) < 1e-5, `uint8: ${u[i]} vs ${e}`));
  }
  assert.throws(() => kn.quant.fakeQuant(kn.ones([2]), 0, 0, -1, 1), /scale must be > 0/);
});

test("fakeQuant rounds as the kernels and PyTorch: ties of x * (1 / scale), PyTorch's gradient mask", () => {
  // torch.fake_quantize_per_tensor_affine(x, 0.1, 3, -10, 10) and fake_quantize_per_channel_affine(w, [0.5, 0.1],
  // [0, 0], 0, -2, 2) in PyTorch 1.13: 0.05 * 10 is exactly 0.5 in float32 (0.05 / 0.1 is 0.49999997) and rounds
  // to 0, where x / s + z rounded 3.5 up to 4; 0.725 quantizes to 10 + 0.25, inside the range, so it passes a
  // gradient (the old clamp to [(qmin - z) s, (qmax - z) s] gave it none)
  for (const b of kn.backends().filter((n) => n === 'js' || n === 'cpu' || n === 'webgpu')) {
    const x = kn.tensor([0.05, 0.35, -0.25, 0.65, -1.3375, 0.725, 0.73, -1.355, -0.85], [9], { backend: b });
    x.requiresGrad = true;
    const y = kn.quant.fakeQuant(x, 0.1, 3, -10, 10);
    const want = [0, 0.4, -0.2, 0.6, -1.3, 0.7, 0.7, -1.3, -0.8];
    // js multiplies in float64, where x * (1 / s) is not a tie: the rounding may go the other way by one step
    const tol = b === 'js' ? 0.1 + 1e-6 : 1e-6;
    Array.from(y.toArray() as Float32Array).forEach((v, i) =>
      assert.ok(Math.abs(v - want[i]!) < tol, `${b} value ${i}: ${v} vs ${want[i]}`),
    );
    y.sum().backward();
    assert.equal(Array.from(x.grad!.toArray() as Float32Array), [1, 1, 1, 1, 1, 1, 1, 0, 1], `${b} gradient`);
    const w = kn.tensor([0.5, -0.25, 0.75, 0.3, 1.5, -0.45], [2, 3], { backend: b });
    w.requiresGrad = true;
    const yw = kn.quant.fakeQuant(w, kn.tensor([[0.5], [0.1]], undefined, { backend: b }), 0, -2, 2);
    const ww = [0.5, 0, 1, 0.2, 0.2, -0.2];
    Array.from(yw.toArray() as Float32Array).forEach((v, i) =>
      assert.ok(Math.abs(v - ww[i]!) < 1e-6, `${b} per channel ${i}: ${v} vs ${ww[i]}`),
    );
    yw.mul(kn.tensor([1, 2, 3, 4, 5, 6], [2, 3], { backend: b }))
      .sum()
      .backward();
    assert.equal(Array.from(w.grad!.toArray() as Float32Array), [1, 2, 3, 0, 0, 0], `${b} per-channel gradient`);
    // no graph, nothing left behind
    const live = kn.memory().numTensors;
    kn.noGrad(() => kn.quant.fakeQuant(w, 0.1, 0, -2, 2)).dispose();
    assert.is(kn.memory().numTensors, live);
  }
  throwsKiln(() => kn.quant.fakeQuant(kn.ones([2]), 0.1, 0.5, -1, 1), kn.ArgumentError, /zeroPoint must be an integer/);
});

test('QAT: prepare, fine-tune with fake quantization, convert to int8 (MNIST)', async () => {
  const { model, train, acc } = await trainedMnistMlp(2);
  const base = acc(model);
  const qat = kn.quant.prepareQat(model);
  assert.ok((qat as kn.nn.Sequential).layers[0] instanceof kn.quant.QatLinear);
  qat.train();
  await kn.train.fit(qat, {
    train,
    loss: 'crossEntropy',
    optimizer: new kn.optim.Adam(qat.parameters(), { lr: 1e-4 }),
    epochs: 1,
    verbose: 'silent',
  });
  const qatAcc = acc(qat);
  qat.eval();
  const probe = kn.randn([16, 784]);
  const fakeOut = qat.call(probe);
  const int8 = kn.quant.convertQat(qat);
  assert.ok((int8 as kn.nn.Sequential).layers[0] instanceof kn.quant.QuantLinear);
  const realOut = int8.call(probe);
  // the fake-quantized float model predicts what the int8 kernels compute
  assert.ok(kn.quant.sqnr(realOut, fakeOut) > 40, `fake vs real int8 SQNR ${kn.quant.sqnr(realOut, fakeOut)}`);
  const a8 = acc(int8);
  console.log(`QAT: float ${base}, QAT (fake quant) ${qatAcc}, converted int8 ${a8}`);
  assert.ok(base - a8 <= 0.005, `QAT int8 ${a8} vs float ${base}`);
  assert.throws(() => kn.quant.convertQat(model), /no QAT layers/);
});

test('MNIST acceptance: int8 PTQ loses <= 0.5 points, int4 <= 1.5, on a trained MLP', async () => {
  const { model, trainX, acc } = await trainedMnistMlp();
  const base = acc(model);
  const calib = [trainX.slice([0, 0], [512, 784])];
  const a8 = acc(kn.quant.quantize(model, { scheme: 'int8', calibration: calib }).model);
  const a8d = acc(kn.quant.quantize(model, { scheme: 'int8-dynamic' }).model);
  const a4 = acc(kn.quant.quantize(model, { scheme: 'int4', groupSize: 32 }).model);
  console.log(`MNIST MLP test accuracy: float ${base}, int8 ${a8}, int8-dynamic ${a8d}, int4 ${a4}`);
  assert.ok(base > 0.9, `float accuracy ${base}`);
  assert.ok(base - a8 <= 0.005, `int8 static ${a8} vs float ${base}`);
  assert.ok(base - a8d <= 0.005, `int8 dynamic ${a8d} vs float ${base}`);
  assert.ok(base - a4 <= 0.015, `int4 ${a4} vs float ${base}`);
});

test('quantize frees its intermediates at once: only the new model stays live', () => {
  kn.seed(4);
  const model = new kn.nn.Sequential(new kn.nn.Linear(32, 16), new kn.nn.ReLU(), new kn.nn.Linear(16, 4));
  const x = kn.randn([8, 32]);
  for (const [scheme, calibration] of [
    ['int8-dynamic', undefined],
    ['int8', [x]],
    ['int4', undefined],
  ] as const) {
    const before = kn.memory();
    const q = kn.quant.quantize(model, { scheme, ...(calibration ? { calibration } : {}) });
    const live = kn.memory().numTensors - before.numTensors;
    const own = q.model.parameters().length + q.model.namedBuffers().length;
    assert.is(live, own, `${scheme}: ${live} new tensors, the model holds ${own}`);
    q.model.dispose();
    assert.is(kn.memory().numTensors, before.numTensors, scheme);
    assert.is(kn.memory().numBytes, before.numBytes, scheme);
  }
  model.dispose();
  x.dispose();
});

test.run();
