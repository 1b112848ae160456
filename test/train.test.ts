import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { throwsKiln, tempDir } from './helpers.js';

/** Three separable 2-D blobs; `noise` controls overlap. */
function blobs(n: number, seed: number, noise = 0.5): kn.data.Dataset {
  kn.seed(seed);
  const y = kn.randint([n], 0, 3);
  const centers = kn.tensor([
    [0, 3],
    [3, -2],
    [-3, -2],
  ]);
  const x = centers.gather(y).add(kn.randn([n, 2], { std: noise }));
  return new kn.data.Dataset({ x, y });
}
const mlp = (): kn.nn.Module =>
  new kn.nn.Sequential(new kn.nn.Linear(2, 16), new kn.nn.ReLU(), new kn.nn.Dropout(0.1), new kn.nn.Linear(16, 3));
const sink = (): { stream: Writable; lines: string[] } => {
  const lines: string[] = [];
  return {
    lines,
    stream: new Writable({
      write(c, _e, cb) {
        lines.push(...String(c).split('\n').filter(Boolean));
        cb();
      },
    }),
  };
};
const weights = (m: kn.nn.Module): number[][] => m.parameters().map((p) => Array.from(p.toArray()));

test('DataLoader: seeded order per epoch, every sample once, dropLast, weighted sampling', () =>
  kn.tidy(() => {
    const ds = new kn.data.Dataset({
      x: kn.arange(0, 10).reshape([10, 1]),
      y: kn.arange(0, 10, 1, { dtype: 'int32' }),
    });
    const dl = new kn.data.DataLoader(ds, { batchSize: 4, shuffle: true, seed: 7 });
    assert.is(dl.length, 3);
    const epoch = (e: number): number[] => [...dl.batches(e)].flatMap((b) => Array.from(b.y!.toArray()));
    assert.equal(epoch(0), epoch(0));
    assert.not.equal(epoch(0), epoch(1));
    assert.equal(
      [...epoch(1)].sort((a, b) => a - b),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    );
    assert.equal(
      [...new kn.data.DataLoader(ds, { batchSize: 4, dropLast: true })].map((b) => b.x!.shape[0]),
      [4, 4],
    );
    assert.equal(
      Array.from(new kn.data.DataLoader({ dataset: ds, batchSize: 3 }).order(0)),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    );
    // 90/10 imbalance, balanced sampling draws about half of each class
    const labels = Int32Array.from({ length: 200 }, (_, i) => (i < 180 ? 0 : 1));
    const big = new kn.data.Dataset({ y: kn.tensor(labels, [200]) });
    const ws = kn.data.balancedSampleWeights(labels);
    const drawn = new kn.data.DataLoader(big, { batchSize: 200, sampleWeights: ws, seed: 1 }).order(0);
    const ones = Array.from(drawn).filter((i) => labels[i] === 1).length;
    assert.ok(ones > 70 && ones < 130, `minority drawn ${ones} / 200`);
    assert.equal(
      Array.from(kn.data.classWeights(labels, 2).toArray()).map((v) => +v.toFixed(4)),
      [0.5556, 5],
    );
    throwsKiln(
      () => new kn.data.Dataset({ x: kn.ones([3, 2]), y: kn.ones([4]) }),
      kn.ShapeError,
      /'y' has 4 samples .* 'x' has 3/,
    );
    throwsKiln(() => new kn.data.DataLoader(ds, { batchSize: 0 }), kn.ArgumentError, /batchSize/);
    throwsKiln(
      () => new kn.data.DataLoader(ds, { sampleWeights: [1] }),
      kn.ShapeError,
      /1 entries but the dataset has 10/,
    );
  }));

test('fit learns, validates with metrics each epoch, logs JSON lines', async () => {
  const train = new kn.data.DataLoader(blobs(300, 1), { batchSize: 32, shuffle: true, seed: 1 });
  const val = new kn.data.DataLoader(blobs(150, 2), { batchSize: 50 });
  kn.seed(3);
  const model = mlp();
  const { stream, lines } = sink();
  const seen: number[] = [];
  const res = await kn.train.fit(model, {
    train,
    val,
    loss: 'crossEntropy',
    optimizer: new kn.optim.Adam(model.parameters(), { lr: 1e-2 }),
    epochs: 6,
    metrics: ['accuracy', 'precision', 'recall', 'f1', 'rocAuc'],
    verbose: 'json',
    logStream: stream,
    onEpoch: (l) => {
      seen.push(l.epoch);
    },
  });
  assert.equal(seen, [1, 2, 3, 4, 5, 6]);
  assert.is(lines.length, 6);
  const last = JSON.parse(lines[5]!);
  assert.equal(Object.keys(last).sort(), [
    'accuracy',
    'epoch',
    'f1',
    'lr',
    'precision',
    'recall',
    'rocAuc',
    'seconds',
    'trainLoss',
    'valLoss',
  ]);
  assert.ok(last.accuracy > 0.95, `val accuracy ${last.accuracy}`);
  assert.ok(res.history[5]!.trainLoss < res.history[0]!.trainLoss);
  // the progress-bar mode (what a TTY gets) runs too, and writes its epoch summary to stderr
  const written: string[] = [];
  const orig = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((c: string | Uint8Array) => {
    written.push(String(c));
    return true;
  }) as typeof process.stderr.write;
  try {
    await kn.train.fit(model, {
      train,
      val,
      loss: 'crossEntropy',
      optimizer: new kn.optim.SGD(model.parameters(), { lr: 0 }),
      epochs: 1,
      metrics: ['accuracy'],
      verbose: 'bar',
    });
  } finally {
    process.stderr.write = orig;
  }
  assert.ok(
    written.some((w) => /epoch 1: train loss [\d.]+, val loss [\d.]+, accuracy [\d.]+/.test(w)),
    written.join('|'),
  );
  const ev = kn.train.evaluate(model, val, { loss: 'crossEntropy', metrics: ['accuracy'] });
  assert.ok(Math.abs(ev.metrics.accuracy! - last.accuracy) < 1e-12, 'evaluate agrees with the last epoch');
});

test('early stopping: patience, minDelta, restores the best weights', async () => {
  const train = new kn.data.DataLoader(blobs(120, 4, 3), { batchSize: 8, shuffle: true, seed: 2 });
  const val = new kn.data.DataLoader(blobs(60, 5, 3), { batchSize: 60 });
  kn.seed(4);
  const model = mlp();
  let bestW: number[][] = [];
  const res0 = { best: null as number | null };
  const res = await kn.train.fit(model, {
    train,
    val,
    loss: 'crossEntropy',
    optimizer: new kn.optim.SGD(model.parameters(), { lr: 0.5 }),
    epochs: 40,
    earlyStopping: { monitor: 'valLoss', patience: 2, minDelta: 1e-3 },
    verbose: 'silent',
    onEpoch: (l) => {
      if (res0.best === null || l.valLoss! < res0.best - 1e-3) {
        res0.best = l.valLoss!;
        bestW = weights(model);
      }
    },
  });
  assert.ok(res.stoppedEarly, 'a too-large learning rate on noisy data stops improving');
  const n = res.history.length;
  assert.ok(n < 40);
  assert.is(res.bestEpoch, n - 2, 'stops after `patience` epochs without improvement');
  assert.equal(weights(model), bestW, "the best epoch's weights are restored");
});

test('checkpoints: resume after a stop gives bit-identical weights (dropout + shuffling + Adam + scheduler)', async () => {
  const dirA = tempDir('kiln-fit-a-'),
    dirB = tempDir('kiln-fit-b-');
  const run = async (dir: string, epochs: number, resume: boolean, init: number): Promise<kn.nn.Module> => {
    const train = new kn.data.DataLoader(blobs(96, 6), { batchSize: 16, shuffle: true, seed: 5 });
    const val = new kn.data.DataLoader(blobs(40, 7), { batchSize: 40 });
    kn.seed(init);
    const model = mlp();
    const optimizer = new kn.optim.Adam(model.parameters(), { lr: 5e-3, amsgrad: true });
    const scheduler = new kn.optim.CosineLR(optimizer, { tMax: 5 });
    await kn.train.fit(model, {
      train,
      val,
      loss: 'crossEntropy',
      optimizer,
      scheduler,
      epochs,
      checkpointDir: dir,
      resume,
      verbose: 'silent',
      earlyStopping: { patience: 10 },
      clipGradNorm: 1,
      accumulate: 2,
    });
    return model;
  };
  const straight = await run(dirA, 5, false, 11);
  await run(dirB, 2, false, 11);
  kn.seed(999); // whatever happens in between must not matter
  kn.randn([17]);
  const resumed = await run(dirB, 5, true, 12); // a different init: every weight must come from the checkpoint
  assert.equal(weights(resumed), weights(straight));
  assert.ok(existsSync(join(dirB, 'last.ckpt.safetensors')) && existsSync(join(dirB, 'best.safetensors')));
});

test('resume refuses a checkpoint whose training state is not one fit saved, and leaves the model as it was', async () => {
  const dir = tempDir('kiln-fit-bad-');
  const train = new kn.data.DataLoader(blobs(32, 8), { batchSize: 16 });
  kn.seed(3);
  const saved = mlp();
  const savedOpt = new kn.optim.Adam(saved.parameters());
  kn.seed(4);
  const model = mlp();
  const optimizer = new kn.optim.Adam(model.parameters());
  const before = weights(model);
  const good = { epoch: 1, history: [], best: null, bestEpoch: null, wait: 0, rng: kn.getRngState() };
  const bad: [unknown, RegExp][] = [
    [null, /the state is null/],
    [{ ...good, epoch: -1 }, /epoch is -1/],
    [{ ...good, epoch: 1.5 }, /epoch is 1.5/],
    [{ ...good, history: 'x' }, /history is "x"/],
    [{ ...good, wait: 'soon' }, /wait is "soon"/],
    [{ ...good, rng: { key0: 1, key1: -2, counter: 0 } }, /rng\.key1 is -2/],
    [{ ...good, rngs: [good.rng, null] }, /rngs\[1\]\.key0 is null/],
  ];
  const live = kn.memory().numTensors;
  for (const [state, re] of bad) {
    await kn.io.saveCheckpoint(join(dir, 'last.ckpt.safetensors'), { model: saved, optimizer: savedOpt, state });
    const err = await kn.train
      .fit(model, { train, loss: 'crossEntropy', optimizer, epochs: 2, checkpointDir: dir, resume: true })
      .then(
        () => null,
        (e: unknown) => e,
      );
    assert.instance(err, kn.ValidationError, `state ${JSON.stringify(state)}`);
    assert.match((err as Error).message, /holds no training state fit can resume from/);
    assert.match((err as Error).message, re);
    assert.equal(weights(model), before, 'the weights were not touched');
    const sd = optimizer.stateDict();
    Object.values(sd.tensors).forEach((t) => t.dispose());
    assert.equal([sd.steps, Object.keys(sd.tensors).length], [[0, 0, 0, 0], 0], 'nor the optimizer');
  }
  assert.is(kn.memory().numTensors, live, 'no tensor left behind');
  // the same file with a good state resumes
  await kn.io.saveCheckpoint(join(dir, 'last.ckpt.safetensors'), { model: saved, optimizer: savedOpt, state: good });
  const res = await kn.train.fit(model, {
    train,
    loss: 'crossEntropy',
    optimizer,
    epochs: 2,
    checkpointDir: dir,
    resume: true,
    verbose: 'silent',
  });
  assert.is(res.resumedFrom, 1);
  assert.is(res.history.length, 1);
});

test('no leaks: more epochs, evaluation and the checks leave the live tensor count where it was', async () => {
  const ds = blobs(96, 12);
  kn.seed(1);
  const model = new kn.nn.Sequential(
    new kn.nn.Linear(2, 8),
    new kn.nn.BatchNorm1d(8),
    new kn.nn.ReLU(),
    new kn.nn.Dropout(0.1),
    new kn.nn.Linear(8, 3),
  );
  const optimizer = new kn.optim.Adam(model.parameters(), { amsgrad: true });
  const train = new kn.data.DataLoader(ds, { batchSize: 16, shuffle: true, seed: 1 }),
    val = new kn.data.DataLoader(ds, { batchSize: 40 });
  const dir = tempDir('kiln-leak-');
  const go = (epochs: number): Promise<kn.train.FitResult> =>
    kn.train.fit(model, {
      train,
      val,
      loss: 'crossEntropy',
      optimizer,
      epochs,
      metrics: ['accuracy', 'f1', 'rocAuc'],
      verbose: 'silent',
      earlyStopping: { patience: 50 },
      clipGradNorm: 1,
      accumulate: 2,
      checkpointDir: dir,
    });
  await go(1);
  const before = kn.memory();
  await go(3);
  const [batch] = train.batches(0);
  kn.train.checks.initialLoss(model, batch!);
  kn.train.checks.gradientFlow(model, batch!);
  kn.train.checks.overfitOneBatch(model, batch!, { steps: 3 });
  kn.train.checks.zeroInputBaseline(model, batch!, { steps: 3 });
  kn.train.evaluate(model, val, { loss: 'crossEntropy', metrics: ['rocAuc'] });
  Object.values(batch!).forEach((t) => t.dispose());
  const after = kn.memory();
  assert.is(after.numTensors, before.numTensors);
  assert.is(after.numBytes, before.numBytes);
});

test('gradient accumulation over k batches equals one k-times larger batch (SGD)', async () => {
  const ds = blobs(64, 8);
  const go = async (batchSize: number, accumulate: number): Promise<number[][]> => {
    kn.seed(1);
    const model = new kn.nn.Sequential(new kn.nn.Linear(2, 8), new kn.nn.Tanh(), new kn.nn.Linear(8, 3));
    await kn.train.fit(model, {
      train: new kn.data.DataLoader(ds, { batchSize, shuffle: true, seed: 3 }),
      loss: 'crossEntropy',
      optimizer: new kn.optim.SGD(model.parameters(), { lr: 0.3 }),
      epochs: 1,
      accumulate,
      verbose: 'silent',
    });
    return weights(model);
  };
  const a = (await go(8, 2)).flat(),
    b = (await go(16, 1)).flat();
  assert.ok(
    a.every((v, i) => Math.abs(v - b[i]!) < 1e-5),
    'same update',
  );
});

test('gradient accumulation: the last, shorter group of an epoch takes its own mean', async () => {
  // 6 batches of 8 with accumulate 4: a step over batches 1-4, then one over batches 5-6, each the gradient of
  // one batch of 32 and one of 16 (the short group was divided by 4: half the step)
  const ds = blobs(48, 4);
  const x = ds.tensors.x!,
    y = ds.tensors.y!;
  const make = (): kn.nn.Module => {
    kn.seed(1);
    return new kn.nn.Sequential(new kn.nn.Linear(2, 8), new kn.nn.Tanh(), new kn.nn.Linear(8, 3));
  };
  const a = make();
  await kn.train.fit(a, {
    train: new kn.data.DataLoader(ds, { batchSize: 8 }),
    loss: 'crossEntropy',
    optimizer: new kn.optim.SGD(a.parameters(), { lr: 0.5 }),
    epochs: 1,
    accumulate: 4,
    verbose: 'silent',
  });
  const b = make();
  const opt = new kn.optim.SGD(b.parameters(), { lr: 0.5 });
  for (const [lo, hi] of [
    [0, 32],
    [32, 48],
  ] as const) {
    opt.zeroGrad();
    kn.nn.loss.crossEntropy(b.call(x.slice([lo], [hi])), y.slice([lo], [hi])).backward();
    opt.step();
  }
  const wa = weights(a).flat(),
    wb = weights(b).flat();
  const worst = Math.max(...wa.map((v, i) => Math.abs(v - wb[i]!)));
  assert.ok(worst < 1e-5, `largest difference ${worst}`);
});

test('fit: class weights, divergence and bad options are reported clearly', async () => {
  const ds = blobs(40, 9);
  kn.seed(1);
  const model = mlp();
  const train = new kn.data.DataLoader(ds, { batchSize: 20 });
  const r = await kn.train.fit(model, {
    train,
    loss: 'crossEntropy',
    classWeights: kn.tensor([1, 2, 3]),
    optimizer: new kn.optim.Adam(model.parameters()),
    epochs: 1,
    verbose: 'silent',
  });
  assert.ok(Number.isFinite(r.history[0]!.trainLoss));
  const bad = new kn.data.Dataset({
    x: kn.tensor([
      [NaN, 1],
      [0, 1],
    ]),
    y: kn.tensor(new Int32Array([0, 1]), [2]),
  });
  let err: unknown;
  try {
    await kn.train.fit(model, {
      train: new kn.data.DataLoader(bad),
      loss: 'crossEntropy',
      optimizer: new kn.optim.SGD(model.parameters()),
      epochs: 1,
      verbose: 'silent',
    });
  } catch (e) {
    err = e;
  }
  assert.instance(err, kn.ValidationError);
  assert.match((err as Error).message, /training diverged: the loss is NaN at epoch 1, batch 1/);
  const opt = new kn.optim.SGD(model.parameters());
  for (const [o, re] of [
    [{ train: [], loss: 'mse', optimizer: opt, epochs: 1 }, /train must be a kn.data.DataLoader/],
    [{ train, loss: 'hinge', optimizer: opt, epochs: 1 }, /loss must be a function or one of/],
    [{ train, loss: 'mse', optimizer: opt, epochs: 0 }, /epochs must be a positive integer/],
    [{ train, loss: 'mse', optimizer: opt, epochs: 1, earlyStopping: {} }, /needs a val loader/],
    [{ train, loss: 'mse', optimizer: opt, epochs: 1, resume: true }, /resume needs a checkpointDir/],
  ] as [kn.train.FitOptions, RegExp][]) {
    let e2: unknown;
    try {
      await kn.train.fit(model, o);
    } catch (e) {
      e2 = e;
    }
    assert.instance(e2, kn.ArgumentError);
    assert.match((e2 as Error).message, re);
  }
});

test('checks: initial loss, one-batch overfit, zero-input baseline, gradient flow; the model is left untouched', () =>
  kn.tidy(() => {
    const ds = blobs(64, 10);
    const [batch] = new kn.data.DataLoader(ds, { batchSize: 32 }).batches(0);
    kn.seed(2);
    const model = mlp();
    const before = weights(model);
    const rng = kn.getRngState();
    const il = kn.train.checks.initialLoss(model, batch!);
    assert.ok(il.ok, il.message);
    assert.ok(Math.abs(il.expected - Math.log(3)) < 1e-12);
    const of = kn.train.checks.overfitOneBatch(model, batch!, { steps: 150, lr: 1e-2 });
    assert.ok(of.ok, of.message);
    const zb = kn.train.checks.zeroInputBaseline(model, batch!, { steps: 40, lr: 1e-2 });
    assert.ok(zb.ok, zb.message);
    const gf = kn.train.checks.gradientFlow(model, batch!);
    assert.ok(gf.ok, gf.message);
    assert.equal(weights(model), before, 'checks restore the weights');
    assert.equal(kn.getRngState(), rng, 'checks restore the RNG');
    assert.ok(model.parameters().every((p) => p.grad === null));

    // failing cases: a huge output layer, a model that ignores its input, a dead branch
    const loud = mlp();
    (loud as kn.nn.Sequential).layers[3]!.parameters()[0]!.assign(kn.randn([3, 16], { std: 30 }));
    assert.not.ok(kn.train.checks.initialLoss(loud, batch!).ok);
    class Blind extends kn.nn.Module {
      b = this.registerParameter('b', kn.zeros([3]));
      forward(x: kn.Tensor): kn.Tensor {
        return x.slice([0, 0], [null, 1]).mul(0).add(this.b);
      }
    }
    const zb2 = kn.train.checks.zeroInputBaseline(new Blind(), batch!, { steps: 40, lr: 1e-2 });
    assert.not.ok(zb2.ok, zb2.message);
    class Dead extends kn.nn.Module {
      a = this.registerModule('a', new kn.nn.Linear(2, 3));
      d = this.registerModule('d', new kn.nn.Linear(2, 3));
      forward(x: kn.Tensor): kn.Tensor {
        return this.a.call(x).add(this.d.call(x).mul(0));
      }
    }
    const gf2 = kn.train.checks.gradientFlow(new Dead(), batch!);
    assert.not.ok(gf2.ok);
    assert.equal(gf2.dead, ['d.weight', 'd.bias']);
    assert.match(gf2.message, /no gradient reaches d.weight, d.bias/);
  }));

test('checks.batchIndependence: an MLP keeps examples apart; normalising over the batch leaks', () => {
  kn.seed(3);
  const mlp = new kn.nn.Sequential(new kn.nn.Linear(5, 8), new kn.nn.ReLU(), new kn.nn.Linear(8, 3));
  const x = kn.randn([6, 5]);
  const ok = kn.train.checks.batchIndependence(mlp, x, { index: 2 });
  assert.ok(ok.ok, ok.message);
  assert.equal(ok.leaking, []);
  class BatchCentre extends kn.nn.Module {
    lin = this.registerModule('lin', new kn.nn.Linear(5, 3));
    forward(z: kn.Tensor): kn.Tensor {
      return this.lin.call(z.sub(z.mean(0, true))); // a bug: statistics over the batch in inference
    }
  }
  const bad = kn.train.checks.batchIndependence(new BatchCentre(), { x, y: kn.zeros([6]) });
  assert.is(bad.ok, false);
  assert.equal(bad.leaking, [1, 2, 3, 4, 5]);
  assert.match(bad.message, /sends gradient to 5 other example\(s\)/);
  // BatchNorm mixes the batch in training mode only
  const bn = new kn.nn.Sequential(new kn.nn.Linear(5, 4), new kn.nn.BatchNorm1d(4));
  assert.ok(kn.train.checks.batchIndependence(bn, x).ok, 'eval mode: running statistics');
  assert.is(kn.train.checks.batchIndependence(bn, x, { mode: 'train' }).ok, false);
  assert.is(bn.training, true, 'mode restored');
  assert.throws(() => kn.train.checks.batchIndependence(mlp, kn.randn([1, 5])), /at least 2 examples/);
  assert.throws(() => kn.train.checks.batchIndependence(mlp, x, { index: 6 }), /index must be an example/);
});

test('checks.capacity: wider models fit better; a model that ignores its input is flagged', () => {
  kn.seed(4);
  const batch = {
    x: kn.randn([64, 8]),
    y: kn.tensor(
      Array.from({ length: 64 }, (_, i) => (i * 7) % 4),
      [64],
      { dtype: 'int32' },
    ),
  };
  const mlp = (w: number): kn.nn.Module =>
    new kn.nn.Sequential(new kn.nn.Linear(8, w), new kn.nn.ReLU(), new kn.nn.Linear(w, 4));
  const good = kn.train.checks.capacity(mlp, batch, { widths: [2, 64], steps: 150 });
  assert.ok(good.ok, good.message);
  assert.ok(good.runs[1]!.loss < good.runs[0]!.loss);
  class Blind extends kn.nn.Module {
    b = this.registerParameter('b', kn.zeros([4]));
    w: number;
    constructor(w: number) {
      super();
      this.w = w;
    }
    forward(z: kn.Tensor): kn.Tensor {
      return z
        .mul(0)
        .matmul(kn.zeros([8, 4]))
        .add(this.b); // ignores its input, whatever the width
    }
  }
  const blind = kn.train.checks.capacity((w) => new Blind(w), batch, { widths: [2, 64], steps: 150 });
  assert.is(blind.ok, false);
  assert.match(blind.message, /a wider model does not fit the training data better/);
  assert.throws(() => kn.train.checks.capacity(mlp, batch, { widths: [8] }), /widths must be at least two/);
});

test('distill: the loss is alpha T^2 KL + (1 - alpha) CE, and works inside fit', async () => {
  kn.seed(5);
  const teacher = new kn.nn.Linear(4, 3);
  const student = new kn.nn.Linear(4, 3);
  const d = kn.train.distill(teacher, student, { temperature: 2, alpha: 0.7 });
  assert.equal(d.parameters().length, 2, "the student's parameters only");
  const x = kn.randn([5, 4]);
  const y = kn.tensor([0, 1, 2, 1, 0], [5], { dtype: 'int32' });
  d.train();
  const out = d.call(x);
  const loss = d.loss(out, y).item();
  const s = Array.from(out.toArray() as ArrayLike<number>);
  const t = Array.from(kn.noGrad(() => teacher.call(x)).toArray() as ArrayLike<number>);
  const logsm = (v: number[]): number[] => {
    const m = Math.max(...v);
    const z = Math.log(v.reduce((a, b) => a + Math.exp(b - m), 0)) + m;
    return v.map((u) => u - z);
  };
  let kl = 0,
    ce = 0;
  for (let i = 0; i < 5; i++) {
    const ls = logsm(s.slice(i * 3, i * 3 + 3).map((v) => v / 2));
    const lt = logsm(t.slice(i * 3, i * 3 + 3).map((v) => v / 2));
    for (let j = 0; j < 3; j++) kl += Math.exp(lt[j]!) * (lt[j]! - ls[j]!);
    ce -= logsm(s.slice(i * 3, i * 3 + 3))[[0, 1, 2, 1, 0][i]!]!;
  }
  const expected = (0.7 * 4 * kl) / 5 + (0.3 * ce) / 5;
  assert.ok(Math.abs(loss - expected) < 1e-5, `${loss} vs ${expected}`);
  d.eval();
  const evalOut = d.call(x);
  assert.ok(Math.abs(d.loss(evalOut, y).item() - ce / 5) < 1e-5, 'eval mode: plain cross-entropy');
  assert.throws(() => kn.train.distill(teacher, student, { alpha: 2 }), /alpha must be in \[0, 1\]/);
  assert.throws(() => kn.train.distill(teacher, student, { temperature: 0 }), /temperature must be a positive number/);

  // a student that sees 24 labelled examples learns more from a teacher's soft targets than from the labels alone
  kn.seed(6);
  const n = 2000;
  const xs = kn.randn([n, 10]);
  const wTrue = kn.randn([10, 4]);
  const labels = xs.matmul(wTrue).argmax(1).cast('int32');
  const big = new kn.nn.Sequential(new kn.nn.Linear(10, 32), new kn.nn.ReLU(), new kn.nn.Linear(32, 4));
  const all = new kn.data.DataLoader(new kn.data.Dataset({ x: xs, y: labels }), {
    batchSize: 100,
    shuffle: true,
    seed: 1,
  });
  await kn.train.fit(big, {
    train: all,
    loss: 'crossEntropy',
    optimizer: new kn.optim.Adam(big.parameters(), { lr: 1e-2 }),
    epochs: 15,
    verbose: 'silent',
  });
  const idx = kn.tensor(
    Array.from({ length: 24 }, (_, i) => i),
    [24],
    { dtype: 'int32' },
  );
  const few = new kn.data.DataLoader(new kn.data.Dataset({ x: xs.gather(idx, 0), y: labels.gather(idx, 0) }), {
    batchSize: 24,
  });
  const acc = (m: kn.nn.Module): number => {
    m.eval();
    return kn.metrics.accuracy(
      labels,
      kn.noGrad(() => m.call(xs)),
    );
  };
  const train = async (m: kn.nn.Module, withTeacher: boolean): Promise<number> => {
    const opt = new kn.optim.Adam(m.parameters(), { lr: 1e-2 });
    if (withTeacher) {
      const dd = kn.train.distill(big, m, { temperature: 4, alpha: 0.9 });
      await kn.train.fit(dd, { train: few, loss: dd.loss, optimizer: opt, epochs: 200, verbose: 'silent' });
    } else await kn.train.fit(m, { train: few, loss: 'crossEntropy', optimizer: opt, epochs: 200, verbose: 'silent' });
    return acc(m);
  };
  kn.seed(7);
  const s1 = new kn.nn.Linear(10, 4);
  kn.seed(7);
  const s2 = new kn.nn.Linear(10, 4);
  const teacherAcc = acc(big);
  const alone = await train(s1, false);
  const distilled = await train(s2, true);
  assert.ok(teacherAcc > 0.9, `teacher accuracy ${teacherAcc}`);
  assert.ok(distilled > alone + 0.03, `distilled ${distilled} vs alone ${alone}`);
});

test.run();
