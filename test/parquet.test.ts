// Parquet: every primitive type, strings, dictionary pages and nulls round-trip through every codec; files kiln
// writes read back in DuckDB with the same values and types, and files DuckDB writes read in kiln; row-group
// and column selection; footers; corrupt files get FormatErrors (and the reader keeps working after one).
import { spawnSync } from 'node:child_process';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import * as A from 'apache-arrow';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { damagedCopy, rejectsKiln, throwsKiln, tempDir } from './helpers.js';

const dir = tempDir('kiln-parquet-');
const N = 1000;
let duck: DuckDBConnection | null = null;
async function db(): Promise<DuckDBConnection> {
  duck ??= await (await DuckDBInstance.create(':memory:')).connect();
  return duck;
}
async function sql(q: string): Promise<Record<string, unknown>[]> {
  const r = await (await db()).runAndReadAll(q);
  return r.getRowObjectsJS() as Record<string, unknown>[];
}

/** A table with one column of each primitive type, every third value null in the nullable ones. */
function mixedTable(): A.Table {
  const f32 = new Float32Array(N),
    f64 = new Float64Array(N),
    i8 = new Int8Array(N),
    i16 = new Int16Array(N),
    i32 = new Int32Array(N),
    i64 = new BigInt64Array(N),
    u8 = new Uint8Array(N),
    u32 = new Uint32Array(N);
  const b: boolean[] = [],
    s: (string | null)[] = [],
    nf: (number | null)[] = [];
  for (let i = 0; i < N; i++) {
    f32[i] = i / 8 - 3;
    f64[i] = Math.sin(i) * 1e6;
    i8[i] = (i % 200) - 100;
    i16[i] = i * 31 - 15000;
    i32[i] = i * 100003 - 50_000_000;
    i64[i] = BigInt(i) * 9_000_000_000n - 4_000_000_000_000n;
    u8[i] = i % 256;
    u32[i] = i * 4_000_000;
    b.push(i % 3 === 0);
    s.push(i % 7 === 0 ? null : `w${i % 11}`);
    nf.push(i % 3 === 1 ? null : i * 0.5);
  }
  return new A.Table({
    f32: A.makeVector(f32),
    f64: A.makeVector(f64),
    i8: A.makeVector(i8),
    i16: A.makeVector(i16),
    i32: A.makeVector(i32),
    i64: A.makeVector(i64),
    u8: A.makeVector(u8),
    u32: A.makeVector(u32),
    b: A.vectorFromArray(b, new A.Bool()),
    s: A.vectorFromArray(s, new A.Utf8()),
    cat: A.vectorFromArray(
      s.map((x) => (x === null ? null : x.toUpperCase())),
      new A.Dictionary(new A.Utf8(), new A.Int32()),
    ),
    nf: A.vectorFromArray(nf, new A.Float64()),
  });
}

const plain = (v: A.Vector | null, i: number): unknown => {
  const x = v!.get(i);
  return typeof x === 'bigint' ? x.toString() : x;
};

test('round trip: every primitive type, strings, dictionary and nulls, through every codec', () => {
  const t = mixedTable();
  for (const compression of ['none', 'snappy', 'gzip', 'zstd', 'brotli', 'lz4'] as const) {
    const path = join(dir, `mixed-${compression}.parquet`);
    const w = kn.data.writeParquet(path, t, { compression, rowGroupSize: 300 });
    assert.equal(w.rows, N);
    assert.equal(w.rowGroups, 4);
    const back = kn.data.readParquet(path);
    assert.equal(back.numRows, N, compression);
    assert.equal(
      back.schema.fields.map((f) => f.name),
      t.schema.fields.map((f) => f.name),
    );
    for (const f of t.schema.fields) {
      const a = t.getChild(f.name),
        r = back.getChild(f.name);
      for (const i of [0, 1, 2, 3, 7, 14, 299, 300, 301, 998, 999])
        assert.equal(plain(r, i), plain(a, i), `${compression} ${f.name}[${i}]`);
      assert.equal(r!.nullCount, a!.nullCount, `${compression} ${f.name} nulls`);
    }
  }
});

test('tensors from a Parquet read: numeric columns without a per-value loop, nulls as NaN, codes + vocab', () => {
  const path = join(dir, 'mixed-zstd.parquet');
  const table = kn.data.readParquet(path);
  const cols = table.schema.fields.map((f) => f.name).filter((c) => c !== 'i64' && c !== 'u32');
  const { tensors, vocab } = kn.data.fromArrowWithVocab(table, { columns: cols });
  assert.is(tensors.f32!.dtype, 'float32');
  assert.is(tensors.i32!.dtype, 'int32');
  assert.is(tensors.b!.dtype, 'bool');
  const f64 = tensors.f64!.toArray() as Float32Array;
  assert.ok(Math.abs(f64[5]! - Math.fround(Math.sin(5) * 1e6)) < 1e-3);
  const i16 = tensors.i16!.toArray() as Int32Array;
  assert.is(i16[10], 10 * 31 - 15000);
  const nf = tensors.nf!.toArray() as Float32Array;
  assert.ok(Number.isNaN(nf[1]!) && nf[2] === 1 && Number.isNaN(nf[301]!) && nf[302] === 151);
  // int64 beyond int32 becomes a clear error in an int32 tensor; the codes of a dictionary column follow its words
  throwsKiln(
    () => kn.data.fromArrow(kn.data.readParquet(path, { columns: ['i64'] })),
    kn.ValidationError,
    /i64.*int32/,
  );
  const codes = tensors.cat!.toArray() as Int32Array;
  for (const i of [0, 1, 8, 12]) {
    const want = i % 7 === 0 ? null : `W${i % 11}`;
    assert.is(codes[i] === -1 ? null : vocab.cat![codes[i]!], want, `cat[${i}]`);
  }
  // tensors in, tensors out (2-D tensors as name.j columns; codes through their vocabulary)
  const x = kn.tensor(
    Array.from({ length: 12 }, (_, i) => i * 1.5),
    [4, 3],
  );
  const p2 = join(dir, 'tensors.parquet');
  kn.data.writeParquet(
    p2,
    { x, y: kn.tensor([0, 1, 1, -1], [4], { dtype: 'int32' }) },
    { vocab: { y: ['no', 'yes'] } },
  );
  const t2 = kn.data.fromArrowWithVocab(kn.data.readParquet(p2));
  assert.equal(t2.tensors['x.2']!.toList(), [3, 7.5, 12, 16.5]);
  assert.equal(t2.tensors.y!.toList(), [0, 1, 1, -1]);
  assert.equal(t2.vocab.y, ['no', 'yes']);
});

test('kiln writes, DuckDB reads the same values and types', async () => {
  const path = join(dir, 'mixed-snappy.parquet');
  const types = Object.fromEntries(
    (await sql(`DESCRIBE SELECT * FROM read_parquet('${path}')`)).map((r) => [r.column_name, r.column_type]),
  );
  assert.equal(types, {
    f32: 'FLOAT',
    f64: 'DOUBLE',
    i8: 'TINYINT',
    i16: 'SMALLINT',
    i32: 'INTEGER',
    i64: 'BIGINT',
    u8: 'UTINYINT',
    u32: 'UINTEGER',
    b: 'BOOLEAN',
    s: 'VARCHAR',
    cat: 'VARCHAR',
    nf: 'DOUBLE',
  });
  const agg = (
    await sql(
      `SELECT count(*) AS n, sum(f32) AS f32, sum(i64)::VARCHAR AS i64, sum(u32)::VARCHAR AS u32, count(s) AS s,
              count(nf) AS nf, sum(nf) AS nfsum, sum(b::INT) AS b, string_agg(DISTINCT cat, ',' ORDER BY cat) AS cats
       FROM read_parquet('${path}')`,
    )
  )[0]!;
  const t = mixedTable();
  let f32 = 0,
    i64 = 0n,
    u32 = 0n,
    nfsum = 0;
  for (let i = 0; i < N; i++) {
    f32 += t.getChild('f32')!.get(i) as number;
    i64 += t.getChild('i64')!.get(i) as bigint;
    u32 += BigInt(t.getChild('u32')!.get(i) as number);
    nfsum += (t.getChild('nf')!.get(i) as number | null) ?? 0;
  }
  assert.is(Number(agg.n), N);
  assert.ok(Math.abs((agg.f32 as number) - f32) < 1e-6 * Math.abs(f32) + 1e-3);
  assert.is(agg.i64, i64.toString());
  assert.is(agg.u32, u32.toString());
  assert.is(Number(agg.s), N - Math.ceil(N / 7));
  assert.is(Number(agg.nf), N - Math.floor((N + 1) / 3));
  assert.ok(Math.abs((agg.nfsum as number) - nfsum) < 1e-6);
  assert.is(Number(agg.b), Math.ceil(N / 3));
  assert.is(
    agg.cats,
    Array.from({ length: 11 }, (_, k) => `W${k}`)
      .sort()
      .join(','),
  );
  const row = (await sql(`SELECT f64, i8, s FROM read_parquet('${path}') LIMIT 1 OFFSET 12`))[0]!;
  assert.is(row.f64, Math.sin(12) * 1e6);
  assert.is(row.i8, 12 - 100);
  assert.is(row.s, 'w1');
});

test('writeParquetStream: chunks of any size become row groups of rowGroupSize; DuckDB reads the same rows', async () => {
  const t = mixedTable();
  const path = join(dir, 'streamed.parquet');
  const cuts = [0, 137, 137, 600, N];
  async function* chunks(): AsyncGenerator<A.Table> {
    for (let k = 0; k + 1 < cuts.length; k++) yield t.slice(cuts[k], cuts[k + 1]);
  }
  const w = await kn.data.writeParquetStream(path, chunks(), { rowGroupSize: 300, compression: 'zstd' });
  assert.equal([w.rows, w.rowGroups], [N, 4]);
  const info = await kn.data.parquetInfo(path);
  assert.equal(
    info.rowGroups.map((g) => g.rows),
    [300, 300, 300, 100],
  );
  assert.is(info.createdBy, 'kiln');
  const back = kn.data.readParquet(path);
  for (const f of t.schema.fields) {
    for (const i of [0, 136, 137, 138, 299, 300, 599, 600, 999])
      assert.equal(plain(back.getChild(f.name), i), plain(t.getChild(f.name), i), `${f.name}[${i}]`);
    assert.is(back.getChild(f.name)!.nullCount, t.getChild(f.name)!.nullCount, `${f.name} nulls`);
  }
  // DuckDB: the same rows as writeParquet's file of the same table, none more, none less
  const whole = join(dir, 'mixed-snappy.parquet');
  const diff = await sql(
    `SELECT (SELECT count(*) FROM (SELECT * FROM read_parquet('${path}') EXCEPT ALL SELECT * FROM read_parquet('${whole}'))) AS extra,
            (SELECT count(*) FROM (SELECT * FROM read_parquet('${whole}') EXCEPT ALL SELECT * FROM read_parquet('${path}'))) AS missing`,
  );
  assert.equal([Number(diff[0]!.extra), Number(diff[0]!.missing)], [0, 0]);
  // row groups read one by one (each with its own dictionary) stream into one file; metadata is kept
  const src = await kn.data.ParquetSource.open(whole);
  async function* groups(): AsyncGenerator<A.Table> {
    for (let g = 0; g < src.info.rowGroups.length; g++)
      yield await src.read({ rowGroups: [g], columns: ['cat', 'i32'] });
  }
  const again = join(dir, 'regrouped.parquet');
  await kn.data.writeParquetStream(again, groups(), { rowGroupSize: 1000, metadata: { origin: 'test' } });
  src.close();
  const r = kn.data.readParquet(again);
  assert.equal([...r.getChild('cat')!], [...t.getChild('cat')!]);
  assert.equal([...r.getChild('i32')!], [...t.getChild('i32')!]);
  assert.equal((await kn.data.parquetInfo(again)).metadata.origin, 'test');
  // a null in a column whose first chunk had none (apache-arrow calls that column non-nullable) stays a null
  const late = join(dir, 'late-nulls.parquet');
  await kn.data.writeParquetStream(late, [
    new A.Table({ x: A.makeVector(Float32Array.of(1, 2)) }),
    new A.Table({ x: A.vectorFromArray([3, null], new A.Float32()) }),
  ]);
  assert.equal([...kn.data.readParquet(late).getChild('x')!], [1, 2, 3, null]);
  assert.equal(await sql(`SELECT count(x) AS n FROM read_parquet('${late}')`), [{ n: 3n }]);
});

/** Tables of two rows whose one column holds a dense union (Int32 | Utf8) at the top, or nested, named by its path. */
function unionTables(): [string, A.Table][] {
  const ints = A.makeData({ type: new A.Int32(), length: 1, nullCount: 0, data: Int32Array.of(7) });
  const strs = A.makeData({
    type: new A.Utf8(),
    length: 1,
    nullCount: 0,
    valueOffsets: Int32Array.of(0, 2),
    data: new TextEncoder().encode('hi'),
  });
  const type = new A.DenseUnion([0, 1], [new A.Field('i', new A.Int32()), new A.Field('s', new A.Utf8())]);
  const union = A.makeData({
    type,
    length: 2,
    nullCount: 0,
    typeIds: Int8Array.of(0, 1),
    valueOffsets: Int32Array.of(0, 0),
    children: [ints, strs],
  });
  const struct = A.makeData({
    type: new A.Struct([new A.Field('u', type)]),
    length: 2,
    nullCount: 0,
    children: [union],
  });
  const list = A.makeData({
    type: new A.List(new A.Field('item', type)),
    length: 1,
    nullCount: 0,
    valueOffsets: Int32Array.of(0, 2),
    child: union,
  });
  return [
    ['u', new A.Table({ u: A.makeVector(union) })],
    ['s.u', new A.Table({ s: A.makeVector(struct) })],
    ['l.item', new A.Table({ l: A.makeVector(list) })],
  ];
}

test('writeParquetStream: a bad chunk or a failing source writes nothing and says why', async () => {
  const path = join(dir, 'kept.parquet');
  kn.data.writeParquet(path, { x: kn.ones([3]) });
  const before = readFileSync(path);
  const x = (n: number): A.Table => new A.Table({ x: A.makeVector(new Float32Array(n)) });
  const utf8 = (v: string | Uint8Array): A.Table => {
    const data = typeof v === 'string' ? new TextEncoder().encode(v) : v;
    return new A.Table({
      x: A.makeVector(A.makeData({ type: new A.Utf8(), length: 1, valueOffsets: Int32Array.of(0, data.length), data })),
    });
  };
  const cases: [string, () => unknown, typeof kn.KilnError, RegExp][] = [
    ['no tables', () => [], kn.ArgumentError, /the iterable gave no tables/],
    ['not iterable', () => 7, kn.ArgumentError, /takes an iterable of apache-arrow Tables, got 7/],
    ['not a table', () => [x(2), { x: 1 }], kn.ArgumentError, /chunk 1 is .*expected an apache-arrow Table/],
    [
      'other columns',
      () => [x(2), new A.Table({ x: A.makeVector(Int32Array.of(1)) })],
      kn.ValidationError,
      /chunk 1 has columns x: Int32; the first had x: Float32/,
    ],
    // bytes that are not UTF-8 in a string column: parquet-wasm refuses the chunk on the writer thread, first or
    // later, and says why
    ...[[], [utf8('ok')]].map((before): [string, () => unknown, typeof kn.KilnError, RegExp] => [
      `a string that is not UTF-8 after ${before.length} chunks`,
      () => [...before, utf8(Uint8Array.of(0xff, 0xfe))],
      kn.ValidationError,
      /kept\.parquet: the tables cannot be written: Invalid argument error: Invalid UTF8 sequence/,
    ]),
    [
      'a source that fails part way',
      function* () {
        yield x(5);
        throw new kn.FormatError('the source broke');
      },
      kn.FormatError,
      /the source broke/,
    ],
    // a union column, at the top or inside a struct, a list or a dictionary: refused before the writer thread,
    // where parquet-wasm traps on it ("the Parquet writer failed (unreachable)")
    ...unionTables().map(([name, t]): [string, () => unknown, typeof kn.KilnError, RegExp] => [
      `a union in ${name}`,
      () => [t],
      kn.ValidationError,
      new RegExp(`writeParquetStream: column '${name}' is a Union<Int32 \\| Utf8>; Parquet has no union type`),
    ]),
  ];
  for (const [what, make, kind, re] of cases)
    await rejectsKiln(kn.data.writeParquetStream(path, make() as never), kind, re).catch((e: unknown) => {
      throw new Error(`${what}: ${(e as Error).message}`);
    });
  for (const [name, t] of unionTables())
    throwsKiln(
      () => kn.data.writeParquet(path, t),
      kn.ValidationError,
      new RegExp(`writeParquet: column '${name}' is a Union<Int32 \\| Utf8>; Parquet has no union type`),
    );
  assert.equal(readFileSync(path), before, 'the file written before is still there, unchanged');
  // the same tables as Arrow IPC: written and read back
  for (const [name, t] of unionTables()) {
    const arrow = join(dir, 'union.arrow');
    kn.data.writeArrow(arrow, t);
    const back = kn.data.readArrow(arrow);
    assert.equal(
      back.schema.fields.map((f) => String(f.type)),
      [String(t.schema.fields[0]!.type)],
      name,
    );
    assert.is(
      JSON.stringify([...back.getChild(t.schema.fields[0]!.name)!]),
      JSON.stringify([...t.getChild(t.schema.fields[0]!.name)!]),
      name,
    );
  }
  assert.is(JSON.stringify([...unionTables()[1]![1].getChild('s')!]), '[{"u":7},{"u":"hi"}]');
  await rejectsKiln(
    kn.data.writeParquetStream(path, [x(1)], { compression: 'rar' as never }),
    kn.ArgumentError,
    /writeParquetStream compression must be one of/,
  );
  await rejectsKiln(kn.data.writeParquetStream(path, [x(1)], { level: 3 } as never), kn.ArgumentError, /level/);
  await rejectsKiln(
    kn.data.writeParquetStream(path, [x(1)], { dictionary: 'yes' as never }),
    kn.ArgumentError,
    /writeParquetStream dictionary must be true or false, got "yes"/,
  );
});

test('DuckDB writes (dictionary, nulls, zstd and gzip, row groups), kiln reads', async () => {
  for (const codec of ['zstd', 'gzip', 'snappy']) {
    const path = join(dir, `duck-${codec}.parquet`);
    await sql(
      `COPY (SELECT i::INTEGER AS id, (i * 0.25)::DOUBLE AS x, (i % 5)::FLOAT AS f, i::BIGINT * 3 AS big,
                    CASE WHEN i % 4 = 0 THEN NULL ELSE 'city' || (i % 3)::VARCHAR END AS city,
                    i % 2 = 0 AS even, DATE '2024-01-01' + i::INTEGER AS day
             FROM range(5000) t(i))
       TO '${path}' (FORMAT parquet, COMPRESSION ${codec}, ROW_GROUP_SIZE 2048)`,
    );
    const info = await kn.data.parquetInfo(path);
    assert.is(info.rows, 5000);
    assert.ok(info.rowGroups.length >= 2, `${codec}: ${info.rowGroups.length} row groups`);
    assert.is(
      info.rowGroups.reduce((s, g) => s + g.rows, 0),
      5000,
    );
    assert.equal(
      info.columns.map((c) => c.name),
      ['id', 'x', 'f', 'big', 'city', 'even', 'day'],
    );
    const t = kn.data.readParquet(path);
    const { tensors, vocab } = kn.data.fromArrowWithVocab(t, { columns: ['id', 'x', 'f', 'big', 'city', 'even'] });
    const id = tensors.id!.toArray() as Int32Array,
      x = tensors.x!.toArray() as Float32Array,
      big = tensors.big!.toArray() as Int32Array,
      city = tensors.city!.toArray() as Int32Array,
      even = tensors.even!.toArray() as Uint8Array;
    for (const i of [0, 1, 2, 3, 2047, 2048, 4999]) {
      assert.is(id[i], i);
      assert.is(x[i], i * 0.25);
      assert.is(big[i], i * 3);
      assert.is(city[i] === -1 ? null : vocab.city![city[i]!], i % 4 === 0 ? null : `city${i % 3}`);
      assert.is(even[i], i % 2 === 0 ? 1 : 0);
    }
    assert.is((t.getChild('day')!.get(1) as number) - (t.getChild('day')!.get(0) as number), 86_400_000);
  }
});

test('selection: columns, row groups, limit and offset; ParquetSource reads one row group at a time', async () => {
  const path = join(dir, 'duck-zstd.parquet');
  const t = kn.data.readParquet(path, { columns: ['id', 'city'], offset: 10, limit: 5 });
  assert.equal(
    t.schema.fields.map((f) => f.name),
    ['id', 'city'],
  );
  assert.equal(t.getChild('id')!.toArray(), Int32Array.from([10, 11, 12, 13, 14]));
  const src = await kn.data.ParquetSource.open(path);
  try {
    const g1 = await src.read({ rowGroups: [1], columns: ['id'] });
    assert.is(g1.numRows, src.info.rowGroups[1]!.rows);
    assert.is(g1.getChild('id')!.get(0), src.info.rowGroups[0]!.rows);
    await rejectsKiln(
      src.read({ rowGroups: [99] }),
      kn.ValidationError,
      /has \d+ row groups; row group 99 does not exist/,
    );
    await rejectsKiln(src.read({ columns: ['nope'] }), kn.ValidationError, /has no column 'nope'; it has id, x/);
    // chunks: every row group in order (the next read ahead), only the columns asked for
    const ids: number[] = [];
    const sizes: number[] = [];
    for await (const g of src.chunks({ columns: ['id'] })) {
      assert.equal(
        g.schema.fields.map((f) => f.name),
        ['id'],
      );
      sizes.push(g.numRows);
      ids.push(...Array.from(g.getChild('id')!.toArray() as Int32Array));
    }
    assert.equal(
      sizes,
      src.info.rowGroups.map((r) => r.rows),
    );
    assert.equal(
      ids,
      Array.from({ length: src.info.rows }, (_, i) => i),
    );
    // a caller that stops after the first row group leaves no stray read behind
    for await (const g of src.chunks()) {
      assert.is(g.numCols, src.info.columns.length);
      break;
    }
    await rejectsKiln(src.chunks({ columns: ['nope'] }).next(), kn.ValidationError, /has no column 'nope'/);
    await rejectsKiln(
      src.chunks({ rowGroups: [0] } as never).next(),
      kn.ArgumentError,
      /ParquetSource\.chunks.*rowGroups/,
    );
  } finally {
    src.close();
  }
  await rejectsKiln(src.chunks().next(), kn.ArgumentError, /was closed/);
  {
    // closed while chunks runs: the row group already read ahead comes, the next read is refused
    const again = await kn.data.ParquetSource.open(path);
    assert.ok(again.info.rowGroups.length >= 3);
    const it = again.chunks();
    assert.is((await it.next()).done, false);
    again.close();
    await rejectsKiln(
      (async () => {
        while (!(await it.next()).done);
      })(),
      kn.ArgumentError,
      /ParquetSource\.chunks: .* was closed/,
    );
  }
  const wrote = kn.data.writeParquet(join(dir, 'meta.parquet'), kn.data.readParquet(path, { limit: 10 }), {
    metadata: { owner: 'kiln-tests' },
  });
  assert.is(wrote.rows, 10);
  const info = await kn.data.parquetInfo(join(dir, 'meta.parquet'));
  assert.is(info.metadata.owner, 'kiln-tests');
  assert.is(info.createdBy, 'kiln');
});

test('row groups read one by one and joined are written as one file (one dictionary per column)', async () => {
  // each row group brings its own dictionary; the Arrow file format cannot replace one between batches
  const words = (g: number, n: number): (string | null)[] =>
    Array.from({ length: n }, (_, i) => (i % 7 === 3 ? null : `g${g}w${i % (60 + 40 * g)}`));
  const vals = [...words(0, 150), ...words(1, 150), ...words(2, 150)];
  const path = join(dir, 'groups-strings.parquet');
  kn.data.writeParquet(
    path,
    new A.Table({ s: A.vectorFromArray(vals), i: A.makeVector(Int32Array.from(vals, (_, i) => i)) }),
    { rowGroupSize: 150 },
  );
  const src = await kn.data.ParquetSource.open(path);
  let joined: A.Table;
  try {
    const parts = [];
    for (let g = 0; g < src.info.rowGroups.length; g++) parts.push(await src.read({ rowGroups: [g] }));
    joined = parts[0]!.slice(5).concat(...parts.slice(1));
  } finally {
    src.close();
  }
  assert.ok(A.DataType.isDictionary(joined.getChild('s')!.type), 'Parquet strings come back as a dictionary');
  assert.is(new Set(joined.getChild('s')!.data.map((d) => d.dictionary!.data[0])).size, 3, 'three dictionaries');
  for (const [name, write, read] of [
    ['arrow', kn.data.writeArrow, kn.data.readArrow],
    ['parquet', kn.data.writeParquet, kn.data.readParquet],
  ] as const) {
    const out = join(dir, `joined.${name}`);
    write(out, joined);
    const back = read(out);
    assert.is(back.numRows, 445, name);
    assert.equal([...back.getChild('s')!], vals.slice(5), `${name}: every string and null in order`);
    assert.equal(
      Array.from(back.getChild('i')!.toArray() as Int32Array),
      Array.from({ length: 445 }, (_, i) => i + 5),
    );
  }
  // one dictionary per column left alone; a union beyond the index type's range widens it to Int32
  const int8 = (xs: string[]): A.Table =>
    new A.Table({ s: A.vectorFromArray(xs, new A.Dictionary(new A.Utf8(), new A.Int8())) });
  const a = Array.from({ length: 100 }, (_, i) => `a${i}`),
    b = Array.from({ length: 100 }, (_, i) => `b${i}`);
  kn.data.writeArrow(join(dir, 'int8.arrow'), int8(a).concat(int8(b)));
  const wide = kn.data.readArrow(join(dir, 'int8.arrow'));
  assert.is(String(wide.getChild('s')!.type), 'Dictionary<Int32, Utf8>');
  assert.equal([...wide.getChild('s')!], [...a, ...b]);
  const same = int8(a);
  kn.data.writeArrow(join(dir, 'int8-one.arrow'), same.concat(same));
  assert.is(String(kn.data.readArrow(join(dir, 'int8-one.arrow')).getChild('s')!.type), 'Dictionary<Int8, Utf8>');
  // dictionaries inside a list are not joined: a ValidationError, not apache-arrow's own Error
  const list = (xs: string[][]): A.Table =>
    new A.Table({
      l: A.vectorFromArray(xs, new A.List(new A.Field('item', new A.Dictionary(new A.Utf8(), new A.Int32()), true))),
    });
  throwsKiln(
    () => kn.data.writeArrow(join(dir, 'nested.arrow'), list([['a'], ['b']]).concat(list([['c']]))),
    kn.ValidationError,
    /writeArrow: the table cannot be written as an Arrow IPC file: .*replacement dictionaries/,
  );
});

test('bad files and arguments: clear errors, and the reader still works after a corrupt file', async () => {
  const good = join(dir, 'duck-snappy.parquet');
  const notPq = join(dir, 'not.parquet');
  writeFileSync(notPq, 'id,x\n1,2\n');
  throwsKiln(() => kn.data.readParquet(notPq), kn.FormatError, /not a Parquet file: expected 'PAR1'/);
  throwsKiln(() => kn.data.readParquet(join(dir, 'missing.parquet')), kn.ArgumentError, /cannot read/);
  // the footer damaged and the data damaged: FormatErrors, never a crash
  const bytes = readFileSync(good);
  const footer = Buffer.from(bytes);
  footer.fill(0x7f, footer.length - 200, footer.length - 8);
  writeFileSync(join(dir, 'footer.parquet'), footer);
  throwsKiln(() => kn.data.readParquet(join(dir, 'footer.parquet')), kn.FormatError, /footer\.parquet: cannot read/);
  await rejectsKiln(
    kn.data.parquetInfo(join(dir, 'footer.parquet')),
    kn.FormatError,
    /footer\.parquet: cannot read its footer/,
  );
  const body = Buffer.from(bytes);
  for (let i = 100; i < body.length - 2000; i += 97) body[i] = body[i]! ^ 0x5a;
  writeFileSync(join(dir, 'body.parquet'), body);
  throwsKiln(() => kn.data.readParquet(join(dir, 'body.parquet')), kn.FormatError, /body\.parquet: cannot read/);
  const trunc = Buffer.concat([bytes.subarray(0, bytes.length >> 1), bytes.subarray(bytes.length - 8)]);
  writeFileSync(join(dir, 'trunc.parquet'), trunc);
  throwsKiln(() => kn.data.readParquet(join(dir, 'trunc.parquet')), kn.FormatError, /trunc\.parquet: cannot read/);
  assert.is(kn.data.readParquet(good).numRows, 5000);
  throwsKiln(() => kn.data.readParquet(good, { columns: ['nope'] }), kn.ValidationError, /has no column 'nope'/);
  throwsKiln(() => kn.data.readParquet(good, { limit: -1 }), kn.ArgumentError, /limit must be an integer >= 0/);
  const out = join(dir, 'keep.parquet');
  kn.data.writeParquet(out, { a: kn.tensor([1, 2]) });
  throwsKiln(
    () => kn.data.writeParquet(out, { a: kn.tensor([3]) }, { compression: 'lzo' as never }),
    kn.ArgumentError,
    /compression must be one of none, snappy, gzip, zstd, brotli, lz4/,
  );
  throwsKiln(
    () => kn.data.writeParquet(out, { a: kn.tensor([3]) }, { rowGroupSize: 0 }),
    kn.ArgumentError,
    /rowGroupSize/,
  );
  assert.equal(kn.data.fromArrow(kn.data.readParquet(out)).a!.toList(), [1, 2]);
  throwsKiln(() => kn.data.writeParquet('', { a: kn.tensor([3]) }), kn.ArgumentError, /file path/);
  throwsKiln(
    () => kn.data.writeParquet(join(dir, 'no', 'such', 'dir.parquet'), { a: kn.tensor([3]) }),
    kn.ArgumentError,
    /cannot write .*dir\.parquet: its directory \S+such does not exist/,
  );
});

test('ParquetSource: a damaged page is a FormatError, not the end of the process; the next read still works', async () => {
  const path = join(dir, 'damage-me.parquet');
  kn.seed(2);
  kn.data.writeParquet(path, { x: kn.randn([5000, 4]), y: kn.arange(0, 5000) }, { rowGroupSize: 1000 });
  const bytes = readFileSync(path);
  const seen = new Map<string, number>();
  const seed = { r: 12345 };
  for (let copy = 0; copy < 30; copy++) {
    const p = join(dir, `damaged-${copy}.parquet`);
    writeFileSync(p, damagedCopy(bytes, seed, 20, 2000));
    let src: kn.data.ParquetSource;
    try {
      src = await kn.data.ParquetSource.open(p);
    } catch (e) {
      assert.instance(e, kn.FormatError, (e as Error).message);
      seen.set('footer', (seen.get('footer') ?? 0) + 1);
      continue;
    }
    for (let g = 0; g < src.info.rowGroups.length; g++)
      await src.read({ rowGroups: [g] }).then(
        () => seen.set('read', (seen.get('read') ?? 0) + 1),
        (e: unknown) => {
          assert.instance(e, kn.FormatError, (e as Error).message);
          const died = /the Parquet decoder failed on it/.test((e as Error).message);
          seen.set(died ? 'decoder died' : 'error', (seen.get(died ? 'decoder died' : 'error') ?? 0) + 1);
        },
      );
    src.close();
  }
  // parquet-wasm panics on some of these pages; each panic ended only the reader thread
  assert.ok((seen.get('decoder died') ?? 0) > 0, `no read took the reader thread down: ${[...seen]}`);
  const src = await kn.data.ParquetSource.open(path);
  const t = await src.read({ rowGroups: [4], columns: ['y'] });
  assert.equal(Array.from(t.getChild('y')!.toArray() as Float32Array).slice(0, 3), [4000, 4001, 4002]);
  src.close();
  await rejectsKiln(src.read(), kn.ArgumentError, /damage-me\.parquet was closed/);
});

test('ParquetSource reads the file it opened: a file renamed over it is not seen, one changed in place is refused', async () => {
  const path = join(dir, 'moving.parquet');
  kn.data.writeParquet(path, { a: kn.arange(0, 100) }, { rowGroupSize: 10 });
  const src = await kn.data.ParquetSource.open(path);
  kn.data.writeParquet(path, { a: kn.arange(500, 600) }, { rowGroupSize: 10 }); // atomic: a new file
  assert.equal((await src.read({ rowGroups: [1] })).getChild('a')!.get(0), 10, 'the source still reads the old file');
  src.close();
  const again = await kn.data.ParquetSource.open(path);
  assert.equal((await again.read({ rowGroups: [1] })).getChild('a')!.get(0), 510);
  appendFileSync(path, 'more');
  await rejectsKiln(
    again.read({ rowGroups: [2] }),
    kn.ValidationError,
    /moving\.parquet: it changed after it was opened \(\d+ bytes then, \d+ now\): open it again/,
  );
  again.close();
  await rejectsKiln(kn.data.ParquetSource.open(dir), kn.ArgumentError, /cannot read \S+: it is a directory/);
  await rejectsKiln(kn.data.parquetInfo(join(dir, 'nope.parquet')), kn.ArgumentError, /cannot read \S+nope\.parquet/);
});

test('a read that runs past its deadline is a FormatError; the next read starts a fresh thread', async () => {
  const path = join(dir, 'deadline.parquet');
  kn.seed(9);
  kn.data.writeParquet(path, { a: kn.randn([300_000]) }, { rowGroupSize: 300_000, compression: 'zstd' });
  const src = await kn.data.ParquetSource.open(path);
  process.env.KILN_DATA_READ_TIMEOUT_MS = '1';
  try {
    await rejectsKiln(
      src.read({ rowGroups: [0] }),
      kn.FormatError,
      /deadline\.parquet: cannot read it: the Parquet decoder did not finish within 0\.\d s \(a malformed file; KILN_DATA_READ_TIMEOUT_MS sets the limit\)/,
    );
  } finally {
    delete process.env.KILN_DATA_READ_TIMEOUT_MS;
  }
  // the source opens its file again on the new thread
  assert.is((await src.read({ rowGroups: [0] })).numRows, 300_000);
  src.close();
});

test('the reader thread never keeps the process alive: a script that leaves a source open exits', () => {
  const path = join(dir, 'left-open.parquet');
  kn.data.writeParquet(path, { a: kn.arange(0, 50) }, { rowGroupSize: 10 });
  const script = `
    import * as kn from ${JSON.stringify(join(import.meta.dirname, '..', 'src', 'index.ts'))};
    const src = await kn.data.ParquetSource.open(${JSON.stringify(path)});
    const t = await src.read({ rowGroups: [3] });
    console.log(\`read \${t.numRows} \${(await kn.data.parquetInfo(${JSON.stringify(path)})).rows}\`);
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.is(r.signal, null, 'it exited by itself');
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /read 10 50/, r.stdout);
});

test("a Table from apache-arrow's other build (ESM or CommonJS) is written right, or refused clearly", async () => {
  const esm = await import('apache-arrow');
  const cjs = createRequire(import.meta.url)('apache-arrow') as typeof A;
  const kilnIsEsm = Object.getPrototypeOf(kn.data.toArrow({ a: kn.ones([1]) })) === esm.Table.prototype;
  const other = kilnIsEsm ? cjs : esm;
  const foreign = new other.Table({
    x: other.vectorFromArray(Float32Array.from([1.5, 2.5])),
    s: other.vectorFromArray(['a', 'b']),
  });
  const path = join(dir, 'foreign.parquet');
  if (kilnIsEsm) {
    kn.data.writeParquet(path, foreign);
    assert.equal(kn.data.readParquet(path).getChild('x')!.toArray(), Float32Array.from([1.5, 2.5]));
  } else {
    for (const write of [() => kn.data.writeParquet(path, foreign), () => kn.data.writeArrow(path, foreign)])
      throwsKiln(write, kn.ArgumentError, /the Table was made by another copy of apache-arrow than the one kiln uses/);
  }
  // kiln as an ES module (as the package is used), handed a Table of the CommonJS build: converted and written
  const script = `
    import { createRequire } from 'node:module';
    import * as kn from ${JSON.stringify(join(import.meta.dirname, '..', 'src', 'index.ts'))};
    const A = createRequire(import.meta.url)('apache-arrow');
    const t = new A.Table({ x: A.vectorFromArray(Float32Array.from([1.5, 2.5])), s: A.vectorFromArray(['a', 'b']) });
    kn.data.writeParquet(${JSON.stringify(path)}, t);
    kn.data.writeArrow(${JSON.stringify(path + '.arrow')}, t);
    const back = [kn.data.readParquet(${JSON.stringify(path)}), kn.data.readArrow(${JSON.stringify(path + '.arrow')})];
    console.log(JSON.stringify(back.map((b) => [Array.from(b.getChild('x').toArray()), b.getChild('s').toArray()])));
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    encoding: 'utf8',
  });
  assert.is(r.status, 0, r.stderr);
  const rows = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
  assert.equal(rows, [
    [
      [1.5, 2.5],
      ['a', 'b'],
    ],
    [
      [1.5, 2.5],
      ['a', 'b'],
    ],
  ]);
});

test.after(() => {
  duck?.closeSync();
});

test.run();
