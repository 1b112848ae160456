// int8 GEMM (the dynamic int8 linear kernel: x float32 quantized per row inside the kernel, int8 weights,
// AVX512-VNNI) against kiln's float32 GEMM on the same N x N x N product, with the measured VNNI and FMA
// peaks so each figure is also a fraction of the physical limit. Goal (CPU issue): int8 >= 3x float32.
import { cpus } from 'node:os';
import * as kn from '../../src/index.js';
import { loadAddon } from '../../src/backends/native/binding.js';
import { fmt, measure } from '../harness.js';
import { helper, peakFma, peakVnni } from '../peers/openblas.js';

const SIZES = [256, 512, 1024, 2048];

export async function run(): Promise<void> {
  const { addon } = loadAddon();
  if (!addon) throw new Error('cpu backend unavailable');
  kn.setBackend('cpu');
  const info = addon.info();
  console.log(`# cpu: ${cpus()[0]?.model} | kiln kernels ${info.isa} | threads up to ${info.threads}`);
  const peaks = helper().exe !== null;
  console.log('## int8 linear vs float32 matmul (square N): GOP/s and GFLOP/s (median); ratio = int8 / float32');
  for (const threads of [...new Set([1, info.threads])]) {
    addon.setThreads(threads);
    const pv = peaks ? peakVnni(threads) : NaN, pf = peaks ? peakFma(threads) : NaN;
    console.log(`### ${threads} thread(s), measured peaks: VNNI ${pv.toFixed(1)} GOP/s, FMA ${pf.toFixed(1)} GFLOP/s`);
    console.log('     N   int8 GOP/s  f32 GFLOP/s   ratio  int8 %peak  f32 %peak');
    for (const n of SIZES) {
      kn.seed(n);
      const x = kn.randn([n, n]), w = kn.randn([n, n]);
      const wq = kn.randint([n, n], -127, 128).cast('int8'), ws = kn.randn([n]).abs();
      const reps = { repeats: n >= 1024 ? 6 : 30, minTimeMs: 300 };
      const tq = await measure(() => kn.qlinearInt8(x, wq, ws).dispose(), reps);
      const tf = await measure(() => x.matmul(w).dispose(), reps);
      [x, w, wq, ws].forEach((t) => t.dispose());
      const q = (2 * n ** 3) / (tq.medianMs * 1e6), f = (2 * n ** 3) / (tf.medianMs * 1e6);
      console.log(`${String(n).padStart(6)} ${fmt(q).padStart(11)} ${fmt(f).padStart(12)} ${(q / f).toFixed(2).padStart(7)}x ${(100 * q / pv).toFixed(0).padStart(9)}% ${(100 * f / pf).toFixed(0).padStart(9)}%`);
    }
  }
  addon.setThreads(info.threads);
}

if (process.argv[1]?.endsWith('int8.bench.ts')) await run();
