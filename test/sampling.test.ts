// Sampling: stratified samples keep class proportions, reservoir samples are uniform (and weighted ones follow
// their weights) over streams, under/over-sampling balance classes, SMOTE's rows lie between same-class
// neighbours; everything seeded.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { throwsKiln } from './helpers.js';

const labels = Int32Array.from({ length: 1000 }, (_, i) => (i < 700 ? 0 : i < 950 ? 1 : 2));
const count = (idx: ArrayLike<number>, c: number): number => Array.from(idx).filter((i) => labels[i] === c).length;

test('stratifiedSample keeps proportions, is seeded, and keeps rare classes', () => {
  const s = kn.data.stratifiedSample(labels, { size: 100, seed: 3 });
  assert.is(s.length, 100);
  assert.equal([count(s, 0), count(s, 1), count(s, 2)], [70, 25, 5]);
  assert.is(new Set(s).size, 100);
  assert.equal(kn.data.stratifiedSample(labels, { size: 100, seed: 3 }), s);
  assert.not.equal(kn.data.stratifiedSample(labels, { size: 100, seed: 4 }), s);
  const tiny = kn.data.stratifiedSample(labels, { size: 10, seed: 1 });
  assert.equal([count(tiny, 0), count(tiny, 1), count(tiny, 2)], [7, 2, 1]);
  const f = kn.data.stratifiedSample(kn.tensor(labels, [1000], { dtype: 'int32' }), { fraction: 0.5 });
  assert.equal([count(f, 0), count(f, 1), count(f, 2)], [350, 125, 25]);
  throwsKiln(
    () => kn.data.stratifiedSample(labels, { size: 1001 }),
    kn.ArgumentError,
    /size must be an integer in \[0, 1000\]/,
  );
  throwsKiln(() => kn.data.stratifiedSample(labels, {}), kn.ArgumentError, /needs \{ size \} or \{ fraction \}/);
  throwsKiln(() => kn.data.stratifiedSample([0, NaN], { size: 1 }), kn.ValidationError, /label 1 is NaN/);
});

test('reservoir: uniform over a stream (chi-square), weighted by weight, seeded, async sources', async () => {
  // 4000 reservoirs of 5 from 0..49: each item should be kept 4000*5/50 = 400 times
  const hits = new Float64Array(50);
  for (let s = 0; s < 4000; s++) {
    const r = new kn.data.Reservoir<number>(5, { seed: s });
    for (let i = 0; i < 50; i++) r.add(i);
    assert.is(r.seen, 50);
    for (const x of r.items) hits[x]!++;
  }
  const chi = hits.reduce((a, h) => a + (h - 400) ** 2 / 400, 0);
  assert.ok(chi < 90, `chi-square ${chi.toFixed(1)} with 49 degrees of freedom`); // p < 1e-4 above 90
  // weighted: item 0 has weight 9 among 10 others of weight 1, so a 1-sample keeps it about 9/19 of the time
  let kept = 0;
  for (let s = 0; s < 3000; s++) {
    const r = new kn.data.Reservoir<number>(1, { seed: s });
    r.add(0, 9);
    for (let i = 1; i <= 10; i++) r.add(i, 1);
    if (r.items[0] === 0) kept++;
  }
  assert.ok(Math.abs(kept / 3000 - 9 / 19) < 0.03, `kept ${kept / 3000}`);
  async function* gen(): AsyncGenerator<number> {
    for (let i = 0; i < 100; i++) yield i;
  }
  const a = await kn.data.reservoirSample(gen(), 7, { seed: 2 });
  const b = await kn.data.reservoirSample(
    Array.from({ length: 100 }, (_, i) => i),
    7,
    { seed: 2 },
  );
  assert.equal(a, b);
  assert.is(new Set(a).size, 7);
  assert.equal(await kn.data.reservoirSample([1, 2], 5), [1, 2]);
  const r = new kn.data.Reservoir<number>(2);
  r.add(1);
  throwsKiln(() => r.add(2, 1), kn.ArgumentError, /weights for every item or for none/);
  throwsKiln(() => new kn.data.Reservoir(0), kn.ArgumentError, /k >= 1/);
  const w = new kn.data.Reservoir<number>(2);
  throwsKiln(() => w.add(1, -1), kn.ValidationError, /weights must be finite and > 0/);
});

test('undersample and oversample balance classes', () => {
  const u = kn.data.undersample(labels, { seed: 1 });
  assert.equal([count(u, 0), count(u, 1), count(u, 2)], [50, 50, 50]);
  assert.is(new Set(u).size, 150);
  const u2 = kn.data.undersample(labels, { seed: 1, ratio: 2 });
  assert.equal([count(u2, 0), count(u2, 1), count(u2, 2)], [100, 100, 50]);
  const o = kn.data.oversample(labels, { seed: 1 });
  assert.equal([count(o, 0), count(o, 1), count(o, 2)], [700, 700, 700]);
  assert.equal(
    Array.from(o.subarray(0, 1000)),
    Array.from({ length: 1000 }, (_, i) => i),
  );
  // a balanced loader over the oversampled rows
  const ds = new kn.data.Dataset({ y: kn.tensor(labels, [1000], { dtype: 'int32' }) }).subset(o);
  assert.is(ds.length, 2100);
  throwsKiln(() => kn.data.undersample(labels, { ratio: 0.5 }), kn.ArgumentError, /ratio must be >= 1/);
});

test('smote: new minority rows on segments between same-class neighbours', () => {
  const pts = [
    [0, 0],
    [1, 0],
    [0, 1],
    [10, 10],
    [11, 10],
    [10, 11],
    [11, 11],
    [10.5, 10.5],
    [20, 20],
    [21, 21],
  ];
  const y = [0, 0, 0, 1, 1, 1, 1, 1, 2, 2];
  const x = kn.tensor(pts);
  const out = kn.data.smote(x, y, { k: 2, seed: 5 });
  assert.equal(out.x.shape, [5, 2]);
  assert.equal(out.y.toList(), [0, 0, 2, 2, 2]);
  const xs = out.x.toList() as number[][];
  xs.forEach((p, i) => {
    const c = (out.y.toList() as number[])[i]!;
    const same = pts.filter((_, j) => y[j] === c);
    // on a segment between two rows of its class: |p-a| + |p-b| == |a-b| for some pair
    const onSeg = same.some((a) =>
      same.some((b) => {
        const d = (u: number[], v: number[]): number => Math.hypot(u[0]! - v[0]!, u[1]! - v[1]!);
        return a !== b && Math.abs(d(p, a) + d(p, b) - d(a, b)) < 1e-4;
      }),
    );
    assert.ok(onSeg, `row ${i} ${p} of class ${c} is not between two rows of its class`);
  });
  assert.equal(kn.data.smote(x, y, { k: 2, seed: 5 }).x.toList(), xs);
  assert.is(kn.data.smote(x, y, { perClass: 3, seed: 1 }).y.shape[0], 9);
  throwsKiln(() => kn.data.smote(x, [0, 0, 0, 1, 1, 1, 1, 1, 1, 2]), kn.ValidationError, /class 2 has 1 row/);
  throwsKiln(() => kn.data.smote(kn.tensor([[NaN], [1]]), [0, 1]), kn.ValidationError, /impute missing values first/);
  throwsKiln(() => kn.data.smote(x, [0, 1]), kn.ShapeError, /2 labels for 10 rows/);
});

test.run();
