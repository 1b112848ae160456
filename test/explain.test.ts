// kn.explain against closed forms: integrated gradients of linear and quadratic functions, its completeness gap
// under each integration rule, gradient x input, SmoothGrad's expectation, permutation importance of an unused
// column, KernelSHAP's w_i (x_i - E[x_i]) for linear models and the two-feature interaction, and LIME's weights.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';

const close = (a: number, b: number, tol: number, what = ''): void =>
  assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b} (tol ${tol})`);
const arr = (t: kn.Tensor): number[] => Array.from(t.toArray() as ArrayLike<number>);
/** x0 * x1 of two-feature rows, as [N, 1]. */
const prod2 = (x: kn.Tensor): kn.Tensor => x.matmul(kn.tensor([[1], [0]])).mul(x.matmul(kn.tensor([[0], [1]])));

test('integratedGradients: a Linear layer gets W[k] * (x - baseline), with no completeness gap', () => {
  kn.seed(1);
  const lin = new kn.nn.Linear(4, 3);
  const x = kn.randn([5, 4]);
  const base = kn.randn([4]);
  const w = arr(lin.weight); // [3, 4]
  const xs = arr(x),
    bs = arr(base);
  const r = kn.explain.integratedGradients(lin, x, { baseline: base, target: 2, steps: 4 });
  const a = arr(r.attributions);
  for (let i = 0; i < 5; i++)
    for (let j = 0; j < 4; j++) close(a[i * 4 + j]!, w[2 * 4 + j]! * (xs[i * 4 + j]! - bs[j]!), 1e-5, `attr ${i},${j}`);
  for (const d of r.delta) close(d, 0, 1e-5, 'delta');
  // default target: the predicted class of each example
  const pred = arr(lin.call(x).argmax(1));
  assert.equal(Array.from(kn.explain.integratedGradients(lin, x).target), pred);
});

test('integratedGradients: sum(x^2) from a zero baseline gives x^2, and every rule closes the gap', () => {
  const f = (x: kn.Tensor): kn.Tensor => x.mul(x).sum(1);
  const x = kn.tensor([
    [1, -2, 3],
    [0.5, 0, -1],
  ]);
  for (const method of ['gaussLegendre', 'riemannMiddle', 'riemannTrapezoid'] as const) {
    const r = kn.explain.integratedGradients(f, x, { method, steps: 8 });
    const a = arr(r.attributions);
    const xs = arr(x);
    for (let k = 0; k < xs.length; k++) close(a[k]!, xs[k]! ** 2, 1e-4, `${method} attr ${k}`);
  }
  // left Riemann sums underestimate a rising gradient: a visible gap that shrinks with steps
  const left4 = kn.explain.integratedGradients(f, x, { method: 'riemannLeft', steps: 4 }).delta[0]!;
  const left64 = kn.explain.integratedGradients(f, x, { method: 'riemannLeft', steps: 64 }).delta[0]!;
  close(left4, -14 / 4, 1e-4, 'left Riemann gap, 4 steps'); // sum x^2 = 14; the left sum misses 14/steps
  assert.ok(Math.abs(left64) < Math.abs(left4) / 10);
});

test('integratedGradients: on a tanh MLP Gauss-Legendre closes the gap with few steps, matching a fine Riemann sum', () => {
  kn.seed(4);
  const mlp = new kn.nn.Sequential(new kn.nn.Linear(6, 16), new kn.nn.Tanh(), new kn.nn.Linear(16, 3));
  const x = kn.randn([4, 6], { std: 2 });
  const gl = kn.explain.integratedGradients(mlp, x, { steps: 16, target: 1 });
  const fine = kn.explain.integratedGradients(mlp, x, {
    steps: 1000,
    method: 'riemannMiddle',
    target: 1,
    maxRows: 4000,
  });
  const left = kn.explain.integratedGradients(mlp, x, { steps: 16, method: 'riemannLeft', target: 1 });
  const g = arr(gl.attributions),
    fr = arr(fine.attributions);
  for (let k = 0; k < g.length; k++) close(g[k]!, fr[k]!, 2e-3, `attr ${k}`);
  const gap = (d: number[]): number => Math.max(...d.map(Math.abs));
  assert.ok(gap(gl.delta) < 1e-3, `Gauss-Legendre gap ${gap(gl.delta)}`);
  assert.ok(gap(gl.delta) < gap(left.delta), 'better than left Riemann at the same steps');
  assert.is(mlp.training, true, 'training mode restored');
});

test('integratedGradients: bad arguments are refused with what was expected', () => {
  const lin = new kn.nn.Linear(3, 2);
  assert.throws(() => kn.explain.integratedGradients(lin, kn.ones([3])), /x must have a batch dimension/);
  assert.throws(
    () => kn.explain.integratedGradients(lin, kn.ones([2, 3]), { baseline: kn.ones([2]) }),
    /baseline must have the shape of x \[2,3\] or of one example \[3\]/,
  );
  assert.throws(() => kn.explain.integratedGradients(lin, kn.ones([2, 3]), { target: 5 }), /target class 5/);
  assert.throws(() => kn.explain.integratedGradients(lin, kn.ones([2, 3]), { steps: 0 }), /steps must be an integer/);
  assert.throws(
    () => kn.explain.integratedGradients(lin, kn.ones([2, 3]), { method: 'simpson' as 'riemannLeft' }),
    /method must be 'gaussLegendre'/,
  );
  assert.throws(() => kn.explain.integratedGradients(lin, kn.ones([2, 3]), { target: [0] }), /one per example \(2\)/);
});

test('gradientXInput and SmoothGrad against their closed forms', () => {
  const x = kn.tensor([
    [2, 3],
    [-1, 4],
  ]);
  const gx = arr(kn.explain.gradientXInput(prod2, x));
  assert.equal(gx, [6, 6, -4, -4]);
  // SmoothGrad of a linear layer is its weight row, whatever the noise
  kn.seed(2);
  const lin = new kn.nn.Linear(3, 2);
  const w = arr(lin.weight);
  const sg = arr(kn.explain.smoothGrad(lin, kn.randn([2, 3]), { target: 1, samples: 7, noise: 0.5 }));
  for (let k = 0; k < 6; k++) close(sg[k]!, w[3 + (k % 3)]!, 1e-5, `smoothgrad ${k}`);
  // sum(x^2): E[2(x + e)] = 2x, and E[(2(x + e))^2] = 4x^2 + 4 sigma^2 with sigma = noise * (max - min)
  const sq = (z: kn.Tensor): kn.Tensor => z.mul(z).sum(1);
  const xq = kn.tensor([[1, -1, 0]]);
  const mean = arr(kn.explain.smoothGrad(sq, xq, { samples: 4000, noise: 0.1, seed: 3 }));
  [2, -2, 0].forEach((v, k) => close(mean[k]!, v, 0.03, `smoothgrad mean ${k}`));
  const sigma = 0.1 * 2;
  const sq2 = arr(kn.explain.smoothGrad(sq, xq, { samples: 4000, noise: 0.1, seed: 3, squared: true }));
  [4, 4, 0].forEach((v, k) => close(sq2[k]!, v + 4 * sigma * sigma, 0.1, `smoothgrad squared ${k}`));
  const again = arr(kn.explain.smoothGrad(sq, xq, { samples: 50, seed: 9 }));
  assert.equal(again, arr(kn.explain.smoothGrad(sq, xq, { samples: 50, seed: 9 })), 'seeded');
});

test('permutationImportance: an unused column scores exactly 0, a used one the loss it causes', () => {
  kn.seed(5);
  const x = kn.randn([200, 3]);
  const pick0 = (z: kn.Tensor): kn.Tensor => z.matmul(kn.tensor([[1], [0], [0]]));
  const y = arr(x).filter((_, k) => k % 3 === 0);
  const r = kn.explain.permutationImportance(pick0, x, y, { metric: 'mse', repeats: 4, featureNames: ['a', 'b', 'c'] });
  assert.is(r.metric, 'mse');
  close(r.baseline, 0, 1e-9, 'baseline mse');
  assert.equal(
    r.importances.map((i) => i.feature),
    ['a', 'b', 'c'],
  );
  close(r.importances[1]!.mean, 0, 1e-12, 'unused b');
  close(r.importances[2]!.std, 0, 1e-12, 'unused c');
  // E[(x - x')^2] = 2 var(x) = 2 for standard normals
  close(r.importances[0]!.mean, 2, 0.6, 'used column');
  assert.is(r.importances[0]!.scores.length, 4);
  // a group moves together; accuracy for classifiers (higher is better, so importance is the drop)
  const g = kn.explain.permutationImportance(pick0, x, y, {
    metric: 'mse',
    groups: [
      { name: 'ab', columns: [0, 1] },
      { name: 'c', columns: [2] },
    ],
  });
  assert.ok(g.importances[0]!.mean > 1 && g.importances[1]!.mean === 0);
  const labels = y.map((v) => (v > 0 ? 1 : 0));
  const cls = kn.explain.permutationImportance(pick0, x, labels, { metric: 'accuracy', repeats: 3, seed: 2 });
  close(cls.baseline, 1, 1e-12, 'threshold-at-0 classifier is perfect');
  assert.ok(cls.importances[0]!.mean > 0.3 && cls.importances[1]!.mean === 0);
  assert.throws(
    () => kn.explain.permutationImportance(pick0, x, y, { groups: [{ name: 'z', columns: [7] }] }),
    /groups\[0\] names column 7; x has 3/,
  );
  assert.throws(() => kn.explain.permutationImportance(pick0, x, [1, 2]), /y has 2 values but x has 200 rows/);
});

test('kernelShap: linear models get w_i (x_i - E[x_i]); values always sum to f(x) - E[f]', () => {
  const w = [0.5, -2, 1.5, 3];
  const f = (z: kn.Tensor): kn.Tensor => z.matmul(kn.tensor(w.map((v) => [v]))).add(0.25);
  kn.seed(6);
  const bg = kn.randn([20, 4]);
  const x = kn.randn([3, 4]);
  const bgv = arr(bg),
    xv = arr(x);
  const mean = [0, 1, 2, 3].map((j) => bgv.filter((_, k) => k % 4 === j).reduce((a, b) => a + b, 0) / 20);
  const r = kn.explain.kernelShap(f, x, bg);
  assert.is(r.exact, true, 'all 14 coalitions of 4 features evaluated');
  for (let e = 0; e < 3; e++) {
    for (let j = 0; j < 4; j++) close(r.values[e]![j]!, w[j]! * (xv[e * 4 + j]! - mean[j]!), 1e-4, `phi ${e},${j}`);
    close(
      r.values[e]!.reduce((a, b) => a + b, 0),
      r.predictions[e]! - r.expected,
      1e-9,
      'additivity',
    );
  }
  // 12 features with 200 sampled coalitions: the regression is still exact for a linear model
  const w12 = Array.from({ length: 12 }, (_, j) => (j % 5) - 2);
  const f12 = (z: kn.Tensor): kn.Tensor => z.matmul(kn.tensor(w12.map((v) => [v])));
  const bg12 = kn.randn([10, 12]),
    x12 = kn.randn([12]);
  const s = kn.explain.kernelShap(f12, x12, bg12, { samples: 200, seed: 3 });
  assert.is(s.exact, false);
  const b12 = arr(bg12),
    xx = arr(x12);
  for (let j = 0; j < 12; j++) {
    const m = b12.filter((_, k) => k % 12 === j).reduce((a, b) => a + b, 0) / 10;
    close(s.values[0]![j]!, w12[j]! * (xx[j]! - m), 1e-3, `sampled phi ${j}`);
  }
  close(
    s.values[0]!.reduce((a, b) => a + b, 0),
    s.predictions[0]! - s.expected,
    1e-9,
    'sampled additivity',
  );
});

test('kernelShap: the interaction x0 * x1 splits its effect as the Shapley formula says', () => {
  const f = prod2;
  const [x0, x1, b0, b1] = [2, 3, 0.5, -1];
  const r = kn.explain.kernelShap(f, [x0, x1], [[b0, b1]]);
  close(r.values[0]![0]!, 0.5 * (x0 * b1 - b0 * b1 + x0 * x1 - b0 * x1), 1e-5, 'phi0');
  close(r.values[0]![1]!, 0.5 * (b0 * x1 - b0 * b1 + x0 * x1 - x0 * b1), 1e-5, 'phi1');
  close(r.expected, b0 * b1, 1e-6, 'expected');
  // multi-output models: explain the chosen column
  const two = (z: kn.Tensor): kn.Tensor => kn.concat([z.sum(1, true), z.sum(1, true).mul(-1)], 1);
  const t = kn.explain.kernelShap(two, [[1, 2]], [[0, 0]], { target: 1 });
  close(t.values[0]![0]!, -1, 1e-9, 'column 1, feature 0');
  close(t.values[0]![1]!, -2, 1e-9, 'column 1, feature 1');
  assert.throws(() => kn.explain.kernelShap(two, [[1, 2]], [[0, 0, 0]]), /background has 3 features but x has 2/);
});

test('lime: a linear model is recovered exactly; a curved one fits less well', () => {
  const w = [1.5, -0.5, 2];
  const lin = (z: kn.Tensor): kn.Tensor => z.matmul(kn.tensor(w.map((v) => [v]))).add(1);
  const r = kn.explain.lime(lin, [0.3, 1, -2], { samples: 300, seed: 1 });
  r.weights.forEach((v, j) => close(v, w[j]!, 1e-3, `weight ${j}`));
  close(r.intercept, 1, 1e-3, 'intercept');
  close(r.score, 1, 1e-6, 'R^2');
  close(r.localPrediction, r.prediction, 1e-3, 'local prediction');
  const curved = (z: kn.Tensor): kn.Tensor => z.mul(z).sum(1).tanh();
  const c = kn.explain.lime(curved, [1, 1, 1], { samples: 500, seed: 1, background: kn.randn([50, 3]) });
  assert.ok(c.score < 0.95, `a curved function is not a line (R^2 ${c.score})`);
  assert.throws(
    () =>
      kn.explain.lime(lin, [
        [1, 2, 3],
        [1, 2, 3],
      ]),
    /lime explains one example/,
  );
});

test('counterfactual: the smallest change that flips a linear classifier, respecting immutable features and bounds', () => {
  // class 0 when 2 x0 + x1 > 1
  const model = (x: kn.Tensor): kn.Tensor =>
    kn.concat([x.matmul(kn.tensor([[2], [1]])).sub(1), kn.zeros([x.shape[0]!, 1])], 1);
  const free = kn.explain.counterfactual(model, [0.2, 0.1], { target: 0 });
  assert.ok(free.found);
  assert.is(free.originalClass, 1);
  assert.is(free.predictedClass, 0);
  assert.equal(
    free.changes.map((c) => c.feature),
    [0],
    'only x0, which buys the most margin per unit',
  );
  close(2 * free.x[0]! + free.x[1]!, 1, 1e-5, 'just over the boundary');
  assert.is(free.x[1], 0.1);
  const frozen = kn.explain.counterfactual(model, [0.2, 0.1], { immutable: [0], featureNames: ['age', 'income'] });
  assert.ok(frozen.found);
  assert.equal(
    frozen.changes.map((c) => [c.feature, c.name, c.from]),
    [[1, 'income', 0.1]],
  );
  assert.is(frozen.x[0], 0.2, 'the immutable feature did not move');
  close(frozen.x[1]!, 0.6, 1e-5, 'x1 just over 1 - 2 * 0.2');
  close(frozen.distance, Math.abs(frozen.x[1]! - 0.1), 1e-12, 'L1 distance in units of scale 1');
  const bounded = kn.explain.counterfactual(model, [0.2, 0.1], { immutable: [0], bounds: [null, [0, 0.5]] });
  assert.is(bounded.found, false, 'no point within bounds flips the class');
  assert.equal(bounded.x, [0.2, 0.1]);
  assert.equal(bounded.changes, []);
  assert.throws(
    () => kn.explain.counterfactual(model, [0.2, 0.1], { target: 1 }),
    /target must be a class other than the predicted 1/,
  );
  assert.throws(
    () => kn.explain.counterfactual(model, [0.2, 0.1], { immutable: [2] }),
    /immutable names feature 2; x has 2/,
  );
  assert.throws(
    () => kn.explain.counterfactual(model, [0.2, 0.1], { bounds: [[0.5, 1], null] }),
    /x\[0\] = 0.2 is outside bounds\[0\]/,
  );
});

test('dropColumnImportance: retraining without a duplicated column loses nothing; without a needed one, much', async () => {
  // y = 2 x0 + 3 x2 with x1 a copy of x0: permutation would blame x0 or x1, refitting shows either can stand in
  const n = 200;
  kn.seed(9);
  const xv = Array.from(kn.randn([n, 3]).toArray() as ArrayLike<number>);
  for (let i = 0; i < n; i++) xv[i * 3 + 1] = xv[i * 3]!;
  const y = Array.from({ length: n }, (_, i) => 2 * xv[i * 3]! + 3 * xv[i * 3 + 2]!);
  /** least squares on the given columns (ridge 1e-9), scored by R^2 */
  const fitAndScore = (cols: number[]): number => {
    const k = cols.length;
    const a = Array.from({ length: k }, () => new Array<number>(k + 1).fill(0));
    for (let i = 0; i < n; i++)
      for (let p = 0; p < k; p++) {
        for (let q = 0; q < k; q++) a[p]![q]! += xv[i * 3 + cols[p]!]! * xv[i * 3 + cols[q]!]!;
        a[p]![k]! += xv[i * 3 + cols[p]!]! * y[i]!;
      }
    for (let p = 0; p < k; p++) a[p]![p]! += 1e-9;
    for (let p = 0; p < k; p++)
      for (let r = p + 1; r < k; r++) {
        const f = a[r]![p]! / a[p]![p]!;
        for (let q = p; q <= k; q++) a[r]![q]! -= f * a[p]![q]!;
      }
    const w = new Array<number>(k).fill(0);
    for (let p = k - 1; p >= 0; p--) {
      let v = a[p]![k]!;
      for (let q = p + 1; q < k; q++) v -= a[p]![q]! * w[q]!;
      w[p] = v / a[p]![p]!;
    }
    const mean = y.reduce((s, v) => s + v, 0) / n;
    let ssr = 0,
      sst = 0;
    for (let i = 0; i < n; i++) {
      const pred = cols.reduce((s, c, p) => s + w[p]! * xv[i * 3 + c]!, 0);
      ssr += (y[i]! - pred) ** 2;
      sst += (y[i]! - mean) ** 2;
    }
    return 1 - ssr / sst;
  };
  const r = await kn.explain.dropColumnImportance(fitAndScore, 3, { featureNames: ['x0', 'copy', 'x2'] });
  close(r.baseline, 1, 1e-6, 'full model');
  close(r.importances[0]!.mean, 0, 1e-6, 'x0 can be replaced by its copy');
  close(r.importances[1]!.mean, 0, 1e-6, 'the copy can be dropped');
  assert.ok(r.importances[2]!.mean > 0.5, `x2 is needed (${r.importances[2]!.mean})`);
  const calls: number[][] = [];
  await kn.explain.dropColumnImportance((c) => (calls.push(c), 0), 3, { groups: [{ name: 'pair', columns: [0, 1] }] });
  assert.equal(calls, [[0, 1, 2], [2]]);
});

test.run();
