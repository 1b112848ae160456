// Parquet throughput on a 1M-row file (float32, float64, int32, int64 and a 16-category string column): kiln's
// reader and writer (parquet-wasm) against hyparquet / hyparquet-writer and DuckDB's node API, all in this
// process; then a StreamingDataset feeding fit() against the same data in memory.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import * as A from 'apache-arrow';
import { asyncBufferFromFile, parquetRead } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { parquetWriteBuffer } from 'hyparquet-writer';
import * as kn from '../../src/index.js';
import { fmt, measureAsync } from '../harness.js';

const N = 1_000_000;

function table(): A.Table {
  const f32 = new Float32Array(N),
    f64 = new Float64Array(N),
    i32 = new Int32Array(N),
    i64 = new BigInt64Array(N);
  const cats = Array.from({ length: 16 }, (_, k) => `category-${k}`);
  const s: string[] = new Array<string>(N);
  let x = 1;
  for (let i = 0; i < N; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    f32[i] = x / 4294967296;
    f64[i] = (x / 4294967296) * 1e6;
    i32[i] = x | 0;
    i64[i] = BigInt(i) * 7919n;
    s[i] = cats[x & 15]!;
  }
  return new A.Table({
    f32: A.makeVector(f32),
    f64: A.makeVector(f64),
    i32: A.makeVector(i32),
    i64: A.makeVector(i64),
    s: A.vectorFromArray(s, new A.Dictionary(new A.Utf8(), new A.Int32())),
  });
}

export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-bench-pq-'));
  try {
    await parquet(dir);
    await streaming(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function parquet(dir: string): Promise<void> {
  console.log(`## Parquet, ${N / 1e6}M rows x 5 columns (f32, f64, i32, i64, dictionary string): ms (median of 3)`);
  const t = table();
  const file = join(dir, 'kiln.parquet');
  const rows: [string, number, string][] = [];
  const opts = { warmup: 1, repeats: 3, minTimeMs: 0 };
  // writes
  const kw = await measureAsync(async () => {
    kn.data.writeParquet(file, t, { compression: 'snappy' });
  }, opts);
  rows.push(['write  kiln (parquet-wasm, snappy)', kw.medianMs, `${(statSync(file).size / 1e6).toFixed(1)} MB`]);
  const kz = await measureAsync(async () => {
    kn.data.writeParquet(join(dir, 'kiln-zstd.parquet'), t, { compression: 'zstd' });
  }, opts);
  rows.push([
    'write  kiln (parquet-wasm, zstd)',
    kz.medianMs,
    `${(statSync(join(dir, 'kiln-zstd.parquet')).size / 1e6).toFixed(1)} MB`,
  ]);
  const cols = t.schema.fields.map((f) => t.getChild(f.name)!);
  const hw = await measureAsync(async () => {
    parquetWriteBuffer({
      columnData: [
        { name: 'f32', data: cols[0]!.toArray() as Float32Array, type: 'FLOAT' },
        { name: 'f64', data: cols[1]!.toArray() as Float64Array, type: 'DOUBLE' },
        { name: 'i32', data: cols[2]!.toArray() as Int32Array, type: 'INT32' },
        { name: 'i64', data: cols[3]!.toArray() as BigInt64Array, type: 'INT64' },
        { name: 's', data: Array.from(cols[4]!), type: 'STRING' },
      ],
    });
  }, opts);
  rows.push(['write  hyparquet-writer (from JS arrays)', hw.medianMs, '']);
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  const dw = await measureAsync(async () => {
    await con.run(`COPY (SELECT * FROM read_parquet('${file}')) TO '${join(dir, 'duck.parquet')}' (FORMAT parquet)`);
  }, opts);
  rows.push(['write  DuckDB COPY (parquet -> parquet)', dw.medianMs, '']);
  // reads into columns
  const kr = await measureAsync(async () => {
    kn.data.readParquet(file);
  }, opts);
  rows.push(['read   kiln -> Arrow table', kr.medianMs, '']);
  const kt = await measureAsync(async () => {
    const ts = kn.data.fromArrow(kn.data.readParquet(file, { columns: ['f32', 'f64', 'i32', 's'] }));
    for (const x of Object.values(ts)) x.dispose();
  }, opts);
  rows.push(['read   kiln -> tensors (f32, f64, i32, s codes)', kt.medianMs, '']);
  const hr = await measureAsync(async () => {
    const f = await asyncBufferFromFile(file);
    await parquetRead({ file: f, compressors, rowFormat: 'array', onComplete: () => undefined });
  }, opts);
  rows.push(['read   hyparquet -> JS rows', hr.medianMs, '']);
  const dr = await measureAsync(async () => {
    (await con.runAndReadAll(`SELECT * FROM read_parquet('${file}')`)).getColumnsJS();
  }, opts);
  rows.push(['read   DuckDB -> JS columns', dr.medianMs, '']);
  con.closeSync();
  db.closeSync();
  const base = kr.medianMs;
  for (const [name, ms, note] of rows)
    console.log(
      `${name.padEnd(48)} ${fmt(ms).padStart(8)} ms  ${fmt(N / ms / 1000, 2).padStart(6)} M rows/s  ${name.startsWith('read') ? `${fmt(ms / base, 2)}x kiln read` : ''} ${note}`,
    );
}

async function streaming(dir: string): Promise<void> {
  const F = 32,
    rows = 400_000;
  console.log(`\n## StreamingDataset -> fit(): ${rows / 1000}k rows x ${F} float32 features in 8 files, MLP ${F}-64-2`);
  const sdir = join(dir, 'stream');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(sdir);
  kn.setBackend('cpu');
  kn.seed(1);
  const x = kn.randn([rows, F]);
  const w = kn.randn([F, 1]);
  const y = x.matmul(w).reshape([rows]).gt(0).cast('int32');
  const per = rows / 8;
  for (let f = 0; f < 8; f++) {
    const xs = x.slice([f * per, 0], [(f + 1) * per, F]);
    const cols: Record<string, kn.Tensor> = { x: xs, y: y.slice([f * per], [(f + 1) * per]) };
    kn.data.writeParquet(join(sdir, `part-${f}.parquet`), cols, { rowGroupSize: 10_000 });
    xs.dispose();
  }
  const names = Array.from({ length: F }, (_, j) => `x.${j}`);
  const bound = 32 * 2 ** 20;
  const bytes = rows * (F + 1) * 4;
  const model = (): kn.nn.Module =>
    new kn.nn.Sequential(new kn.nn.Linear(F, 64), new kn.nn.ReLU(), new kn.nn.Linear(64, 2));
  const fitOnce = async (train: kn.data.DataLoader | kn.data.StreamingDataset): Promise<number> => {
    kn.seed(2);
    const m = model();
    const t0 = performance.now();
    await kn.train.fit(m, {
      train,
      loss: 'crossEntropy',
      optimizer: new kn.optim.Adam(m.parameters()),
      epochs: 1,
      verbose: 'silent',
    });
    return performance.now() - t0;
  };
  const out: [string, number][] = [];
  for (const workers of [1, 2]) {
    const ds = await kn.data.StreamingDataset.open(sdir, {
      columns: { x: names, y: 'y' },
      batchSize: 256,
      seed: 1,
      maxMemoryBytes: bound,
      workers,
    });
    const t0 = performance.now();
    let n = 0;
    for await (const b of ds.batches(0)) {
      n += b.y!.shape[0]!;
      for (const t of Object.values(b)) t.dispose();
    }
    out.push([`stream only, ${workers} reader thread(s)`, performance.now() - t0]);
    out.push([`fit 1 epoch on the stream, ${workers} reader thread(s)`, await fitOnce(ds)]);
    if (workers === 2)
      console.log(
        `data ${(bytes / 2 ** 20).toFixed(1)} MiB decoded, bound ${(bound / 2 ** 20).toFixed(0)} MiB, peak held ${(ds.stats().peakBytes / 2 ** 20).toFixed(1)} MiB, ${n} rows/epoch`,
      );
    await ds.close();
  }
  const mem = new kn.data.DataLoader(new kn.data.Dataset({ x, y }), { batchSize: 256, shuffle: true, seed: 1 });
  out.push(['fit 1 epoch in memory (DataLoader)', await fitOnce(mem)]);
  const base = out.at(-1)![1];
  for (const [name, ms] of out)
    console.log(
      `${name.padEnd(48)} ${fmt(ms).padStart(8)} ms  ${fmt(rows / ms / 1000, 2).padStart(6)} M rows/s  ${fmt(base / ms, 2)}x in-memory fit`,
    );
  x.dispose();
  y.dispose();
  w.dispose();
}
