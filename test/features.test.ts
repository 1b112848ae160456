// The feature store on DuckDB: views over Parquet sources, versioned materializations, training sets joined as
// of each event's time (checked row by row against a brute-force scan: never a later value, ttl respected), online
// lookups of the latest features (keys bound as parameters), and a catalog that survives reopening.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import * as A from 'apache-arrow';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { rejectsKiln, rng, throwsKiln, tempDir } from './helpers.js';

const dir = tempDir('kiln-fs-');
const r = rng(17);
const DAY = 86_400_000;
const T0 = Date.UTC(2024, 0, 1);
const users = ['ann', 'bob', "o'brien", 'dee', 'eve'];

// transactions: each user's times are distinct; two source files
interface Tx {
  user: string;
  ts: number;
  amount: number;
}
const txs: Tx[] = [];
for (const u of users.slice(0, 4))
  for (let k = 0, t = T0; k < 30; k++) {
    t += Math.floor(r() * 3 * DAY) + 1000;
    txs.push({ user: u, ts: t, amount: Math.round(r() * 10000) / 100 });
  }
const half = Math.floor(txs.length / 2);
const srcDir = join(dir, 'tx');
mkdirSync(srcDir);
const writeTx = (rows: Tx[], name: string): void => {
  kn.data.writeParquet(
    join(srcDir, name),
    new A.Table({
      user_id: A.vectorFromArray(
        rows.map((x) => x.user),
        new A.Utf8(),
      ),
      ts: A.makeVector(BigInt64Array.from(rows, (x) => BigInt(x.ts))),
      amount: A.makeVector(Float64Array.from(rows, (x) => x.amount)),
    }),
  );
};
writeTx(txs.slice(0, half), 'a.parquet');
writeTx(txs.slice(half), 'b.parquet');

// events to label: random users (one with no history) at random times
const events = Array.from({ length: 200 }, (_, i) => ({
  user: users[Math.floor(r() * users.length)]!,
  ts: T0 + Math.floor(r() * 90 * DAY),
  label: i % 2,
}));
// some events exactly at a transaction's time: that transaction is visible (at or before)
for (let i = 0; i < 10; i++) {
  const t = txs[i * 7]!;
  events[i] = { user: t.user, ts: t.ts, label: 1 };
}
const eventTable = new A.Table({
  user_id: A.vectorFromArray(
    events.map((e) => e.user),
    new A.Utf8(),
  ),
  ts: A.makeVector(BigInt64Array.from(events, (e) => BigInt(e.ts))),
  label: A.makeVector(Int32Array.from(events, (e) => e.label)),
});

/** The newest transaction of `user` at or before `t` (what an as-of join must return). */
function asOf(user: string, t: number, ttl = Infinity): Tx | null {
  let best: Tx | null = null;
  for (const x of txs) if (x.user === user && x.ts <= t && (!best || x.ts > best.ts)) best = x;
  return best && t - best.ts <= ttl ? best : null;
}

test('training sets join each event to the newest feature row at or before it (and within ttl)', async () => {
  const st = await kn.data.FeatureStore.open(join(dir, 'store'));
  try {
    st.register({
      name: 'spend',
      source: srcDir,
      entity: 'user_id',
      timestamp: 'ts',
      features: { amount: 'amount', big: 'amount > 50', cents: 'round(amount * 100)::BIGINT' },
    });
    st.register({
      name: 'recent',
      source: srcDir,
      entity: 'user_id',
      timestamp: 'ts',
      features: ['amount'],
      ttlMs: 2 * DAY,
    });
    const m = await st.materialize('spend');
    assert.is(m.rows, txs.length);
    assert.is(m.entities, 4);
    assert.is(m.sourceVersion, (await kn.data.datasetManifest(srcDir)).version);
    await st.materialize('recent');
    const ts = await st.trainingSet(eventTable, { entity: 'user_id', timestamp: 'ts', views: ['spend', 'recent'] });
    assert.is(ts.numRows, events.length);
    assert.equal(
      ts.schema.fields.map((f) => f.name),
      ['user_id', 'ts', 'label', 'spend.amount', 'spend.big', 'spend.cents', 'recent.amount'],
    );
    let nulls = 0,
      fresh = 0;
    events.forEach((e, i) => {
      assert.is(ts.getChild('user_id')!.get(i), e.user, `row ${i} order`);
      assert.is(ts.getChild('label')!.get(i), e.label);
      const want = asOf(e.user, e.ts);
      const got = ts.getChild('spend.amount')!.get(i) as number | null;
      assert.is(got, want ? want.amount : null, `event ${i} (${e.user} at ${e.ts})`);
      assert.is(ts.getChild('spend.big')!.get(i), want ? want.amount > 50 : null);
      assert.is(ts.getChild('spend.cents')!.get(i), want ? BigInt(Math.round(want.amount * 100)) : null);
      const w2 = asOf(e.user, e.ts, 2 * DAY);
      assert.is(ts.getChild('recent.amount')!.get(i), w2 ? w2.amount : null, `ttl event ${i}`);
      if (!want) nulls++;
      if (w2) fresh++;
    });
    assert.ok(nulls > 0 && nulls < events.length, `${nulls} events without history`);
    assert.ok(fresh > 0 && fresh < events.length - nulls, `${fresh} events with fresh features`);
    // the same from a Parquet file of events, and as tensors
    const evFile = join(dir, 'events.parquet');
    kn.data.writeParquet(evFile, eventTable);
    const again = await st.trainingSet(evFile, { entity: 'user_id', timestamp: 'ts', views: ['spend'] });
    assert.equal(again.getChild('spend.amount')!.toArray(), ts.getChild('spend.amount')!.toArray());
    const x = kn.data.fromArrow(ts, { columns: ['spend.amount'] })['spend.amount']!;
    assert.is(x.shape[0], events.length);
  } finally {
    st.close();
  }
});

test('online lookups give the latest features per key; the catalog survives reopening', async () => {
  const st = await kn.data.FeatureStore.open(join(dir, 'store'));
  try {
    assert.equal(st.views(), ['spend', 'recent']);
    const got = await st.online('spend', ["o'brien", 'nobody', 'ann']);
    const last = (u: string): Tx => txs.filter((x) => x.user === u).reduce((a, b) => (b.ts > a.ts ? b : a));
    assert.is(got[1], null);
    for (const [k, u] of [
      [0, "o'brien"],
      [2, 'ann'],
    ] as const) {
      assert.is(got[k]!.timestamp, last(u).ts);
      assert.is(got[k]!.features.amount, last(u).amount);
      assert.is(got[k]!.features.cents, Math.round(last(u).amount * 100));
    }
    // new data, a new materialization with a new version; online follows it
    writeTx([{ user: 'ann', ts: T0 + 400 * DAY, amount: 1.25 }], 'c.parquet');
    txs.push({ user: 'ann', ts: T0 + 400 * DAY, amount: 1.25 });
    const before = st.latest('spend')!;
    const m = await st.materialize('spend');
    assert.is.not(m.version, before.version);
    assert.is((await st.online('spend', ['ann']))[0]!.features.amount, 1.25);
    // DuckDB reads the materialized file as an ordinary Parquet file
    const con = await (await DuckDBInstance.create(':memory:')).connect();
    const n = (await con.runAndReadAll(`SELECT count(*)::INT AS n FROM read_parquet('${m.path}')`)).getRowObjectsJS();
    assert.is(n[0]!.n, txs.length);
    con.closeSync();
  } finally {
    st.close();
  }
});

test('bad views and requests: clear errors', async () => {
  const st = await kn.data.FeatureStore.open(join(dir, 'store2'));
  try {
    throwsKiln(
      () =>
        st.register({
          name: 'x; DROP TABLE y',
          source: srcDir,
          entity: 'user_id',
          timestamp: 'ts',
          features: ['amount'],
        }),
      kn.ArgumentError,
      /view name must be an identifier/,
    );
    throwsKiln(
      () =>
        st.register({
          name: 'v',
          source: srcDir,
          entity: 'user_id',
          timestamp: 'ts',
          features: ['amount'],
          ttl: 5,
        } as never),
      kn.ArgumentError,
      /^feature view: unknown option "ttl" \(the options are name, source, entity, timestamp, features, ttlMs\)/,
    );
    await rejectsKiln(
      st.trainingSet(eventTable, { entity: 'user_id', timestamp: 'ts', views: ['v'], asOf: 1 } as never),
      kn.ArgumentError,
      /^trainingSet: unknown option "asOf"/,
    );
    throwsKiln(
      () => st.register({ name: 'v', source: srcDir, entity: 'user_id', timestamp: 'ts', features: [] }),
      kn.ArgumentError,
      /needs at least one feature/,
    );
    st.register({ name: 'v', source: srcDir, entity: 'user_id', timestamp: 'amount_ts', features: ['amount'] });
    await rejectsKiln(st.materialize('v'), kn.ValidationError, /has no column 'amount_ts'; it has user_id, ts, amount/);
    st.register({ name: 'w', source: srcDir, entity: 'user_id', timestamp: 'user_id', features: ['amount'] });
    await rejectsKiln(st.materialize('w'), kn.ValidationError, /column 'user_id' is VARCHAR; an event time must be/);
    st.register({ name: 'u', source: srcDir, entity: 'user_id', timestamp: 'ts', features: ['amount'] });
    await rejectsKiln(
      st.trainingSet(eventTable, { entity: 'user_id', timestamp: 'ts', views: ['u'] }),
      kn.ValidationError,
      /view 'u' is not materialized/,
    );
    await rejectsKiln(st.online('nope', ['a']), kn.ValidationError, /no feature view named "nope"/);
  } finally {
    st.close();
  }
  await rejectsKiln(st.materialize('u'), kn.ArgumentError, /closed/);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));

test.run();
