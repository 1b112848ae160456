// Reductions on the cpu against PyTorch CPU (bench/peers/torch_reduce.py), on 1 and all threads: a whole sum of
// 2^22 values, row sums [4096, 256], column sums [65536, 64], softmax and logSoftmax of [512, 1000], and the
// cross-entropy forward + backward of [512, 1000] logits (results stay on the backend: PyTorch reads none back
// either, but the whole sum's item()). ratio = PyTorch time / kiln time (> 1: kiln is faster);
// the sides alternate in KILN_BENCH_ROUNDS rounds (default 2) and each keeps its best round, as in torch.bench.ts.
// Then the accuracy of both against float64: the relative error of a sum of 2^22 copies of 0.1f, of column sums of
// [2^18, 4] copies, and the largest relative error of log-softmax over logits near 1e4 (which a log-sum-exp of
// m + log s, in float32, rounds away).
import * as kn from '../../src/index.js';
import { bench, cpuBench, fmt, warmDispatch } from '../harness.js';
import { torchPython, torchRows, type TorchRow } from '../peers/torch.js';

const MIN_MS = Number(process.env.KILN_BENCH_MIN_MS ?? 500);
const ROUNDS = Math.max(1, Math.floor(Number(process.env.KILN_BENCH_ROUNDS ?? 2)) || 1);
const TIMING = { minTimeMs: MIN_MS, maxRepeats: 2000 };

async function kilnRows(): Promise<TorchRow[]> {
  await warmDispatch(300);
  kn.seed(7);
  const rows: TorchRow[] = [];
  const time = async (work: TorchRow['work'], size: number, fn: () => void): Promise<void> => {
    rows.push({ work, size, medianMs: (await bench(() => kn.tidy(fn), TIMING)).medianMs });
  };
  const x = kn.rand([1 << 22]),
    r = kn.rand([4096, 256]),
    c = kn.rand([65536, 64]),
    logits = kn.randn([512, 1000]),
    labels = kn.randint([512], 0, 1000);
  await time('sum', 1 << 22, () => void x.sum().item());
  await time('rowsum', 4096, () => void r.sum(1));
  await time('colsum', 65536, () => void c.sum(0));
  await time('softmax', 512, () => void logits.softmax(1));
  await time('logsoftmax', 512, () => void logits.logSoftmax(1));
  const lg = logits.clone();
  lg.requiresGrad = true;
  await time('ce', 512, () => {
    lg.grad?.dispose();
    lg.grad = null;
    kn.nn.loss.crossEntropy(lg, labels).backward();
  });
  for (const t of [x, r, c, logits, labels, lg]) t.dispose();
  return rows;
}

/** kiln's accuracy probes, as torch_reduce.py's. */
function kilnAccuracy(): Map<string, number> {
  const tenth = Math.fround(0.1);
  return kn.tidy(() => {
    const sum = kn
      .full([1 << 22], 0.1)
      .sum()
      .item();
    const cols = Array.from(
      kn
        .full([1 << 18, 4], 0.1)
        .sum(0)
        .toArray() as Float32Array,
    );
    kn.seed(11);
    const big = kn.randn([256, 100]).add(1e4);
    const got = big.logSoftmax(1).toArray() as Float32Array;
    const xs = big.toArray() as Float32Array;
    let worst = 0;
    for (let i = 0; i < 256; i++) {
      const row = xs.subarray(i * 100, i * 100 + 100);
      const m = Math.max(...row);
      const ls = Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
      for (let j = 0; j < 100; j++) {
        const ref = row[j]! - m - ls;
        worst = Math.max(worst, Math.abs(got[i * 100 + j]! - ref) / Math.abs(ref));
      }
    }
    return new Map([
      ['err-sum', Math.abs(sum - tenth * 2 ** 22) / (tenth * 2 ** 22)],
      ['err-colsum', Math.max(...cols.map((v) => Math.abs(v - tenth * 2 ** 18) / (tenth * 2 ** 18)))],
      ['err-logsoftmax', worst],
    ]);
  });
}

export async function run(): Promise<void> {
  const { addon, info } = cpuBench();
  const torch = torchPython();
  if (!torch.python) console.log(`# ${torch.reason}`);
  else console.log(`# PyTorch ${torch.version} (python ${torch.python})`);
  const threadCounts = [...new Set([1, info.threads])];
  let torchAcc: Map<string, number> | null = null;
  for (const th of threadCounts) {
    addon.setThreads(th);
    const best = new Map<string, { kiln: number; torch: number | null }>();
    const ratios = new Map<string, string[]>();
    for (let round = 0; round < ROUNDS; round++) {
      const k = await kilnRows();
      const t = torch.python ? torchRows(torch.python, th, MIN_MS / 1000, 'torch_reduce.py') : [];
      if (t.length) torchAcc = new Map(t.filter((r) => r.value !== undefined).map((r) => [r.work, r.value!]));
      for (const row of k) {
        const key = `${row.work} ${row.size}`;
        const peer = t.find((p) => p.work === row.work && p.size === row.size)?.medianMs ?? null;
        const b = best.get(key);
        best.set(key, {
          kiln: Math.min(b?.kiln ?? Infinity, row.medianMs),
          torch: peer === null ? (b?.torch ?? null) : Math.min(b?.torch ?? Infinity, peer),
        });
        if (peer !== null) ratios.set(key, [...(ratios.get(key) ?? []), (peer / row.medianMs).toFixed(2)]);
      }
    }
    console.log(`\n## ${th} thread(s): ms, each side's best of ${ROUNDS} round(s); ratio = PyTorch / kiln`);
    console.log(`${'work'.padEnd(22)}${'kiln'.padStart(8)}${'PyTorch'.padStart(9)}  ratio (rounds)`);
    for (const [key, v] of best) {
      const ratio = v.torch === null ? '   -' : `${(v.torch / v.kiln).toFixed(2)} (${ratios.get(key)!.join(' / ')})`;
      console.log(
        `${key.padEnd(22)}${fmt(v.kiln, 3)}${v.torch === null ? '        -' : fmt(v.torch, 3).padStart(9)}  ${ratio}`,
      );
    }
  }
  addon.setThreads(info.threads);
  const mine = kilnAccuracy();
  console.log('\n## relative error against float64 (kiln, PyTorch)');
  for (const [work, e] of mine) {
    const p = torchAcc?.get(work);
    console.log(
      `${work.padEnd(22)}${e.toExponential(2).padStart(10)}${p === undefined ? '         -' : p.toExponential(2).padStart(10)}`,
    );
  }
}
