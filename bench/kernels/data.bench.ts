// Fitting and applying feature scalers on a large table, on the cpu backend (native masked reductions and
// column quantiles) against the js reference backend and a plain TypeScript loop over a Float32Array.
import * as kn from '../../src/index.js';
import { fmt, measure } from '../harness.js';

const N = 1_000_000,
  F = 16;

function plainStandardFit(a: Float32Array): { mean: Float64Array; std: Float64Array } {
  const mean = new Float64Array(F),
    sq = new Float64Array(F),
    cnt = new Float64Array(F);
  for (let i = 0; i < N; i++)
    for (let j = 0; j < F; j++) {
      const v = a[i * F + j]!;
      if (v === v) {
        mean[j]! += v;
        sq[j]! += v * v;
        cnt[j]!++;
      }
    }
  for (let j = 0; j < F; j++) {
    mean[j]! /= cnt[j]!;
    sq[j] = Math.sqrt(sq[j]! / cnt[j]! - mean[j]! ** 2);
  }
  return { mean, std: sq };
}

export async function run(): Promise<void> {
  console.log(`## feature scaling, table ${N} x ${F} float32 with 5% NaN: ms (median)`);
  kn.setBackend('cpu');
  kn.seed(0);
  const host = kn.tidy(() => {
    const x = kn.randn([N, F]);
    return kn.where(kn.rand([N, F]).lt(0.05), NaN, x).toArray() as Float32Array;
  });
  const rows: [string, number][] = [];
  for (const b of ['cpu', 'js'] as const) {
    kn.setBackend(b);
    const x = kn.tensor(host, [N, F]);
    const reps = b === 'js' ? 1 : 5;
    const st = await measure(
      () => {
        new kn.data.StandardScaler().fit(x);
      },
      { warmup: 1, repeats: reps, minTimeMs: 0 },
    );
    const s = new kn.data.StandardScaler().fit(x);
    const tr = await measure(
      () => {
        s.transform(x).dispose();
      },
      { warmup: 1, repeats: reps, minTimeMs: 0 },
    );
    const rb = await measure(
      () => {
        new kn.data.RobustScaler().fit(x);
      },
      { warmup: 1, repeats: b === 'js' ? 1 : 3, minTimeMs: 0 },
    );
    rows.push(
      [`${b} StandardScaler.fit`, st.medianMs],
      [`${b} StandardScaler.transform`, tr.medianMs],
      [`${b} RobustScaler.fit`, rb.medianMs],
    );
    x.dispose();
  }
  const pl = await measure(
    () => {
      plainStandardFit(host);
    },
    { warmup: 1, repeats: 5, minTimeMs: 0 },
  );
  rows.push(['plain TS loop, standard fit', pl.medianMs]);
  for (const [name, ms] of rows) console.log(`${name.padEnd(32)} ${fmt(ms)} ms`);
  kn.setBackend('cpu');
}
