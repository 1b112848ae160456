// Time features checked against DuckDB: calendar parts (year, quarter, month, day, ISO day of week and week,
// day of year, hour, minute), lags and rolling-window statistics per series with no look-ahead, computed by
// DuckDB's window functions over the same rows; time-series splits; time zones.
import { DuckDBInstance } from '@duckdb/node-api';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { rng, throwsKiln } from './helpers.js';

const r = rng(9);
const N = 400;
// three interleaved series, rows shuffled, timestamps hours apart with jitter, some values missing
const rows = Array.from({ length: N }, (_, i) => ({
  g: i % 3,
  t: Date.UTC(2023, 11, 25) + Math.floor(i / 3) * 3_600_000 * 7 + (i % 3) * 60_000 * 17,
  v: i % 29 === 5 ? null : Math.round((r() * 100 - 30) * 100) / 100,
}));
for (let i = N - 1; i > 0; i--) {
  const j = Math.floor(r() * (i + 1));
  [rows[i], rows[j]] = [rows[j]!, rows[i]!];
}

async function duck(q: string): Promise<Record<string, unknown>[]> {
  const con = await (await DuckDBInstance.create(':memory:')).connect();
  await con.run('CREATE TABLE s (i INTEGER, g INTEGER, t TIMESTAMP, v DOUBLE)');
  const app = await con.createAppender('s');
  rows.forEach((x, i) => {
    app.appendInteger(i);
    app.appendInteger(x.g);
    app.appendVarchar(new Date(x.t).toISOString().replace('T', ' ').replace('Z', ''));
    if (x.v === null) app.appendNull();
    else app.appendDouble(x.v);
    app.endRow();
  });
  app.closeSync();
  const out = (await con.runAndReadAll(q)).getRowObjectsJS() as Record<string, unknown>[];
  con.closeSync();
  return out;
}

const near = (a: number, b: unknown, what: string): void => {
  const e = b === null ? NaN : Number(b);
  if (Number.isNaN(e) || Number.isNaN(a)) assert.ok(Number.isNaN(e) && Number.isNaN(a), `${what}: ${a} vs ${e}`);
  else assert.ok(Math.abs(a - e) <= 1e-4 * Math.max(1, Math.abs(e)), `${what}: ${a} vs ${e}`);
};

test('calendar parts match DuckDB (UTC), cyclical parts on the unit circle', async () => {
  const ts = rows.map((x) => x.t);
  const parts = [
    'year',
    'quarter',
    'month',
    'day',
    'dayOfWeek',
    'dayOfYear',
    'weekOfYear',
    'hour',
    'minute',
    'isWeekend',
  ] as const;
  const { x, names } = kn.data.calendarFeatures(ts, { parts: [...parts] });
  assert.equal(names, [...parts]);
  const got = x.toList() as number[][];
  const ref = await duck(
    `SELECT i, year(t) AS year, quarter(t) AS quarter, month(t) AS month, day(t) AS day, isodow(t) - 1 AS dayOfWeek,
            dayofyear(t) AS dayOfYear, weekofyear(t) AS weekOfYear, hour(t) AS hour, minute(t) AS minute,
            (isodow(t) >= 6)::INT AS isWeekend FROM s ORDER BY i`,
  );
  ref.forEach((row, i) => parts.forEach((p, j) => assert.is(got[i]![j], Number(row[p]), `${p} of row ${i}`)));
  const c = kn.data.calendarFeatures(ts, { parts: ['month', 'hour', 'year'], cyclical: true });
  assert.equal(c.names, ['month_sin', 'month_cos', 'hour_sin', 'hour_cos', 'year']);
  for (const row of c.x.toList() as number[][]) {
    near(row[0]! ** 2 + row[1]! ** 2, 1, 'month on the circle');
    near(row[2]! ** 2 + row[3]! ** 2, 1, 'hour on the circle');
  }
  // a missing timestamp gives NaN features; Dates and Arrow-style nulls are accepted
  const m = kn.data.calendarFeatures([new Date(Date.UTC(2024, 1, 29, 23)), null], {
    parts: ['day', 'isMonthEnd', 'hour'],
  });
  assert.equal(m.x.toList(), [
    [29, 1, 23],
    [NaN, NaN, NaN],
  ]);
});

test('time zones: wall-clock parts in a named zone, across a DST change', () => {
  // 2024-03-31 00:30 UTC is 01:30 in Paris (CET); 01:30 UTC is 03:30 (CEST, after the change)
  const t = [Date.UTC(2024, 2, 31, 0, 30), Date.UTC(2024, 2, 31, 1, 30), Date.UTC(2024, 11, 31, 23, 30)];
  const { x } = kn.data.calendarFeatures(t, { parts: ['year', 'day', 'hour', 'minute'], timeZone: 'Europe/Paris' });
  assert.equal(x.toList(), [
    [2024, 31, 1, 30],
    [2024, 31, 3, 30],
    [2025, 1, 0, 30],
  ]);
  throwsKiln(() => kn.data.calendarFeatures(t, { timeZone: 'Mars/Olympus' }), kn.ArgumentError, /IANA time zone/);
  throwsKiln(() => kn.data.calendarFeatures(t, { parts: ['era' as never] }), kn.ArgumentError, /parts must be/);
});

test('lags and rolling statistics per series match DuckDB window functions (no look-ahead)', async () => {
  const v = rows.map((x) => x.v);
  const opts = { groups: rows.map((x) => x.g), time: rows.map((x) => x.t) };
  const lag = kn.data.lagFeatures(v, [1, 3], opts);
  assert.equal(lag.names, ['lag_1', 'lag_3']);
  const roll = kn.data.rollingFeatures(v, 4, { ...opts, stats: ['mean', 'std', 'min', 'max', 'sum', 'count'] });
  const ref = await duck(
    `SELECT i,
       lag(v, 1) OVER w AS lag1, lag(v, 3) OVER w AS lag3,
       avg(v) OVER r AS mean, stddev_samp(v) OVER r AS std, min(v) OVER r AS mn, max(v) OVER r AS mx,
       sum(v) OVER r AS sm, count(v) OVER r AS cnt
     FROM s WINDOW w AS (PARTITION BY g ORDER BY t), r AS (PARTITION BY g ORDER BY t ROWS BETWEEN 4 PRECEDING AND 1 PRECEDING)
     ORDER BY i`,
  );
  const L = lag.x.toList() as number[][],
    R = roll.x.toList() as number[][];
  ref.forEach((row, i) => {
    near(L[i]![0]!, row.lag1, `lag1 ${i}`);
    near(L[i]![1]!, row.lag3, `lag3 ${i}`);
    const cnt = Number(row.cnt);
    near(R[i]![0]!, cnt ? row.mean : null, `mean ${i}`);
    near(R[i]![1]!, row.std, `std ${i}`);
    near(R[i]![2]!, row.mn, `min ${i}`);
    near(R[i]![3]!, row.mx, `max ${i}`);
    near(R[i]![4]!, cnt ? row.sm : null, `sum ${i}`);
    near(R[i]![5]!, cnt, `count ${i}`);
  });
  // no look-ahead: changing a row's value changes only the features of later rows of its series
  const later = [...v];
  const k = rows.findIndex((x) => x.v !== null);
  later[k] = 1e6;
  const R2 = kn.data.rollingFeatures(later, 4, { ...opts, stats: ['max'] }).x.toList() as number[][];
  R2.forEach((row, i) => {
    const after = rows[i]!.g === rows[k]!.g && rows[i]!.t > rows[k]!.t;
    if (!after) near(row[0]!, R[i]![3]!, `row ${i} saw the future`);
  });
  throwsKiln(() => kn.data.lagFeatures(v, [0]), kn.ArgumentError, /positive integers/);
  throwsKiln(() => kn.data.rollingFeatures(v, 3, { minPeriods: 4 }), kn.ArgumentError, /minPeriods/);
  throwsKiln(() => kn.data.lagFeatures(v, [1], { groups: [1, 2] }), kn.ShapeError, /2 group keys for 400 rows/);
});

test('timeSeriesSplit: expanding and sliding windows, gaps, unsorted timestamps', () => {
  const s = kn.data.timeSeriesSplit(12, { nSplits: 3, testSize: 2, gap: 1 });
  assert.equal(
    s.map((x) => [Array.from(x.train), Array.from(x.test)]),
    [
      [
        [0, 1, 2, 3, 4],
        [6, 7],
      ],
      [
        [0, 1, 2, 3, 4, 5, 6],
        [8, 9],
      ],
      [
        [0, 1, 2, 3, 4, 5, 6, 7, 8],
        [10, 11],
      ],
    ],
  );
  const sl = kn.data.timeSeriesSplit(12, { nSplits: 3, testSize: 2, maxTrainSize: 3 });
  assert.equal(
    sl.map((x) => Array.from(x.train)),
    [
      [3, 4, 5],
      [5, 6, 7],
      [7, 8, 9],
    ],
  );
  // sklearn's default test size: n // (nSplits + 1)
  assert.equal(
    kn.data.timeSeriesSplit(10, { nSplits: 4 }).map((x) => x.test.length),
    [2, 2, 2, 2],
  );
  const times = [50, 10, 40, 20, 30, 60];
  const u = kn.data.timeSeriesSplit(times, { nSplits: 2, testSize: 1 });
  assert.equal(
    u.map((x) => [Array.from(x.train), Array.from(x.test)]),
    [
      [[1, 3, 4, 2], [0]],
      [[1, 3, 4, 2, 0], [5]],
    ],
  );
  throwsKiln(
    () => kn.data.timeSeriesSplit(5, { nSplits: 3, testSize: 2 }),
    kn.ValidationError,
    /cannot hold 3 test windows/,
  );
  throwsKiln(() => kn.data.timeSeriesSplit([1, null], { nSplits: 1 }), kn.ValidationError, /timestamp 1 is missing/);
});

test.run();
