// Augmentation: each step checked on real pixels (flips are exact reversals, crops are windows of the padded
// image, rotation by 0 is the identity and keeps a constant image constant inside, cutout zeroes one square,
// noise has the asked spread, mixup mixes inputs and one-hot labels with one lambda), soft-target cross-entropy
// against the integer path and by gradcheck, and loaders that augment reproducibly without touching kiln's RNG.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { rng, throwsKiln } from './helpers.js';

const aug = kn.data.augment;
const N = 6,
  C = 2,
  H = 5,
  W = 7;
const img = Float32Array.from({ length: N * C * H * W }, (_, i) => i + 1);
const at = (d: ArrayLike<number>, h: number, w: number, n: number, c: number, y: number, x: number): number =>
  d[((n * C + c) * h + y) * w + x]!;
const run = (t: kn.data.BatchTransform, b: kn.data.Batch, seed = 1): kn.data.Batch =>
  t(b, { epoch: 0, index: 0, rng: rng(seed) });
const batch = (): kn.data.Batch => ({
  x: kn.tensor(img, [N, C, H, W]),
  y: kn.tensor([0, 1, 2, 0, 1, 2], [N], { dtype: 'int32' }),
});

test('randomFlip: exact left-right and up-down reversals', () => {
  const h = run(aug.compose(aug.randomFlip({ horizontal: 1 })), batch()).x!.toArray();
  const v = run(aug.compose(aug.randomFlip({ horizontal: 0, vertical: 1 })), batch()).x!.toArray();
  for (let n = 0; n < N; n++)
    for (let c = 0; c < C; c++)
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) {
          assert.is(at(h, H, W, n, c, y, x), at(img, H, W, n, c, y, W - 1 - x));
          assert.is(at(v, H, W, n, c, y, x), at(img, H, W, n, c, H - 1 - y, x));
        }
  const none = run(aug.compose(aug.randomFlip({ horizontal: 0 })), batch()).x!.toArray();
  assert.equal(Array.from(none), Array.from(img));
});

test('randomCrop: each output is a window of the zero-padded image; the windows vary', () => {
  const out = run(aug.compose(aug.randomCrop([4, 5], { padding: 2 })), batch());
  assert.equal(out.x!.shape, [N, C, 4, 5]);
  const d = out.x!.toArray();
  const offsets = new Set<string>();
  for (let n = 0; n < N; n++) {
    let found = '';
    for (let oy = -2; oy <= H + 2 - 4 && !found; oy++)
      for (let ox = -2; ox <= W + 2 - 5 && !found; ox++) {
        let ok = true;
        for (let c = 0; c < C && ok; c++)
          for (let y = 0; y < 4 && ok; y++)
            for (let x = 0; x < 5 && ok; x++) {
              const sy = oy + y,
                sx = ox + x;
              const want = sy < 0 || sy >= H || sx < 0 || sx >= W ? 0 : at(img, H, W, n, c, sy, sx);
              ok = at(d, 4, 5, n, c, y, x) === want;
            }
        if (ok) found = `${oy},${ox}`;
      }
    assert.ok(found, `sample ${n} is not a window of its padded image`);
    offsets.add(found);
  }
  assert.ok(offsets.size >= 2, 'every sample got the same window');
  throwsKiln(() => run(aug.compose(aug.randomCrop(9)), batch()), kn.ShapeError, /9x9 crop does not fit a 5x7 image/);
});

test('randomRotation: 0 degrees is the identity; a constant image stays constant near the centre', () => {
  const id = run(aug.compose(aug.randomRotation(0)), batch()).x!.toArray();
  assert.ok(Array.from(id).every((v, i) => Math.abs(v - img[i]!) < 1e-4));
  const ones = kn.ones([8, 1, 9, 9]);
  const r = run(aug.compose(aug.randomRotation(30)), { x: ones }).x!.toArray();
  let changed = 0;
  for (let n = 0; n < 8; n++) {
    assert.ok(Math.abs(r[n * 81 + 4 * 9 + 4]! - 1) < 1e-6, 'the centre pixel moved');
    for (const [y, x] of [
      [3, 4],
      [4, 3],
      [5, 5],
    ])
      assert.ok(Math.abs(r[n * 81 + y! * 9 + x!]! - 1) < 1e-5);
    if (r[n * 81]! < 0.99) changed++; // a corner rotated in from outside the image
  }
  assert.ok(changed >= 4, `only ${changed} of 8 corners changed`);
});

test('cutout zeroes one square per image; gaussianNoise has the asked spread', () => {
  const ones = kn.ones([20, 1, 12, 12]);
  const d = run(aug.compose(aug.cutout(4)), { x: ones }).x!.toArray();
  for (let n = 0; n < 20; n++) {
    const zeros = Array.from(d.subarray(n * 144, (n + 1) * 144)).filter((v) => v === 0).length;
    assert.ok(zeros >= 4 && zeros <= 16, `image ${n}: ${zeros} zeros`);
  }
  const x = kn.zeros([4000, 3]);
  const noisy = run(aug.compose(aug.gaussianNoise([0.5, 1, 2])), { x }).x!.toArray();
  for (let f = 0; f < 3; f++) {
    let s = 0,
      sq = 0;
    for (let i = 0; i < 4000; i++) {
      s += noisy[i * 3 + f]!;
      sq += noisy[i * 3 + f]! ** 2;
    }
    const sd = Math.sqrt(sq / 4000 - (s / 4000) ** 2);
    assert.ok(Math.abs(s / 4000) < 0.1 && Math.abs(sd / [0.5, 1, 2][f]! - 1) < 0.06, `feature ${f}: sd ${sd}`);
  }
  throwsKiln(() => aug.gaussianNoise(-1), kn.ArgumentError, /std must be a finite number >= 0/);
  throwsKiln(() => run(aug.compose(aug.gaussianNoise([1, 2])), { x: kn.zeros([2, 3]) }), kn.ShapeError, /2 std values/);
});

test('mixup: one lambda mixes inputs and one-hot labels; soft cross-entropy matches the integer path', () => {
  const x = kn.tensor(
    Float32Array.from({ length: 12 }, (_, i) => i),
    [4, 3],
  );
  const y = kn.tensor([0, 1, 2, 1], [4], { dtype: 'int32' });
  const src = x.toList() as number[][]; // the transform takes ownership of (and disposes) the batch it is given
  const out = run(aug.compose(aug.mixup(0.4, { numClasses: 3 })), { x, y }, 7);
  const mx = out.x!.toList() as number[][],
    my = out.y!.toList() as number[][];
  assert.equal(out.y!.shape, [4, 3]);
  for (const row of my) assert.ok(Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-6);
  // recover lambda and the partner of each row from the labels' and inputs' values and check consistency
  // one lambda for the batch: a row's own class keeps weight lambda (plus 1 - lambda when its partner shares it)
  const labels = [0, 1, 2, 1];
  const own = my.map((row, n) => row[labels[n]!]!).filter((v) => v < 1 - 1e-6);
  assert.ok(own.length > 0, 'no row was mixed with a row of another class');
  const lam = own[0]!;
  for (const v of own) assert.ok(Math.abs(v - lam) < 1e-6, `several lambdas in one batch: ${own}`);
  for (let n = 0; n < 4; n++) {
    const partner = [0, 1, 2, 3].find(
      (m) =>
        my[n]!.every((v, c) => Math.abs(v - (lam * +(labels[n] === c) + (1 - lam) * +(labels[m] === c))) < 1e-6) &&
        mx[n]!.every((v, j) => Math.abs(v - (lam * src[n]![j]! + (1 - lam) * src[m]![j]!)) < 1e-4),
    );
    assert.ok(partner !== undefined, `row ${n} is not lambda * itself + (1 - lambda) * another row`);
  }
  const logits = kn.tensor([
    [1, 2, 0.5],
    [0.1, -1, 2],
  ]);
  const hard = kn.tensor([2, 0], [2], { dtype: 'int32' });
  const soft = kn.tensor([
    [0, 0, 1],
    [1, 0, 0],
  ]);
  for (const o of [{}, { labelSmoothing: 0.1 }, { weight: kn.tensor([1, 2, 0.5]), reduction: 'sum' as const }]) {
    const a = kn.nn.loss.crossEntropy(logits, hard, o).item(),
      b = kn.nn.loss.crossEntropy(logits, soft, o).item();
    if ('weight' in o) assert.ok(Math.abs(a - b) < 1e-5, `weighted sum: ${a} vs ${b}`);
    else assert.ok(Math.abs(a - b) < 1e-5, `${JSON.stringify(o)}: ${a} vs ${b}`);
  }
  const probs = kn.tensor([
    [0.2, 0.3, 0.5],
    [0.6, 0.1, 0.3],
  ]);
  // gradients for the logits and for the target probabilities
  const gc = kn.gradcheck((l, p) => kn.nn.loss.crossEntropy(l, p!, { labelSmoothing: 0.05 }), [logits, probs]);
  assert.ok(gc.ok, `gradcheck ${gc.maxAbsErr}`);
  throwsKiln(() => kn.nn.loss.crossEntropy(logits, kn.zeros([2, 4])), kn.ShapeError, /probabilities must be \[2, 3\]/);
  throwsKiln(() => aug.mixup(0.2, { numClasses: 1 }), kn.ArgumentError, /numClasses >= 2/);
});

test('loaders augment reproducibly per (seed, epoch, batch) and leave the global RNG alone; fit trains with mixup', async () => {
  const r = rng(3);
  const n = 64;
  const xs = Float32Array.from({ length: n * 4 }, () => r() * 2 - 1);
  const ys = Int32Array.from({ length: n }, (_, i) => (xs[i * 4]! + xs[i * 4 + 1]! > 0 ? 1 : 0));
  const ds = new kn.data.Dataset({ x: kn.tensor(xs, [n, 4]), y: kn.tensor(ys, [n], { dtype: 'int32' }) });
  const t = aug.compose(aug.gaussianNoise(0.05), aug.mixup(0.2, { numClasses: 2 }));
  const epochs = (dl: kn.data.DataLoader, e: number): number[] =>
    [...dl.batches(e)].flatMap((b) => Array.from(b.x!.toArray()));
  kn.seed(5);
  const before = kn.getRngState();
  const dl = new kn.data.DataLoader(ds, { batchSize: 16, shuffle: true, seed: 9, transform: t });
  const e0 = epochs(dl, 0);
  assert.equal(kn.getRngState(), before, 'the transform drew from kiln’s generator');
  assert.equal(epochs(dl, 0), e0);
  assert.not.equal(epochs(dl, 1).slice(0, 8), e0.slice(0, 8));
  const plain = new kn.data.DataLoader(ds, { batchSize: 16, shuffle: true, seed: 9 });
  assert.not.equal(epochs(plain, 0).slice(0, 8), e0.slice(0, 8));
  const model = new kn.nn.Sequential(new kn.nn.Linear(4, 16), new kn.nn.ReLU(), new kn.nn.Linear(16, 2));
  const res = await kn.train.fit(model, {
    train: dl,
    val: plain,
    loss: 'crossEntropy',
    optimizer: new kn.optim.Adam(model.parameters(), { lr: 0.02 }),
    epochs: 15,
    metrics: ['accuracy'],
    verbose: 'silent',
  });
  assert.ok(res.history.at(-1)!.metrics.accuracy! > 0.85, `accuracy ${res.history.at(-1)!.metrics.accuracy}`);
  throwsKiln(
    () => new kn.data.DataLoader(ds, { transform: 3 as never }),
    kn.ArgumentError,
    /transform must be a function/,
  );
});

test.run();
