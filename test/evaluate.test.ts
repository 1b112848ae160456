// kn.evaluate: calibration, temperature scaling, predictProba, metrics per slice with bootstrap intervals, and
// group fairness, each against values worked out by hand or from a known generating process.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { hostRng } from '../src/data/loader.js';

const close = (a: number, b: number, tol = 1e-9, what = ''): void =>
  assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b} (tol ${tol})`);

test('calibration: bins, ECE, MCE, Brier and NLL by hand', () => {
  // confidences 0.9 (right), 0.8 (wrong), 0.6 (right), 0.7 (right); 2 bins [0, 0.5) [0.5, 1]
  const probs = [
    [0.9, 0.1],
    [0.8, 0.2],
    [0.4, 0.6],
    [0.3, 0.7],
  ];
  const y = [0, 1, 1, 1];
  const r = kn.evaluate.calibration(probs, y, { bins: 2 });
  assert.is(r.bins[0]!.count, 0);
  assert.is(r.bins[1]!.count, 4);
  close(r.bins[1]!.confidence, (0.9 + 0.8 + 0.6 + 0.7) / 4, 1e-12, 'bin confidence');
  close(r.bins[1]!.accuracy, 0.75, 1e-12, 'bin accuracy');
  close(r.ece, Math.abs(0.75 - 0.75), 1e-12, 'ece');
  // 10 bins: 0.6 [0.6,0.7) right, 0.7 [0.7,0.8) right, 0.8 [0.8,0.9) wrong, 0.9 [0.9,1] right
  const r10 = kn.evaluate.calibration(probs, y, { bins: 10 });
  close(r10.ece, (0.4 + 0.3 + 0.8 + 0.1) / 4, 1e-9, 'ece 10 bins');
  close(r10.mce, 0.8, 1e-9, 'mce');
  // Brier over both columns: (0.01+0.01) + (0.64+0.64) + (0.16+0.16) + (0.09+0.09) = 1.8 / 4
  close(r10.brier, 0.45, 1e-12, 'brier');
  close(r10.nll, -(Math.log(0.9) + Math.log(0.2) + Math.log(0.6) + Math.log(0.7)) / 4, 1e-12, 'nll');
  // binary [N] probabilities: Brier is mean (p - y)^2
  close(kn.evaluate.calibration([0.9, 0.2], [1, 1]).brier, (0.01 + 0.64) / 2, 1e-12, 'binary brier');
  // quantile bins hold equal counts
  const q = kn.evaluate.calibration(probs, y, { bins: 2, strategy: 'quantile' });
  assert.equal(
    q.bins.map((b) => b.count),
    [2, 2],
  );
});

test('calibration: a calibrated forecaster has a small ECE, an overconfident one a large ECE', () => {
  const rng = hostRng(3);
  const n = 20000;
  const p = new Float64Array(n),
    y = new Int32Array(n),
    over = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    p[i] = rng();
    y[i] = rng() < p[i]! ? 1 : 0;
    over[i] = p[i]! > 0.5 ? Math.min(1, p[i]! + 0.2) : Math.max(0, p[i]! - 0.2);
  }
  const good = kn.evaluate.calibration(p, y, { bins: 10 });
  const bad = kn.evaluate.calibration(over, y, { bins: 10 });
  assert.ok(good.ece < 0.02, `calibrated ECE ${good.ece}`);
  assert.ok(bad.ece > 0.12, `overconfident ECE ${bad.ece}`);
  assert.ok(good.brier < bad.brier);
});

test('temperatureScale recovers the temperature that made logits overconfident', () => {
  const rng = hostRng(11);
  const n = 4000,
    c = 4;
  const logits: number[][] = [];
  const y: number[] = [];
  for (let i = 0; i < n; i++) {
    const z = Array.from({ length: c }, () => 2 * (rng() - 0.5) * 3);
    const m = Math.max(...z);
    const e = z.map((v) => Math.exp(v - m));
    const s = e.reduce((a, b) => a + b, 0);
    let u = rng() * s,
      k = 0;
    while (k < c - 1 && u > e[k]!) u -= e[k++]!;
    y.push(k);
    logits.push(z.map((v) => v * 2.5)); // the model is 2.5x too sharp
  }
  const ts = kn.evaluate.temperatureScale(logits, y);
  close(ts.temperature, 2.5, 0.25, 'temperature');
  assert.ok(ts.nllAfter < ts.nllBefore, `NLL ${ts.nllBefore} -> ${ts.nllAfter}`);
  const before = kn.evaluate.calibration(kn.tensor(logits).softmax(), y).ece;
  const probs = ts.apply(logits);
  const rows = Array.from({ length: n }, (_, i) => Array.from(probs.subarray(i * c, (i + 1) * c)));
  const after = kn.evaluate.calibration(rows, y).ece;
  assert.ok(after < before / 2, `ECE ${before} -> ${after}`);
  assert.throws(() => kn.evaluate.temperatureScale([[1, 2]], [5]), /yTrue\[0\] = 5 but the logits have 2 classes/);
  assert.throws(() => kn.evaluate.temperatureScale([1, 2], [0, 1]), /logits must be \[N, C\]/);
});

test('predictProba: softmax for C outputs, sigmoid for one, temperature applied', () => {
  const model = (x: kn.Tensor): kn.Tensor => x;
  const r = kn.evaluate.predictProba(model, kn.tensor([[0, Math.log(3)]]));
  close(r.probs[0]![0]!, 0.25, 1e-6, 'p0');
  close(r.probs[0]![1]!, 0.75, 1e-6, 'p1');
  assert.is(r.predicted[0], 1);
  close(r.confidence[0]!, 0.75, 1e-6, 'confidence');
  const t = kn.evaluate.predictProba(model, kn.tensor([[0, Math.log(9)]]), { temperature: 2 });
  close(t.probs[0]![1]!, 0.75, 1e-6, 'tempered');
  const b = kn.evaluate.predictProba(model, kn.tensor([[0], [Math.log(4)]]));
  assert.is(b.classes, 2);
  close(b.probs[1]![1]!, 0.8, 1e-6, 'sigmoid');
  const lin = new kn.nn.Linear(3, 4);
  lin.train();
  const m = kn.evaluate.predictProba(lin, kn.randn([5, 3]));
  assert.is(lin.training, true, 'the model is back in training mode');
  for (let i = 0; i < 5; i++)
    close(
      m.probs[i]!.reduce((a, v) => a + v, 0),
      1,
      1e-6,
    );
  assert.throws(() => kn.evaluate.predictProba(model, kn.ones([2, 2]), { temperature: 0 }), /temperature must be/);
});

test('bySlice: per-slice metrics and counts by hand, bootstrap intervals around them, deterministic', () => {
  const yTrue = [0, 1, 1, 0, 1, 1, 0, 0];
  const yPred = [0, 1, 0, 0, 1, 1, 1, 0];
  const region = ['n', 'n', 'n', 'n', 's', 's', 's', 's'];
  const rows = kn.evaluate.bySlice(yTrue, yPred, region, { metrics: ['accuracy', 'f1'], bootstrap: 300, seed: 1 });
  assert.equal(
    rows.map((r) => [r.slice, r.count]),
    [
      ['all', 8],
      ['n', 4],
      ['s', 4],
    ],
  );
  close(rows[0]!.metrics[0]!.value, 6 / 8, 1e-12, 'overall accuracy');
  close(rows[1]!.metrics[0]!.value, 3 / 4, 1e-12, 'n accuracy');
  close(rows[2]!.metrics[0]!.value, 3 / 4, 1e-12, 's accuracy');
  close(rows[1]!.metrics[1]!.value, kn.metrics.f1([0, 1, 1, 0], [0, 1, 0, 0]), 1e-12, 'n f1');
  for (const r of rows)
    for (const m of r.metrics) {
      assert.ok(m.lo <= m.value + 1e-12 && m.value <= m.hi + 1e-12, `${r.slice} ${m.metric} in [${m.lo}, ${m.hi}]`);
      assert.ok(m.lo >= 0 && m.hi <= 1);
    }
  const again = kn.evaluate.bySlice(yTrue, yPred, region, { metrics: ['accuracy', 'f1'], bootstrap: 300, seed: 1 });
  assert.equal(again, rows, 'same seed, same intervals');
  // predicates, and a metric as a function
  const byPred = kn.evaluate.bySlice(
    yTrue,
    yPred,
    [
      { name: 'first half', where: (i) => i < 4 },
      { name: 'empty', where: () => false },
    ],
    { bootstrap: 0, metrics: [(t, p) => p.filter((v, i) => v === t[i]).length] },
  );
  assert.is(byPred[1]!.metrics[0]!.value, 3);
  assert.ok(Number.isNaN(byPred[1]!.metrics[0]!.lo), 'no interval without bootstrap');
  assert.is(byPred[2]!.count, 0);
  assert.ok(Number.isNaN(byPred[2]!.metrics[0]!.value));
  // names from data stay values: a slice called __proto__ is just a row
  const proto = kn.evaluate.bySlice([0, 1], [0, 1], ['__proto__', 'constructor'], { bootstrap: 0 });
  assert.equal(
    proto.map((r) => r.slice),
    ['all', '__proto__', 'constructor'],
  );
  // scores [N, C] are turned into labels
  const scored = kn.evaluate.bySlice(
    [1, 0],
    kn.tensor([
      [0.1, 0.9],
      [0.8, 0.2],
    ]),
    ['a', 'a'],
    { bootstrap: 0 },
  );
  assert.is(scored[0]!.metrics[0]!.value, 1);
  assert.throws(() => kn.evaluate.bySlice([0, 1], [0, 1], ['a']), /slices has 1 values but there are 2 samples/);
  assert.throws(() => kn.evaluate.bySlice([0], [0], ['a'], { metrics: ['auc' as 'f1'] }), /metrics\[0\] must be/);
});

test('fairness: group rates, parity, equalized odds, disparate impact and the pass/fail report', () => {
  // group a: 4 people, true [1,1,0,0], pred [1,1,1,0] -> selection 3/4, TPR 1, FPR 1/2
  // group b: 4 people, true [1,1,0,0], pred [1,0,0,0] -> selection 1/4, TPR 1/2, FPR 0
  const r = kn.evaluate.fairness({
    yTrue: [1, 1, 0, 0, 1, 1, 0, 0],
    yPred: [1, 1, 1, 0, 1, 0, 0, 0],
    sensitive: ['a', 'a', 'a', 'a', 'b', 'b', 'b', 'b'],
  });
  assert.equal(
    r.groups.map((g) => [g.group, g.count, g.selectionRate, g.tpr, g.fpr]),
    [
      ['a', 4, 0.75, 1, 0.5],
      ['b', 4, 0.25, 0.5, 0],
    ],
  );
  close(r.demographicParityDifference, 0.5, 1e-12, 'dp diff');
  close(r.demographicParityRatio, 1 / 3, 1e-12, 'dp ratio');
  close(r.equalOpportunityDifference, 0.5, 1e-12, 'eop');
  close(r.equalizedOddsDifference, 0.5, 1e-12, 'eod');
  close(r.disparateImpact, 1 / 3, 1e-12, 'di');
  assert.is(r.pass, false);
  assert.ok(r.checks.every((c) => !c.pass));
  // naming the privileged group: the others' lowest selection rate over its rate
  const p = kn.evaluate.fairness({
    yTrue: [1, 0, 1, 0, 1, 0],
    yPred: [1, 1, 1, 0, 1, 0],
    sensitive: [0, 0, 1, 1, 2, 2],
    privileged: 0,
    thresholds: { demographicParity: 0.6, equalizedOdds: 1, equalOpportunity: 1, disparateImpact: 0.5 },
  });
  close(p.disparateImpact, 0.5, 1e-12, 'di with privileged');
  assert.is(p.pass, true);
  // an equal model passes the defaults
  const fair = kn.evaluate.fairness({ yTrue: [1, 0, 1, 0], yPred: [1, 0, 1, 0], sensitive: ['x', 'x', 'y', 'y'] });
  assert.is(fair.pass, true);
  assert.throws(() => kn.evaluate.fairness({ yTrue: [1], yPred: [1], sensitive: ['a'] }), /at least two groups/);
  assert.throws(
    () => kn.evaluate.fairness({ yTrue: [1, 0], yPred: [1, 0], sensitive: ['a', 'b'], privileged: 'c' }),
    /privileged group "c" does not occur/,
  );
});

test('errorAnalysis: confused pairs and the highest-loss examples, with attributions', () => {
  const model = (x: kn.Tensor): kn.Tensor => x; // the inputs are the logits
  const x = kn.tensor([
    [3, 0, 0],
    [0, 3, 0],
    [0, 3, 0],
    [0, 0, 3],
    [0, 2, 0],
    [1, 0, 0],
  ]);
  const y = [0, 0, 0, 2, 2, 0];
  const r = kn.evaluate.errorAnalysis(model, x, y, { top: 2 });
  close(r.accuracy, 3 / 6, 1e-12, 'accuracy');
  assert.equal(r.confusedPairs, [
    { trueClass: 0, predictedClass: 1, count: 2, rate: 2 / 4 },
    { trueClass: 2, predictedClass: 1, count: 1, rate: 1 / 2 },
  ]);
  // losses: rows 1 and 2 have logit 0 for class 0 against 3: the highest; ties broken by index
  assert.equal(
    r.hardest.map((h) => [h.index, h.trueClass, h.predictedClass]),
    [
      [1, 0, 1],
      [2, 0, 1],
    ],
  );
  close(r.hardest[0]!.loss, Math.log(2 + Math.exp(3)), 1e-5, 'loss');
  // identity model: integrated gradients towards the predicted class 1 from zero = the input's class-1 logit
  assert.equal(r.hardest[0]!.attributions, [0, 3, 0]);
});

test('disagreement: who is right when two models differ', () => {
  const a = (x: kn.Tensor): kn.Tensor => x;
  const b = (x: kn.Tensor): kn.Tensor => x.mul(-1);
  const x = kn.tensor([
    [1, 0],
    [0, 1],
    [1, 1],
  ]);
  const r = kn.evaluate.disagreement(a, b, x, [0, 0, 1]);
  assert.equal(r.indices, [0, 1]);
  close(r.rate, 2 / 3, 1e-12, 'rate');
  assert.equal([r.aRightBWrong, r.bRightAWrong, r.bothWrong], [1, 1, 1]);
});

test('adversarial: FGSM on a linear classifier flips exactly the examples within eps * |w|_1 of the boundary', () => {
  const w = [1, -2, 0.5];
  const W = kn.tensor([w, w.map((v) => -v)]).transpose(0, 1); // logits [w.x, -w.x]
  const model = (x: kn.Tensor): kn.Tensor => x.matmul(W);
  kn.seed(8);
  const x = kn.randn([300, 3]);
  const xs = Array.from(x.toArray() as ArrayLike<number>);
  const score = (i: number): number => w.reduce((a, v, j) => a + v * xs[i * 3 + j]!, 0);
  const y = Array.from({ length: 300 }, (_, i) => (score(i) > 0 ? 0 : 1));
  const eps = 0.3,
    l1 = 3.5;
  const r = kn.evaluate.adversarial(model, x, y, { epsilon: eps });
  close(r.cleanAccuracy, 1, 0, 'clean');
  const expected = y.filter((_, i) => Math.abs(score(i)) > eps * l1).length / 300;
  close(r.accuracy, expected, 1.5 / 300, 'fgsm accuracy');
  const adv = Array.from(r.adversarial.toArray() as ArrayLike<number>);
  assert.ok(
    adv.every((v, k) => Math.abs(v - xs[k]!) <= eps + 1e-6),
    'inside the L-inf ball',
  );
  const pgd = kn.evaluate.adversarial(model, x, y, { epsilon: eps, method: 'pgd', steps: 10, seed: 1 });
  assert.ok(pgd.accuracy <= r.accuracy + 1 / 300, `PGD ${pgd.accuracy} is at least as strong as FGSM ${r.accuracy}`);
  const clipped = kn.evaluate.adversarial(model, x, y, { epsilon: 5, clip: [-1, 1] });
  const c = Array.from(clipped.adversarial.toArray() as ArrayLike<number>);
  assert.ok(
    c.every((v) => v >= -1 && v <= 1),
    'clipped',
  );
  assert.throws(() => kn.evaluate.adversarial(model, x, y, { epsilon: -1 }), /epsilon must be a non-negative number/);
  assert.throws(
    () => kn.evaluate.adversarial(model, x, y.slice(1), { epsilon: 1 }),
    /y has 299 labels but x has 300 rows/,
  );
});

test('metamorphic: relations that must keep, change or preserve the output, with their violations', () => {
  const model = (x: kn.Tensor): kn.Tensor => x;
  const x = kn.tensor([
    [2, 1],
    [1, 3],
    [4, 4],
  ]);
  const r = kn.evaluate.metamorphic(model, x, [
    { name: 'scale', transform: (z) => z.mul(2), expect: 'same' },
    {
      name: 'swap',
      transform: (z) =>
        z.matmul(
          kn.tensor([
            [0, 1],
            [1, 0],
          ]),
        ),
      expect: 'different',
    },
    { name: 'shift', transform: (z) => z.add(1), expect: 'close', tolerance: 0.5 },
    { name: 'monotone', transform: (z) => z.add(1), expect: (b, a) => a[0]! > b[0]! },
  ]);
  assert.equal(
    r.map((v) => [v.name, v.violations]),
    [
      ['scale', []],
      ['swap', [2]], // a tie stays class 0 after the swap
      ['shift', [0, 1, 2]],
      ['monotone', []],
    ],
  );
  close(r[1]!.rate, 1 / 3, 1e-12, 'rate');
  assert.throws(() => kn.evaluate.metamorphic(model, x, []), /relations must be a non-empty array/);
  assert.throws(
    () => kn.evaluate.metamorphic(model, x, [{ name: 'drop', transform: () => kn.ones([1, 2]), expect: 'same' }]),
    /changed the number of examples from 3 to 1/,
  );
});

test.run();
