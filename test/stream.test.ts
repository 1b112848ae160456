// Streaming Parquet datasets larger than their memory bound: every row once per epoch, seeded and reproducible
// whatever the number of reader threads, shards per rank, fit() on a stream, and dataset manifests (versions that
// change when a byte changes).
import { spawnSync } from 'node:child_process';
import { appendFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as A from 'apache-arrow';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { readTable } from '../src/data/table.js';
import { damagedCopy, rejectsKiln, rng, tempDir } from './helpers.js';

const dir = tempDir('kiln-stream-');
const FILES = 6,
  PER = 8000,
  GROUP = 1000;
const TOTAL = FILES * PER;

/** Row i: features (i/1000, -i, i%7, 1) and label (i%3); written as six files of eight row groups. */
function writeDataset(root: string): void {
  let id = 0;
  for (let f = 0; f < FILES; f++) {
    const ids = Int32Array.from({ length: PER }, () => id++);
    const col = (g: (i: number) => number): A.Vector => A.makeVector(Float32Array.from(ids, g));
    const t = new A.Table({
      id: A.makeVector(ids),
      a: col((i) => i / 1000),
      b: col((i) => -i),
      c: col((i) => i % 7),
      d: col(() => 1),
      label: A.makeVector(Int32Array.from(ids, (i) => i % 3)),
    });
    kn.data.writeParquet(join(root, `part-${String(f).padStart(2, '0')}.parquet`), t, { rowGroupSize: GROUP });
  }
}
writeDataset(dir);

async function epochIds(ds: kn.data.StreamingDataset, epoch: number): Promise<number[]> {
  const out: number[] = [];
  for await (const b of ds.batches(epoch)) {
    const ids = b.id!.toArray() as Int32Array;
    const x = b.x!.toArray() as Float32Array;
    const y = b.y!.toArray() as Int32Array;
    assert.equal(b.x!.shape, [ids.length, 4]);
    for (let k = 0; k < ids.length; k++) {
      const i = ids[k]!;
      if (x[4 * k] !== Math.fround(i / 1000) || x[4 * k + 1] !== -i || x[4 * k + 2] !== i % 7 || y[k] !== i % 3)
        throw new Error(`row ${i} arrived with the wrong values`);
      out.push(i);
    }
    for (const t of Object.values(b)) t.dispose();
  }
  return out;
}

const cols = { x: ['a', 'b', 'c', 'd'], y: 'label', id: 'id' };

test('a dataset 5x its memory bound streams every row once per epoch, seeded, within the bound', async () => {
  const bound = 192 * 1024;
  const ds = await kn.data.StreamingDataset.open(dir, {
    columns: cols,
    batchSize: 100,
    seed: 7,
    maxMemoryBytes: bound,
  });
  try {
    const rowBytes = 4 * 4 + 4 + 4;
    assert.ok(TOTAL * rowBytes >= 5 * bound, 'the data is several times the bound');
    assert.is(ds.length, TOTAL / 100);
    assert.is(ds.rows, TOTAL);
    assert.is(ds.files.length, FILES);
    const e0 = await epochIds(ds, 0);
    assert.is(e0.length, TOTAL);
    assert.is(new Set(e0).size, TOTAL);
    const st = ds.stats();
    assert.ok(st.peakBytes <= bound, `held ${st.peakBytes} bytes, bound ${bound}`);
    assert.is(st.rowsRead, TOTAL);
    assert.is(st.rowGroupsRead, TOTAL / GROUP);
    // shuffled across files and row groups: the first 1000 rows come from several files
    const firstFiles = new Set(e0.slice(0, 1000).map((i) => Math.floor(i / PER)));
    assert.ok(firstFiles.size >= 2, `first rows from files ${[...firstFiles]}`);
    // epoch 1 differs; epoch 0 again is identical, and so is another stream with other reader threads
    const e1 = await epochIds(ds, 1);
    assert.is(new Set(e1).size, TOTAL);
    assert.not.equal(e1.slice(0, 50), e0.slice(0, 50));
    assert.equal(await epochIds(ds, 0), e0);
    const other = await kn.data.StreamingDataset.open(dir, {
      columns: cols,
      batchSize: 100,
      seed: 7,
      maxMemoryBytes: bound,
      workers: 3,
    });
    assert.equal(await epochIds(other, 0), e0);
    await other.close();
  } finally {
    await ds.close();
  }
});

test('unshuffled streams read files front to back; dropLast; breaking out of an epoch; peek', async () => {
  const ds = await kn.data.StreamingDataset.open(dir, { columns: cols, batchSize: 7000, shuffle: false });
  assert.is(ds.length, Math.ceil(TOTAL / 7000));
  const ids = await epochIds(ds, 0);
  assert.equal(
    ids,
    Array.from({ length: TOTAL }, (_, i) => i),
  );
  let n = 0;
  for await (const b of ds.batches(1)) {
    for (const t of Object.values(b)) t.dispose();
    if (++n === 2) break;
  }
  const head = await ds.peek(5);
  assert.equal(head.id!.toList(), [0, 1, 2, 3, 4]);
  assert.equal(head.x!.shape, [5, 4]);
  await ds.close();
  const dl = await kn.data.StreamingDataset.open(dir, { columns: cols, batchSize: 7000, dropLast: true, seed: 1 });
  assert.is(dl.length, Math.floor(TOTAL / 7000));
  assert.is((await epochIds(dl, 0)).length, dl.length * 7000);
  await dl.close();
});

test('shards per rank: disjoint row groups, the same number of batches on every rank', async () => {
  const seen: number[][] = [];
  for (let rank = 0; rank < 3; rank++) {
    const ds = await kn.data.StreamingDataset.open(dir, { columns: cols, batchSize: 64, seed: 2, rank, worldSize: 3 });
    assert.is(ds.length, Math.floor(16000 / 64));
    const ids = await epochIds(ds, 0);
    assert.is(ids.length, ds.length * 64);
    seen.push(ids);
    await ds.close();
  }
  const all = seen.flat();
  assert.is(new Set(all).size, all.length, 'no row on two ranks');
  const groupsOf = (ids: number[]): Set<number> => new Set(ids.map((i) => Math.floor(i / GROUP)));
  const g = seen.map(groupsOf);
  for (const x of g[0]!) assert.ok(!g[1]!.has(x) && !g[2]!.has(x));
});

test('fit trains on a stream: reproducible losses, and the run logs the dataset version', async () => {
  // a separable problem: y = 1 when a - c/7 > 0.5 (rescaled features)
  const d2 = tempDir('kiln-stream-fit-');
  const r = rng(5);
  for (let f = 0; f < 3; f++) {
    const n = 1200;
    const a = Float32Array.from({ length: n }, () => r()),
      c = Float32Array.from({ length: n }, () => r());
    const y = Int32Array.from(a, (v, i) => (v - c[i]! > 0 ? 1 : 0));
    kn.data.writeParquet(
      join(d2, `f${f}.parquet`),
      new A.Table({ a: A.makeVector(a), c: A.makeVector(c), y: A.makeVector(y) }),
      {
        rowGroupSize: 300,
      },
    );
  }
  const runDir = tempDir('kiln-stream-runs-');
  const train = async (): Promise<{ losses: number[]; run: kn.track.Run; model: kn.nn.Module }> => {
    kn.seed(11);
    const ds = await kn.data.StreamingDataset.open(d2, { columns: { x: ['a', 'c'], y: 'y' }, batchSize: 32, seed: 4 });
    const model = new kn.nn.Sequential(new kn.nn.Linear(2, 16), new kn.nn.ReLU(), new kn.nn.Linear(16, 2));
    const run = kn.track.startRun({ dir: runDir });
    const res = await kn.train.fit(model, {
      train: ds,
      loss: 'crossEntropy',
      optimizer: new kn.optim.Adam(model.parameters(), { lr: 0.01 }),
      epochs: 3,
      verbose: 'silent',
      tracker: run,
    });
    run.end();
    await ds.close();
    return { losses: res.history.map((h) => h.trainLoss), run, model };
  };
  const a = await train();
  const b = await train();
  assert.equal(a.losses, b.losses);
  assert.ok(a.losses[2]! < a.losses[0]!, `${a.losses}`);
  const x = kn.tensor([0.9, 0.1, 0.1, 0.9, 0.8, 0.3], [3, 2]);
  assert.equal(a.model.call(x).argmax(1).toList(), [1, 0, 1]);
  const m = await kn.data.datasetManifest(d2);
  const tag = kn.track.readRun(a.run.dir).tags.get('dataset.train');
  assert.is(tag, `sha256:${m.version} rows=3600`);
  rmSync(d2, { recursive: true, force: true });
});

test('manifest: a version per content; verify finds changed, missing and added files; schema mismatches', async () => {
  const d3 = tempDir('kiln-manifest-');
  kn.data.writeParquet(join(d3, 'a.parquet'), { x: kn.tensor([1, 2, 3]) });
  kn.data.writeParquet(join(d3, 'b.parquet'), { x: kn.tensor([4, 5]) });
  const m = await kn.data.datasetManifest(d3);
  assert.is(m.rows, 5);
  assert.equal(
    m.files.map((f) => [f.path, f.rows]),
    [
      ['a.parquet', 3],
      ['b.parquet', 2],
    ],
  );
  assert.is(m.version.length, 64);
  assert.is((await kn.data.datasetManifest(d3)).version, m.version);
  kn.data.writeManifest(join(d3, 'manifest.json'), m);
  assert.equal(kn.data.readManifest(join(d3, 'manifest.json')).version, m.version);
  assert.ok((await kn.data.verifyManifest(m)).ok);
  kn.data.writeParquet(join(d3, 'b.parquet'), { x: kn.tensor([4, 6]) });
  kn.data.writeParquet(join(d3, 'c.parquet'), { x: kn.tensor([7]) });
  rmSync(join(d3, 'a.parquet'));
  const v = await kn.data.verifyManifest(m);
  assert.equal(v, { ok: false, changed: ['b.parquet'], missing: ['a.parquet'], added: ['c.parquet'] });
  assert.is.not((await kn.data.datasetManifest(d3)).version, m.version);
  // a tampered manifest and a file with another schema
  writeFileSync(join(d3, 'bad.json'), JSON.stringify({ ...m, rows: 99, files: m.files.slice(1) }));
  assert.throws(() => kn.data.readManifest(join(d3, 'bad.json')), /says version .* but its files and schema hash to/);
  kn.data.writeParquet(join(d3, 'd.parquet'), { x: kn.tensor([1], [1], { dtype: 'int32' }) });
  await rejectsKiln(
    kn.data.datasetManifest(d3),
    kn.ValidationError,
    /d\.parquet does not have the schema of .*column 'x' is Int32/,
  );
  rmSync(d3, { recursive: true, force: true });
});

test('bad streams: clear errors before any thread starts, and from the readers', async () => {
  await rejectsKiln(
    kn.data.StreamingDataset.open(dir, { columns: { x: ['a', 'nope'] } }),
    kn.ValidationError,
    /has no column 'nope'; it has id, a, b/,
  );
  await rejectsKiln(
    kn.data.StreamingDataset.open(dir, { columns: cols, maxMemoryBytes: 10_000 }),
    kn.ValidationError,
    /maxMemoryBytes 10000 cannot hold a shuffle buffer of 32 rows plus row groups of up to 1000 rows/,
  );
  await rejectsKiln(
    kn.data.StreamingDataset.open(dir, { columns: cols, rank: 3, worldSize: 3 }),
    kn.ArgumentError,
    /rank must be an integer in \[0, 3\)/,
  );
  await rejectsKiln(
    kn.data.StreamingDataset.open(dir, { columns: cols, worldSize: 100 }),
    kn.ValidationError,
    /48 row groups for 100 ranks/,
  );
  await rejectsKiln(
    kn.data.StreamingDataset.open(join(dir, 'none'), { columns: cols }),
    kn.ArgumentError,
    /cannot read/,
  );
  const d4 = tempDir('kiln-stream-bad-');
  kn.data.writeParquet(
    join(d4, 'n.parquet'),
    new A.Table({ s: A.vectorFromArray(['a', 'b']), v: A.vectorFromArray([1, null], new A.Int32()) }),
  );
  await rejectsKiln(
    kn.data.StreamingDataset.open(d4, { columns: { s: 's' } }),
    kn.ValidationError,
    /column 's' is Dictionary<Int32, Utf8>; a streamed column must be numeric/,
  );
  const ds = await kn.data.StreamingDataset.open(d4, { columns: { v: 'v' }, batchSize: 2 });
  await rejectsKiln(epochIds(ds, 0), kn.ValidationError, /column 'v' has a null in an int32 field/);
  await ds.close();
  const asFloat = await kn.data.StreamingDataset.open(d4, {
    columns: { v: 'v' },
    dtypes: { v: 'float32' },
    batchSize: 2,
    shuffle: false,
  });
  for await (const b of asFloat.batches(0)) assert.equal(b.v!.toList(), [1, NaN]);
  await asFloat.close();
  await rejectsKiln(epochIds(asFloat, 0), kn.ArgumentError, /the StreamingDataset is closed/);
  // a file changed in place under an open stream: a ValidationError naming it, not a crashed reader thread
  const moving = await kn.data.StreamingDataset.open(d4, {
    columns: { v: 'v' },
    dtypes: { v: 'float32' },
    batchSize: 2,
    workers: 1,
  });
  for await (const b of moving.batches(0)) b.v!.dispose();
  appendFileSync(join(d4, 'n.parquet'), 'appended');
  await rejectsKiln(
    epochIds(moving, 1),
    kn.ValidationError,
    /n\.parquet changed while a StreamingDataset was reading it/,
  );
  await moving.close();
  rmSync(d4, { recursive: true, force: true });
});

/** The ids of epoch 0's rows, each row's x checked to be its id / 2. */
async function halvedIds(ds: kn.data.StreamingDataset): Promise<number[]> {
  const ids: number[] = [];
  for await (const b of ds.batches(0)) {
    const id = b.id!.toArray() as Int32Array,
      x = b.x!.toArray() as Float32Array;
    id.forEach((v, k) => assert.is(x[k], v / 2));
    ids.push(...id);
    for (const t of Object.values(b)) t.dispose();
  }
  return ids;
}

test('Arrow IPC files stream by record batch, alongside Parquet files, with the same rows and manifest', async () => {
  const d5 = tempDir('kiln-stream-arrow-');
  // one Arrow file of three record batches and one Parquet file
  const batch = (lo: number, n: number): A.RecordBatch => {
    const ids = Int32Array.from({ length: n }, (_, i) => lo + i);
    return new A.RecordBatch({
      id: A.makeData({ type: new A.Int32(), length: n, data: ids }),
      a: A.makeData({ type: new A.Float32(), length: n, data: Float32Array.from(ids, (i) => i / 2) }),
    });
  };
  kn.data.writeArrow(join(d5, 'a.arrow'), new A.Table([batch(0, 300), batch(300, 250), batch(550, 200)]));
  kn.data.writeParquet(
    join(d5, 'b.parquet'),
    new A.Table({
      id: A.makeVector(Int32Array.from({ length: 250 }, (_, i) => 750 + i)),
      a: A.makeVector(Float32Array.from({ length: 250 }, (_, i) => (750 + i) / 2)),
    }),
    { rowGroupSize: 100 },
  );
  const info = await kn.data.arrowFileInfo(join(d5, 'a.arrow'));
  assert.equal(info.batches, [300, 250, 200]);
  const ds = await kn.data.StreamingDataset.open(d5, { columns: { id: 'id', x: ['a'] }, batchSize: 64, seed: 5 });
  assert.is(ds.rows, 1000);
  const ids = await halvedIds(ds);
  assert.equal(
    [...ids].sort((p, q) => p - q),
    Array.from({ length: 1000 }, (_, i) => i),
  );
  assert.is(ds.stats().rowGroupsRead, 3 + 3);
  await ds.close();
  // messages name an Arrow file's units as record batches
  await rejectsKiln(
    kn.data.StreamingDataset.open(join(d5, 'a.arrow'), { columns: { id: 'id' }, worldSize: 4, rank: 0 }),
    kn.ValidationError,
    /the dataset has 3 record batches for 4 ranks; each rank reads whole record batches/,
  );
  await rejectsKiln(
    kn.data.StreamingDataset.open(d5, { columns: { id: 'id' }, worldSize: 7, rank: 0 }),
    kn.ValidationError,
    /the dataset has 6 row groups and record batches for 7 ranks/,
  );
  const m = await kn.data.datasetManifest(d5);
  assert.equal(
    m.files.map((f) => [f.path, f.rows, f.rowGroups]),
    [
      ['a.arrow', 750, 3],
      ['b.parquet', 250, 3],
    ],
  );
  // a stream-format Arrow file is indexed by its message headers and streams by record batch too
  const streamed = join(d5, 'c.arrow');
  writeFileSync(streamed, A.tableToIPC(new A.Table([batch(0, 30), batch(30, 20), batch(50, 7)]), 'stream'));
  assert.equal(await kn.data.arrowFileInfo(streamed), {
    rows: 57,
    batches: [30, 20, 7],
    format: 'stream',
    columns: [
      { name: 'id', type: 'Int32', nullable: true },
      { name: 'a', type: 'Float32', nullable: true },
    ],
  });
  const sc = await kn.data.StreamingDataset.open(streamed, { columns: { id: 'id', x: ['a'] }, batchSize: 8, seed: 2 });
  const seen = await halvedIds(sc);
  assert.equal(
    seen.sort((p, q) => p - q),
    Array.from({ length: 57 }, (_, i) => i),
  );
  assert.is(sc.stats().rowGroupsRead, 3);
  await sc.close();
  rmSync(streamed);
  // many small batches, several read at once by one thread (apache-arrow's file reader seeks a shared position:
  // reads of one file run one at a time), in both formats, with a dictionary column grown by deltas
  const many = tempDir('kiln-stream-many-');
  const chunks = Array.from({ length: 60 }, (_, c) => {
    const ids = Int32Array.from({ length: 10 }, (_, i) => c * 10 + i);
    return new A.Table({
      id: A.makeVector(ids),
      a: A.makeVector(Float32Array.from(ids, (i) => i / 2)),
      s: A.vectorFromArray(
        Array.from(ids, (i) => `s${i % 37}`),
        new A.Dictionary(new A.Utf8(), new A.Int32()),
      ),
    });
  });
  for (const name of ['many.arrow', 'many.arrows']) {
    await kn.data.writeArrowStream(join(many, name), chunks);
    for (const workers of [1, 2]) {
      const md = await kn.data.StreamingDataset.open(join(many, name), {
        columns: { id: 'id', x: ['a'] },
        batchSize: 32,
        seed: 3,
        workers,
      });
      const got = await halvedIds(md);
      await md.close();
      assert.equal(
        got.sort((p, q) => p - q),
        Array.from({ length: 600 }, (_, i) => i),
        `${name}, ${workers} workers`,
      );
    }
  }
  rmSync(many, { recursive: true });
  // a record batch whose length its buffer cannot hold is refused, not read as 99,996 made-up rows
  const short = join(d5, 'short.arrow');
  writeFileSync(
    short,
    A.tableToIPC(
      new A.Table({
        a: A.makeVector(A.makeData({ type: new A.Float32(), length: 100_000, data: new Float32Array(4) })),
      }),
      'file',
    ),
  );
  const sd = await kn.data.StreamingDataset.open(short, { columns: { x: ['a'] }, batchSize: 64 });
  await rejectsKiln(
    (async () => {
      for await (const b of sd.batches(0)) for (const t of Object.values(b)) t.dispose();
    })(),
    kn.FormatError,
    /cannot read record batch 0 of \S+short\.arrow: column "a" claims 100000 values but its data holds 4/,
  );
  await sd.close();
  rmSync(d5, { recursive: true, force: true });
});

test('every data extension counts whatever its case: a dataset of .IPC, .Feather, .ARROWS and .PARQUET files', async () => {
  const d = tempDir('kiln-stream-ext-');
  const part = (lo: number, n: number): A.Table => {
    const ids = Int32Array.from({ length: n }, (_, i) => lo + i);
    return new A.Table({ id: A.makeVector(ids), a: A.makeVector(Float32Array.from(ids, (i) => i / 2)) });
  };
  kn.data.writeArrow(join(d, 'a.IPC'), part(0, 40));
  kn.data.writeArrow(join(d, 'b.Feather'), part(40, 30));
  // .ARROWS is the stream format, as .arrows is
  await kn.data.writeArrowStream(join(d, 'c.ARROWS'), [part(70, 20), part(90, 10)]);
  kn.data.writeParquet(join(d, 'd.PARQUET'), part(100, 25));
  writeFileSync(join(d, 'notes.txt'), 'not data');
  assert.equal(
    kn.data.datasetFiles(d).map((f) => f.slice(d.length + 1)),
    ['a.IPC', 'b.Feather', 'c.ARROWS', 'd.PARQUET'],
  );
  assert.equal(
    await Promise.all(['a.IPC', 'c.ARROWS'].map(async (f) => (await kn.data.arrowFileInfo(join(d, f))).format)),
    ['file', 'stream'],
  );
  const m = await kn.data.datasetManifest(d);
  assert.equal(
    m.files.map((f) => [f.path, f.rows, f.rowGroups]),
    [
      ['a.IPC', 40, 1],
      ['b.Feather', 30, 1],
      ['c.ARROWS', 30, 2],
      ['d.PARQUET', 25, 1],
    ],
  );
  const ds = await kn.data.StreamingDataset.open(d, { columns: { id: 'id', x: ['a'] }, batchSize: 16, seed: 4 });
  const ids = await halvedIds(ds);
  await ds.close();
  assert.equal(
    ids.sort((p, q) => p - q),
    Array.from({ length: 125 }, (_, i) => i),
  );
  // the table readers decide the same way
  assert.equal(
    [...readTable(join(d, 'b.Feather'), 'test').getChild('id')!],
    Array.from({ length: 30 }, (_, i) => 40 + i),
  );
  assert.equal([...readTable(join(d, 'd.PARQUET'), 'test').getChild('id')!].slice(0, 2), [100, 101]);
  rmSync(d, { recursive: true, force: true });
});

test('a page that makes the decoder panic fails the stream with a FormatError naming the file and row group', async () => {
  const d = tempDir('kiln-stream-panic-');
  kn.seed(6);
  const good = join(d, 'good.parquet');
  kn.data.writeParquet(good, { a: kn.randn([4000]), b: kn.randn([4000]) }, { rowGroupSize: 1000 });
  const bytes = readFileSync(good);
  // damaged copies until one makes parquet-wasm panic on a row group (its footer intact: the stream opens it)
  const seed = { r: 777 };
  let found: string | null = null;
  for (let copy = 0; copy < 60 && found === null; copy++) {
    const p = join(d, `copy-${copy}.parquet`);
    writeFileSync(p, damagedCopy(bytes, seed, 12, 1500));
    const src = await kn.data.ParquetSource.open(p).catch(() => null);
    if (!src) continue;
    for (let g = 0; g < src.info.rowGroups.length && found === null; g++)
      await src.read({ rowGroups: [g] }).catch((e: Error) => {
        if (/the Parquet decoder failed on it/.test(e.message)) found = p;
      });
    src.close();
  }
  assert.ok(found !== null, 'some damaged copy makes the decoder panic');
  const ds = await kn.data.StreamingDataset.open(found!, { columns: { a: 'a', b: 'b' }, batchSize: 500, workers: 1 });
  const drain = async (): Promise<void> => {
    for await (const b of ds.batches(0)) Object.values(b).forEach((t) => t.dispose());
  };
  await rejectsKiln(
    drain(),
    kn.FormatError,
    /a Parquet reader thread failed reading row group \d+ of \S+copy-\d+\.parquet/,
  );
  await ds.close();
  rmSync(d, { recursive: true, force: true });
});

test('a row group read that runs past its deadline fails the stream (KILN_DATA_READ_TIMEOUT_MS)', async () => {
  const d = tempDir('kiln-stream-deadline-');
  const path = join(d, 'deadline.parquet');
  kn.seed(8);
  kn.data.writeParquet(path, { a: kn.randn([200_000]), b: kn.randn([200_000]) }, { rowGroupSize: 100_000 });
  const ds = await kn.data.StreamingDataset.open(path, { columns: { a: 'a', b: 'b' }, batchSize: 1000, workers: 1 });
  const drain = async (): Promise<number> => {
    let n = 0;
    for await (const b of ds.batches(0)) {
      n += b.a!.shape[0]!;
      Object.values(b).forEach((t) => t.dispose());
    }
    return n;
  };
  process.env.KILN_DATA_READ_TIMEOUT_MS = '1';
  try {
    await rejectsKiln(
      drain(),
      kn.FormatError,
      /reading row group \d of \S+deadline\.parquet did not finish within 0\.\d s \(a malformed file; KILN_DATA_READ_TIMEOUT_MS sets the limit\)/,
    );
  } finally {
    delete process.env.KILN_DATA_READ_TIMEOUT_MS;
  }
  await ds.close();
  // with the default limit the same file streams whole
  const again = await kn.data.StreamingDataset.open(path, { columns: { a: 'a', b: 'b' }, batchSize: 1000 });
  let rows = 0;
  for await (const b of again.batches(0)) {
    rows += b.a!.shape[0]!;
    Object.values(b).forEach((t) => t.dispose());
  }
  assert.is(rows, 200_000);
  await again.close();
  rmSync(d, { recursive: true, force: true });
});

test('an open stream never keeps the process alive', () => {
  const code = `import * as kn from './src/index.js';
const ds = await kn.data.StreamingDataset.open(${JSON.stringify(dir)}, { columns: { y: 'label' }, batchSize: 8 });
for await (const b of ds.batches(0)) { console.log('batch ' + b.y.shape[0]); break; }`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    encoding: 'utf8',
    timeout: 60_000,
    killSignal: 'SIGKILL',
  });
  assert.is(r.signal, null, 'the process was still running after 60 s');
  assert.is(r.status, 0, r.stderr);
  assert.ok(/batch 8/.test(r.stdout), `stdout: ${r.stdout} stderr: ${r.stderr}`);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));

test.run();
