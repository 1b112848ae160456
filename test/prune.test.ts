// kn.prune: magnitude masks (per layer and global) that survive fine-tuning, the gradual schedule, structured
// pruning that really shrinks layers (checked against the masked original), and the MNIST acceptance bar.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { trainedMnistMlp } from './helpers.js';

const mlp = (seed: number): kn.nn.Sequential => {
  kn.seed(seed);
  return new kn.nn.Sequential(
    new kn.nn.Linear(20, 30),
    new kn.nn.ReLU(),
    new kn.nn.Linear(30, 16),
    new kn.nn.ReLU(),
    new kn.nn.Linear(16, 4),
  );
};
const close = (a: kn.Tensor, b: kn.Tensor, tol = 1e-5): void => {
  const x = a.toArray(),
    y = b.toArray();
  assert.is(x.length, y.length);
  for (let i = 0; i < x.length; i++)
    assert.ok(Math.abs(x[i]! - y[i]!) <= tol * Math.max(1, Math.abs(y[i]!)), `${i}: ${x[i]} vs ${y[i]}`);
};
const zerosOf = (t: kn.Tensor): number => Array.from(t.toArray()).filter((v) => v === 0).length;

test('sparsity of tensors and models', () => {
  assert.is(kn.prune.sparsity(kn.tensor([0, 1, 0, 2])), 0.5);
  assert.is(kn.prune.sparsity(mlp(1)), 0);
  assert.throws(() => kn.prune.sparsity(3 as never), /Module or a Tensor/);
});

test('magnitude pruning per layer removes the smallest weights of each layer; global shares one threshold', () => {
  const m = mlp(2);
  const w0 = Array.from(m.layers[0]!.parameters()[0]!.toArray());
  const p = kn.prune.magnitude(m, { amount: 0.3 });
  const ws = m.parameters().filter((t) => t.ndim === 2);
  for (const w of ws) assert.is(zerosOf(w), Math.round(0.3 * w.size));
  // the pruned entries are exactly the 30% smallest |w| of layer 0
  const sorted = w0.map(Math.abs).sort((a, b) => a - b);
  const thr = sorted[Math.round(0.3 * w0.length) - 1]!;
  Array.from(ws[0]!.toArray()).forEach((v, i) => assert.is(v === 0, Math.abs(w0[i]!) <= thr));
  assert.ok(Math.abs(p.sparsity() - 0.3) < 0.01);
  p.dispose();
  // global: a layer with 10x smaller weights loses more of them
  const g = mlp(3);
  kn.noGrad(() => {
    const w = g.layers[2]!.parameters()[0]!;
    const s = w.mul(0.1);
    w.assign(s);
    s.dispose();
  });
  kn.prune.magnitude(g, { amount: 0.5, scope: 'global' }).dispose();
  const [a, b, c] = g.parameters().filter((t) => t.ndim === 2);
  const total = a!.size + b!.size + c!.size;
  assert.ok(Math.abs(zerosOf(a!) + zerosOf(b!) + zerosOf(c!) - total / 2) <= 1);
  assert.ok(zerosOf(b!) / b!.size > 0.9, `the scaled-down layer is pruned hardest (${zerosOf(b!) / b!.size})`);
  assert.throws(() => kn.prune.magnitude(g, { amount: 1 }), /fraction in \[0, 1\)/);
  assert.throws(() => kn.prune.magnitude(g, { amount: 0.2, scope: 'row' as never }), /scope must be/);
});

test('attached to an optimizer, the masks survive training steps; detach stops re-applying', () => {
  const m = mlp(4);
  const p = kn.prune.magnitude(m, { amount: 0.5 });
  const opt = new kn.optim.SGD(m.parameters(), { lr: 0.1 });
  const detach = p.attach(opt);
  const x = kn.randn([8, 20]),
    y = kn.randint([8], 0, 4);
  for (let s = 0; s < 3; s++) {
    opt.zeroGrad();
    kn.tidy(() => {
      kn.nn.loss.crossEntropy(m.call(x), y).backward();
    });
    opt.step();
  }
  assert.ok(Math.abs(p.sparsity() - 0.5) < 0.01, `sparsity after fine-tuning steps ${p.sparsity()}`);
  assert.throws(() => p.attach(opt), /already attached/);
  detach();
  opt.zeroGrad();
  kn.tidy(() => {
    kn.nn.loss.crossEntropy(m.call(x), y).backward();
  });
  opt.step();
  assert.ok(p.sparsity() < 0.4, 'without the hook the pruned weights move again');
  p.dispose();
});

test('gradual schedule: the cubic ramp, applied every `frequency` steps', () => {
  const s = new kn.prune.GradualSchedule({ initial: 0, final: 0.8, startStep: 10, endStep: 30, frequency: 5 });
  assert.is(s.sparsityAt(0), 0);
  assert.is(s.sparsityAt(10), 0);
  assert.ok(Math.abs(s.sparsityAt(20) - (0.8 - 0.8 * 0.5 ** 3)) < 1e-12);
  assert.is(s.sparsityAt(30), 0.8);
  assert.is(s.sparsityAt(99), 0.8);
  const m = mlp(5);
  const p = kn.prune.gradual(m, s, { scope: 'global' });
  const opt = new kn.optim.SGD(m.parameters(), { lr: 0.01 });
  p.attach(opt);
  const seen: number[] = [];
  for (let t = 1; t <= 35; t++) {
    opt.step();
    if (t % 5 === 0) seen.push(Number(p.sparsity().toFixed(2)));
  }
  // steps 5 and 10 are before the start; from 15 on the sparsity follows the ramp, then holds at 0.8
  assert.equal(
    seen,
    [5, 10, 15, 20, 25, 30, 35].map((t) => Number(s.sparsityAt(t).toFixed(2))),
  );
  assert.equal(seen.slice(0, 3), [0, 0, 0.46]);
  assert.throws(() => new kn.prune.GradualSchedule({ final: 0.5, endStep: 0 }), /endStep must be an integer >= 1/);
  p.dispose();
});

/** The indices of the `n` largest values, in increasing order. */
function topIndices(v: ArrayLike<number>, n: number): number[] {
  return Array.from(v)
    .map((x, i) => [x, i] as const)
    .sort((a, b) => b[0] - a[0])
    .slice(0, n)
    .map(([, i]) => i)
    .sort((a, b) => a - b);
}

/** A copy of `m` whose Linear layers named in `kept` output zero for every unit not kept. */
function maskedCopy(m: kn.nn.Sequential, kept: kn.prune.StructuredResult['kept']): kn.nn.Sequential {
  const masked = kn.prune.structured(m, { amount: 0 }).model as kn.nn.Sequential;
  kn.noGrad(() => {
    for (const k of kept) {
      const lin = masked.layers[Number(k.name)] as kn.nn.Linear;
      const keep = new Float32Array(k.before);
      k.indices.forEach((i) => (keep[i] = 1));
      const mk = kn.tensor(keep, [k.before, 1]);
      const w = lin.weight.mul(mk),
        b = lin.bias!.mul(mk.reshape([k.before]));
      lin.weight.assign(w);
      lin.bias!.assign(b);
      [mk, w, b].forEach((t) => t.dispose());
    }
  });
  return masked;
}

test('magnitude takes the fraction as sparsity (the pinned name) or amount, exactly one', () => {
  const a = mlp(3),
    b = mlp(3);
  kn.prune.magnitude(a, { sparsity: 0.6 }).dispose();
  kn.prune.magnitude(b, { amount: 0.6, scope: 'layer' }).dispose();
  assert.ok(Math.abs(kn.prune.sparsity(a) - 0.6) < 0.01, `sparsity ${kn.prune.sparsity(a)}`);
  assert.equal(
    a.parameters().map((p) => Array.from(p.toArray())),
    b.parameters().map((p) => Array.from(p.toArray())),
  );
  assert.throws(() => kn.prune.magnitude(a, {}), /sparsity or as amount \(the same thing\), got neither/);
  assert.throws(() => kn.prune.magnitude(a, { sparsity: 0.5, amount: 0.5 }), /got both/);
});

test('structured pruning by dim 1 ranks units by the weights that read them', () => {
  const m = mlp(8);
  const r0 = kn.prune.structured(m, { amount: 0.5, norm: 'l1', dim: 0 });
  const r1 = kn.prune.structured(m, { amount: 0.5, norm: 'l1', dim: 1 });
  // the units of layer 0 kept by dim 1: the largest L1 norms of layer 2's input columns
  const cols = m.layers[2]!.parameters()[0]!.abs().sum(0).toArray();
  assert.equal(r1.kept[0]!.indices, topIndices(cols, 15));
  assert.not.equal(r1.kept[0]!.indices, r0.kept[0]!.indices, 'the two dims rank these units differently');
  assert.equal(
    r1.model.parameters().map((t) => t.shape),
    [[15, 20], [15], [8, 15], [8], [4, 8], [4]],
  );
  // the same structure leaves: the pruned model equals the original with those units' outputs zeroed
  const x = kn.randn([5, 20]);
  close(r1.model.call(x), maskedCopy(m, r1.kept).call(x));
  assert.throws(() => kn.prune.structured(m, { amount: 0.5, dim: 2 as never }), /dim must be 0 or 1/);
});

test('structured pruning removes neurons and equals the original with those neurons masked', () => {
  const m = mlp(6);
  const x = kn.randn([5, 20]);
  const r = kn.prune.structured(m, { amount: 0.5, norm: 'l1' });
  const pm = r.model as kn.nn.Sequential;
  assert.equal(
    r.kept.map((k) => [k.name, k.before, k.after]),
    [
      ['0', 30, 15],
      ['2', 16, 8],
    ],
  );
  assert.equal(
    pm.parameters().map((t) => t.shape),
    [[15, 20], [15], [8, 15], [8], [4, 8], [4]],
  );
  assert.ok(pm.numParameters() < m.numParameters() / 2);
  // the kept units are the ones with the largest L1 norms
  const w0 = m.layers[0]!.parameters()[0]!.abs().sum(1).toArray();
  assert.equal(r.kept[0]!.indices, topIndices(w0, 15));
  // equivalence: zero the dropped rows (and biases) of the original
  const masked = maskedCopy(m, r.kept);
  close(pm.call(x), masked.call(x));
  close(m.call(x), kn.prune.structured(m, { amount: 0 }).model.call(x), 0);
});

test('structured pruning of conv channels shrinks BatchNorm and the next conv / flattened linear', () => {
  kn.seed(7);
  const m = new kn.nn.Sequential(
    new kn.nn.Conv2d(1, 8, 3, { padding: 1 }),
    new kn.nn.BatchNorm2d(8),
    new kn.nn.ReLU(),
    new kn.nn.MaxPool2d(2),
    new kn.nn.Conv2d(8, 6, 3, { padding: 1 }),
    new kn.nn.ReLU(),
    new kn.nn.Flatten(),
    new kn.nn.Linear(6 * 4 * 4, 3),
  ).eval();
  const r = kn.prune.structured(m, { amount: 0.5 });
  const pm = r.model as kn.nn.Sequential;
  assert.equal(
    r.kept.map((k) => [k.name, k.after]),
    [
      ['0', 4],
      ['4', 3],
    ],
  );
  assert.equal((pm.layers[1] as kn.nn.BatchNorm2d).numFeatures, 4);
  assert.equal((pm.layers[4] as kn.nn.Conv2d).inChannels, 4);
  assert.equal((pm.layers[7] as kn.nn.Linear).inFeatures, 3 * 16);
  const x = kn.randn([2, 1, 8, 8]);
  assert.equal(pm.call(x).shape, [2, 3]);
  // the kept Linear columns are the blocks of the kept channels
  const lin = m.layers[7] as kn.nn.Linear,
    plin = pm.layers[7] as kn.nn.Linear;
  const k = r.kept[1]!.indices;
  const want = lin.weight.toList() as number[][],
    got = plin.weight.toList() as number[][];
  got.forEach((row, o) => row.forEach((v, c) => assert.is(v, want[o]![k[Math.floor(c / 16)]! * 16 + (c % 16)])));
  assert.throws(() => kn.prune.structured(new kn.nn.Linear(2, 2), { amount: 0.5 }), /Sequential/);
});

test('MNIST acceptance: 50% global magnitude pruning + one epoch of fine-tuning loses <= 1 point', async () => {
  const { model, train, acc } = await trainedMnistMlp();
  const base = acc(model);
  const p = kn.prune.magnitude(model, { amount: 0.5, scope: 'global' });
  const pruned = acc(model);
  const opt = new kn.optim.Adam(model.parameters(), { lr: 3e-4 });
  p.attach(opt);
  model.train();
  await kn.train.fit(model, { train, loss: 'crossEntropy', optimizer: opt, epochs: 1, verbose: 'silent' });
  const tuned = acc(model);
  console.log(`MNIST MLP: float ${base}, 50% pruned ${pruned}, after fine-tuning ${tuned}, sparsity ${p.sparsity()}`);
  assert.ok(p.sparsity() >= 0.499, `sparsity ${p.sparsity()}`);
  assert.ok(base - tuned <= 0.01, `pruned + fine-tuned ${tuned} vs float ${base}`);
  p.dispose();
});

test.run();
