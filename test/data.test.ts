import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as A from 'apache-arrow';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { bufferProblem, compactDictionary, narrowType } from '../src/data/arrow.js';
import { ksSorted } from '../src/data/drift.js';
import { allclose, nativeBackends, onBackend, rejectsKiln, rng, throwsKiln, tempDir } from './helpers.js';

const BACKENDS = ['js', ...nativeBackends()] as kn.BackendName[];
const close = (a: ArrayLike<number>, e: ArrayLike<number>, atol = 1e-5, rtol = 1e-5): void => {
  const r = allclose(a, e, atol, rtol, true);
  assert.ok(r.ok, r.message);
};
const dir = tempDir('kiln-data-');

// 5 rows x 3 features, with NaN as missing; column 2 is constant
const ROWS = [
  [1, 10, 7],
  [2, NaN, 7],
  [3, 30, 7],
  [4, 40, 7],
  [100, 50, 7],
];
const col = (j: number): number[] => ROWS.map((r) => r[j]!).filter((v) => !Number.isNaN(v));
const meanOf = (a: number[]): number => a.reduce((s, v) => s + v, 0) / a.length;
const popStd = (a: number[]): number => Math.sqrt(a.reduce((s, v) => s + (v - meanOf(a)) ** 2, 0) / a.length);
const quant = (a: number[], q: number): number => {
  const s = [...a].sort((x, y) => x - y),
    p = q * (s.length - 1),
    k = Math.floor(p);
  return s[k]! + (s[Math.min(k + 1, s.length - 1)]! - s[k]!) * (p - k);
};

for (const b of BACKENDS) {
  test(`scalers match the textbook definitions, NaN-aware, with inverses (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        const x = kn.tensor(ROWS);
        const st = new kn.data.StandardScaler().fit(x);
        close(st.fitted.center!, [meanOf(col(0)), meanOf(col(1)), 7]);
        close(st.fitted.scale!, [popStd(col(0)), popStd(col(1)), 1]);
        const z = st.transform(x).toArray();
        close(
          [z[0]!, z[3]!, z[4]!, z[2]!],
          [(1 - meanOf(col(0))) / popStd(col(0)), (2 - meanOf(col(0))) / popStd(col(0)), NaN, 0],
        );
        close(st.inverseTransform(st.transform(x)).toArray(), x.toArray(), 1e-4);
        const mm = new kn.data.MinMaxScaler({ featureRange: [-1, 1] }).fit(x);
        const y = mm.transform(x).toArray();
        close([y[0]!, y[12]!, y[1]!, y[13]!, y[2]!], [-1, 1, -1, 1, -1]);
        const rb = new kn.data.RobustScaler().fit(x);
        close(rb.fitted.center!, [3, quant(col(1), 0.5), 7]);
        close(rb.fitted.scale!, [
          quant(col(0), 0.75) - quant(col(0), 0.25),
          quant(col(1), 0.75) - quant(col(1), 0.25),
          1,
        ]);
        assert.ok(
          Math.abs(rb.transform(x).toArray()[12]! - (100 - 3) / 2) < 1e-4,
          'the outlier does not move the robust scale',
        );
        throwsKiln(() => new kn.data.StandardScaler().transform(x), kn.ValidationError, /not fitted: call fit\(\)/);
        throwsKiln(() => st.transform(kn.ones([2, 4])), kn.ShapeError, /has 4 features but this was fitted on 3/);
        throwsKiln(() => st.fit(kn.ones([3], { dtype: 'float32' })), kn.ShapeError, /table \[rows, features\]/);
        throwsKiln(() => st.fit(kn.tensor(new Int32Array([1, 2]), [2, 1])), kn.DTypeError, /floating point/);
      }),
    ));

  test(`imputer strategies and outlier clipping (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        const x = kn.tensor([
          [1, NaN],
          [NaN, 2],
          [3, 2],
          [3, 8],
        ]);
        close(new kn.data.SimpleImputer().fitTransform(x).toArray(), [1, 4, 7 / 3, 2, 3, 2, 3, 8]);
        close(new kn.data.SimpleImputer({ strategy: 'median' }).fitTransform(x).toArray(), [1, 2, 3, 2, 3, 2, 3, 8]);
        close(
          new kn.data.SimpleImputer({ strategy: 'mostFrequent' }).fitTransform(x).toArray(),
          [1, 2, 3, 2, 3, 2, 3, 8],
        );
        close(
          new kn.data.SimpleImputer({ strategy: 'constant', fillValue: -1 }).fitTransform(x).toArray(),
          [1, -1, -1, 2, 3, 2, 3, 8],
        );
        throwsKiln(
          () => new kn.data.SimpleImputer().fit(kn.tensor([[NaN], [NaN]])),
          kn.ValidationError,
          /feature 0 has no observed values/,
        );
        const big = kn.tensor(Array.from({ length: 101 }, (_, i) => [i]));
        const c = new kn.data.OutlierClipper({ lower: 0.05, upper: 0.95 }).fit(big);
        close([...c.fitted.low!, ...c.fitted.high!], [5, 95]);
        close(c.transform(kn.tensor([[-50], [50], [1000], [NaN]])).toArray(), [5, 50, 95, NaN]);
      }),
    ));
}

test('large tables: the native statistics agree with float64 host maths (threaded paths)', () =>
  kn.tidy(() => {
    const r = rng(9),
      N = 20000,
      F = 6;
    const vals = Array.from({ length: N * F }, (_, k) =>
      r() < 0.05 ? NaN : (k % F) * 10 + (r() - 0.5) * ((k % F) + 1),
    );
    const x = kn.tensor(vals, [N, F]);
    const cols = Array.from({ length: F }, (_, j) =>
      vals.filter((v, k) => k % F === j && !Number.isNaN(v)).map((v) => Math.fround(v)),
    );
    const st = new kn.data.StandardScaler().fit(x);
    close(st.fitted.center!, cols.map(meanOf), 1e-4, 1e-5);
    close(st.fitted.scale!, cols.map(popStd), 1e-4, 1e-4);
    const rb = new kn.data.RobustScaler().fit(x);
    close(
      rb.fitted.center!,
      cols.map((c) => quant(c, 0.5)),
      1e-5,
      1e-6,
    );
  }));

test('transformers serialise: toJSON/fromJSON, save/load, and reject bad JSON', () =>
  kn.tidy(() => {
    const x = kn.tensor(ROWS);
    for (const t of [
      new kn.data.StandardScaler(),
      new kn.data.MinMaxScaler(),
      new kn.data.RobustScaler({ quantileRange: [10, 90] }),
      new kn.data.SimpleImputer({ strategy: 'median' }),
      new kn.data.OutlierClipper(),
    ]) {
      t.fit(x);
      const path = join(dir, `${t.kind}.json`);
      t.save(path);
      const back = kn.data.loadTransformer(path);
      assert.is(back.kind, t.kind);
      close(back.transform(x).toArray(), t.transform(x).toArray());
      close(kn.data.transformerFromJSON(JSON.stringify(t.toJSON())).transform(x).toArray(), t.transform(x).toArray());
    }
    throwsKiln(
      () => kn.data.transformerFromJSON({ kind: 'Nope', nFeatures: 1, params: {}, options: {} }),
      kn.FormatError,
      /unknown transformer kind/,
    );
    throwsKiln(
      () =>
        kn.data.StandardScaler.fromJSON({
          kind: 'StandardScaler',
          nFeatures: 2,
          params: { center: [1], scale: [1, 2] },
          options: {},
        }),
      kn.FormatError,
      /params.center must be 2 numbers/,
    );
  }));

test('splits: seeded, stratified, k-fold, stratified k-fold, group k-fold', () => {
  const a = kn.data.trainTestSplit(100, { testSize: 0.2, seed: 3 }),
    b = kn.data.trainTestSplit(100, { testSize: 0.2, seed: 3 });
  assert.equal(Array.from(a.test), Array.from(b.test));
  assert.is(a.test.length, 20);
  assert.equal(
    [...a.train, ...a.test].sort((x, y) => x - y),
    Array.from({ length: 100 }, (_, i) => i),
  );
  assert.not.equal(Array.from(kn.data.trainTestSplit(100, { testSize: 0.2, seed: 4 }).test), Array.from(a.test));
  const y = Array.from({ length: 100 }, (_, i) => (i < 90 ? 0 : 1));
  const s = kn.data.trainTestSplit(100, { testSize: 0.2, seed: 1, stratify: y });
  assert.is(Array.from(s.test).filter((i) => y[i] === 1).length, 2, 'keeps the 10% minority share');
  const ds = new kn.data.Dataset({ x: kn.arange(0, 10).reshape([10, 1]) });
  assert.is(kn.data.trainTestSplit(ds, { testSize: 3 }).test.length, 3);
  const folds = kn.data.kFold(10, 3, { shuffle: true, seed: 2 });
  assert.equal(
    folds.map((f) => f.test.length),
    [4, 3, 3],
  );
  assert.equal(
    folds.flatMap((f) => Array.from(f.test)).sort((p, q) => p - q),
    Array.from({ length: 10 }, (_, i) => i),
  );
  folds.forEach((f) => assert.is(f.train.length + f.test.length, 10));
  const sk = kn.data.stratifiedKFold(y, 5, { shuffle: true, seed: 1 });
  assert.ok(sk.every((f) => Array.from(f.test).filter((i) => y[i] === 1).length === 2));
  const groups = [1, 1, 1, 2, 2, 3, 4, 4, 5, 5];
  const gk = kn.data.groupKFold(groups, 3);
  for (const f of gk) {
    const tg = new Set(Array.from(f.test, (i) => groups[i]));
    assert.ok(
      Array.from(f.train).every((i) => !tg.has(groups[i]!)),
      'no group on both sides',
    );
  }
  throwsKiln(() => kn.data.kFold(3, 5), kn.ValidationError, /cannot make 5 folds from 3 rows/);
  throwsKiln(() => kn.data.trainTestSplit(10, { testSize: 1.5 }), kn.ArgumentError, /testSize/);
  throwsKiln(() => kn.data.groupKFold([1, 1, 2], 3), kn.ValidationError, /2 groups cannot fill 3 folds/);
});

test('leakage report: duplicate rows across splits and a scaler fitted on validation rows', () =>
  kn.tidy(() => {
    const train = kn.tensor([
        [1, 2],
        [3, 4],
        [5, 6],
      ]),
      val = kn.tensor([
        [7, 8],
        [3, 4],
      ]);
    const clean = new kn.data.StandardScaler().fit(train);
    const leaky = new kn.data.StandardScaler().fit(kn.concat([train, val]));
    const r = kn.data.leakageReport({ splits: { train, val }, transformers: { clean, leaky } });
    assert.not.ok(r.ok);
    assert.equal(
      r.leaks.map((l) => [l.kind, l.between, l.rows]),
      [
        ['duplicate-rows', ['train', 'val'], [1]],
        ['scaler-saw-rows', ['clean', 'val'], [1]], // through the duplicated row
        ['scaler-saw-rows', ['leaky', 'val'], [0, 1]],
      ],
    );
    assert.ok(kn.data.leakageReport({ splits: { train, val: kn.tensor([[9, 9]]) }, transformers: { clean } }).ok);
  }));

test('validate: every violation with row, column, value and rule; throws on demand', () => {
  const schema: kn.data.Schema = {
    columns: {
      age: { type: 'int', min: 0, max: 130 },
      income: { type: 'float', min: 0, maxMissing: 0.25 },
      city: { type: 'category', categories: ['paris', 'rome'] },
      email: { type: 'string', required: false },
      id: { type: 'int' },
    },
  };
  const r = kn.data.validate(schema, {
    age: [30, -1, 200, 40.5],
    income: [1000, null, null, 5],
    city: ['paris', 'rome', 'oslo', 'paris'],
    extra: [1, 2, 3, 4],
  });
  assert.not.ok(r.ok);
  const brief = r.violations.map((v) => [v.rule, v.column, v.row, v.value]);
  assert.equal(brief, [
    ['unexpected', 'extra', null, null],
    ['min', 'age', 1, -1],
    ['max', 'age', 2, 200],
    ['type', 'age', 3, 40.5],
    ['missing', 'income', null, 2],
    ['category', 'city', 2, 'oslo'],
    ['required', 'id', null, null],
  ]);
  assert.equal(r.byRule, { unexpected: 1, min: 1, max: 1, type: 1, missing: 1, category: 1, required: 1 });
  assert.ok(kn.data.validate({ columns: { a: { type: 'float' } } }, kn.data.toArrow({ a: kn.tensor([1, 2]) })).ok);
  throwsKiln(
    () => kn.data.validate(schema, { age: [-5] }, { throw: true }),
    kn.ValidationError,
    /violation\(s\)\n {2}- row 0, column 'age': -5 is below the minimum 0/,
  );
  throwsKiln(
    () => kn.data.validate({ columns: { a: { type: 'date' as 'int' } } }, {}),
    kn.ArgumentError,
    /type must be/,
  );
  const many = kn.data.validate(
    { columns: { a: { type: 'int', max: 0 } } },
    { a: Array.from({ length: 50 }, (_, i) => i + 1) },
    { maxViolations: 10 },
  );
  assert.is(many.count, 50);
  assert.is(many.violations.length, 10);
});

test('drift: Kolmogorov tail, KS and PSI on known numbers, per-feature report with flags', () => {
  // critical values of the Kolmogorov distribution: Q(1.358) = 0.05, Q(1.628) = 0.01
  assert.ok(Math.abs(kn.data.kolmogorovQ(1.3581) - 0.05) < 1e-3);
  assert.ok(Math.abs(kn.data.kolmogorovQ(1.6276) - 0.01) < 5e-4);
  // both series (the CDF's below 1, the tail's above) against values summed to convergence in float64
  for (const [l, q] of [
    [0.002, 1],
    [0.01, 1],
    [0.1, 1],
    [0.3, 0.9999906941986655],
    [0.5, 0.9639452436648751],
    [0.8, 0.5441424115741981],
    [1.0, 0.26999967167735456],
    [1.2, 0.11224966667072496],
    [2.0, 0.0006709252557796953],
  ])
    assert.ok(Math.abs(kn.data.kolmogorovQ(l!) - q!) < 1e-12, `Q(${l}) = ${kn.data.kolmogorovQ(l!)}, not ${q}`);
  // two large samples a hair apart are not a drift (D = 1/20000: the p-value was 0.40)
  const big = Array.from({ length: 20000 }, (_, i) => i);
  assert.ok(
    kn.data.ksTest(
      big,
      big.map((v) => v + 0.5),
    ).pValue > 0.999,
  );
  const ks = kn.data.ksTest([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]);
  assert.is(ks.statistic, 1);
  const ne = Math.sqrt(25 / 10),
    lam = ne + 0.12 + 0.11 / ne;
  assert.ok(Math.abs(ks.pValue - 2 * (Math.exp(-2 * lam * lam) - Math.exp(-8 * lam * lam))) < 1e-9);
  assert.is(kn.data.ksTest([1, 2, 3], [1, 2, 3]).statistic, 0);
  assert.ok(Math.abs(kn.data.ksTest([1, 2, 3, 4], [3, 4, 5, 6]).statistic - 0.5) < 1e-12);
  // all current mass in the last of 10 equal bins: 9 bins (1e-4 - 0.1) ln(1e-4 / 0.1) + (1 - 0.1) ln(1 / 0.1)
  const ref = Array.from({ length: 1000 }, (_, i) => i / 1000),
    cur = new Array(100).fill(0.95);
  const want = 9 * (1e-4 - 0.1) * Math.log(1e-4 / 0.1) + 0.9 * Math.log(10);
  assert.ok(Math.abs(kn.data.psi(ref, cur) - want) < 1e-9);
  const r = rng(5);
  const gauss = (n: number, mu: number): number[] =>
    Array.from({ length: n }, () => mu + Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r()));
  const report = kn.data.driftReport(
    {
      stable: gauss(2000, 0),
      shifted: gauss(2000, 0),
      city: Array.from({ length: 2000 }, (_, i) => (i % 2 ? 'a' : 'b')),
    },
    {
      stable: gauss(1000, 0),
      shifted: gauss(1000, 0.5),
      city: Array.from({ length: 1000 }, (_, i) => (i % 5 ? 'a' : 'b')),
    },
  );
  assert.equal(report.drifted, ['shifted', 'city']);
  const st = report.features[0]!;
  assert.ok(st.psi < 0.05 && st.pValue! > 0.05, JSON.stringify(st));
  assert.ok(report.features[1]!.ksDrift && report.features[1]!.pValue! < 1e-6);
  assert.is(report.features[2]!.kind, 'categorical');
  throwsKiln(
    () => kn.data.driftReport({ a: [1, 2] }, { b: [1, 2] }),
    kn.ValidationError,
    /'a' is in the reference but not in the current/,
  );
});

test('drift: NaN is a missing value, never a hang', () => {
  // ksTest's merge waited forever on NaN in both samples (a pandas float column's missing values)
  throwsKiln(() => kn.data.ksTest([1, NaN], [1, NaN]), kn.ValidationError, /first sample has NaN at index 1/);
  throwsKiln(() => kn.data.psi([1, 2, 3], [2, NaN]), kn.ValidationError, /current sample has NaN at index 1/);
  // the serving monitor's merge on sorted samples: NaN sorts last and counts above every value
  const sorted = (a: number[]): Float64Array => Float64Array.from(a).sort();
  assert.is(ksSorted(sorted([1, NaN]), sorted([1, NaN])).statistic, 0);
  assert.is(ksSorted(sorted([1, 2, NaN, NaN]), sorted([1, 2, 3, 4])).statistic, 0.5);
  assert.is(ksSorted(sorted([NaN]), sorted([5])).statistic, 1);
  // driftReport counts NaN with null as missing and compares the observed values
  const report = kn.data.driftReport({ x: [1, 2, NaN, 3, 4, null, 5, 6] }, { x: [1, NaN, 2, 3, 4, 5, 6, NaN] });
  const f = report.features[0]!;
  assert.equal(f.missing, { reference: 0.25, current: 0.25 });
  assert.is(f.ks, 0);
  assert.is(f.pValue, 1);
  assert.equal(report.drifted, []);
});

test('Arrow: a sliced table reads the rows of its slice (apache-arrow slices values, keeps the bit offset)', () => {
  const n = 100;
  const table = A.tableFromArrays({
    f32: Float32Array.from({ length: n }, (_, i) => i + 0.5),
    f64: Float64Array.from({ length: n }, (_, i) => -i),
    i32: Int32Array.from({ length: n }, (_, i) => i * 3),
    i8: Int8Array.from({ length: n }, (_, i) => (i % 100) - 50),
    i64: BigInt64Array.from({ length: n }, (_, i) => BigInt(i) * 7n),
    word: Array.from({ length: n }, (_, i) => `w${i % 7}`),
  });
  // nulls, booleans and plain strings: the bits start at the slice's offset
  const withNulls = A.tableFromJSON(
    Array.from({ length: n }, (_, i) => ({
      x: i % 5 === 0 ? null : i,
      b: i % 3 === 0,
      s: i % 4 === 0 ? null : `s${i % 3}`,
    })),
  );
  const cases: [A.Table, number, number][] = [
    [table, 37, 91],
    [table, 1, 2],
    [withNulls, 13, 77],
    [withNulls, 8, 9],
  ];
  for (const [t, from, to] of cases) {
    const part = t.slice(from, to);
    const got = kn.data.fromArrowWithVocab(part);
    for (const f of part.schema.fields) {
      const col = part.getChild(f.name)!;
      // apache-arrow's own accessors are the reference: row r of the slice is row from + r of the table
      const want = Array.from({ length: to - from }, (_, r) => {
        const v = t.getChild(f.name)!.get(from + r);
        return v === null ? null : typeof v === 'bigint' ? Number(v) : v;
      });
      const tv = Array.from(got.tensors[f.name]!.toArray() as ArrayLike<number>);
      const words = got.vocab[f.name];
      const read = tv.map((v) => (words ? (v < 0 ? null : words[v]) : Number.isNaN(v) ? null : v));
      const expect = A.DataType.isBool(col.type) ? want.map((v) => (v ? 1 : 0)) : want;
      assert.equal(read, expect, `${f.name} rows ${from}..${to}`);
    }
    for (const x of Object.values(got.tensors)) x.dispose();
  }
});

test('Arrow: string offsets and dictionary indices must stay in range (files and tables refused clearly)', () => {
  const bytes = new TextEncoder().encode('abcd');
  const utf8 = (offsets: number[]): A.Table =>
    new A.Table({
      s: A.makeVector(
        A.makeData({ type: new A.Utf8(), length: 3, valueOffsets: Int32Array.from(offsets), data: bytes }),
      ),
    });
  const xy = A.vectorFromArray(['x', 'y'], new A.Dictionary(new A.Utf8(), new A.Int32())).data[0]!;
  const dict = (codes: number[], nulls?: Uint8Array): A.Table =>
    new A.Table({
      c: A.makeVector(
        A.makeData({
          type: xy.type,
          length: 3,
          data: Int32Array.from(codes),
          dictionary: xy.dictionary!,
          ...(nulls ? { nullBitmap: nulls, nullCount: 1 } : {}),
        }),
      ),
    });
  const bad: [string, A.Table, RegExp][] = [
    ['decreasing offsets', utf8([0, 2, 1, 4]), /column "s"'s offsets decrease at value 1 \(2 then 1\)/],
    // 4 bytes in memory, 8 in the file (its buffers are padded)
    ['offsets past the bytes', utf8([0, 2, 3, 20]), /column "s"'s offsets run from 0 to 20, outside its [48] bytes/],
    [
      'an index past the dictionary',
      dict([0, 5, 1]),
      /column "c" holds dictionary index 5 at value 1; its dictionary has 2 entries/,
    ],
    ['a negative index', dict([0, 1, -1]), /holds dictionary index -1 at value 2/],
  ];
  for (const [, t, re] of bad) {
    const path = join(dir, 'bad-offsets.arrow');
    writeFileSync(path, A.tableToIPC(t, 'file'));
    throwsKiln(() => kn.data.readArrow(path), kn.FormatError, re);
    throwsKiln(() => kn.data.fromArrowWithVocab(t), kn.ValidationError, re);
  }
  // a null's index slot may hold anything; good offsets read as written
  const ok = join(dir, 'ok-offsets.arrow');
  writeFileSync(ok, A.tableToIPC(dict([1, 99, 0], Uint8Array.of(0b101)), 'file'));
  assert.equal([...kn.data.readArrow(ok).getChild('c')!], ['y', null, 'x']);
  writeFileSync(ok, A.tableToIPC(utf8([0, 1, 1, 4]), 'file'));
  assert.equal([...kn.data.readArrow(ok).getChild('s')!], ['a', '', 'bcd']);

  // each case as a file, refused by readArrow (FormatError), and as a table, refused by writeArrow (ValidationError)
  const refusedAsFileAndTable = (cases: [string, A.Table, RegExp][]): void => {
    const path = join(dir, 'bad-buffers.arrow');
    for (const [what, t, re] of cases) {
      writeFileSync(path, A.tableToIPC(t, 'file'));
      try {
        throwsKiln(() => kn.data.readArrow(path), kn.FormatError, re);
        throwsKiln(() => kn.data.writeArrow(path, t), kn.ValidationError, re);
      } catch (e) {
        throw new Error(`${what}: ${(e as Error).message}`, { cause: e });
      }
    }
  };
  // string views: a value past 12 bytes names a data buffer and an offset, which must hold it
  const views = A.vectorFromArray(['a', 'a string longer than twelve', null, 'and another long one'], new A.Utf8View());
  kn.data.writeArrow(ok, new A.Table({ v: views }));
  assert.equal(
    [...kn.data.readArrow(ok).getChild('v')!],
    ['a', 'a string longer than twelve', null, 'and another long one'],
  );
  const vd = views.data[0]!;
  const damaged = (at: number, value: number): A.Table => {
    const copy = Uint8Array.from(vd.values as Uint8Array);
    new DataView(copy.buffer).setInt32(at, value, true);
    const data = A.makeData({ ...vd, type: vd.type, views: copy, variadicBuffers: vd.variadicBuffers } as never);
    return new A.Table({ v: A.makeVector(data) });
  };
  const badViews: [string, A.Table, RegExp][] = [
    ['a missing data buffer', damaged(16 + 8, 3), /column "v"'s value 1 is in data buffer 3; it has 1/],
    [
      'an offset past the buffer',
      damaged(16 + 12, 1000),
      /column "v"'s value 1 runs from byte 1000 to 1027 of data buffer 0/,
    ],
    [
      'a length past the buffer',
      damaged(3 * 16, 99999),
      /column "v"'s value 3 runs from byte \d+ to \d+ of data buffer 0/,
    ],
    ['a negative length', damaged(0, -5), /column "v"'s value 0 claims -5 bytes/],
  ];
  // a null's view may hold anything
  assert.equal([...kn.data.readArrow((kn.data.writeArrow(ok, damaged(2 * 16, 99999)), ok)).getChild('v')!][2], null);
  refusedAsFileAndTable(badViews);

  // unions: a dense union's offsets are one per value (not a running total) into the member its type id names; a
  // sparse union's members are as long as it. Good ones read and write as they are; bad ids and offsets are refused
  const ints = A.makeData({ type: new A.Int32(), length: 2, nullCount: 0, data: Int32Array.of(7, 8) });
  const strs = A.makeData({
    type: new A.Utf8(),
    length: 2,
    nullCount: 0,
    valueOffsets: Int32Array.of(0, 2, 3),
    data: new TextEncoder().encode('hiz'),
  });
  const members = [new A.Field('i', new A.Int32()), new A.Field('s', new A.Utf8())];
  const union = (mode: 'dense' | 'sparse', ids: number[], offsets?: number[]): A.Table =>
    new A.Table({
      u: A.makeVector(
        A.makeData({
          type: mode === 'dense' ? new A.DenseUnion([3, 5], members) : new A.SparseUnion([3, 5], members),
          length: ids.length,
          nullCount: 0,
          typeIds: Int8Array.from(ids),
          ...(offsets ? { valueOffsets: Int32Array.from(offsets) } : {}),
          children: [ints, strs],
        } as never),
      ),
    });
  const goodUnions: [A.Table, unknown[]][] = [
    [union('dense', [5, 3, 5, 3], [1, 0, 0, 1]), ['z', 7, 'hi', 8]],
    [union('sparse', [3, 5], undefined), [7, 'z']],
  ];
  for (const [t, want] of goodUnions) {
    assert.equal([...t.getChild('u')!], want);
    kn.data.writeArrow(ok, t);
    assert.equal([...kn.data.readArrow(ok).getChild('u')!], want);
    writeFileSync(ok, A.tableToIPC(t, 'stream'));
    assert.equal([...kn.data.readArrow(ok).getChild('u')!], want);
  }
  const badUnions: [string, A.Table, RegExp][] = [
    [
      'a type id no member has',
      union('dense', [5, 4], [0, 0]),
      /column "u" holds type id 4 at value 1; its members have ids 3, 5/,
    ],
    [
      'a dense offset past its member',
      union('dense', [3, 5, 3], [0, 1, 2]),
      /column "u"'s value 2 is value 2 of its member 0, which holds 2/,
    ],
    ['a negative dense offset', union('dense', [3], [-1]), /column "u"'s value 0 is value -1 of its member 0/],
    [
      'a sparse union longer than its members',
      union('sparse', [3, 5, 5], undefined),
      /column "u"'s value 2 is value 2 of its member 1, which holds 2/,
    ],
  ];
  refusedAsFileAndTable(badUnions);
});

test('Arrow: columns in and out (nulls, ints, bools, dictionaries), IPC files, matrices', () =>
  kn.tidy(() => {
    const t = A.tableFromArrays({
      f: new Float32Array([1.5, 2, 3]),
      i: new Int32Array([4, 5, 6]),
      d: ['x', 'y', 'x'],
      b8: new Uint8Array([1, 2, 3]),
    });
    const { tensors, vocab } = kn.data.fromArrowWithVocab(t);
    assert.equal(Object.fromEntries(Object.entries(tensors).map(([k, v]) => [k, [v.dtype, Array.from(v.toArray())]])), {
      f: ['float32', [1.5, 2, 3]],
      i: ['int32', [4, 5, 6]],
      d: ['int32', [0, 1, 0]],
      b8: ['uint8', [1, 2, 3]],
    });
    assert.equal({ ...vocab }, { d: ['x', 'y'] }); // a null-prototype record (column names)
    const withNulls = A.tableFromJSON([
      { x: 1.5, n: 1, s: 'a', ok: true },
      { x: null, n: null, s: null, ok: false },
    ]);
    const w = kn.data.fromArrowWithVocab(withNulls);
    close(w.tensors.x!.toArray(), [1.5, NaN]);
    close(w.tensors.n!.toArray(), [1, NaN]);
    assert.equal(Array.from(w.tensors.s!.toArray()), [0, -1]);
    assert.equal(Array.from(w.tensors.ok!.toArray()), [1, 0]);
    const back = kn.data.toArrow(
      {
        f: tensors.f!,
        d: tensors.d!,
        m: kn.tensor([
          [1, 2],
          [3, 4],
          [5, 6],
        ]),
      },
      { vocab: { d: vocab.d! } },
    );
    assert.equal(
      back.schema.fields.map((f) => f.name),
      ['f', 'd', 'm.0', 'm.1'],
    );
    assert.equal(back.getChild('d')!.toArray().map(String), ['x', 'y', 'x']);
    const path = join(dir, 't.arrow');
    kn.data.writeArrow(path, back);
    const read = kn.data.readArrow(path);
    assert.is(read.numRows, 3);
    assert.equal(Array.from(kn.data.fromArrow(read).f!.toArray()), [1.5, 2, 3]);
    assert.equal(kn.data.arrowToMatrix(read, { columns: ['m.0', 'm.1'] }).toList(), [
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
    throwsKiln(() => kn.data.fromArrow(t, { columns: ['zz'] }), kn.ValidationError, /no column 'zz'/);
    throwsKiln(
      () => kn.data.toArrow({ a: kn.ones([2]), b: kn.ones([3]) }),
      kn.ShapeError,
      /'b' has 3 rows, others have 2/,
    );
    throwsKiln(() => kn.data.fromArrow({} as A.Table), kn.ArgumentError, /apache-arrow Table/);
  }));

/** Three record batches of 4, 0 and 3 rows: floats with a null, strings with a null, a dictionary column. */
function threeBatches(): A.Table {
  const batch = (f: (number | null)[], s: (string | null)[], d: string[]): A.RecordBatch =>
    new A.Table({
      f: A.vectorFromArray(f, new A.Float64()),
      s: A.vectorFromArray(s, new A.Utf8()),
      d: dictOf(d, new A.Int32()),
    }).batches[0]!;
  const first = batch([1.5, null, 3, 4], ['a', 'bé', null, ''], ['x', 'y', 'x', 'x']);
  const parts = [first, first.slice(0, 0), batch([7, 8, 9], ['g', 'h', 'i'], ['y', 'y', 'x'])];
  return joinBatches(parts);
}

/** Record batches made apart as one table: one schema (every column nullable) over their data. */
function joinBatches(parts: A.RecordBatch[]): A.Table {
  const schema = new A.Schema(parts[0]!.schema.fields.map((f) => f.clone({ nullable: true })));
  return new A.Table(
    schema,
    parts.map((b) => new A.RecordBatch(schema, b.data)),
  );
}

test('ArrowSource: record batches read one at a time, the values readArrow reads; bad requests refused', async () => {
  const path = join(dir, 'batches.arrow');
  kn.data.writeArrow(path, threeBatches());
  const whole = kn.data.readArrow(path);
  const src = await kn.data.ArrowSource.open(path);
  assert.equal(src.info, {
    rows: 7,
    batches: [4, 0, 3],
    format: 'file',
    columns: [
      { name: 'f', type: 'Float64', nullable: true },
      { name: 's', type: 'Utf8', nullable: true },
      { name: 'd', type: 'Dictionary<Int32, Utf8>', nullable: true },
    ],
  });
  assert.equal(
    src.schema.fields.map((f) => f.name),
    ['f', 's', 'd'],
  );
  assert.equal(await kn.data.arrowFileInfo(path), src.info);
  const last = await src.read(2, { columns: ['d', 'f'] });
  assert.equal(
    last.schema.fields.map((f) => f.name),
    ['d', 'f'],
  );
  assert.equal([...last.getChild('d')!], ['y', 'y', 'x']);
  assert.equal([...last.getChild('f')!], [7, 8, 9]);
  const sizes: number[] = [];
  const got: Record<string, unknown[]> = { f: [], s: [], d: [] };
  for await (const t of src.chunks()) {
    sizes.push(t.numRows);
    for (const c of ['f', 's', 'd']) got[c]!.push(...t.getChild(c)!);
  }
  assert.equal(sizes, [4, 0, 3]);
  for (const c of ['f', 's', 'd']) assert.equal(got[c], [...whole.getChild(c)!], `column ${c}`);
  await rejectsKiln(src.read(3), kn.ValidationError, /has 3 record batches; record batch 3 does not exist/);
  await rejectsKiln(src.read(-1), kn.ArgumentError, /batch must be a record batch index, got -1/);
  await rejectsKiln(src.read(0, { columns: ['f', 'zz'] }), kn.ValidationError, /has no column 'zz'; it has f, s, d/);
  await rejectsKiln(src.read(0, { columns: ['f', 'f'] }), kn.ArgumentError, /column 'f' is asked for twice/);
  await rejectsKiln(src.read(0, { columns: 'f' as never }), kn.ArgumentError, /columns must be an array/);
  await rejectsKiln(src.read(0, { colums: ['f'] } as never), kn.ArgumentError, /colums/);
  // a batch the caller stops early on leaves no read ahead behind that fails later
  for await (const t of src.chunks({ columns: ['s'] })) {
    assert.equal([...t.getChild('s')!], ['a', 'bé', null, '']);
    break;
  }
  src.close();
  await rejectsKiln(src.read(0), kn.ArgumentError, /batches\.arrow was closed/);
  {
    // closed while chunks runs: the batch already read ahead comes (its file not closed under the read), the next
    // read is refused
    const again = await kn.data.ArrowSource.open(src.path);
    const it = again.chunks();
    assert.equal((await it.next()).value?.numRows, 4);
    again.close();
    await rejectsKiln(
      (async () => {
        while (!(await it.next()).done);
      })(),
      kn.ArgumentError,
      /ArrowSource\.chunks: .*batches\.arrow was closed/,
    );
  }

  // a source keeps reading the file it opened: a new file renamed over the path is not seen; one changed in place
  // is a ValidationError
  const moving = join(dir, 'moving.arrow');
  kn.data.writeArrow(moving, threeBatches());
  const open = await kn.data.ArrowSource.open(moving);
  kn.data.writeArrow(join(dir, 'other.arrow'), { f: kn.zeros([2]) });
  renameSync(join(dir, 'other.arrow'), moving);
  assert.equal([...(await open.read(0, { columns: ['f'] })).getChild('f')!], [1.5, null, 3, 4]);
  open.close();
  const again = await kn.data.ArrowSource.open(moving);
  writeFileSync(moving, Buffer.concat([readFileSync(moving), Buffer.alloc(8)]));
  await rejectsKiln(
    again.read(0),
    kn.ValidationError,
    /moving\.arrow: it changed after it was opened \(\d+ bytes then, \d+ now\): open it again/,
  );
  again.close();
});

/** The messages of an Arrow IPC stream (each with its prefix and body), without its end marker. */
function ipcMessages(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let pos = 0; pos + 8 <= bytes.byteLength;) {
    const len = view.getInt32(pos + 4, true);
    if (len === 0) break;
    const m = A.Message.decode(bytes.subarray(pos + 8, pos + 8 + len));
    const end = pos + 8 + len + Number(m.bodyLength);
    out.push(bytes.subarray(pos, end));
    pos = end;
  }
  return out;
}

test('ArrowSource reads an IPC stream a batch at a time: dictionary replacements and deltas, any order', async () => {
  // schema, dictionary, batch, a replacement dictionary, batch, an empty batch (one dictionary type: one id)
  const type = new A.Dictionary(new A.Utf8(), new A.Int32());
  const part = (d: (string | null)[], x: number[]): Uint8Array[] =>
    ipcMessages(
      A.tableToIPC(new A.Table({ d: A.vectorFromArray(d, type), x: A.vectorFromArray(x, new A.Int32()) }), 'stream'),
    );
  const one = part(['a', 'b', 'a'], [1, 2, 3]);
  const two = part(['c', null], [4, 5]);
  const path = join(dir, 'replaced.arrow');
  const end = Buffer.from([255, 255, 255, 255, 0, 0, 0, 0]);
  const batchesOf = (src: kn.data.ArrowSource) => src.info.batches;
  // with and without the end-of-stream marker
  for (const tail of [[end], []]) {
    writeFileSync(path, Buffer.concat([...one, ...two.slice(1), ...tail]));
    const src = await kn.data.ArrowSource.open(path);
    assert.equal(src.info, {
      rows: 5,
      batches: [3, 2],
      format: 'stream',
      columns: [
        { name: 'd', type: 'Dictionary<Int32, Utf8>', nullable: true },
        { name: 'x', type: 'Int32', nullable: true },
      ],
    });
    // out of order, then in order: each batch with the dictionary it was written with
    assert.equal([...(await src.read(1)).getChild('d')!], ['c', null]);
    assert.equal([...(await src.read(0, { columns: ['d'] })).getChild('d')!], ['a', 'b', 'a']);
    const got: unknown[] = [];
    for await (const t of src.chunks({ columns: ['x', 'd'] })) got.push(...[...t].map((r) => [r.x, r.d]));
    assert.equal(got, [
      [1, 'a'],
      [2, 'b'],
      [3, 'a'],
      [4, 'c'],
      [5, null],
    ]);
    assert.equal([...kn.data.readArrow(path).getChild('d')!], ['a', 'b', 'a', 'c', null]);
    assert.equal(batchesOf(src), (await kn.data.arrowFileInfo(path)).batches);
    src.close();
  }

  // delta dictionaries: the messages of a file writeArrowStream wrote (between its magic and its footer; an
  // empty chunk has no dictionary), after its schema's message
  const deltas = join(dir, 'deltas.arrow');
  const chunk = (d: string[]): A.Table => new A.Table({ d: dictOf(d, new A.Int32()) });
  await kn.data.writeArrowStream(deltas, [chunk(['p', 'q']), chunk(['r', 'p']), chunk([]), chunk(['s', 'q', 'r'])]);
  const inner = ipcMessages(readFileSync(deltas).subarray(8));
  const header = ipcMessages(A.tableToIPC(new A.Table(kn.data.readArrow(deltas).schema), 'stream'));
  assert.equal(
    inner.map((m) => A.MessageHeader[A.Message.decode(m.subarray(8)).headerType]),
    [
      'DictionaryBatch',
      'RecordBatch',
      'DictionaryBatch',
      'RecordBatch',
      'RecordBatch',
      'DictionaryBatch',
      'RecordBatch',
    ],
  );
  assert.ok(
    inner.slice(2).some((m) => {
      const h = A.Message.decode(m.subarray(8));
      return h.isDictionaryBatch() && h.header().isDelta;
    }),
    'the later dictionaries are deltas',
  );
  writeFileSync(path, Buffer.concat([header[0]!, ...inner, end]));
  const src = await kn.data.ArrowSource.open(path);
  assert.equal([src.info.format, src.info.batches], ['stream', [2, 2, 0, 3]]);
  assert.equal([...(await src.read(3)).getChild('d')!], ['s', 'q', 'r']);
  assert.equal([...(await src.read(1)).getChild('d')!], ['r', 'p']);
  const all: unknown[] = [];
  for await (const t of src.chunks()) all.push(...t.getChild('d')!);
  assert.equal(all, ['p', 'q', 'r', 'p', 's', 'q', 'r']);
  // out of order after in order, and the same batch twice: each read starts where it must
  assert.equal([...(await src.read(0)).getChild('d')!], ['p', 'q']);
  assert.equal([...(await src.read(0)).getChild('d')!], ['p', 'q']);
  assert.equal([...(await src.read(3)).getChild('d')!], ['s', 'q', 'r']);
  src.close();
  // a batch carries only the dictionary entries it uses, one chunk, in the file's dictionary order: in either
  // format (the file's dictionary is p q r s, grown by deltas)
  for (const f of [deltas, path]) {
    const s2 = await kn.data.ArrowSource.open(f);
    const dicts: unknown[][] = [];
    for await (const t of s2.chunks()) {
      const d = t.getChild('d')!.data[0]!.dictionary!;
      assert.is(d.data.length, 1, 'one dictionary chunk');
      dicts.push([...d]);
    }
    assert.equal(dicts, [['p', 'q'], ['p', 'r'], [], ['q', 'r', 's']], f);
    s2.close();
  }

  // damaged streams are refused at open with where they went wrong
  const good = Buffer.concat([...one, end]);
  const cases: [Uint8Array, RegExp][] = [
    // cut inside the record batch's body
    [
      good.subarray(0, good.byteLength - 20),
      /the message at byte \d+ claims a body of \d+ bytes \(the file has \d+ left\)/,
    ],
    // a metadata length past the end of the file
    [
      Buffer.concat([good.subarray(0, 4), Buffer.from([0, 0, 0, 1]), good.subarray(8)]),
      /the message at byte 0 claims 16777216 bytes of metadata/,
    ],
    // a record batch before any schema
    [Buffer.concat([one[2]!, end]), /it does not start with a schema/],
    // two schemas
    [Buffer.concat([one[0]!, one[0]!, end]), /it has a second schema at byte \d+/],
    // nothing but the end marker
    [end, /it holds no schema/],
  ];
  for (const [bytes, re] of cases) {
    writeFileSync(path, bytes);
    await rejectsKiln(
      kn.data.ArrowSource.open(path),
      kn.FormatError,
      new RegExp(`replaced\\.arrow is not a readable Arrow IPC file: ${re.source}`),
    );
  }
  // a dictionary batch for an id the schema does not have: that batch fails when read, the stream still opens
  const stranger = new A.Table({
    d: dictOf(['z'], new A.Int32()),
    x: A.vectorFromArray([9], new A.Int32()),
  });
  writeFileSync(path, Buffer.concat([one[0]!, ...ipcMessages(A.tableToIPC(stranger, 'stream')).slice(1), end]));
  const odd = await kn.data.ArrowSource.open(path);
  assert.equal(odd.info.batches, [1]);
  await rejectsKiln(
    odd.read(0),
    kn.FormatError,
    /replaced\.arrow is not a readable Arrow IPC file: cannot read record batch 0/,
  );
  odd.close();
});

test('ArrowSource: damaged files, streams and deadlines are FormatErrors; paths are checked', async () => {
  // a batch whose string offsets run past its bytes: refused when that batch is read, the others still read
  const bytes = new TextEncoder().encode('abcd');
  const bad = new A.Table({
    s: A.makeVector(
      A.makeData({ type: new A.Utf8(), length: 3, valueOffsets: Int32Array.from([0, 2, 3, 20]), data: bytes }),
    ),
  });
  const good = new A.Table({ s: A.vectorFromArray(['p', 'q'], new A.Utf8()) });
  const path = join(dir, 'bad-batch.arrow');
  writeFileSync(path, A.tableToIPC(joinBatches([...good.batches, ...bad.batches]), 'file'));
  const src = await kn.data.ArrowSource.open(path);
  assert.equal(src.info.batches, [2, 3]);
  assert.equal([...(await src.read(0)).getChild('s')!], ['p', 'q']);
  await rejectsKiln(
    src.read(1),
    kn.FormatError,
    /bad-batch\.arrow is not a readable Arrow IPC file: cannot read record batch 1: column "s"'s offsets run from 0 to 20/,
  );
  src.close();
  // a file that is not Arrow at all, or cut short, is refused at open
  const junk = join(dir, 'junk.arrow');
  writeFileSync(junk, 'not an arrow file at all');
  await rejectsKiln(
    kn.data.ArrowSource.open(junk),
    kn.FormatError,
    /junk\.arrow is not a readable Arrow IPC file: it is neither an Arrow IPC file \(it does not start with ARROW1\) nor an IPC stream/,
  );
  const file = A.tableToIPC(good, 'file');
  writeFileSync(junk, file.subarray(0, file.byteLength - 20));
  await rejectsKiln(kn.data.ArrowSource.open(junk), kn.FormatError, /junk\.arrow is not a readable Arrow IPC file/);
  await rejectsKiln(kn.data.ArrowSource.open(dir), kn.ArgumentError, /it is not a file/);
  await rejectsKiln(kn.data.arrowFileInfo(join(dir, 'nope.arrow')), kn.ArgumentError, /nope\.arrow/);
  // a read past its deadline ends the thread; the next read starts a fresh one that opens the file again
  const big = join(dir, 'deadline.arrow');
  kn.seed(3);
  kn.data.writeArrow(big, { a: kn.randn([400_000]), b: kn.randn([400_000]) });
  const slow = await kn.data.ArrowSource.open(big);
  process.env.KILN_DATA_READ_TIMEOUT_MS = '1';
  try {
    await rejectsKiln(
      slow.read(0),
      kn.FormatError,
      /deadline\.arrow: cannot read record batch 0: the Arrow reader did not finish within 0\.0 s \(a malformed file; KILN_DATA_READ_TIMEOUT_MS sets the limit\)/,
    );
  } finally {
    delete process.env.KILN_DATA_READ_TIMEOUT_MS;
  }
  assert.is((await slow.read(0)).numRows, 400_000);
  slow.close();
});

/** A dictionary-encoded string vector of `vals` with indices of `indexType`. */
const dictOf = (vals: (string | null)[], indexType: A.Int8 | A.Int32): A.Vector =>
  A.vectorFromArray(vals, new A.Dictionary(new A.Utf8(), indexType));

/**
 * Three chunks whose dictionary column `d` (indices of `indexType`) brings a dictionary of its own in each (as row
 * groups read one by one do), one chunk without nulls: d = b a b | c null | a d c, x = 1 2 3 | 4 null | 6 7 8.
 */
function dictChunks(indexType: A.Int8 | A.Int32): A.Table[] {
  const dict = (vals: (string | null)[]): A.Vector => dictOf(vals, indexType);
  return [
    new A.Table({ d: dict(['b', 'a', 'b']), x: A.vectorFromArray([1, 2, 3], new A.Int32()) }),
    new A.Table({ d: dict(['c', null]), x: A.vectorFromArray([4, null], new A.Int32()) }),
    new A.Table({ d: dict(['a', 'd', 'c']), x: A.vectorFromArray([6, 7, 8], new A.Int32()) }),
  ];
}

test('maxBatchRows: longer record batches are split, values (nulls, strings, dictionaries) unchanged', async () => {
  // chunks of 3, 2 and 3 rows with dictionaries of their own, each repeated to 9, 6 and 9 rows (three batches each)
  const chunks = dictChunks(new A.Int32()).map((t) => new A.Table([...t.batches, ...t.batches, ...t.batches]));
  const words = chunks.flatMap((t) => [...t.getChild('d')!]);
  const xs = chunks.flatMap((t) => [...t.getChild('x')!]);
  // the same rows as one table of 9 batches (of 3, 2 and 3 rows), one dictionary
  const plain = join(dir, 'split-plain.arrow');
  await kn.data.writeArrowStream(plain, chunks);
  const joined = kn.data.readArrow(plain);
  assert.equal(
    joined.batches.map((b) => b.numRows),
    [3, 3, 3, 2, 2, 2, 3, 3, 3],
  );
  for (const format of ['file', 'stream'] as const) {
    const path = join(dir, `split-${format}.arrow`);
    // each 3-row batch as 2 + 1, each 2-row batch as it is
    const r = await kn.data.writeArrowStream(path, chunks, { format, maxBatchRows: 2 });
    assert.is(r.rows, 24);
    const info = await kn.data.arrowFileInfo(path);
    assert.equal([info.format, info.batches], [format, [2, 1, 2, 1, 2, 1, 2, 2, 2, 2, 1, 2, 1, 2, 1]]);
    assert.is(r.batches, 15);
    const back = kn.data.readArrow(path);
    assert.equal([[...back.getChild('d')!], [...back.getChild('x')!]], [words, xs], format);
    // and through ArrowSource, batch by batch
    const src = await kn.data.ArrowSource.open(path);
    assert.equal([...(await src.read(7)).getChild('d')!], ['c', null]);
    assert.equal([...(await src.read(14)).getChild('x')!], [8]);
    src.close();
    // writeArrow of the whole table: its 9 batches each split into at most 2
    const whole = join(dir, `split-whole-${format}.arrow`);
    kn.data.writeArrow(whole, joined, { format, maxBatchRows: 2 });
    assert.equal((await kn.data.arrowFileInfo(whole)).batches, [2, 1, 2, 1, 2, 1, 2, 2, 2, 2, 1, 2, 1, 2, 1]);
    const wb = kn.data.readArrow(whole);
    assert.equal([[...wb.getChild('d')!], [...wb.getChild('x')!]], [words, xs], `${format}, writeArrow`);
  }
  // named tensors: one batch of 10 split into 4, 4, 2; a bound at or over the length leaves it whole
  const tpath = join(dir, 'split-tensors.arrow');
  kn.data.writeArrow(tpath, { v: kn.arange(0, 10) }, { maxBatchRows: 4 });
  assert.equal((await kn.data.arrowFileInfo(tpath)).batches, [4, 4, 2]);
  assert.equal(
    [...kn.data.readArrow(tpath).getChild('v')!],
    Array.from({ length: 10 }, (_, i) => i),
  );
  kn.data.writeArrow(tpath, { v: kn.arange(0, 10) }, { maxBatchRows: 10 });
  assert.equal((await kn.data.arrowFileInfo(tpath)).batches, [10]);
  for (const bad of [0, -1, 2.5, Infinity, '3', null])
    throwsKiln(
      () => kn.data.writeArrow(tpath, { v: kn.arange(0, 3) }, { maxBatchRows: bad as number }),
      kn.ArgumentError,
      /writeArrow: maxBatchRows must be a positive integer, got/,
    );
  await rejectsKiln(
    kn.data.writeArrowStream(tpath, chunks, { maxBatchRows: 0 }),
    kn.ArgumentError,
    /writeArrowStream: maxBatchRows must be a positive integer, got 0/,
  );
  // refusals wrote nothing: the file is still the 10-row one
  assert.equal((await kn.data.arrowFileInfo(tpath)).batches, [10]);
});

test('compactDictionary: the entries a chunk uses, in dictionary order, however large the dictionary', () => {
  const words = Array.from({ length: 100 }, (_, i) => `w${i}`);
  const dictionary = A.vectorFromArray(words, new A.Utf8());
  const chunk = (indices: number[], type: A.Int = new A.Int32(), dict: A.Vector = dictionary): A.Data<A.Dictionary> => {
    const valid = Uint8Array.from({ length: (indices.length + 7) >> 3 }, () => 0);
    indices.forEach((v, i) => v >= 0 && (valid[i >> 3]! |= 1 << (i & 7)));
    const data =
      type instanceof A.Int64
        ? BigInt64Array.from(indices, (v) => BigInt(Math.max(v, 0)))
        : Int32Array.from(indices, (v) => Math.max(v, 0));
    return A.makeData({
      type: new A.Dictionary(dict.type, type as never),
      length: indices.length,
      nullCount: indices.filter((v) => v < 0).length,
      nullBitmap: valid,
      data,
      dictionary: dict,
    } as never) as unknown as A.Data<A.Dictionary>;
  };
  // 6 rows over 100 entries (the sparse path: sorted indices); -1 is a null
  // (64-bit indices come back as Int32: apache-arrow cannot look values up through them)
  for (const type of [new A.Int32(), new A.Int64()]) {
    const c = compactDictionary(chunk([50, 3, -1, 50, 99, 3], type));
    assert.equal([...c.dictionary!], ['w3', 'w50', 'w99'], String(type));
    assert.equal([...A.makeVector(c)], ['w50', 'w3', null, 'w50', 'w99', 'w3'], String(type));
    assert.is(c.type.indices.bitWidth, 32);
  }
  // a slice (offset 40) of a longer chunk: the same as compacting its rows alone
  const long = chunk(Array.from({ length: 60 }, (_, i) => (i % 7 === 0 ? -1 : (i * 37) % 100)));
  const sliced = compactDictionary(long.slice(40, 10));
  const alone = compactDictionary(
    chunk(Array.from({ length: 10 }, (_, i) => ((40 + i) % 7 === 0 ? -1 : ((40 + i) * 37) % 100))),
  );
  assert.equal([...sliced.dictionary!], [...alone.dictionary!]);
  assert.equal([...A.makeVector(sliced)], [...A.makeVector(alone)]);
  // the dense path (a chunk as long as a quarter of its dictionary or more) gives what the sparse one gives
  const rows = Array.from({ length: 40 }, (_, i) => (i % 5 === 0 ? -1 : (i * 13) % 100));
  const dense = compactDictionary(chunk(rows));
  const expect = [...new Set(rows.filter((v) => v >= 0))].sort((a, b) => a - b).map((v) => words[v]);
  assert.equal([...dense.dictionary!], expect);
  assert.equal(
    [...A.makeVector(dense)],
    rows.map((v) => (v < 0 ? null : words[v])),
  );
  const sparse = compactDictionary(chunk(rows.slice(0, 20)));
  assert.equal([...A.makeVector(sparse)], [...A.makeVector(dense)].slice(0, 20));
  // dictionaries of other kinds, both paths: in three chunks (grown by deltas) of multi-byte strings, of bytes,
  // with a null entry, of numbers; what comes back is what the rows named
  const texts = Array.from({ length: 30 }, (_, i) => (i % 4 === 0 ? `é${i}€` : i % 4 === 1 ? '' : `t${i}`));
  const kinds: [string, A.Vector, (j: number) => unknown][] = [
    [
      'chunked utf8',
      A.vectorFromArray(texts.slice(0, 7), new A.Utf8())
        .concat(A.vectorFromArray(texts.slice(7, 8), new A.Utf8()))
        .concat(A.vectorFromArray(texts.slice(8), new A.Utf8())),
      (j) => texts[j],
    ],
    [
      'binary',
      A.vectorFromArray(
        texts.map((t) => new TextEncoder().encode(t)),
        new A.Binary(),
      ),
      (j) => [...new TextEncoder().encode(texts[j]!)],
    ],
    [
      'utf8 with a null entry',
      A.vectorFromArray(
        texts.map((t, i) => (i === 9 ? null : t)),
        new A.Utf8(),
      ),
      (j) => (j === 9 ? null : texts[j]),
    ],
    [
      'float64',
      A.vectorFromArray(
        Array.from({ length: 30 }, (_, i) => i / 4),
        new A.Float64(),
      ),
      (j) => j / 4,
    ],
  ];
  for (const [kind, dict, value] of kinds)
    for (const idx of [[29, 9, -1, 0, 7, 9], Array.from({ length: 12 }, (_, i) => (i * 7) % 30)]) {
      const c = compactDictionary(chunk(idx, new A.Int32(), dict));
      assert.is(c.dictionary!.data.length, 1, kind);
      const got = [...A.makeVector(c)].map((v) => (v instanceof Uint8Array ? [...v] : v));
      assert.equal(
        got,
        idx.map((j) => (j < 0 ? null : value(j))),
        `${kind}: ${idx.join(' ')}`,
      );
    }
});

test('a dictionary column with 64-bit indices reads as Int32 indices, its values intact, in both formats', async () => {
  const dictionary = A.vectorFromArray(['a', 'b', 'c'], new A.Utf8());
  const type = new A.Dictionary(new A.Utf8(), new A.Int64() as never);
  const int64 = (idx: bigint[], nulls = 0): A.Data =>
    A.makeData({
      type,
      length: idx.length,
      nullCount: nulls,
      ...(nulls ? { nullBitmap: Uint8Array.from([0b1011]) } : {}),
      data: BigInt64Array.from(idx),
      dictionary,
    } as never) as unknown as A.Data;
  const batch = (d: A.Data, x: number[]): A.RecordBatch =>
    new A.RecordBatch({ d: A.makeVector(d as never).data[0]!, x: A.makeVector(Float32Array.from(x)).data[0]! });
  // before: iterating such a column threw "Cannot mix BigInt and other types" from apache-arrow
  const t = new A.Table([
    batch(int64([2n, 0n, 1n, 2n]), [1, 2, 3, 4]),
    batch(int64([1n, 0n, 7n, 0n], 1), [5, 6, 7, 8]),
  ]);
  for (const format of ['file', 'stream'] as const) {
    const f = join(dir, `int64-indices-${format}.arrow`);
    writeFileSync(f, A.tableToIPC(t, format));
    const whole = kn.data.readArrow(f);
    assert.equal([...whole.getChild('d')!], ['c', 'a', 'b', 'c', 'b', 'a', null, 'a'], format);
    assert.is(String(whole.schema.fields[0]!.type), 'Dictionary<Int32, Utf8>');
    const src = await kn.data.ArrowSource.open(f);
    assert.is(String(src.schema.fields[0]!.type), 'Dictionary<Int32, Utf8>');
    assert.equal([...(await src.read(1)).getChild('d')!], ['b', 'a', null, 'a'], format);
    assert.equal([...(await src.read(0)).getChild('d')!], ['c', 'a', 'b', 'c'], format);
    assert.equal((await kn.data.arrowFileInfo(f)).columns[0]!.type, 'Dictionary<Int32, Utf8>');
    src.close();
  }
  // dictionaries of numbers and of booleans (the check that decodes them used to go through the 64-bit indices,
  // which apache-arrow cannot do for booleans: a FormatError for a sound file)
  const kinds: [A.DataType, unknown[], unknown[]][] = [
    [new A.Float64(), [0.5, 1.5, -2], [-2, 0.5, 1.5, -2]],
    [new A.Bool(), [true, false, true], [true, true, false, true]],
  ];
  for (const [valueType, values, expect] of kinds) {
    const d = A.makeData({
      type: new A.Dictionary(valueType, new A.Int64() as never),
      length: 4,
      nullCount: 0,
      data: BigInt64Array.from([2n, 0n, 1n, 2n]),
      dictionary: A.vectorFromArray(values as never, valueType as never),
    } as never) as unknown as A.Data;
    const one = new A.Table([new A.RecordBatch({ d: A.makeVector(d as never).data[0]! })]);
    for (const format of ['file', 'stream'] as const) {
      const f = join(dir, `int64-indices-${String(valueType)}-${format}.arrow`);
      writeFileSync(f, A.tableToIPC(one, format));
      assert.equal([...kn.data.readArrow(f).getChild('d')!], expect, `${String(valueType)} ${format}`);
      const src = await kn.data.ArrowSource.open(f);
      assert.equal([...(await src.read(0)).getChild('d')!], expect, `${String(valueType)} ${format}`);
      src.close();
    }
  }
  // every nested type narrows, and a type without 64-bit indices is itself
  const wide = new A.Dictionary(new A.Utf8(), new A.Int64() as never);
  const entries = new A.Struct([new A.Field('key', new A.Utf8(), false), new A.Field('value', wide, true)]);
  for (const [type, narrowed] of [
    [new A.Map_(new A.Field('entries', entries)), 'Map<{key:Utf8, value:Dictionary<Int32, Utf8>}>'],
    [new A.FixedSizeList(2, new A.Field('item', wide)), 'FixedSizeList[2]<Dictionary<Int32, Utf8>>'],
    [new A.LargeList(new A.Field('item', wide)), 'LargeList<Dictionary<Int32, Utf8>>'],
    [
      new A.Union(A.UnionMode.Dense, [0, 1], [new A.Field('a', new A.Int32()), new A.Field('b', wide)]),
      'Union<Int32 | Dictionary<Int32, Utf8>>',
    ],
    [
      new A.Dictionary(new A.Struct([new A.Field('x', wide)]), new A.Int16()),
      'Dictionary<Int16, Struct<{x:Dictionary<Int32, Utf8>}>>',
    ],
  ] as const)
    assert.is(String(narrowType(type)), narrowed);
  const plain = new A.Struct([new A.Field('x', new A.Dictionary(new A.Utf8(), new A.Int32()))]);
  assert.is(narrowType(plain), plain);
  // inside a struct and a list (iterating them threw the same TypeError): narrowed at any depth
  const utf8: [A.DataType, unknown[], unknown[]] = [new A.Utf8(), ['a', 'b', 'c'], ['c', 'a', 'b', 'c']];
  for (const [valueType, values, expect] of [utf8, ...kinds]) {
    const inner = new A.Dictionary(valueType, new A.Int64() as never);
    const d = A.makeData({
      type: inner,
      length: 4,
      nullCount: 0,
      data: BigInt64Array.from([2n, 0n, 1n, 2n]),
      dictionary: A.vectorFromArray(values as never, valueType as never),
    } as never) as unknown as A.Data;
    const s = A.makeData({
      type: new A.Struct([new A.Field('k', inner, true)]),
      length: 4,
      nullCount: 0,
      children: [d],
    });
    const l = A.makeData({
      type: new A.List(new A.Field('item', inner, true)),
      length: 4,
      nullCount: 0,
      valueOffsets: Int32Array.from([0, 1, 1, 3, 4]),
      child: d,
    } as never) as unknown as A.Data;
    const nested = new A.Table([
      new A.RecordBatch({ s: A.makeVector(s).data[0]!, l: A.makeVector(l as never).data[0]! }),
    ]);
    const lists = [[expect[0]], [], [expect[1], expect[2]], [expect[3]]];
    for (const format of ['file', 'stream'] as const) {
      const f = join(dir, `int64-nested-${String(valueType)}-${format}.arrow`);
      writeFileSync(f, A.tableToIPC(nested, format));
      const what = `nested ${String(valueType)} ${format}`;
      const src = await kn.data.ArrowSource.open(f);
      for (const t of [kn.data.readArrow(f), await src.read(0)]) {
        assert.equal(
          [...t.getChild('s')!].map((r) => r!.k),
          expect,
          what,
        );
        assert.equal(
          [...t.getChild('l')!].map((v) => [...v!]),
          lists,
          what,
        );
        assert.is(String(t.schema.fields[0]!.type), `Struct<{k:Dictionary<Int32, ${String(valueType)}>}>`, what);
        assert.is(String(t.schema.fields[1]!.type), `List<Dictionary<Int32, ${String(valueType)}>>`, what);
      }
      src.close();
    }
  }
});

test('bufferProblem: a dictionary chunk found sound before is not checked again; a new one is', () => {
  // a dictionary whose offsets decrease, as a damaged file's could
  const bad = A.makeData({
    type: new A.Utf8(),
    length: 2,
    valueOffsets: Int32Array.from([0, 3, 1]),
    data: new TextEncoder().encode('abc'),
  });
  const d = A.makeData({
    type: new A.Dictionary(new A.Utf8(), new A.Int32()),
    length: 1,
    nullCount: 0,
    data: Int32Array.from([0]),
    dictionary: A.makeVector(bad),
  });
  const checked = new WeakSet<A.Data>();
  assert.match(bufferProblem(d, 'column "d"', 0, checked)!, /column "d"'s dictionary's offsets decrease at value 1/);
  // a sound one is remembered; one in the set is skipped (what the set is for: data never changes in place)
  const good = A.makeData({
    type: new A.Dictionary(new A.Utf8(), new A.Int32()),
    length: 1,
    nullCount: 0,
    data: Int32Array.from([0]),
    dictionary: A.vectorFromArray(['x'], new A.Utf8()),
  });
  assert.is(bufferProblem(good, 'g', 0, checked), null);
  assert.ok(checked.has(good.dictionary!.data[0]!));
  checked.add(bad);
  assert.is(bufferProblem(d, 'column "d"', 0, checked), null);
  assert.match(bufferProblem(d, 'column "d"')!, /offsets decrease/);
});

test('writeArrowStream: chunks as they come, dictionaries joined by deltas; refusals write nothing', async () => {
  // each chunk with a dictionary of its own (as row groups read one by one have), one chunk without nulls
  const chunks = dictChunks(new A.Int32());
  const path = join(dir, 'streamed.arrow');
  async function* slowly(): AsyncGenerator<A.Table> {
    for (const c of chunks) {
      await new Promise((r) => setTimeout(r, 1));
      yield c;
    }
  }
  const r = await kn.data.writeArrowStream(path, slowly());
  assert.equal(r, { bytes: statSync(path).size, rows: 8, batches: 3 });
  const t = kn.data.readArrow(path);
  assert.equal([...t.getChild('d')!], ['b', 'a', 'b', 'c', null, 'a', 'd', 'c']);
  assert.equal([...t.getChild('x')!], [1, 2, 3, 4, null, 6, 7, 8]);
  assert.equal(
    t.schema.fields.map((f) => [String(f.type), f.nullable]),
    [
      ['Dictionary<Int32, Utf8>', true],
      ['Int32', true],
    ],
  );
  // one dictionary, the union in order of first appearance
  assert.equal([...t.getChild('d')!.data[0]!.dictionary!], ['b', 'a', 'c', 'd']);
  // the batches as written, read back one at a time
  const src = await kn.data.ArrowSource.open(path);
  assert.equal(src.info.batches, [3, 2, 3]);
  assert.equal([...(await src.read(2)).getChild('d')!], ['a', 'd', 'c']);
  src.close();
  // the same values as writeArrow of the joined table; tensors too
  const joined = join(dir, 'joined.arrow');
  kn.data.writeArrow(joined, chunks[0]!.concat(...chunks.slice(1)));
  assert.equal([...kn.data.readArrow(joined).getChild('d')!], [...t.getChild('d')!]);
  await kn.data.writeArrowStream(path, [
    kn.data.toArrow({ v: kn.arange(0, 3) }),
    kn.data.toArrow({ v: kn.arange(3, 5) }),
  ]);
  assert.equal([...kn.data.readArrow(path).getChild('v')!], [0, 1, 2, 3, 4]);
  // chunks whose dictionary indices differ only in width (Int8, then Uint16) are one Int32 column
  const narrow = (vals: string[], idx: A.Dictionary['indices']): A.Table =>
    new A.Table({ d: A.vectorFromArray(vals, new A.Dictionary(new A.Utf8(), idx)) });
  await kn.data.writeArrowStream(path, [narrow(['p', 'q'], new A.Int8()), narrow(['q', 'r', 'p'], new A.Uint16())]);
  const widths = kn.data.readArrow(path);
  assert.equal([...widths.getChild('d')!], ['p', 'q', 'q', 'r', 'p']);
  assert.is(String(widths.schema.fields[0]!.type), 'Dictionary<Int32, Utf8>');

  // chunks of no rows: a file of no batches that keeps the columns; so does writeArrow of an empty table (an empty
  // string column read back has no offsets at all, which the checks accept)
  const schema = new A.Schema([
    new A.Field('d', new A.Dictionary(new A.Utf8(), new A.Int32()), true),
    new A.Field('u', new A.Utf8(), true),
  ]);
  const none = join(dir, 'none.arrow');
  assert.equal(await kn.data.writeArrowStream(none, [new A.Table(schema), new A.Table(schema)]), {
    bytes: statSync(none).size,
    rows: 0,
    batches: 0,
  });
  for (const t0 of [kn.data.readArrow(none), (kn.data.writeArrow(none, new A.Table(schema)), kn.data.readArrow(none))])
    assert.equal([t0.numRows, t0.schema.fields.map((f) => String(f.type))], [0, ['Dictionary<Int32, Utf8>', 'Utf8']]);
  assert.equal((await kn.data.arrowFileInfo(none)).batches, []);

  const before = readFileSync(path);
  const fails: [() => Promise<unknown>, new (...a: never[]) => Error, RegExp][] = [
    [
      () => kn.data.writeArrowStream(path, [chunks[0]!, new A.Table({ x: A.vectorFromArray([1], new A.Int32()) })]),
      kn.ValidationError,
      /writeArrowStream: chunk 1 has columns x: Int32; the first had d: Dictionary<Int32, Utf8>, x: Int32/,
    ],
    [
      () => kn.data.writeArrowStream(path, [chunks[0]!, { rows: 1 } as never]),
      kn.ArgumentError,
      /writeArrowStream: chunk 1 is an object, expected an apache-arrow Table/,
    ],
    [() => kn.data.writeArrowStream(path, []), kn.ArgumentError, /the iterable gave no tables/],
    [() => kn.data.writeArrowStream(path, 5 as never), kn.ArgumentError, /takes an iterable of apache-arrow Tables/],
    [
      () =>
        kn.data.writeArrowStream(
          path,
          (function* () {
            yield chunks[0]!;
            throw new kn.ValidationError('the source broke');
          })(),
        ),
      kn.ValidationError,
      /the source broke/,
    ],
  ];
  for (const [call, cls, re] of fails) await rejectsKiln(call(), cls, re);
  assert.equal(readFileSync(path), before, 'the file written before is still there');
  const never = join(dir, 'never.arrow');
  await rejectsKiln(kn.data.writeArrowStream(never, []), kn.ArgumentError, /no tables/);
  assert.not.ok(existsSync(never));
});

test('Arrow stream-format output: .arrows or format: stream, read back by every reader, any batch order', async () => {
  const end = Buffer.from([255, 255, 255, 255, 0, 0, 0, 0]);
  const isStream = (p: string): boolean => {
    const b = readFileSync(p);
    // the stream format: the schema message first (continuation marker), the end-of-stream marker last; no magic
    return b.readInt32LE(0) === -1 && b.subarray(b.length - 8).equals(end) && b.toString('latin1', 0, 6) !== 'ARROW1';
  };
  const isFile = (p: string): boolean => readFileSync(p).toString('latin1', 0, 6) === 'ARROW1';
  // writeArrow: by extension, or as asked
  const tensors = join(dir, 'tensors.arrows');
  kn.data.writeArrow(
    tensors,
    { x: kn.tensor([1.5, -2, 3]), k: kn.tensor(Int32Array.from([2, 0, 1])) },
    {
      vocab: { k: ['p', 'q', 'r'] },
    },
  );
  assert.ok(isStream(tensors));
  const back = kn.data.readArrow(tensors);
  assert.equal([...back.getChild('x')!], [1.5, -2, 3]);
  assert.equal([...back.getChild('k')!], ['r', 'p', 'q']);
  const asFile = join(dir, 'as-file.arrows');
  kn.data.writeArrow(asFile, back, { format: 'file' });
  assert.ok(isFile(asFile));
  const asStream = join(dir, 'as-stream.arrow');
  kn.data.writeArrow(asStream, back, { format: 'stream' });
  assert.ok(isStream(asStream));
  assert.equal([...kn.data.readArrow(asStream).getChild('k')!], ['r', 'p', 'q']);

  // writeArrowStream: chunks with dictionaries of their own, joined by deltas in the stream
  const chunks = dictChunks(new A.Int8());
  const path = join(dir, 'streamed.arrows');
  const r = await kn.data.writeArrowStream(path, chunks);
  assert.equal(r, { bytes: statSync(path).size, rows: 8, batches: 3 });
  assert.ok(isStream(path));
  const src = await kn.data.ArrowSource.open(path);
  assert.equal([src.info.format, src.info.batches], ['stream', [3, 2, 3]]);
  // last batch first (a restart fed the schema and both dictionary messages), then in order; then the first batch
  // (a restart) and the last (read on to past the second, whose dictionary delta the last one needs)
  assert.equal([...(await src.read(2)).getChild('d')!], ['a', 'd', 'c']);
  assert.equal([...(await src.read(0)).getChild('d')!], ['b', 'a', 'b']);
  assert.equal([...(await src.read(2)).getChild('d')!], ['a', 'd', 'c']);
  assert.equal([...(await src.read(1)).getChild('d')!], ['c', null]);
  // a longer stream whose dictionary only grows, read in a scattered order: restarts start from the dictionaries
  // decoded so far (a later state names every earlier entry where it was), fed the deltas after them when behind
  const long = join(dir, 'long.arrows');
  const words = (b: number): string[] => Array.from({ length: 5 }, (_, i) => `w${(b * 3 + i) % 41}-${b % 4}`);
  await kn.data.writeArrowStream(
    long,
    Array.from(
      { length: 30 },
      (_, b) =>
        new A.Table({ d: dictOf(words(b), new A.Int8()), x: A.vectorFromArray(Array(5).fill(b), new A.Int32()) }),
    ),
  );
  const ls = await kn.data.ArrowSource.open(long);
  // (10, then 8: a restart given batch 10's dictionaries, good up to 10; 11 and on need a reader past them)
  for (const b of [0, 10, 8, 9, 10, 11, 12, 29, 3, 17, 16, 28, 1, 2, 12, 25, 5, 29, 0, 14, 20, 18, 19, 20, 21, 22]) {
    const t = await ls.read(b);
    assert.equal([[...t.getChild('d')!], [...t.getChild('x')!]], [words(b), Array(5).fill(b)], `batch ${b}`);
  }
  ls.close();
  const rows: unknown[] = [];
  for await (const t of src.chunks()) rows.push(...[...t].map((row) => [row.d, row.x]));
  src.close();
  const want = [
    ['b', 1],
    ['a', 2],
    ['b', 3],
    ['c', 4],
    [null, null],
    ['a', 6],
    ['d', 7],
    ['c', 8],
  ];
  assert.equal(rows, want);
  assert.equal(
    [...kn.data.readArrow(path)].map((row) => [row.d, row.x]),
    want,
  );
  // the same rows as the file format; a .arrow path written as a stream on request
  const file = join(dir, 'streamed-file.arrow');
  await kn.data.writeArrowStream(file, chunks);
  assert.ok(isFile(file));
  assert.equal(
    [...kn.data.readArrow(file)].map((row) => [row.d, row.x]),
    want,
  );
  await kn.data.writeArrowStream(file, chunks, { format: 'stream' });
  assert.ok(isStream(file));
  assert.equal((await kn.data.arrowFileInfo(file)).format, 'stream');

  // a StreamingDataset finds .arrows files in a directory and reads every row once
  const dsDir = join(dir, 'arrows-dataset');
  mkdirSync(dsDir, { recursive: true });
  await kn.data.writeArrowStream(join(dsDir, 'part-0.arrows'), [
    kn.data.toArrow({ v: kn.arange(0, 4) }),
    kn.data.toArrow({ v: kn.arange(4, 7) }),
  ]);
  kn.data.writeArrow(join(dsDir, 'part-1.arrow'), { v: kn.arange(7, 10) });
  const ds = await kn.data.StreamingDataset.open(dsDir, { columns: { x: 'v' }, batchSize: 4, shuffle: false });
  const seen: number[] = [];
  for await (const b of ds.batches(0)) {
    seen.push(...(b.x!.toArray() as Float32Array));
    for (const t of Object.values(b)) t.dispose();
  }
  assert.equal(
    seen.sort((a, b) => a - b),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  );

  // a format neither names is refused, and nothing is written
  await rejectsKiln(
    kn.data.writeArrowStream(join(dir, 'bad.arrows'), chunks, { format: 'ipc' as never }),
    kn.ArgumentError,
    /writeArrowStream: format must be 'file' or 'stream', got "ipc"/,
  );
  throwsKiln(
    () => kn.data.writeArrow(join(dir, 'bad.arrows'), back, { format: 'feather' as never }),
    kn.ArgumentError,
    /writeArrow: format must be 'file' or 'stream'/,
  );
  await rejectsKiln(
    kn.data.writeArrowStream(join(dir, 'bad.arrows'), chunks, { formats: 'stream' } as never),
    kn.ArgumentError,
    /formats/,
  );
  assert.not.ok(existsSync(join(dir, 'bad.arrows')));
});

test('every writer checks a table from memory as a file is checked: no made-up values, no unreadable file', async () => {
  const type = new A.Dictionary(new A.Utf8(), new A.Int32());
  const good = new A.Table({ d: A.vectorFromArray(['a', 'b'], type) });
  // index 5 over a dictionary of two entries, and string offsets past the bytes they index
  const badIndex = new A.Table({
    d: A.makeVector(
      A.makeData({
        type,
        length: 2,
        nullCount: 0,
        data: Int32Array.from([0, 5]),
        dictionary: A.vectorFromArray(['x', 'y'], new A.Utf8()),
      }),
    ),
  });
  const badOffsets = new A.Table({
    d: A.makeVector(
      A.makeData({
        type: new A.Utf8(),
        length: 2,
        nullCount: 0,
        valueOffsets: Int32Array.from([0, 1, 40]),
        data: new Uint8Array([97, 98]),
      }),
    ),
  });
  const index = /column "d" holds dictionary index 5 at value 1; its dictionary has 2 entries/;
  const offsets = /column "d"'s offsets run from 0 to 40, outside its 2 bytes/;
  const writers: [string, string, (p: string, t: A.Table) => unknown][] = [
    ['writeArrow', 'arrow', (p, t) => kn.data.writeArrow(p, t)],
    ['writeParquet', 'parquet', (p, t) => kn.data.writeParquet(p, t)],
    ['writeCsv', 'csv', (p, t) => kn.data.writeCsv(p, t)],
    ['writeArrowStream: chunk 1', 'arrow', (p, t) => kn.data.writeArrowStream(p, [good, t])],
    ['writeParquetStream: chunk 1', 'parquet', (p, t) => kn.data.writeParquetStream(p, [good, t])],
    ['writeCsvStream: chunk 1', 'csv', (p, t) => kn.data.writeCsvStream(p, [good, t])],
  ];
  for (const [who, ext, write] of writers) {
    const path = join(dir, `checked.${ext}`);
    writeFileSync(path, 'kept');
    for (const [t, re] of [
      [badIndex, index],
      [badOffsets, offsets],
    ] as const) {
      const call = (): unknown => write(path, t);
      const message = new RegExp(`^${who.replace(/[.*]/g, '\\$&')}: ${re.source}`);
      if (who.includes('Stream')) await rejectsKiln(call() as Promise<unknown>, kn.ValidationError, message);
      else throwsKiln(call, kn.ValidationError, message);
      assert.is(readFileSync(path, 'utf8'), 'kept', `${who} left the file as it was`);
    }
  }
});

test.run();
