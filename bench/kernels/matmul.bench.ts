// float32 GEMM side by side with peers in one run (OpenBLAS with its SkylakeX kernels, onnxruntime-node,
// TensorFlow.js wasm and cpu), as GFLOP/s, the ratio to the best peer and the fraction of the measured peak
// FMA rate; then elementwise throughput of the cpu backend. kiln and OpenBLAS, the close pair, alternate in
// rounds (KILN_BENCH_ROUNDS, default 2, as bench/models/torch.bench.ts) and each shows its best round: a noisy
// second on this shared kind of machine otherwise decides the ratio by landing on one side. The per-round
// ratios are printed too.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import * as kn from '../../src/index.js';
import { cpuBench, perCallPacking, fmt, measure, measureAsync, warmDispatch } from '../harness.js';
import { helper, openblasSgemm, peakFma } from '../peers/openblas.js';
import { ortMatmul } from '../peers/onnxruntime.js';

const SIZES = [128, 256, 512, 1024, 2048];
const ROUNDS = Math.max(1, Math.floor(Number(process.env.KILN_BENCH_ROUNDS ?? 2)) || 1);
const gflops = (n: number, ms: number): number => (2 * n ** 3) / (ms * 1e6);

async function tfjsMatmul(backend: 'wasm' | 'cpu', n: number): Promise<number> {
  await tf.setBackend(backend);
  await tf.ready();
  const a = tf.randomNormal([n, n]),
    b = tf.randomNormal([n, n]);
  const t = await measure(
    () => {
      const c = tf.matMul(a, b);
      c.dataSync();
      c.dispose();
    },
    { warmup: 1, repeats: n >= 512 ? 3 : 10, minTimeMs: 200 },
  );
  tf.dispose([a, b]);
  return gflops(n, t.medianMs);
}

export async function run(): Promise<void> {
  const { addon, info } = cpuBench();
  const restorePacking = perCallPacking(addon);
  await warmDispatch();
  const maxThreads = info.threads;
  const blas = helper();
  if (!blas.exe) console.log(`# OpenBLAS: unavailable (${blas.reason})`);
  console.log(
    '## matmul float32 C = A B (square N), GFLOP/s (median); ratio = kiln / best peer; %peak = kiln / measured peak FMA',
  );
  for (const threads of [...new Set([1, maxThreads])]) {
    addon.setThreads(threads);
    const peak = blas.exe ? peakFma(threads) : NaN;
    console.log(`### ${threads} thread(s), measured peak FMA ${peak.toFixed(1)} GFLOP/s`);
    console.log(
      `     N     kiln  OpenBLAS  onnxruntime  tfjs-wasm  tfjs-cpu   ratio  %peak  kiln/OpenBLAS per round (${ROUNDS})`,
    );
    for (const n of SIZES) {
      kn.seed(n);
      const a = kn.randn([n, n]),
        b = kn.randn([n, n]);
      // small products take tens of microseconds: a few hundred of them for a median that one stall cannot move
      const reps = n <= 256 ? 400 : n >= 1024 ? 8 : 40;
      const mine: number[] = [],
        theirs: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        mine.push((await measure(() => a.matmul(b).dispose(), { repeats: reps, minTimeMs: 400 })).medianMs);
        if (blas.exe) theirs.push(openblasSgemm(n, threads, reps).medianMs);
      }
      a.dispose();
      b.dispose();
      const kiln = gflops(n, Math.min(...mine));
      const peers: Record<string, number> = {};
      if (blas.exe) peers.openblas = gflops(n, Math.min(...theirs));
      const perRound = theirs.map((t, i) => (t / mine[i]!).toFixed(2)).join(' / ');
      try {
        const ort = await ortMatmul(n, threads);
        peers.ort = gflops(n, (await measureAsync(ort.run, { repeats: reps, minTimeMs: 400 })).medianMs);
        await ort.close();
      } catch (e) {
        console.log(`# onnxruntime-node: unavailable (${(e as Error).message.split('\n')[0]})`);
      }
      // tfjs-wasm is single-threaded under Node; tfjs cpu is plain JS (only small sizes, it is slow)
      if (threads === 1 && n <= 1024) peers.wasm = await tfjsMatmul('wasm', n);
      if (threads === 1 && n <= 256) peers.tfcpu = await tfjsMatmul('cpu', n);
      const best = Math.max(...Object.values(peers));
      const cell = (v: number | undefined): string => (v === undefined ? '       -' : fmt(v));
      console.log(
        `${String(n).padStart(6)} ${fmt(kiln)} ${cell(peers.openblas)}   ${cell(peers.ort)}   ${cell(peers.wasm)}  ${cell(peers.tfcpu)}  ${fmt(kiln / best, 2)}  ${fmt((100 * kiln) / peak, 0)}%  ${perRound}`,
      );
    }
  }
  addon.setThreads(maxThreads);
  restorePacking();
  console.log('## elementwise and random draws, 2^22 float32 elements, Gelem/s (median)');
  const x = kn.randn([1 << 22]);
  for (const [name, f] of [
    ['add', () => x.add(x)],
    ['exp', () => x.exp()],
    ['tanh', () => x.tanh()],
    ['gelu', () => x.gelu()],
    ['sum', () => x.sum()],
    ['randn', () => kn.randn([1 << 22])],
    ['rand', () => kn.rand([1 << 22])],
  ] as const) {
    const t = await measure(() => f().dispose(), { repeats: 30 });
    console.log(`${name.padEnd(6)} ${fmt((1 << 22) / (t.medianMs * 1e6), 2)} Gelem/s  (${t.medianMs.toFixed(2)} ms)`);
  }
  x.dispose();
}
