// Categorical encoders: one-hot, ordinal (and its Embedding codes), target encoding fitted out of fold, unseen
// and missing categories, JSON round trips, names from data kept out of object keys, bad input.
import { join } from 'node:path';
import * as A from 'apache-arrow';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { murmur3 } from '../src/data/hash.js';
import { throwsKiln, tempDir } from './helpers.js';

const rows = (t: kn.Tensor): number[][] => t.toList() as number[][];

test('OneHotEncoder: sorted categories, unseen and missing as zeros or errors, rare categories, Arrow input', () => {
  const train = { color: ['red', 'blue', 'red', null, 'green'], size: [3, 1, 3, 1, 2] };
  const enc = new kn.data.OneHotEncoder().fit(train);
  assert.equal(enc.columns, ['color', 'size']);
  assert.equal(enc.featureNames(), ['color=blue', 'color=green', 'color=red', 'size=1', 'size=2', 'size=3']);
  assert.equal(rows(enc.transform({ color: ['green', 'purple', null], size: [1, 9, 3] })), [
    [0, 1, 0, 1, 0, 0],
    [0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 1],
  ]);
  const strict = new kn.data.OneHotEncoder({ handleUnknown: 'error' }).fit(train);
  throwsKiln(() => strict.transform({ color: ['purple'], size: [1] }), kn.ValidationError, /unseen category "purple"/);
  throwsKiln(() => strict.transform({ color: [null], size: [1] }), kn.ValidationError, /missing value/);
  const rare = new kn.data.OneHotEncoder({ minFrequency: 2 }).fit(train);
  assert.equal(rare.categories('color'), ['red']);
  const table = A.tableFromArrays({ color: ['blue', 'red'], size: Int32Array.from([2, 2]) });
  assert.equal(rows(enc.transform(table)), [
    [1, 0, 0, 0, 1, 0],
    [0, 0, 1, 0, 1, 0],
  ]);
  throwsKiln(() => enc.transform({ color: ['red'] }), kn.ValidationError, /column "size" is missing/);
  throwsKiln(() => new kn.data.OneHotEncoder().transform(train), kn.ValidationError, /not fitted/);
  throwsKiln(() => new kn.data.OneHotEncoder({ handleUnknown: 'drop' as never }), kn.ArgumentError, /handleUnknown/);
});

test('OrdinalEncoder: codes, unknown and missing values, Embedding codes that train an nn.Embedding', () => {
  const enc = new kn.data.OrdinalEncoder().fit({ city: ['paris', 'oslo', 'lima', 'oslo'] });
  assert.equal(enc.categories('city'), ['lima', 'oslo', 'paris']);
  const t = rows(enc.transform({ city: ['oslo', 'rome', null] }));
  assert.equal(t[0], [1]);
  assert.equal(t[1], [-1]);
  assert.ok(Number.isNaN(t[2]![0]!));
  assert.equal(rows(new kn.data.OrdinalEncoder({ unknownValue: 99 }).fit({ c: ['a'] }).transform({ c: ['b'] })), [
    [99],
  ]);
  const codes = enc.embeddingCodes({ city: ['lima', 'rome', null, 'paris'] });
  assert.is(codes.dtype, 'int32');
  assert.equal(rows(codes), [[1], [0], [0], [3]]);
  assert.equal(enc.cardinalities(), [4]);
  const emb = new kn.nn.Embedding(enc.cardinalities()[0]!, 2);
  assert.equal(emb.call(codes.reshape([4])).shape, [4, 2]);
});

test('TargetEncoder: smoothed means by hand, out-of-fold training encodings do not leak the target', () => {
  const c = ['a', 'a', 'a', 'b', 'b', 'c'];
  const y = [1, 0, 1, 1, 1, 0];
  const enc = new kn.data.TargetEncoder({ smoothing: 2 }).fit({ c }, y);
  const prior = 4 / 6;
  const want = (sum: number, n: number): number => (sum + 2 * prior) / (n + 2);
  const got = rows(enc.transform({ c: ['a', 'b', 'c', 'zzz', null] })).map((r) => r[0]!);
  [want(2, 3), want(2, 2), want(0, 1), prior, prior].forEach((w, i) =>
    assert.ok(Math.abs(got[i]! - w) < 1e-6, `row ${i}: ${got[i]} vs ${w}`),
  );
  // every row its own category with a random target: in-sample encoding follows y, out-of-fold cannot
  let s = 7;
  const n = 400;
  const ids = Array.from({ length: n }, (_, i) => `id${i}`);
  const ys = Array.from({ length: n }, () => ((s = (s * 16807) % 2147483647) % 2 === 0 ? 1 : 0));
  const te = new kn.data.TargetEncoder({ smoothing: 1, folds: 5, seed: 3 });
  const oof = rows(te.fitTransform({ ids }, ys)).map((r) => r[0]!);
  const ins = rows(te.transform({ ids })).map((r) => r[0]!);
  const corr = (a: number[], b: number[]): number => {
    const ma = a.reduce((p, v) => p + v, 0) / a.length,
      mb = b.reduce((p, v) => p + v, 0) / b.length;
    let sab = 0,
      saa = 0,
      sbb = 0;
    a.forEach((v, i) => {
      sab += (v - ma) * (b[i]! - mb);
      saa += (v - ma) ** 2;
      sbb += (b[i]! - mb) ** 2;
    });
    return sab / Math.sqrt(saa * sbb || 1);
  };
  assert.ok(corr(ins, ys) > 0.99, `in-sample encoding follows the target (${corr(ins, ys)})`);
  assert.ok(Math.abs(corr(oof, ys)) < 0.2, `out-of-fold encoding carries no target (${corr(oof, ys)})`);
  assert.equal(
    rows(te.fitTransform({ ids }, ys)).map((r) => r[0]!),
    oof,
    'seeded folds are reproducible',
  );
  throwsKiln(() => te.fit({ ids }, [1, 2]), kn.ValidationError, /2 targets for 400 rows/);
  throwsKiln(() => new kn.data.TargetEncoder({ folds: 1 }), kn.ArgumentError, /folds/);
});

test('encoders save as JSON and load; names from data stay out of object keys; bad JSON is a FormatError', () => {
  const dir = tempDir('kiln-enc-');
  const data = { ['__proto__']: ['x', 'y', 'x'], constructor: ['p', 'q', 'q'] } as Record<string, string[]>;
  Object.defineProperty(data, '__proto__', { value: ['x', 'y', 'x'], enumerable: true });
  const y = [1, 0, 1];
  const encs = [
    new kn.data.OneHotEncoder().fit(data),
    new kn.data.OrdinalEncoder().fit(data),
    new kn.data.TargetEncoder({ smoothing: 1 }).fit(data, y),
  ];
  for (const e of encs) {
    const file = join(dir, `${e.kind}.json`);
    e.save(file);
    const back = kn.data.loadEncoder(file);
    assert.is(back.kind, e.kind);
    assert.equal(back.columns, ['__proto__', 'constructor']);
    assert.equal(back.transform(data).toList(), e.transform(data).toList());
    // each class's own fromJSON, as the scalers have, takes its kind (object or text) and refuses the others
    const cls = kn.data[e.kind];
    const own = cls.fromJSON(JSON.stringify(e.toJSON()));
    assert.ok(own instanceof cls);
    assert.equal(own.transform(data).toList(), e.transform(data).toList());
    const other = e.kind === 'OneHotEncoder' ? kn.data.OrdinalEncoder : kn.data.OneHotEncoder;
    throwsKiln(() => other.fromJSON(e.toJSON()), kn.FormatError, new RegExp(`the JSON holds a ${e.kind}, not a`));
  }
  assert.equal(({} as Record<string, unknown>).x, undefined, 'no prototype was polluted');
  throwsKiln(() => kn.data.encoderFromJSON('{'), kn.FormatError, /not valid JSON/);
  throwsKiln(
    () => kn.data.encoderFromJSON({ kind: 'Nope', columns: [], options: {} } as never),
    kn.FormatError,
    /kind/,
  );
  throwsKiln(
    () => kn.data.encoderFromJSON({ kind: 'OneHotEncoder', columns: [['c', [1]]], options: {} } as never),
    kn.FormatError,
    /columns/,
  );
  throwsKiln(
    () =>
      kn.data.encoderFromJSON({
        kind: 'TargetEncoder',
        columns: [['c', ['a']]],
        values: [['c', [1, 2]]],
        prior: 0,
        options: {},
      }),
    kn.FormatError,
    /do not match/,
  );
});

test('HashingEncoder: MurmurHash3 buckets with signs, no vocabulary, JSON round trip', () => {
  // reference values of MurmurHash3_x86_32
  assert.is(murmur3(''), 0);
  assert.is(murmur3('hello'), 0x248bfa47);
  assert.is(murmur3('The quick brown fox jumps over the lazy dog'), 0x2e4ff723);
  assert.is(murmur3('', 1), 0x514e28b7);
  const enc = new kn.data.HashingEncoder({ nFeatures: 16 }).fit({ city: ['a'], kind: ['x'] });
  const out = enc.transform({ city: ['paris', 'paris', 'never-seen', null], kind: ['x', 'y', 'x', null] });
  const m = out.toList() as number[][];
  assert.equal(m[3], new Array(16).fill(0));
  // each non-missing value adds +-1 to exactly one column: the row's absolute mass is the count of values
  for (const [i, want] of [
    [0, 2],
    [1, 2],
    [2, 2],
  ] as const) {
    const mass = m[i]!.reduce((a, v) => a + Math.abs(v), 0);
    assert.ok(mass === want || mass === want - 2, `row ${i}: ${m[i]}`); // two values may cancel in one column
  }
  const slot = (text: string): number => murmur3(text) % 16;
  const sign = (text: string): number => ((murmur3(text, 0x5bd1e995) & 1) === 1 ? -1 : 1);
  const want = new Array(16).fill(0);
  want[slot('city=paris')] += sign('city=paris');
  want[slot('kind=y')] += sign('kind=y');
  assert.equal(m[1], want);
  const unsigned = new kn.data.HashingEncoder({ nFeatures: 16, alternateSign: false }).fit({ city: ['a'] });
  assert.ok(
    (unsigned.transform({ city: ['q', 'r', 's'] }).toList() as number[][]).every((r) => r.every((v) => v >= 0)),
  );
  const back = kn.data.encoderFromJSON(JSON.stringify(enc.toJSON()));
  assert.ok(back instanceof kn.data.HashingEncoder);
  assert.equal(back.transform({ city: ['paris'], kind: ['y'] }).toList(), [want]);
  throwsKiln(() => new kn.data.HashingEncoder({ nFeatures: 0 }), kn.ArgumentError, /nFeatures/);
});

test.run();
