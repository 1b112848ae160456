// ColumnPipeline: groups of raw columns through encoders, calendar steps, imputers and scalers give exactly what
// the same steps give by hand; target encoding out of fold at fitTransform; one JSON file round-trips; raw
// records (as requests send them) give the same features; the leakage report sees rows the pipeline was fitted
// on; and the model server takes raw records through it over HTTP.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { rng, startKilnServe, throwsKiln, tempDir } from './helpers.js';

const r = rng(21);
const cities = ['paris', 'rome', 'oslo', 'lima'];
function table(n: number): {
  age: (number | null)[];
  income: number[];
  city: (string | null)[];
  user: string[];
  segment: string[];
  when: string[];
} {
  return {
    age: Array.from({ length: n }, (_, i) => (i % 11 === 3 ? null : Math.round(18 + r() * 60))),
    income: Array.from({ length: n }, () => Math.round(r() * 1e5) / 10),
    city: Array.from({ length: n }, (_, i) => (i % 13 === 5 ? null : cities[Math.floor(r() * 4)]!)),
    user: Array.from({ length: n }, () => `u${Math.floor(r() * 1e6)}`),
    segment: Array.from({ length: n }, () => (r() < 0.3 ? 'a' : 'b')),
    when: Array.from({ length: n }, () => new Date(Date.UTC(2024, 0, 1) + Math.floor(r() * 3e10)).toISOString()),
  };
}
const train = table(120),
  test_ = table(30);
const y = Float64Array.from({ length: 120 }, (_, i) => (train.segment[i] === 'a' ? 1 : 0) ^ (i % 5 === 0 ? 1 : 0));

/** Row i of the test table as a raw record (what a request sends). */
const record = (i: number): Record<string, unknown> => ({
  age: test_.age[i],
  income: test_.income[i],
  city: test_.city[i],
  user: test_.user[i],
  segment: test_.segment[i],
  when: test_.when[i],
});

function build(): kn.data.ColumnPipeline {
  return new kn.data.ColumnPipeline([
    {
      name: 'num',
      columns: ['age', 'income'],
      steps: [new kn.data.SimpleImputer({ strategy: 'median' }), new kn.data.StandardScaler()],
    },
    { name: 'city', columns: ['city'], steps: [new kn.data.OneHotEncoder()] },
    { name: 'user', columns: ['user'], steps: [new kn.data.HashingEncoder({ nFeatures: 8 })] },
    { name: 'seg', columns: ['segment'], steps: [new kn.data.TargetEncoder({ smoothing: 2, seed: 3 })] },
    {
      name: 'when',
      columns: ['when'],
      steps: [new kn.data.CalendarStep({ parts: ['month', 'dayOfWeek'], cyclical: true })],
    },
    { name: 'raw', columns: ['income'] },
  ]);
}

const close = (a: number[][], b: number[][], what: string): void => {
  assert.is(a.length, b.length, what);
  a.forEach((row, i) =>
    row.forEach((v, j) => {
      const w = b[i]![j]!;
      assert.ok(Math.abs(v - w) <= 1e-5 * Math.max(1, Math.abs(w)), `${what} [${i}, ${j}]: ${v} vs ${w}`);
    }),
  );
};

test('a pipeline gives exactly what its steps give by hand, with names per group', () => {
  const p = build().fit(train, y);
  const got = p.transform(test_).toList() as number[][];
  // by hand
  const num = kn.tensor(test_.age.map((a, i) => [a ?? NaN, test_.income[i]!]));
  const numTrain = kn.tensor(train.age.map((a, i) => [a ?? NaN, train.income[i]!]));
  const imp = new kn.data.SimpleImputer({ strategy: 'median' }).fit(numTrain);
  const sc = new kn.data.StandardScaler().fit(imp.transform(numTrain));
  const parts = [
    sc.transform(imp.transform(num)),
    new kn.data.OneHotEncoder().fit({ city: train.city }).transform({ city: test_.city }),
    new kn.data.HashingEncoder({ nFeatures: 8 }).fit({ user: train.user }).transform({ user: test_.user }),
    new kn.data.TargetEncoder({ smoothing: 2, seed: 3 })
      .fit({ segment: train.segment }, y)
      .transform({ segment: test_.segment }),
    kn.data.calendarFeatures(
      test_.when.map((s) => Date.parse(s)),
      { parts: ['month', 'dayOfWeek'], cyclical: true },
    ).x,
    kn.tensor(test_.income.map((v) => [v])),
  ];
  close(got, kn.concat(parts, 1).toList() as number[][], 'transform');
  const names = p.featureNames();
  assert.is(names.length, 2 + 4 + 8 + 1 + 4 + 1);
  assert.equal(names.slice(0, 6), [
    'num:age',
    'num:income',
    'city:city=lima',
    'city:city=oslo',
    'city:city=paris',
    'city:city=rome',
  ]);
  assert.equal(names.slice(-5), [
    'when:when.month_sin',
    'when:when.month_cos',
    'when:when.dayOfWeek_sin',
    'when:when.dayOfWeek_cos',
    'raw:income',
  ]);
  assert.equal(p.inputColumns(), ['age', 'income', 'city', 'user', 'segment', 'when']);
  // fitTransform: target encoding out of fold, as TargetEncoder.fitTransform does it (no row sees its own target)
  const ft = build().fitTransform(train, y).toList() as number[][];
  const oof = new kn.data.TargetEncoder({ smoothing: 2, seed: 3 })
    .fitTransform({ segment: train.segment }, y)
    .toList() as number[][];
  close(
    ft.map((row) => [row[14]!]),
    oof,
    'out-of-fold target column',
  );
  const inFold = p.transform(train).toList() as number[][];
  assert.ok(
    ft.some((row, i) => Math.abs(row[14]! - inFold[i]![14]!) > 1e-6),
    'fitTransform used in-fold statistics',
  );
});

test('one JSON file: save, load, same features; malformed files are FormatErrors', () => {
  const dir = tempDir('kiln-pipe-');
  const p = build().fit(train, y);
  p.save(join(dir, 'p.json'));
  const q = kn.data.loadPipeline(join(dir, 'p.json'));
  close(q.transform(test_).toList() as number[][], p.transform(test_).toList() as number[][], 'reloaded');
  assert.equal(q.featureNames(), p.featureNames());
  writeFileSync(
    join(dir, 'bad.json'),
    '{"kind": "ColumnPipeline", "version": 1, "groups": [{"name": "a", "columns": ["x"], "steps": [{"kind": "Nope"}], "features": ["x"]}]}',
  );
  throwsKiln(
    () => kn.data.loadPipeline(join(dir, 'bad.json')),
    kn.FormatError,
    /group 0 step 0: unknown transformer kind "Nope"/,
  );
  writeFileSync(join(dir, 'bad2.json'), '[1, 2]');
  throwsKiln(() => kn.data.loadPipeline(join(dir, 'bad2.json')), kn.FormatError, /expected \{ kind: 'ColumnPipeline'/);
  throwsKiln(() => build().transform(test_), kn.ValidationError, /not fitted/);
  throwsKiln(
    () =>
      new kn.data.ColumnPipeline([
        { name: 'a', columns: ['x'], steps: [new kn.data.StandardScaler(), new kn.data.OneHotEncoder()] },
      ]),
    kn.ArgumentError,
    /OneHotEncoder reads raw columns, so it must be the first step/,
  );
  throwsKiln(
    () => p.transform({ ...test_, age: undefined as never }),
    kn.ArgumentError,
    /column 'age' must be a Tensor or an array/,
  );
  const { city: _c, ...noCity } = test_;
  throwsKiln(() => p.transform(noCity), kn.ValidationError, /column "city" is missing/);
});

test('raw records give the same features; only the pipeline’s fields are read', () => {
  const p = build().fit(train, y);
  const recs = test_.age.map((_, i) => ({ ...record(i), extra: 'ignored' }));
  close(p.transformRecords(recs).toList() as number[][], p.transform(test_).toList() as number[][], 'records');
  const hostile = JSON.parse('{"__proto__": {"polluted": 1}, "constructor": 5, "income": 3}') as object;
  const row = p.transformRecords([hostile]).toList() as number[][];
  assert.is(row[0]!.length, p.featureNames().length);
  assert.is(({} as Record<string, unknown>).polluted, undefined);
  throwsKiln(
    () => p.transformRecords([{ age: { nested: 1 } }]),
    kn.ValidationError,
    /field "age" must be a string, number, boolean or null/,
  );
  throwsKiln(() => p.transformRecords([{ when: 'not a date' }]), kn.ValidationError, /"not a date" is not a timestamp/);
});

test('the leakage report sees rows a pipeline was fitted on', () => {
  const slice = (t: ReturnType<typeof table>, a: number, b: number): ReturnType<typeof table> =>
    Object.fromEntries(Object.entries(t).map(([k, v]) => [k, (v as unknown[]).slice(a, b)])) as ReturnType<
      typeof table
    >;
  const merged = Object.fromEntries(
    Object.entries(train).map(([k, v]) => [
      k,
      [...(v as unknown[]), ...(test_[k as keyof typeof test_] as unknown[]).slice(0, 4)],
    ]),
  ) as ReturnType<typeof table>;
  const leaky = build().fit(
    merged,
    Float64Array.from({ length: 124 }, (_, i) => i % 2),
  );
  const rep = kn.data.leakageReport({ splits: { train, test: test_ }, transformers: { pipe: leaky } });
  assert.not.ok(rep.ok);
  const leak = rep.leaks.find((l) => l.kind === 'scaler-saw-rows')!;
  assert.equal(leak.rows, [0, 1, 2, 3]);
  assert.match(leak.message, /ColumnPipeline 'pipe' was fitted on data that includes 4 row\(s\) of 'test'/);
  const clean = build().fit(train, y);
  assert.ok(kn.data.leakageReport({ splits: { train, test: test_ }, transformers: { pipe: clean } }).ok);
  // duplicate raw rows between table splits
  const dup = kn.data.leakageReport({ splits: { train, test: { ...slice(train, 7, 9) } } });
  assert.equal(dup.leaks[0]!.rows, [0, 1]);
  throwsKiln(
    () =>
      kn.data.leakageReport({
        splits: { train: kn.zeros([2, 2]), test: kn.zeros([1, 2]) },
        transformers: { pipe: clean },
      }),
    kn.ValidationError,
    /reads raw columns: give split 'test' as a table/,
  );
});

test('the server takes raw records through the pipeline (same outputs as the model on its features)', async () => {
  const p = build().fit(train, y);
  const F = p.featureNames().length;
  kn.seed(2);
  const model = new kn.nn.Sequential(new kn.nn.Linear(F, 6), new kn.nn.Tanh(), new kn.nn.Linear(6, 2));
  const s = await kn.serve.createServer(model, { port: 0, pipeline: p, warmup: false });
  try {
    const recs = [0, 1, 2].map(record);
    const post = async (body: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
      const res = await fetch(s.url + '/predict', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: res.status, json: (await res.json()) as Record<string, unknown> };
    };
    const want = model.call(p.transformRecords(recs)).toList() as number[][];
    const many = await post({ records: recs });
    assert.is(many.status, 200);
    close(
      (many.json.outputs as { output: number[] }[]).map((o) => o.output),
      want,
      'served records',
    );
    const one = await post({ record: recs[1] });
    close([one.json.output as number[]], [want[1]!], 'served record');
    const features = (p.transformRecords([recs[2]!]).toList() as number[][])[0]!;
    const direct = await post({ input: features });
    close([direct.json.output as number[]], [want[2]!], 'served features');
    const bad = await post({ record: { age: [1, 2] } });
    assert.is(bad.status, 400);
    const badDate = await post({ record: { when: 'yesterday' } });
    assert.is(badDate.status, 400);
    assert.match(String(badDate.json.message), /invalid record: .*"yesterday" is not a timestamp/);
    const both = await post({ record: recs[0], input: features });
    assert.is(both.status, 400);
  } finally {
    await s.close();
  }
  const tooWide = new kn.nn.Linear(F + 1, 2);
  let err: unknown = null;
  try {
    await kn.serve.createServer(tooWide, { port: 0, pipeline: p, warmup: false });
  } catch (e) {
    err = e;
  }
  assert.ok(
    err instanceof kn.ArgumentError && /pipeline makes 20 features per record but the model takes 21/.test(err.message),
    String(err),
  );
});

test('kiln serve MODEL --pipeline p.json takes raw records', async () => {
  const dir = tempDir('kiln-pipe-cli-');
  const p = build().fit(train, y);
  p.save(join(dir, 'p.json'));
  kn.seed(4);
  const model = new kn.nn.Sequential(new kn.nn.Linear(p.featureNames().length, 3));
  await kn.io.save(join(dir, 'm.safetensors'), model);
  const srv = await startKilnServe([
    join(dir, 'm.safetensors'),
    '--port',
    '0',
    '--pipeline',
    join(dir, 'p.json'),
    '--no-warmup',
  ]);
  try {
    const url = srv.url;
    const rec = { age: 40, income: 1234.5, city: 'rome', user: 'u1', segment: 'a', when: '2024-05-06T10:00:00Z' };
    const res = await fetch(url + '/predict', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ record: rec }),
    });
    assert.is(res.status, 200);
    const got = ((await res.json()) as { output: number[] }).output;
    close([got], model.call(p.transformRecords([rec])).toList() as number[][], 'cli record');
  } finally {
    await srv.stop('SIGKILL');
  }
});

test.run();
