// CSV in and out: kn.data.readCsv (whole file), openCsv (two streamed passes) and kiln convert (CSV to Parquet, a
// chunk at a time) against csv-parse alone (the parser kiln uses, the floor for any reader built on it) and
// DuckDB's read_csv (native, multi-threaded) on the same file, in one run. Time is the median of 3 in this
// process; the peak memory of a conversion is each way's peak RSS in a child process of its own, at two file
// sizes, so what grows with the file shows.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import * as A from 'apache-arrow';
import { parse } from 'csv-parse/sync';
import * as kn from '../../src/index.js';
import { fmt, measureAsync, peakMb } from '../harness.js';

const N = 300_000;

/** N rows: 8 float64, an int32 id and a 16-category string. */
function table(n: number): A.Table {
  let x = 1;
  const next = (): number => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0);
  const cols: Record<string, A.Vector> = {};
  for (let c = 0; c < 8; c++) cols[`f${c}`] = A.makeVector(Float64Array.from({ length: n }, () => next() / 2 ** 32));
  cols.id = A.makeVector(Int32Array.from({ length: n }, (_, i) => i));
  cols.cat = A.vectorFromArray(
    Array.from({ length: n }, () => `category-${next() & 15}`),
    new A.Utf8(),
  );
  return new A.Table(cols);
}

export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-bench-csv-'));
  try {
    const file = join(dir, 't.csv');
    kn.data.writeCsv(file, table(N));
    const mb = statSync(file).size / 1e6;
    console.log(
      `## CSV file, ${N / 1e3}k rows: 8 float64, an int32, a 16-category string (${fmt(mb).trim()} MB): ms (median of 3)`,
    );
    const opts = { warmup: 1, repeats: 3, minTimeMs: 0 };
    const db = await (await DuckDBInstance.create(':memory:')).connect();
    const rows: [string, number][] = [];
    rows.push([
      'csv-parse alone (strings, no columns)',
      (
        await measureAsync(async () => {
          parse(readFileSync(file, 'utf8'), { bom: true, skip_empty_lines: true });
        }, opts)
      ).medianMs,
    ]);
    rows.push([
      'kn.data.readCsv (whole file -> Arrow)',
      (
        await measureAsync(async () => {
          kn.data.readCsv(file);
        }, opts)
      ).medianMs,
    ]);
    rows.push([
      'kn.data.openCsv + chunks (two passes)',
      (
        await measureAsync(async () => {
          const src = await kn.data.openCsv(file);
          for await (const t of src.chunks()) void t;
        }, opts)
      ).medianMs,
    ]);
    rows.push([
      'DuckDB read_csv -> JS columns',
      (
        await measureAsync(async () => {
          (await db.runAndReadAll(`SELECT * FROM read_csv('${file}', header = true)`)).getColumnsJS();
        }, opts)
      ).medianMs,
    ]);
    const base = rows[1]![1];
    for (const [name, ms] of rows)
      console.log(
        `${name.padEnd(40)} ${fmt(ms).padStart(8)} ms  ${fmt(mb / (ms / 1000)).padStart(6)} MB/s  ${fmt(ms / base, 2)}x readCsv`,
      );
    db.closeSync();

    // peak memory of CSV -> Parquet: the whole table at once, against kiln convert's chunks
    console.log('## CSV -> Parquet, peak RSS of a child process (MB); importing kiln alone is the floor');
    const floor = peakMb('void kn;');
    console.log(`${'import kiln, nothing else'.padEnd(40)} ${fmt(floor).padStart(8)} MB`);
    for (const k of [1, 4]) {
      const big = join(dir, `x${k}.csv`);
      const lines = readFileSync(file, 'utf8');
      const body = lines.slice(lines.indexOf('\n') + 1);
      writeFileSync(big, lines.slice(0, lines.indexOf('\n') + 1) + body.repeat(k));
      const size = statSync(big).size / 1e6;
      const whole = peakMb(`kn.data.writeParquet('${join(dir, 'w.parquet')}', kn.data.readCsv('${big}'));`);
      const streamed = peakMb(
        `await kn.data.writeParquetStream('${join(dir, 's.parquet')}', (await kn.data.openCsv('${big}')).chunks());`,
      );
      console.log(
        `${`${fmt(size).trim()} MB: readCsv + writeParquet`.padEnd(40)} ${fmt(whole).padStart(8)} MB\n` +
          `${`${fmt(size).trim()} MB: openCsv + writeParquetStream`.padEnd(40)} ${fmt(streamed).padStart(8)} MB  ${fmt(whole / streamed, 2)}x less`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
