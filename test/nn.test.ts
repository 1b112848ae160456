import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { layerTypes } from '../src/nn/registry.js';
import { allclose, nativeBackends, onBackend, rng, randomArray, sinFill, throwsKiln, tempDir } from './helpers.js';

const BACKENDS = ['js', ...nativeBackends()] as kn.BackendName[];
const close = (a: ArrayLike<number>, e: ArrayLike<number>, atol = 1e-5, rtol = 1e-4): void => {
  const r = allclose(a, e, atol, rtol);
  assert.ok(r.ok, r.message);
};
const f64 = (t: kn.Tensor): number[] => Array.from(t.toFloat64Array());
const gc = (f: (...x: kn.Tensor[]) => kn.Tensor, xs: kn.Tensor[], tol = 1e-3): void => {
  const r = kn.gradcheck(f, xs, { atol: tol, rtol: tol });
  assert.ok(r.ok, `gradcheck: max abs err ${r.maxAbsErr} at ${JSON.stringify(r.worst)}`);
};

/** PyTorch's BatchNorm reference (test/ref/batchnorm_torch.py): outputs, final state, its keys in order. */
const bnRef = JSON.parse(readFileSync(new URL('./ref/batchnorm_torch.json', import.meta.url), 'utf8')) as {
  train: number[][];
  eval: number[];
  state: Record<string, number[]>;
  keys: string[];
};
/** PyTorch's padding='same' convolutions (test/ref/conv_same_torch.py). */
const convSameRef = JSON.parse(readFileSync(new URL('./ref/conv_same_torch.json', import.meta.url), 'utf8')) as Record<
  string,
  { y: number[]; dx?: number[]; dw?: number[]; shape: number[] }
>;
/** PyTorch's F.interpolate (test/ref/upsample_torch.py). */
const upRef = JSON.parse(readFileSync(new URL('./ref/upsample_torch.json', import.meta.url), 'utf8')) as Record<
  string,
  { y: number[]; dx: number[]; shape: number[] }
>;
/** PyTorch's GroupNorm (test/ref/groupnorm_torch.py): outputs and gradients for three cases. */
const gnRef = JSON.parse(readFileSync(new URL('./ref/groupnorm_torch.json', import.meta.url), 'utf8')) as Record<
  string,
  { y: number[]; dx: number[]; dweight?: number[]; dbias?: number[] }
>;
/** The reference script's net: Conv2d, BatchNorm2d (momentum 0.1), Tanh, Flatten, Linear, BatchNorm1d (null). */
const torchBnNet = (): kn.nn.Sequential =>
  new kn.nn.Sequential(
    new kn.nn.Conv2d(2, 3, 3, { padding: 1 }),
    new kn.nn.BatchNorm2d(3),
    new kn.nn.Tanh(),
    new kn.nn.Flatten(),
    new kn.nn.Linear(48, 5),
    new kn.nn.BatchNorm1d(5, { momentum: null }),
  );
const torchFill = (m: kn.nn.Module): void =>
  m.namedParameters().forEach(([, p], i) => p.assign(sinFill(p.shape, 1 + i)));
const torchInput = (seed: number): kn.Tensor => sinFill([4, 2, 4, 4], seed);

for (const b of BACKENDS) {
  test(`Linear, Conv2d, MaxPool2d, Flatten compute what the ops compute (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        kn.seed(1);
        const lin = new kn.nn.Linear(5, 3);
        const x = kn.tensor(randomArray(rng(1), 10), [2, 5]);
        const W = lin.weight.toFloat64Array(),
          B = lin.bias!.toFloat64Array(),
          X = x.toFloat64Array();
        const want = Array.from({ length: 6 }, (_, k) => {
          const i = Math.floor(k / 3),
            o = k % 3;
          let s = B[o]!;
          for (let j = 0; j < 5; j++) s += X[i * 5 + j]! * W[o * 5 + j]!;
          return s;
        });
        close(f64(lin.call(x)), want);
        assert.equal(lin.weight.shape, [3, 5]);
        const bound = 1 / Math.sqrt(5);
        assert.ok(
          Array.from(W).every((v) => Math.abs(v) <= bound),
          'default init is U(+-1/sqrt(fanIn))',
        );
        const conv = new kn.nn.Conv2d(2, 4, [3, 2], { stride: 2, padding: 1 });
        const img = kn.tensor(randomArray(rng(2), 2 * 2 * 7 * 6), [2, 2, 7, 6]);
        close(f64(conv.call(img)), f64(kn.conv2d(img, conv.weight, conv.bias, { stride: 2, padding: 1 })));
        const net = new kn.nn.Sequential(conv, new kn.nn.ReLU(), new kn.nn.MaxPool2d(2), new kn.nn.Flatten());
        assert.equal(net.call(img).shape, [2, 4 * 2 * 2]);
        assert.equal(
          net.namedParameters().map(([n]) => n),
          ['0.weight', '0.bias'],
        );
      }),
    ));

  test(`BatchNorm1d/2d: batch statistics in training, running statistics in eval (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        const bn = new kn.nn.BatchNorm1d(3, { momentum: 0.1 });
        const vals = randomArray(rng(3), 8 * 3, -3, 5);
        const x = kn.tensor(vals, [8, 3]);
        const y = bn.call(x);
        const Y = y.toFloat64Array();
        for (let c = 0; c < 3; c++) {
          const col = Array.from({ length: 8 }, (_, i) => Y[i * 3 + c]!);
          const m = col.reduce((a, v) => a + v, 0) / 8;
          const v = col.reduce((a, u) => a + (u - m) ** 2, 0) / 8;
          assert.ok(Math.abs(m) < 1e-5 && Math.abs(v - 1) < 1e-3, `channel ${c}: mean ${m} var ${v}`);
        }
        // running stats: 0.9 * init + 0.1 * batch (unbiased variance)
        const mean = [0, 1, 2].map(
          (c) => Array.from({ length: 8 }, (_, i) => vals[i * 3 + c]!).reduce((a, v) => a + v, 0) / 8,
        );
        const uvar = [0, 1, 2].map(
          (c) => Array.from({ length: 8 }, (_, i) => (vals[i * 3 + c]! - mean[c]!) ** 2).reduce((a, v) => a + v, 0) / 7,
        );
        close(
          f64(bn.runningMean),
          mean.map((m) => 0.1 * m),
        );
        close(
          f64(bn.runningVar),
          uvar.map((v) => 0.9 + 0.1 * v),
        );
        bn.eval();
        const e = bn.call(x).toFloat64Array();
        close([e[0]!], [(vals[0]! - 0.1 * mean[0]!) / Math.sqrt(0.9 + 0.1 * uvar[0]! + 1e-5)]);
        assert.equal(Object.keys(bn.stateDict()).sort(), [
          'bias',
          'num_batches_tracked',
          'running_mean',
          'running_var',
          'weight',
        ]);
        assert.equal(Array.from(bn.numBatchesTracked.toArray()), [1]);
        const bn2 = new kn.nn.BatchNorm2d(2);
        const z = bn2.call(kn.tensor(randomArray(rng(4), 2 * 2 * 3 * 3), [2, 2, 3, 3]));
        close(f64(z.mean([0, 2, 3])), [0, 0]);
        throwsKiln(() => bn2.call(kn.ones([2, 3, 2, 2])), kn.ShapeError, /BatchNorm2d\(2\) expects \[N, 2, H, W\]/);
        throwsKiln(
          () => new kn.nn.BatchNorm1d(2).call(kn.ones([1, 2])),
          kn.ShapeError,
          /more than one value per channel/,
        );
      }),
    ));

  test(`BatchNorm (momentum 0.1 and null) trains, evaluates and loads state as PyTorch (${b})`, async () => {
    const file = new URL('./ref/batchnorm_torch.safetensors', import.meta.url).pathname;
    const theirs = await kn.io.load(file, { backend: b });
    onBackend(b, () =>
      kn.tidy(() => {
        const net = torchBnNet();
        torchFill(net);
        for (const [i, seed] of [11, 12, 13].entries())
          close(f64(net.call(torchInput(seed))), bnRef.train[i]!, 1e-5, 1e-4);
        // the same state under the same names: running statistics, and int32 batch counts of 3
        const mine = net.stateDict();
        assert.equal(Object.keys(mine), bnRef.keys);
        for (const k of bnRef.keys) close(f64(mine[k]!), bnRef.state[k]!, 1e-5, 1e-4);
        assert.is(mine['5.num_batches_tracked']!.dtype, 'int32');
        net.eval();
        close(f64(net.call(torchInput(20))), bnRef.eval, 1e-5, 1e-4);
        // PyTorch's own file (num_batches_tracked int64) loads strictly into a fresh net
        assert.is(theirs['1.num_batches_tracked']!.dtype, 'int32');
        const fresh = torchBnNet().eval();
        assert.equal(fresh.loadStateDict(theirs), { missing: [], unexpected: [] });
        assert.equal(Array.from(fresh.stateDict()['5.num_batches_tracked']!.toArray()), [3]);
        close(f64(fresh.call(torchInput(20))), bnRef.eval, 1e-5, 1e-4);
        // momentum null keeps averaging cumulatively past the loaded count: batch 4 weighs 1/4
        const bn = fresh.layers[5] as kn.nn.BatchNorm1d;
        bn.train();
        const before = f64(bn.runningMean);
        const x = kn.tensor(
          Float32Array.from({ length: 20 }, (_, i) => Math.sin(i) * 2),
          [4, 5],
        );
        bn.call(x);
        const X = f64(x);
        const batchMean = [0, 1, 2, 3, 4].map((c) => (X[c]! + X[5 + c]! + X[10 + c]! + X[15 + c]!) / 4);
        close(
          f64(bn.runningMean),
          before.map((m, c) => m * 0.75 + batchMean[c]! * 0.25),
        );
        assert.equal(Array.from(bn.numBatchesTracked.toArray()), [4]);
        Object.values(theirs).forEach((t) => t.dispose());
      }),
    );
  });

  test(`padding 'same' and 'valid' convolve as PyTorch's, the odd zero at the end (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        for (const [name, kernel, dilation] of [
          ['k3', [3, 3], [1, 1]],
          ['k4x3d2', [4, 3], [1, 2]],
          ['k2d3', [2, 2], [3, 1]],
        ] as const) {
          const want = convSameRef[name]!;
          const x = sinFill([2, 3, 6, 7], 0.1);
          const w = sinFill([4, 3, ...kernel], 0.2);
          x.requiresGrad = true;
          w.requiresGrad = true;
          const y = kn.conv2d(x, w, null, { padding: 'same', dilation: [...dilation] });
          assert.equal(y.shape, want.shape);
          close(f64(y), want.y);
          y.backward(sinFill(y.shape, 0.3));
          close(f64(x.grad!), want.dx!, 1e-4, 1e-4);
          close(f64(w.grad!), want.dw!, 1e-4, 1e-4);
        }
        // layers resolve 'same' to numbers when it is symmetric, and refuse it when it is not
        const c = new kn.nn.Conv2d(3, 4, [5, 3], { padding: 'same', dilation: [1, 2] });
        assert.equal(c.opts.padding, [2, 2]);
        assert.equal((kn.nn.toSpec(c) as { padding?: unknown }).padding, [2, 2]);
        assert.equal(c.call(kn.ones([1, 3, 6, 7])).shape, [1, 4, 6, 7]);
        assert.equal(new kn.nn.Conv2d(3, 4, 3, { padding: 'valid' }).call(kn.ones([1, 3, 6, 7])).shape, [1, 4, 4, 5]);
        const c1 = new kn.nn.Conv1d(3, 5, 5, { padding: 'same', dilation: 2 });
        assert.is(c1.padding, 4);
        assert.equal(c1.call(kn.ones([2, 3, 9])).shape, [2, 5, 9]);
        throwsKiln(
          () => new kn.nn.Conv1d(3, 5, 4, { padding: 'same' }),
          kn.ArgumentError,
          /Conv1d: padding 'same' with kernel .* needs one more zero at the end/,
        );
        throwsKiln(
          () => new kn.nn.Conv2d(3, 4, 2, { padding: 'same' }),
          kn.ArgumentError,
          /Conv2d: padding 'same' with kernel 2/,
        );
        throwsKiln(
          () => kn.conv2d(kn.ones([1, 3, 6, 7]), kn.ones([4, 3, 3, 3]), null, { padding: 'same', stride: 2 }),
          kn.ArgumentError,
          /padding 'same' needs stride 1/,
        );
        throwsKiln(
          () => kn.conv2d(kn.ones([1, 3, 6, 7]), kn.ones([4, 3, 3, 3]), null, { padding: 'full' as never }),
          kn.ArgumentError,
          /conv2d padding must be a number or \[h, w\]/,
        );
        // the even kernel through kn.conv2d on a [N, C, 1, L] view is PyTorch's conv1d
        const x1 = sinFill([2, 3, 9], 0.4).reshape([2, 3, 1, 9]);
        const w1 = sinFill([5, 3, 4], 0.5).reshape([5, 3, 1, 4]);
        close(f64(kn.conv2d(x1, w1, null, { padding: 'same' })), convSameRef.conv1d_k4!.y);
      }),
    ));

  test(`interpolate and Upsample give PyTorch's outputs and gradients (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        const cases: Record<string, kn.nn.InterpolateOptions> = {
          nearest_x2: { scaleFactor: 2 },
          nearest_size: { size: [5, 11] },
          nearest_down: { size: [2, 3] },
          bilinear_x2: { scaleFactor: 2, mode: 'bilinear' },
          bilinear_size: { size: [5, 11], mode: 'bilinear' },
          bilinear_corners: { size: [5, 11], mode: 'bilinear', alignCorners: true },
          bilinear_down: { size: [2, 3], mode: 'bilinear' },
          bilinear_x1_5: { scaleFactor: [1.5, 2.5], mode: 'bilinear' },
        };
        for (const [name, opts] of Object.entries(cases)) {
          const want = upRef[name]!;
          const x = sinFill([2, 3, 4, 6], 0.7);
          x.requiresGrad = true;
          const y = kn.nn.interpolate(x, opts);
          assert.equal(y.shape, want.shape, name);
          close(f64(y), want.y);
          y.backward(sinFill(y.shape, 0.9));
          close(f64(x.grad!), want.dx, 1e-4, 1e-4);
          const layer = new kn.nn.Upsample(opts);
          assert.equal(f64(layer.call(x.detach())), f64(y), `${name}: the layer is the function`);
          const spec = kn.nn.toSpec(layer);
          assert.equal(kn.nn.toSpec(kn.nn.fromSpec(JSON.parse(JSON.stringify(spec)))), spec);
        }
        gc(
          (xx) => kn.nn.interpolate(xx, { size: [3, 5], mode: 'bilinear' }),
          [kn.tensor(randomArray(rng(9), 2 * 2 * 3), [1, 2, 2, 3])],
        );
        const x = kn.ones([1, 2, 3, 4]);
        throwsKiln(
          () => kn.nn.interpolate(x, { size: 4, scaleFactor: 2 }),
          kn.ArgumentError,
          /one of size and scaleFactor/,
        );
        throwsKiln(() => kn.nn.interpolate(x, {}), kn.ArgumentError, /one of size and scaleFactor/);
        throwsKiln(
          () => kn.nn.interpolate(x, { scaleFactor: 2, mode: 'bicubic' as never }),
          kn.ArgumentError,
          /mode must be 'nearest' or 'bilinear', got "bicubic"/,
        );
        throwsKiln(
          () => new kn.nn.Upsample({ scaleFactor: 2, alignCorners: true }),
          kn.ArgumentError,
          /alignCorners applies to mode 'bilinear' only/,
        );
        throwsKiln(
          () => kn.nn.interpolate(x, { scaleFactor: -1 }),
          kn.ArgumentError,
          /scaleFactor must be a number > 0/,
        );
        throwsKiln(() => kn.nn.interpolate(x, { scaleFactor: 0.1 }), kn.ShapeError, /output would be 0x0/);
        throwsKiln(() => kn.nn.interpolate(kn.ones([2, 3, 4]), { scaleFactor: 2 }), kn.ShapeError, /\[N, C, H, W\]/);
      }),
    ));

  test(`GroupNorm gives PyTorch's outputs and gradients, and passes gradcheck (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        for (const [name, G, C, shape, affine] of [
          ['affine4d', 3, 6, [2, 6, 3, 4], true],
          ['plain3d', 2, 4, [3, 4, 5], false],
          ['one2d', 1, 4, [2, 4], true],
        ] as const) {
          const want = gnRef[name]!;
          const gn = new kn.nn.GroupNorm(G, C, { affine });
          if (affine) {
            gn.weight!.assign(sinFill([C], 1));
            gn.bias!.assign(sinFill([C], 2));
          }
          const x = sinFill(shape, 0.3).mul(3).add(1).detach();
          x.requiresGrad = true;
          const y = gn.call(x);
          close(f64(y), want.y, 1e-5, 1e-4);
          y.backward(sinFill(shape, 5));
          close(f64(x.grad!), want.dx, 1e-4, 1e-3);
          if (affine) {
            close(f64(gn.weight!.grad!), want.dweight!, 1e-4, 1e-3);
            close(f64(gn.bias!.grad!), want.dbias!, 1e-4, 1e-3);
          }
        }
        const gn = new kn.nn.GroupNorm(2, 4);
        gn.weight!.assign(kn.tensor([0.5, -1, 2, 1.5]));
        gc(
          (xx, w, bb) => {
            const l = new kn.nn.GroupNorm(2, 4);
            return kn.add(kn.mul(l.call(xx), w.reshape([1, 4, 1])), bb.reshape([1, 4, 1]));
          },
          [
            kn.tensor(randomArray(rng(7), 2 * 4 * 3), [2, 4, 3]),
            kn.tensor([0.5, -1, 2, 1.5]),
            kn.tensor([0.1, 0, -0.2, 0.3]),
          ],
        );
        throwsKiln(
          () => gn.call(kn.ones([2, 3, 2])),
          kn.ShapeError,
          /GroupNorm\(2, 4\) expects \[N, 4, \.\.\.\], got \[2, 3, 2\]/,
        );
        throwsKiln(() => gn.call(kn.ones([4])), kn.ShapeError, /expects \[N, 4/);
        throwsKiln(() => new kn.nn.GroupNorm(3, 4), kn.ArgumentError, /numChannels 4 must be divisible by numGroups 3/);
        throwsKiln(() => new kn.nn.GroupNorm(2, 4, { eps: 0 }), kn.ArgumentError, /eps must be a finite number > 0/);
        // statistics per example: the same output in eval and for each example alone
        const xs = kn.tensor(randomArray(rng(8), 3 * 4 * 2), [3, 4, 2]);
        const all = f64(gn.call(xs));
        gn.eval();
        close(f64(gn.call(xs.slice([1], [2]))), all.slice(8, 16));
      }),
    ));

  test(`layers are differentiable: gradcheck through BatchNorm, LayerNorm, Embedding, Linear (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        kn.seed(5);
        const x = kn.tensor(randomArray(rng(5), 12), [4, 3]);
        // the module is built on the backend gradcheck evaluates on (it runs the numeric side on js)
        const on = <M>(t: kn.Tensor, make: () => M): M => onBackend(t.backend, make);
        gc(
          (xx) =>
            on(xx, () => new kn.nn.BatchNorm1d(3))
              .call(xx)
              .mul(kn.tensor([1, 2, 3], undefined, { backend: xx.backend }))
              .sum(),
          [x],
        );
        gc(
          (xx) =>
            on(xx, () => new kn.nn.LayerNorm(3))
              .call(xx)
              .mul(kn.tensor([1, -2, 3], undefined, { backend: xx.backend }))
              .sum(),
          [x],
        );
        const ln = new kn.nn.LayerNorm(3);
        close(f64(ln.call(x).mean(1)), [0, 0, 0, 0]);
        const emb = new kn.nn.Embedding(5, 2);
        const idx = kn.tensor(new Int32Array([1, 3, 1]), [3]);
        const out = emb.call(idx);
        assert.equal(out.shape, [3, 2]);
        out.sum().backward();
        close(f64(emb.weight.grad!), [0, 0, 2, 2, 0, 0, 1, 1, 0, 0]);
      }),
    ));

  test(`Dropout: seeded mask, kept values scaled by 1/(1-p), identity in eval (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        const d = new kn.nn.Dropout(0.25);
        kn.seed(9);
        const a = d.call(kn.ones([4000])).toFloat64Array();
        kn.seed(9);
        const a2 = d.call(kn.ones([4000])).toFloat64Array();
        assert.equal(Array.from(a), Array.from(a2));
        const zeros = a.filter((v) => v === 0).length;
        assert.ok(Math.abs(zeros / 4000 - 0.25) < 0.03, `dropped ${zeros / 4000}`);
        assert.ok(a.every((v) => v === 0 || Math.abs(v - 4 / 3) < 1e-6));
        d.eval();
        assert.equal(f64(d.call(kn.ones([3]))), [1, 1, 1]);
        throwsKiln(() => new kn.nn.Dropout(1), kn.ArgumentError, /\[0, 1\)/);
      }),
    ));
}

test('BatchNorm state saved under its former names (runningMean, runningVar) still loads', async () => {
  const path = join(tempDir('kiln-bn-'), 'old.safetensors');
  const old = {
    '0.weight': kn.tensor([1, 2]),
    '0.bias': kn.tensor([0.5, -0.5]),
    '0.runningMean': kn.tensor([3, 4]),
    '0.runningVar': kn.tensor([5, 6]),
  };
  await kn.io.save(path, old);
  const net = new kn.nn.Sequential(new kn.nn.BatchNorm1d(2));
  assert.equal(net.loadStateDict(await kn.io.load(path)), { missing: [], unexpected: [] });
  const bn = net.layers[0] as kn.nn.BatchNorm1d;
  assert.equal(f64(bn.runningMean), [3, 4]);
  assert.equal(f64(bn.runningVar), [5, 6]);
  assert.equal(Array.from(bn.numBatchesTracked.toArray()), [0], 'a count the file never had stays 0');
  // the current names win over the former ones, which are then unexpected
  const both = { ...old, '0.running_mean': kn.tensor([7, 8]) };
  assert.equal(net.loadStateDict(both, { strict: false }), { missing: [], unexpected: ['0.runningMean'] });
  assert.equal(f64(bn.runningMean), [7, 8]);
  assert.equal(f64(bn.runningVar), [5, 6]);
  // num_batches_tracked may be absent only from a state dict in the former names
  const current = net.stateDict();
  delete current['0.num_batches_tracked'];
  throwsKiln(() => net.loadStateDict(current), kn.ValidationError, /missing \[0\.num_batches_tracked\]/);
  const none = { '0.weight': old['0.weight'], '0.bias': old['0.bias'] };
  throwsKiln(
    () => net.loadStateDict(none),
    kn.ValidationError,
    /missing \[0\.running_mean, 0\.running_var, 0\.num_batches_tracked\]/,
  );
});

test('Module: state dicts round-trip in place, strict keys, shapes checked', () =>
  kn.tidy(() => {
    kn.seed(1);
    const make = (): kn.nn.Sequential =>
      new kn.nn.Sequential(new kn.nn.Linear(3, 4), new kn.nn.BatchNorm1d(4), new kn.nn.ReLU(), new kn.nn.Linear(4, 2));
    const a = make(),
      c = make();
    const w = c.parameters()[0]!;
    c.loadStateDict(a.stateDict());
    assert.is(c.parameters()[0], w, 'loading keeps the same tensors (optimizers keep working)');
    assert.equal(Array.from(w.toArray()), Array.from(a.parameters()[0]!.toArray()));
    assert.equal(Object.keys(a.stateDict()), [
      '0.weight',
      '0.bias',
      '1.weight',
      '1.bias',
      '1.running_mean',
      '1.running_var',
      '1.num_batches_tracked',
      '3.weight',
      '3.bias',
    ]);
    assert.is(a.numParameters(), 3 * 4 + 4 + 4 + 4 + 4 * 2 + 2);
    const sd = a.stateDict();
    delete sd['3.bias'];
    throwsKiln(() => c.loadStateDict(sd), kn.ValidationError, /missing \[3.bias\]/);
    assert.equal(c.loadStateDict(sd, { strict: false }).missing, ['3.bias']);
    throwsKiln(
      () => c.loadStateDict({ ...a.stateDict(), extra: kn.ones([1]) }),
      kn.ValidationError,
      /unexpected \[extra\]/,
    );
    throwsKiln(
      () => c.loadStateDict({ ...a.stateDict(), '0.weight': kn.ones([4, 4]) }),
      kn.ShapeError,
      /'0.weight' has shape \[4, 4\], expected \[4, 3\]/,
    );
    a.eval();
    assert.ok(a.layers.every((m) => !m.training));
    throwsKiln(() => new kn.nn.Linear(3, 2).call(kn.ones([2, 4])), kn.ShapeError, /last dimension is 3/);
    throwsKiln(() => new kn.nn.Linear(0, 2), kn.ArgumentError, /positive integer/);
  }));

test('Embedding paddingIdx: a zero row that gets no gradient, as PyTorch padding_idx', () => {
  for (const b of BACKENDS)
    onBackend(b, () =>
      kn.tidy(() => {
        kn.seed(3);
        const e = new kn.nn.Embedding(5, 3, { paddingIdx: -1 }); // the last row, as PyTorch counts it
        assert.is(e.paddingIdx, 4);
        const w = e.weight.toArray();
        assert.equal(Array.from(w.slice(12, 15)), [0, 0, 0], `${b}: the padding row starts at zeros`);
        const ids = kn.tensor(new Int32Array([1, 4, 1, 4, 0, 2]), [2, 3]);
        const y = e.call(ids);
        assert.equal(y.shape, [2, 3, 3]);
        // values: the rows looked up, padding included (a user may set the padding row)
        const yv = y.toArray();
        [1, 4, 1, 4, 0, 2].forEach((r, i) =>
          assert.equal(Array.from(yv.slice(3 * i, 3 * i + 3)), Array.from(w.slice(3 * r, 3 * r + 3))),
        );
        // d/dweight of sum(y * c): each used row sums the c of its places; the padding row gets nothing
        const c = kn.arange(18).reshape([2, 3, 3]);
        y.mul(c).sum().backward();
        const g = e.weight.grad!.toArray();
        const want = new Float32Array(15);
        [1, 4, 1, 4, 0, 2].forEach((r, i) => {
          if (r !== 4) for (let j = 0; j < 3; j++) want[3 * r + j]! += 3 * i + j;
        });
        assert.equal(Array.from(g), Array.from(want), `${b}: gradient`);
        // the spec keeps it; without paddingIdx the spec is unchanged
        assert.equal(kn.nn.toSpec(e), { type: 'Embedding', numEmbeddings: 5, embeddingDim: 3, paddingIdx: 4 });
        assert.is((kn.nn.fromSpec(JSON.stringify(kn.nn.toSpec(e))) as kn.nn.Embedding).paddingIdx, 4);
        throwsKiln(() => new kn.nn.Embedding(5, 3, { paddingIdx: 5 }), kn.ArgumentError, /\[-5, 5\), got 5/);
        throwsKiln(
          () => kn.nn.fromSpec(JSON.stringify({ type: 'Embedding', numEmbeddings: 5, embeddingDim: 3, paddingIdx: 7 })),
          kn.FormatError,
          /paddingIdx' must be below numEmbeddings \(5\)/,
        );
        throwsKiln(() => e.call(kn.tensor([1, 2])), kn.DTypeError, /integer indices/);
      }),
    );
});

// A layer used twice listed its parameters twice, so new SGD(model.parameters()) threw 'the same parameter
// appears twice'; PyTorch's parameters() lists each once (and its state_dict keeps every name)
test('a shared layer: parameters once, its gradient from every use, state dict under every name', () =>
  kn.tidy(() => {
    kn.seed(2);
    const lin = new kn.nn.Linear(2, 2);
    const net = new kn.nn.Sequential(lin, new kn.nn.ReLU(), lin);
    assert.equal(
      net.namedParameters().map(([n]) => n),
      ['0.weight', '0.bias'],
    );
    assert.is(net.numParameters(), 6);
    assert.equal(Object.keys(net.stateDict()), ['0.weight', '0.bias', '2.weight', '2.bias']);
    const x = kn.tensor([
      [1, -2],
      [0.5, 3],
    ]);
    // the same function with the tensors written out twice
    const [W, b] = [lin.weight, lin.bias!].map((t) => t.detach().clone());
    W!.requiresGrad = true;
    b!.requiresGrad = true;
    const once = (v: kn.Tensor): kn.Tensor => v.matmul(W!.transpose(0, 1)).add(b!);
    once(once(x).relu()).sum().backward();
    const opt = new kn.optim.SGD(net.parameters(), { lr: 0.5 });
    net.call(x).sum().backward();
    const r = allclose(lin.weight.grad!.toFloat64Array(), W!.grad!.toFloat64Array(), 1e-6, 1e-6);
    assert.ok(r.ok, r.message);
    const before = lin.bias!.toFloat64Array();
    opt.step();
    const want = Array.from(before, (v, i) => v - 0.5 * b!.grad!.toFloat64Array()[i]!);
    const s = allclose(lin.bias!.toFloat64Array(), want, 1e-6, 1e-6);
    assert.ok(s.ok, `one step, not two: ${s.message}`);
    net.loadStateDict(net.stateDict());
  }));

test('init: same seed, same weights; Kaiming/Xavier scales', () =>
  kn.tidy(() => {
    kn.seed(3);
    const a = new kn.nn.Linear(50, 40).weight.toArray();
    kn.seed(3);
    const c = new kn.nn.Linear(50, 40).weight.toArray();
    assert.equal(Array.from(a), Array.from(c));
    const std = (t: kn.Tensor): number => Math.sqrt(t.var().item());
    assert.ok(Math.abs(std(kn.nn.init.kaimingUniform([400, 200])) - Math.sqrt(2 / 200)) < 0.005);
    assert.ok(Math.abs(std(kn.nn.init.kaimingNormal([400, 200])) - Math.sqrt(2 / 200)) < 0.005);
    assert.ok(Math.abs(std(kn.nn.init.xavierUniform([400, 200])) - Math.sqrt(2 / 600)) < 0.005);
    assert.ok(Math.abs(std(kn.nn.init.xavierNormal([64, 8, 3, 3])) - Math.sqrt(2 / (8 * 9 + 64 * 9))) < 0.005);
  }));

/** Float64 reference of PyTorch's cross_entropy with weight and label smoothing. */
function ceRef(
  logits: number[][],
  y: number[],
  w: number[] | null,
  eps: number,
  red: 'mean' | 'sum' | 'none',
): number | number[] {
  const C = logits[0]!.length;
  const W = w ?? new Array(C).fill(1);
  const rows = logits.map((r, i) => {
    const m = Math.max(...r),
      lse = m + Math.log(r.reduce((a, v) => a + Math.exp(v - m), 0));
    const lp = r.map((v) => v - lse);
    return -(1 - eps) * W[y[i]!]! * lp[y[i]!]! - (eps / C) * lp.reduce((a, v, c) => a + W[c]! * v, 0);
  });
  if (red === 'none') return rows;
  const s = rows.reduce((a, v) => a + v, 0);
  return red === 'sum' ? s : s / y.reduce((a, c) => a + W[c]!, 0);
}

for (const b of BACKENDS) {
  test(`crossEntropy matches the float64 reference (weights, smoothing, reductions) and passes gradcheck (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        const r = rng(11);
        const L = Array.from({ length: 5 }, () => Array.from({ length: 4 }, () => 4 * r() - 2));
        const y = [0, 3, 1, 1, 2],
          w = [0.5, 2, 1, 3];
        const logits = kn.tensor(L),
          labels = kn.tensor(new Int32Array(y), [5]),
          wt = kn.tensor(w);
        for (const [ww, eps] of [
          [null, 0],
          [w, 0],
          [null, 0.1],
          [w, 0.2],
        ] as [number[] | null, number][]) {
          for (const red of ['mean', 'sum', 'none'] as const) {
            const got = kn.nn.loss.crossEntropy(logits, labels, {
              weight: ww ? wt : null,
              labelSmoothing: eps,
              reduction: red,
            });
            const want = ceRef(L, y, ww, eps, red);
            close(f64(got), Array.isArray(want) ? want : [want]);
            gc(
              (lg) => {
                const l = kn.nn.loss.crossEntropy(lg, labels.to(lg.backend), {
                  weight: ww ? wt.to(lg.backend) : null,
                  labelSmoothing: eps,
                  reduction: red,
                });
                return red === 'none'
                  ? l.mul(kn.tensor([1, -1, 2, 0.5, 3], undefined, { backend: lg.backend })).sum()
                  : l;
              },
              [logits],
            );
          }
        }
        // ignoreIndex: the rows labelled -100 are left out (0 in 'none', no gradient), the mean is over the rest
        const yi = [0, -100, 1, -100, 2],
          kept = [0, 2, 4];
        const labelsI = kn.tensor(new Int32Array(yi), [5]);
        for (const [ww, eps] of [
          [null, 0],
          [w, 0.2],
        ] as [number[] | null, number][]) {
          for (const red of ['mean', 'sum', 'none'] as const) {
            const opts = { weight: ww ? wt : null, labelSmoothing: eps, reduction: red, ignoreIndex: -100 };
            const got = kn.nn.loss.crossEntropy(logits, labelsI, opts);
            const part = ceRef(
              kept.map((i) => L[i]!),
              kept.map((i) => yi[i]!),
              ww,
              eps,
              red,
            );
            const want = Array.isArray(part) ? yi.map((c, i) => (c < 0 ? 0 : part[kept.indexOf(i)]!)) : [part];
            close(f64(got), want);
            gc(
              (lg) => {
                const l = kn.nn.loss.crossEntropy(lg, labelsI.to(lg.backend), {
                  ...opts,
                  weight: ww ? wt.to(lg.backend) : null,
                });
                return red === 'none'
                  ? l.mul(kn.tensor([1, -1, 2, 0.5, 3], undefined, { backend: lg.backend })).sum()
                  : l;
              },
              [logits],
            );
          }
        }
        const lg = logits.clone();
        lg.requiresGrad = true;
        kn.nn.loss.crossEntropy(lg, labelsI, { ignoreIndex: -100 }).backward();
        const grad = f64(lg.grad!);
        assert.ok(
          [4, 5, 6, 7, 12, 13, 14, 15].every((i) => grad[i] === 0),
          'ignored rows get no gradient',
        );
        const none = kn.tensor(new Int32Array([7, 7, 7, 7, 7]), [5]);
        assert.ok(Number.isNaN(kn.nn.loss.crossEntropy(logits, none, { ignoreIndex: 7 }).item()), 'all ignored: NaN');
        assert.is(kn.nn.loss.crossEntropy(logits, none, { ignoreIndex: 7, reduction: 'sum' }).item(), 0);
        throwsKiln(
          () => kn.nn.loss.crossEntropy(logits, labelsI, { ignoreIndex: 1.5 }),
          kn.ArgumentError,
          /ignoreIndex must be an integer/,
        );
        throwsKiln(
          () => kn.nn.loss.crossEntropy(logits, kn.softmax(logits, 1), { ignoreIndex: -100 }),
          kn.ArgumentError,
          /class-index labels, not to class probabilities/,
        );
        throwsKiln(
          () => kn.nn.loss.crossEntropy(logits, labelsI).item(),
          kn.ValidationError,
          /label -100 at index 1 .*set ignoreIndex/,
        );
        // stable for huge logits
        const big = kn.nn.loss.crossEntropy(
          kn.tensor([
            [1000, 0, -1000],
            [0, 1000, 0],
          ]),
          kn.tensor(new Int32Array([0, 2]), [2]),
        );
        close(f64(big), [500]);
        throwsKiln(
          () => kn.nn.loss.crossEntropy(logits, kn.tensor(new Int32Array([0, 4, 1, 1, 2]), [5])).item(),
          kn.ValidationError,
          /label 4 at index 1 is out of range; expected a class in \[0, 4\)/,
        );
        throwsKiln(
          () => kn.nn.loss.crossEntropy(logits, kn.tensor([0, 1, 1, 1, 2])),
          kn.DTypeError,
          /integer class indices/,
        );
        throwsKiln(
          () => kn.nn.loss.crossEntropy(logits, labels, { weight: kn.ones([3]) }),
          kn.ShapeError,
          /weight must be \[4\]/,
        );
        throwsKiln(
          () => kn.nn.loss.crossEntropy(logits, labels, { labelSmoothing: 1 }),
          kn.ArgumentError,
          /labelSmoothing/,
        );
      }),
    ));

  test(`bce, bceWithLogits, mse: values, stability at the edges, gradcheck (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        const x = kn.tensor([-30, -1, 0, 0.5, 40]),
          t = kn.tensor([0, 1, 1, 0, 1]);
        const X = [-30, -1, 0, 0.5, 40],
          T = [0, 1, 1, 0, 1];
        const ref = X.map((v, i) => Math.max(v, 0) - v * T[i]! + Math.log1p(Math.exp(-Math.abs(v))));
        close(f64(kn.nn.loss.bceWithLogits(x, t, { reduction: 'none' })), ref);
        // posWeight multiplies the positive term
        const pw = X.map(
          (v, i) =>
            -(3 * T[i]! * Math.log(1 / (1 + Math.exp(-v))) + (1 - T[i]!) * Math.log(1 - 1 / (1 + Math.exp(-v)))),
        );
        close(
          f64(kn.nn.loss.bceWithLogits(x.slice([1], [4]), t.slice([1], [4]), { posWeight: 3, reduction: 'none' })),
          pw.slice(1, 4),
        );
        // the gradient at 0 is sigmoid(0) - t = -0.5, also where |x| has a kink
        const z = kn.tensor([0], undefined, { requiresGrad: true });
        kn.nn.loss.bceWithLogits(z, kn.tensor([1])).backward();
        close(f64(z.grad!), [-0.5]);
        gc(
          (a) =>
            kn.nn.loss.bceWithLogits(a, t.to(a.backend), {
              posWeight: 2,
              weight: kn.tensor([1, 2, 1, 1, 0.5], undefined, { backend: a.backend }),
            }),
          [kn.tensor([-2, -1, 0.3, 0.5, 1.5])],
        );
        const p = kn.tensor([0, 0.3, 0.5, 1]),
          pt = kn.tensor([0, 1, 1, 1]);
        const l = kn.nn.loss.bce(p, pt, { reduction: 'none' });
        close(f64(l), [0, -Math.log(0.3), Math.LN2, 0]);
        const pp = kn.tensor([0, 0.3, 1], undefined, { requiresGrad: true });
        kn.nn.loss.bce(pp, kn.tensor([1, 0, 0])).backward();
        assert.ok(Array.from(pp.grad!.toArray()).every(Number.isFinite), 'bce gradient is finite at p = 0 and 1');
        gc(
          (a) => kn.nn.loss.bce(a, kn.tensor([0, 1, 0.3], undefined, { backend: a.backend })),
          [kn.tensor([0.2, 0.6, 0.9])],
        );
        throwsKiln(
          () => kn.nn.loss.bce(kn.tensor([1.5]), kn.tensor([1])),
          kn.ValidationError,
          /probabilities in \[0, 1\].*bceWithLogits/,
        );
        // empty inputs: no range to check; the mean of nothing is NaN and the sum 0, as for mse and bceWithLogits
        const none = kn.zeros([0]);
        for (const f of [kn.nn.loss.bce, kn.nn.loss.bceWithLogits, kn.nn.loss.mse] as const) {
          assert.ok(Number.isNaN(f(none, none).item()), `${f.name} of nothing`);
          assert.is(f(none, none, { reduction: 'sum' }).item(), 0, `${f.name} summed over nothing`);
        }
        close(f64(kn.nn.loss.mse(kn.tensor([1, 2, 3]), kn.tensor([1, 4, 0]))), [13 / 3]);
        gc((a, c) => kn.nn.loss.mse(a, c), [kn.tensor([1, 2, 3]), kn.tensor([0, 2, 5])]);
        throwsKiln(() => kn.nn.loss.mse(kn.ones([3]), kn.ones([3, 1])), kn.ShapeError, /must match exactly/);
      }),
    ));
}

// ---------------- architecture specs and the layer registry ----------------

const specDir = tempDir('kiln-spec-');

const specModel = (): kn.nn.Module =>
  new kn.nn.Sequential(
    new kn.nn.Conv2d(1, 4, 3, { padding: 1, stride: [1, 1] }),
    new kn.nn.BatchNorm2d(4, { momentum: 0.2 }),
    new kn.nn.GroupNorm(2, 4, { eps: 1e-4 }),
    new kn.nn.GELU(),
    new kn.nn.MaxPool2d(2),
    new kn.nn.Flatten(),
    new kn.nn.Dropout(0.25),
    new kn.nn.Linear(64, 16, { bias: false }),
    new kn.nn.LayerNorm(16, { eps: 1e-6 }),
    new kn.nn.Tanh(),
    new kn.nn.Linear(16, 3),
    new kn.nn.Sigmoid(),
  );

test('toSpec/fromSpec rebuild every standard layer; a saved model loads with the same outputs', async () => {
  kn.seed(3);
  const m = specModel();
  const x = kn.randn([2, 1, 8, 8]);
  m.train();
  m.call(x).dispose(); // move BatchNorm's running statistics off their initial values
  m.eval();
  const spec = kn.nn.toSpec(m);
  const rebuilt = kn.nn.fromSpec(JSON.stringify(spec));
  assert.equal(kn.nn.toSpec(rebuilt), spec);
  const file = join(specDir, 'spec-model.safetensors');
  await kn.io.save(file, m, { metadata: { note: 'hi' } });
  const { model, metadata } = await kn.io.loadModel(file);
  assert.is(metadata.note, 'hi');
  assert.is(model.training, false);
  const a = m.call(x).toArray(),
    b = model.call(x).toArray();
  assert.equal(Array.from(b), Array.from(a));
  assert.equal(kn.nn.toSpec(new kn.nn.Embedding(5, 2)), { type: 'Embedding', numEmbeddings: 5, embeddingDim: 2 });
  assert.equal(kn.nn.toSpec(new kn.nn.BatchNorm1d(3, { affine: false })), {
    type: 'BatchNorm1d',
    numFeatures: 3,
    eps: 1e-5,
    momentum: 0.1,
    affine: false,
  });
});

test('custom modules have no spec: toSpec says so, save keeps weights only, loadModel explains', async () => {
  class Twice extends kn.nn.Module {
    lin = this.registerModule('lin', new kn.nn.Linear(2, 2));
    forward(x: kn.Tensor): kn.Tensor {
      return this.lin.call(this.lin.call(x));
    }
  }
  assert.throws(
    () => kn.nn.toSpec(new kn.nn.Sequential(new kn.nn.ReLU(), new Twice())),
    /model\.1 is a Twice, which is not one of kiln's standard layers/,
  );
  const file = join(specDir, 'custom.safetensors');
  await kn.io.save(file, new Twice());
  assert.equal(Object.keys(await kn.io.load(file)).sort(), ['lin.bias', 'lin.weight']);
  try {
    await kn.io.loadModel(file);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, kn.FormatError);
    assert.match((e as Error).message, /no architecture spec/);
  }
});

test('hostile specs are refused with FormatError before anything is allocated', async () => {
  const bad: [unknown, RegExp][] = [
    ['{not json', /not valid JSON/],
    [null, /expected an object/],
    [{ type: 'Evil' }, /unknown layer type "Evil"/],
    [{ type: 'Linear', inFeatures: -1, outFeatures: 2 }, /'inFeatures' must be an integer >= 1/],
    [{ type: 'Linear', inFeatures: 1.5, outFeatures: 2 }, /inFeatures/],
    [{ type: 'Linear', inFeatures: 2 ** 20, outFeatures: 2 ** 20 }, /more than \d+ parameter values/],
    [{ type: 'Sequential', layers: 'x' }, /'layers' must be a list/],
    [{ type: 'Conv2d', inChannels: 3, outChannels: 4, kernelSize: [3], groups: 1 }, /kernelSize/],
    [{ type: 'Conv2d', inChannels: 3, outChannels: 4, kernelSize: 3, groups: 2 }, /divisible by groups/],
    [{ type: 'Dropout', p: 1 }, /'p' must be in \[0, 1\)/],
    [{ type: 'LayerNorm', normalizedShape: [] }, /normalizedShape/],
    [{ type: 'BatchNorm1d', numFeatures: 4, eps: 0 }, /'eps' must be a finite number > 0/],
  ];
  let deep: unknown = { type: 'ReLU' };
  for (let i = 0; i < 100; i++) deep = { type: 'Sequential', layers: [deep] };
  bad.push([deep, /nesting deeper than 64/]);
  for (const [spec, re] of bad) {
    try {
      kn.nn.fromSpec(spec);
      assert.unreachable(`accepted ${JSON.stringify(spec)?.slice(0, 80)}`);
    } catch (e) {
      assert.instance(e, kn.FormatError, String(e));
      assert.match((e as Error).message, re);
    }
  }
  // a file whose spec claims more weights than it holds, or whose tensors do not fit the spec
  const file = join(specDir, 'lying.safetensors');
  await kn.io.save(
    file,
    { weight: kn.ones([2, 2]), bias: kn.ones([2]) },
    { metadata: { 'kiln.spec': JSON.stringify({ type: 'Linear', inFeatures: 1000, outFeatures: 1000 }) } },
  );
  try {
    await kn.io.loadModel(file);
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /more than 6 parameter values/);
  }
  await kn.io.save(
    file,
    { weight: kn.ones([2, 3]), bias: kn.ones([2]) },
    { metadata: { 'kiln.spec': JSON.stringify({ type: 'Linear', inFeatures: 2, outFeatures: 2 }) } },
  );
  try {
    await kn.io.loadModel(file);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, kn.FormatError);
    assert.match(
      (e as Error).message,
      /weights do not fit the architecture spec: .*'weight' has shape \[2, 3\], expected \[2, 2\]/,
    );
  }
});

test('every standard and quantized layer class is registered, and each spec round-trips', () => {
  const classes = Object.values(kn.nn).filter(
    (v): v is new (...a: never[]) => kn.nn.Module =>
      typeof v === 'function' && v.prototype instanceof kn.nn.Module && !/^(Qat|Module$)/.test(v.name),
  );
  assert.ok(classes.length >= 14, `found ${classes.length} layer classes in kn.nn`);
  const quant = [kn.quant.QuantLinear, kn.quant.QuantConv2d, kn.quant.Int4Linear];
  const types = new Set(layerTypes());
  for (const c of [...classes, ...quant]) assert.ok(types.has(c.name), `${c.name} is not in the layer registry`);
  const samples: kn.nn.Module[] = [
    new kn.quant.QuantLinear(8, 4),
    new kn.quant.QuantConv2d(2, 3, [3, 3], { stride: [2, 2], padding: [1, 1], dilation: [1, 1] }),
    new kn.quant.Int4Linear(64, 4, 32),
    new kn.nn.MaxPool2d(2, { stride: 1 }),
    new kn.nn.Flatten(1, 2),
    new kn.nn.Conv2d(4, 4, [3, 1], { groups: 2, padding: [1, 0], bias: false }),
    new kn.nn.GroupNorm(3, 6, { affine: false }),
    new kn.nn.BatchNorm1d(2, { momentum: null }),
  ];
  for (const m of samples) {
    const spec = kn.nn.toSpec(m);
    assert.equal(kn.nn.toSpec(kn.nn.fromSpec(JSON.parse(JSON.stringify(spec)))), spec);
  }
  // the first layer fixes the input size for Linear and its quantized forms only
  assert.equal(kn.nn.inferInputShape(new kn.nn.Sequential(new kn.quant.Int4Linear(64, 4, 32))), [64]);
  assert.is(kn.nn.inferInputShape(new kn.nn.Sequential(new kn.nn.ReLU())), null);
});

test('spec types that are Object.prototype keys are unknown layers, not lookups', () => {
  for (const type of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
    throwsKiln(() => kn.nn.fromSpec({ type }), kn.FormatError, /unknown layer type/);
  }
});

test.run();
