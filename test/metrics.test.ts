import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { throwsKiln } from './helpers.js';

const near = (a: number, e: number, tol = 1e-12): void => assert.ok(Math.abs(a - e) <= tol, `${a} vs ${e}`);

// a 3-class example worked by hand (the classic scikit-learn docs example for precision_recall_fscore_support)
const T = [0, 1, 2, 0, 1, 2],
  P = [0, 2, 1, 0, 0, 1];

test('accuracy and confusion matrix', () => {
  near(kn.metrics.accuracy(T, P), 2 / 6);
  assert.equal(kn.metrics.confusionMatrix(T, P), [
    [2, 0, 0],
    [1, 0, 1],
    [0, 2, 0],
  ]);
  assert.equal(kn.metrics.confusionMatrix([0, 0], [0, 0], { numClasses: 3 }), [
    [2, 0, 0],
    [0, 0, 0],
    [0, 0, 0],
  ]);
  // tensors, and 2-D scores through argmax
  const scores = kn.tensor([
    [0.9, 0.1],
    [0.2, 0.8],
    [0.6, 0.4],
  ]);
  near(kn.metrics.accuracy(kn.tensor(new Int32Array([0, 1, 1]), [3]), scores), 2 / 3);
});

test('precision / recall / f1: macro, micro, weighted (scikit-learn values)', () => {
  near(kn.metrics.precision(T, P, { average: 'macro' }), 0.2222222222222222);
  near(kn.metrics.recall(T, P, { average: 'macro' }), 0.3333333333333333);
  near(kn.metrics.f1(T, P, { average: 'macro' }), 0.26666666666666666);
  near(kn.metrics.precision(T, P, { average: 'micro' }), 1 / 3);
  near(kn.metrics.recall(T, P, { average: 'micro' }), 1 / 3);
  near(kn.metrics.f1(T, P, { average: 'micro' }), 1 / 3);
  near(kn.metrics.precision(T, P, { average: 'weighted' }), 0.2222222222222222);
  near(kn.metrics.f1(T, P, { average: 'weighted' }), 0.26666666666666666);
  // imbalanced binary: weighted differs from macro
  const t = [0, 0, 0, 0, 1, 1],
    p = [0, 0, 0, 1, 1, 0];
  near(kn.metrics.recall(t, p, { average: 'macro' }), (3 / 4 + 1 / 2) / 2);
  near(kn.metrics.recall(t, p, { average: 'weighted' }), (3 / 4) * (4 / 6) + (1 / 2) * (2 / 6));
  near(kn.metrics.f1(t, p), ((2 * 3) / (2 * 3 + 1 + 1) + (2 * 1) / (2 + 1 + 1)) / 2);
});

test('rocAuc: binary with ties, multi-class one-vs-rest', () => {
  near(kn.metrics.rocAuc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 0.75);
  near(kn.metrics.rocAuc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]), 0.5);
  near(kn.metrics.rocAuc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]), 1);
  // pairs (pos, neg): (.2,.2) tie .5, (.2,.7) 0, (.7,.2) 1, (.7,.7) .5, (.9,.2) 1, (.9,.7) 1 -> 4 / 6
  near(kn.metrics.rocAuc([0, 1, 1, 0, 1], [0.2, 0.2, 0.7, 0.7, 0.9]), 4 / 6);
  // multi-class macro = mean of the one-vs-rest AUCs
  const y = [0, 1, 2, 2, 1, 0];
  const s = kn.tensor([
    [0.8, 0.1, 0.1],
    [0.3, 0.4, 0.3],
    [0.1, 0.2, 0.7],
    [0.2, 0.5, 0.3],
    [0.1, 0.8, 0.1],
    [0.5, 0.2, 0.3],
  ]);
  const cols = [0, 1, 2].map((c) =>
    kn.metrics.rocAuc(
      y.map((v) => +(v === c)),
      [0.8, 0.3, 0.1, 0.2, 0.1, 0.5].map((_, i) => s.toArray()[i * 3 + c]!),
    ),
  );
  near(kn.metrics.rocAuc(y, s), cols.reduce((a, b) => a + b, 0) / 3, 1e-9);
  // the same scores as rows of arrays
  const rows = [0, 1, 2, 3, 4, 5].map((i) => [0, 1, 2].map((c) => s.toArray()[i * 3 + c]!));
  near(kn.metrics.rocAuc(y, rows), cols.reduce((a, b) => a + b, 0) / 3, 1e-9);
  near(kn.metrics.rocAuc(y, rows, { average: 'weighted' }), (2 * cols[0]! + 2 * cols[1]! + 2 * cols[2]!) / 6, 1e-9);
  // micro: one AUC over every (sample, class) pair. Positives 0.6, 0.5, 0.3 against negatives 0.3 0.1 0.2 0.3
  // 0.3 0.4: 6 + 6 + (2 wins + 3 ties / 2) of 18 pairs
  const r3 = [
    [0.6, 0.3, 0.1],
    [0.2, 0.5, 0.3],
    [0.3, 0.4, 0.3],
  ];
  near(kn.metrics.rocAuc([0, 1, 2], r3, { average: 'micro' }), 15.5 / 18, 1e-12);
  near(kn.metrics.rocAuc([0, 1, 2], kn.tensor(r3), { average: 'micro' }), 15.5 / 18, 1e-6);
  // weighted by support: class 0 has 3 samples, class 1 one
  const yw = [0, 0, 0, 1];
  const sw = [
    [0.9, 0.1],
    [0.4, 0.6],
    [0.7, 0.3],
    [0.2, 0.8],
  ];
  near(kn.metrics.rocAuc(yw, sw, { average: 'weighted' }), kn.metrics.rocAuc([1, 1, 1, 0], [0.9, 0.4, 0.7, 0.2]));
});

test('scores as rows of arrays are argmaxed to labels like a 2-D tensor', () => {
  const rows = [
    [0.1, 0.7, 0.2],
    [0.5, 0.5, 0.0],
    [0.0, 2.0, 1.0],
    [-1, -2, -0.5],
  ];
  assert.equal(
    kn.metrics.confusionMatrix([1, 0, 1, 2], rows),
    kn.metrics.confusionMatrix([1, 0, 1, 2], kn.tensor(rows)),
  );
  near(kn.metrics.accuracy([1, 0, 1, 2], rows), 1);
  near(kn.metrics.accuracy([1, 0, 1, 2], [new Float32Array([0, 1]), [1, 0], [0, 1], [0, 0.5]]), 0.75);
  throwsKiln(
    () =>
      kn.metrics.accuracy(
        [1, 0],
        [
          [0.5, NaN],
          [1, 0],
        ],
      ),
    kn.ValidationError,
    /yPred\[0\]\[1\] must be a number/,
  );
  // kn.evaluate.bySlice takes the same rows
  const r = kn.evaluate.bySlice([1, 0, 1, 2], rows, ['a', 'b', 'a', 'b'], { bootstrap: 0 });
  assert.equal(
    r.map((s) => [s.slice, s.count, s.metrics[0]!.value]),
    [
      ['all', 4, 1],
      ['a', 2, 1],
      ['b', 2, 1],
    ],
  );
});

test('edge cases: a class never predicted, a single class, perfect and all-wrong predictions', () => {
  // class 2 is never predicted: its precision is 0 (not NaN) and it still counts in the macro average
  const t = [0, 1, 2, 2],
    p = [0, 1, 1, 1];
  near(kn.metrics.precision(t, p), (1 + 1 / 3 + 0) / 3);
  near(kn.metrics.recall(t, p), (1 + 1 + 0) / 3);
  near(kn.metrics.f1(t, p), (1 + 0.5 + 0) / 3);
  assert.equal(kn.metrics.confusionMatrix(t, p), [
    [1, 0, 0],
    [0, 1, 0],
    [0, 2, 0],
  ]);
  // a single class everywhere
  near(kn.metrics.accuracy([1, 1, 1], [1, 1, 1]), 1);
  near(kn.metrics.f1([1, 1, 1], [1, 1, 1]), 1);
  near(kn.metrics.precision([1, 1, 1], [1, 1, 1], { average: 'weighted' }), 1);
  // all wrong
  near(kn.metrics.accuracy([0, 0], [1, 1]), 0);
  near(kn.metrics.f1([0, 0], [1, 1], { average: 'micro' }), 0);
  // labels as tensors of each integer dtype
  near(kn.metrics.accuracy(kn.tensor(new Uint8Array([0, 1]), [2]), kn.tensor(new Int32Array([0, 0]), [2])), 0.5);
});

test('metrics reject bad input clearly', () => {
  throwsKiln(() => kn.metrics.accuracy([0, 1], [0]), kn.ShapeError, /2 labels but yPred has 1/);
  throwsKiln(() => kn.metrics.accuracy([], []), kn.ValidationError, /at least one sample/);
  throwsKiln(() => kn.metrics.accuracy([0, 1.5], [0, 1]), kn.ValidationError, /yTrue\[1\] = 1.5 is not a class index/);
  throwsKiln(
    () => kn.metrics.f1([0, 1], [0, 1], { average: 'binary' as 'macro' }),
    kn.ArgumentError,
    /average must be/,
  );
  throwsKiln(() => kn.metrics.rocAuc([1, 1], [0.2, 0.3]), kn.ValidationError, /only one class/);
  throwsKiln(() => kn.metrics.rocAuc([0, 1], [0.2, NaN]), kn.ValidationError, /NaN/);
  // a label with no column of scores: its class would silently count as a negative of every other class
  const two = [
    [0.6, 0.4],
    [0.3, 0.7],
    [0.5, 0.5],
  ];
  throwsKiln(() => kn.metrics.rocAuc([0, 1, 2], two), kn.ValidationError, /yTrue\[2\] = 2 but scores have 2 classes/);
  throwsKiln(() => kn.metrics.rocAuc([0, 1, 2], kn.tensor(two)), kn.ValidationError, /2 classes \(columns\)/);
  throwsKiln(() => kn.metrics.rocAuc([0, 1], [[0.5, 0.5], [0.5]]), kn.ShapeError, /row 1 has 1/);
  throwsKiln(
    () =>
      kn.metrics.accuracy([0, 1], [
        [0.5, 0.5],
        ['a', 0.1],
      ] as never),
    kn.ValidationError,
    /yPred\[1\]\[0\]/,
  );
  throwsKiln(
    () => kn.metrics.confusionMatrix([0, 3], [0, 1], { numClasses: 3 }),
    kn.ValidationError,
    /numClasses is 3/,
  );
});

test.run();
