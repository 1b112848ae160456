// Reading an Arrow IPC file: kn.data.readArrow (a file from outside is parsed first on a probe thread with a
// deadline, every buffer checked against the lengths it claims) and kn.data.ArrowSource (a record batch at a
// time on a reader thread, each checked there; the file format, then the same batches in the stream format)
// against apache-arrow's own tableFromIPC on the same bytes (no checks), so the price of the checks is one
// ratio. Then the peak memory of converting to and from Parquet whole against a chunk at a time (ArrowSource /
// ParquetSource into writeParquetStream / writeArrowStream, as kiln convert does), each in a child process of
// its own at two file sizes, so what grows with the file shows.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as A from 'apache-arrow';
import * as kn from '../../src/index.js';
import { fmt, measureAsync, peakMb } from '../harness.js';

const N = 2_000_000;

/** `n` rows (N by default): 8 float32, a 16-category dictionary string and a unique string. */
function table(n = N): A.Table {
  const cols: Record<string, A.Vector> = {};
  let x = 1;
  const next = (): number => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0);
  for (let c = 0; c < 8; c++) cols[`f${c}`] = A.makeVector(Float32Array.from({ length: n }, () => next() / 2 ** 32));
  const cats = Array.from({ length: 16 }, (_, k) => `category-${k}`);
  cols.dict = A.vectorFromArray(
    Array.from({ length: n }, () => cats[next() & 15]!),
    new A.Dictionary(new A.Utf8(), new A.Int32()),
  );
  cols.text = A.vectorFromArray(
    Array.from({ length: n }, () => `id-${next()}`),
    new A.Utf8(),
  );
  return new A.Table(cols);
}

export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-bench-arrow-'));
  try {
    const file = join(dir, 't.arrow');
    // record batches of 65,536 rows, as a stream of chunks writes them
    const whole = table();
    const slices = function* (t: A.Table): Generator<A.Table> {
      for (let r = 0; r < t.numRows; r += 65_536) yield t.slice(r, r + 65_536);
    };
    await kn.data.writeArrowStream(file, slices(whole));
    const mb = statSync(file).size / 1e6;
    console.log(
      `## Arrow IPC file, ${N / 1e6}M rows in batches of 65,536: 8 float32, a 16-category dictionary string, a unique string (${fmt(mb).trim()} MB): ms (median of 5)`,
    );
    const opts = { warmup: 1, repeats: 5, minTimeMs: 0 };
    const raw = await measureAsync(async () => {
      A.tableFromIPC(readFileSync(file));
    }, opts);
    const kiln = await measureAsync(async () => {
      kn.data.readArrow(file);
    }, opts);
    // the same batches in the IPC stream format (no footer: ArrowSource indexes its message headers at open,
    // and each batch is decoded with the dictionary messages it depends on); the two alternate in two rounds
    // (each side's best), so a slow minute of this shared machine does not land on one side only
    const streamFile = join(dir, 't-stream.arrow');
    writeFileSync(streamFile, A.tableToIPC(A.tableFromIPC(readFileSync(file)), 'stream'));
    const chunked = (path: string) => async (): Promise<void> => {
      const src = await kn.data.ArrowSource.open(path);
      for await (const t of src.chunks()) void t;
      src.close();
    };
    const batches = { medianMs: Infinity },
      streamBatches = { medianMs: Infinity };
    for (let round = 0; round < 2; round++) {
      batches.medianMs = Math.min(batches.medianMs, (await measureAsync(chunked(file), opts)).medianMs);
      streamBatches.medianMs = Math.min(
        streamBatches.medianMs,
        (await measureAsync(chunked(streamFile), opts)).medianMs,
      );
    }
    for (const [name, ms] of [
      ['apache-arrow tableFromIPC (no checks)', raw.medianMs],
      ['kn.data.readArrow (probe thread, checked)', kiln.medianMs],
      ['kn.data.ArrowSource chunks (reader thread)', batches.medianMs],
      ['kn.data.ArrowSource chunks, stream format', streamBatches.medianMs],
    ] as const)
      console.log(
        `${name.padEnd(48)} ${fmt(ms).padStart(8)} ms  ${fmt(mb / ms, 2).padStart(6)} GB/s  ${fmt(ms / raw.medianMs, 2)}x unchecked`,
      );

    // a dictionary that grows with the file: 400 batches of 100 rows, each bringing 50 new strings (written as
    // delta dictionary batches), in both formats; a batch read alone carries only the entries it uses
    const growing = join(dir, 'growing.arrow');
    const growingStream = join(dir, 'growing-stream.arrow');
    const words = (k: number): A.Table =>
      new A.Table({
        d: A.vectorFromArray(
          Array.from({ length: 100 }, (_, i) => `w${k}-${i % 50}`),
          new A.Dictionary(new A.Utf8(), new A.Int32()),
        ),
        x: A.makeVector(Float32Array.from({ length: 100 }, (_, i) => i)),
      });
    await kn.data.writeArrowStream(
      growing,
      (function* () {
        for (let k = 0; k < 400; k++) yield words(k);
      })(),
    );
    writeFileSync(growingStream, A.tableToIPC(A.tableFromIPC(readFileSync(growing)), 'stream'));
    console.log(
      '## a growing dictionary: 400 batches of 100 rows, 50 new strings each (delta dictionaries): ms (median of 3)',
    );
    const few = { warmup: 1, repeats: 3, minTimeMs: 0 };
    for (const [name, path] of [
      ['kn.data.ArrowSource chunks, file format', growing],
      ['kn.data.ArrowSource chunks, stream format', growingStream],
    ] as const)
      console.log(`${name.padEnd(48)} ${fmt((await measureAsync(chunked(path), few)).medianMs).padStart(8)} ms`);
    // the same files through a StreamingDataset (2 reader threads, column x only), in order and shuffled: a thread
    // takes every other batch or so in order, any batch shuffled
    const epoch = (path: string, shuffle: boolean) => async (): Promise<void> => {
      const ds = await kn.data.StreamingDataset.open(path, { columns: { x: 'x' }, batchSize: 256, shuffle, seed: 1 });
      for await (const b of ds.batches(0)) for (const t of Object.values(b)) t.dispose();
      await ds.close();
    };
    for (const [name, path] of [
      ['file format', growing],
      ['stream format', growingStream],
    ] as const)
      for (const shuffle of [false, true]) {
        const label = `kn.data.StreamingDataset epoch, ${name}${shuffle ? ', shuffled' : ''}`;
        console.log(
          `${label.padEnd(56)} ${fmt((await measureAsync(epoch(path, shuffle), few)).medianMs).padStart(8)} ms`,
        );
      }

    // a high-cardinality column (a user id): one dictionary of 1M distinct strings that every batch carries, 200
    // batches of 5,000 rows. A batch's check and compaction work in its rows, not the dictionary's size
    const many = join(dir, 'high-cardinality.arrow');
    {
      const entries = 1_000_000,
        rows = 5_000;
      const type = new A.Dictionary(new A.Utf8(), new A.Int32(), 901);
      const dictionary = A.vectorFromArray(
        Array.from({ length: entries }, (_, i) => `user-${i}`),
        new A.Utf8(),
      );
      let state = 1;
      const next = (): number => (state = (state * 1103515245 + 12345) >>> 0) % entries;
      const batches = Array.from(
        { length: 200 },
        (_, b) =>
          new A.RecordBatch({
            u: A.makeData({ type, length: rows, data: Int32Array.from({ length: rows }, next), dictionary }),
            x: A.makeData({ type: new A.Float32(), length: rows, data: new Float32Array(rows).fill(b) }),
          }),
      );
      writeFileSync(many, A.tableToIPC(new A.Table(batches), 'file'));
    }
    console.log(
      `## a high-cardinality dictionary: 1M distinct strings, 200 batches of 5,000 rows (${(statSync(many).size / 1e6).toFixed(1)} MB): ms (median of 3)`,
    );
    const wholeMany = await measureAsync(async () => void A.tableFromIPC(readFileSync(many)), few);
    const srcMany = await measureAsync(chunked(many), few);
    console.log(`${'apache-arrow tableFromIPC, whole file'.padEnd(48)} ${fmt(wholeMany.medianMs).padStart(8)} ms`);
    console.log(
      `${'kn.data.ArrowSource chunks'.padEnd(48)} ${fmt(srcMany.medianMs).padStart(8)} ms   ${(srcMany.medianMs / wholeMany.medianMs).toFixed(2)}x whole`,
    );

    console.log('## Parquet <-> Arrow, peak RSS of a child process (MB); importing kiln alone is the floor');
    console.log(`${'import kiln, nothing else'.padEnd(48)} ${fmt(peakMb('void kn;')).padStart(8)} MB`);
    const part = table(N / 4);
    for (const k of [1, 4]) {
      const pq = join(dir, `x${k}.parquet`);
      const arrow = join(dir, `x${k}.arrow`);
      await kn.data.writeParquetStream(
        pq,
        (function* () {
          for (let i = 0; i < k; i++) yield* slices(part);
        })(),
        { rowGroupSize: 65_536 },
      );
      await kn.data.writeArrowStream(
        arrow,
        (function* () {
          for (let i = 0; i < k; i++) yield* slices(part);
        })(),
      );
      const pqMb = fmt(statSync(pq).size / 1e6).trim();
      const arMb = fmt(statSync(arrow).size / 1e6).trim();
      const out = join(dir, 'out');
      const rows: [string, number][] = [
        [
          `${pqMb} MB Parquet: readParquet + writeArrow`,
          peakMb(`kn.data.writeArrow('${out}.arrow', kn.data.readParquet('${pq}'));`),
        ],
        [
          `${pqMb} MB Parquet: row groups + writeArrowStream`,
          peakMb(
            `const src = await kn.data.ParquetSource.open('${pq}');\n` +
              `await kn.data.writeArrowStream('${out}.arrow', (async function* () { for (let g = 0; g < src.info.rowGroups.length; g++) yield await src.read({ rowGroups: [g] }); })());\nsrc.close();`,
          ),
        ],
        [
          `${arMb} MB Arrow: readArrow + writeParquet`,
          peakMb(`kn.data.writeParquet('${out}.parquet', kn.data.readArrow('${arrow}'));`),
        ],
        [
          `${arMb} MB Arrow: ArrowSource + writeParquetStream`,
          peakMb(
            `const src = await kn.data.ArrowSource.open('${arrow}');\n` +
              `await kn.data.writeParquetStream('${out}.parquet', src.chunks());\nsrc.close();`,
          ),
        ],
      ];
      for (const [i, [name, peak]] of rows.entries())
        console.log(
          `${name.padEnd(48)} ${fmt(peak).padStart(8)} MB${i % 2 === 1 ? `  ${fmt(rows[i - 1]![1] / peak, 2)}x less` : ''}`,
        );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
