// Reading an Arrow IPC file: kn.data.readArrow (a file from outside is parsed first on a probe thread with a
// deadline, every buffer checked against the lengths it claims) against apache-arrow's own tableFromIPC on the
// same bytes (no checks), so the price of the checks is one ratio.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as A from 'apache-arrow';
import * as kn from '../../src/index.js';
import { fmt, measureAsync } from '../harness.js';

const N = 2_000_000;

function table(): A.Table {
  const cols: Record<string, A.Vector> = {};
  let x = 1;
  const next = (): number => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0);
  for (let c = 0; c < 8; c++) cols[`f${c}`] = A.makeVector(Float32Array.from({ length: N }, () => next() / 2 ** 32));
  const cats = Array.from({ length: 16 }, (_, k) => `category-${k}`);
  cols.dict = A.vectorFromArray(
    Array.from({ length: N }, () => cats[next() & 15]!),
    new A.Dictionary(new A.Utf8(), new A.Int32()),
  );
  cols.text = A.vectorFromArray(
    Array.from({ length: N }, () => `id-${next()}`),
    new A.Utf8(),
  );
  return new A.Table(cols);
}

export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-bench-arrow-'));
  try {
    const file = join(dir, 't.arrow');
    kn.data.writeArrow(file, table());
    const mb = statSync(file).size / 1e6;
    console.log(
      `## Arrow IPC file, ${N / 1e6}M rows: 8 float32, a 16-category dictionary string, a unique string (${fmt(mb).trim()} MB): ms (median of 5)`,
    );
    const opts = { warmup: 1, repeats: 5, minTimeMs: 0 };
    const raw = await measureAsync(async () => {
      A.tableFromIPC(readFileSync(file));
    }, opts);
    const kiln = await measureAsync(async () => {
      kn.data.readArrow(file);
    }, opts);
    for (const [name, ms] of [
      ['apache-arrow tableFromIPC (no checks)', raw.medianMs],
      ['kn.data.readArrow (probe thread, checked)', kiln.medianMs],
    ] as const)
      console.log(
        `${name.padEnd(44)} ${fmt(ms).padStart(8)} ms  ${fmt(mb / ms, 2).padStart(6)} GB/s  ${fmt(ms / raw.medianMs, 2)}x unchecked`,
      );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
