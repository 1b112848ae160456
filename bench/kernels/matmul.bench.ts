// float32 GEMM and elementwise throughput of the cpu backend, on 1 thread and on all threads.
// Peers (OpenBLAS, TensorFlow.js, onnxruntime-node) join this table with the CPU-performance issue.
import { cpus } from 'node:os';
import * as kn from '../../src/index.js';
import { loadAddon } from '../../src/backends/native/binding.js';
import { fmt, measure } from '../harness.js';

export async function run(): Promise<void> {
  const { addon } = loadAddon();
  if (!addon) throw new Error('cpu backend unavailable');
  kn.setBackend('cpu');
  const info = addon.info();
  const maxThreads = info.threads;
  console.log(`# cpu: ${cpus()[0]?.model} | kernels ${info.isa} | threads up to ${maxThreads}`);
  console.log('## matmul float32 (C = A B, square N), GFLOP/s: median (min-max)');
  for (const threads of [...new Set([1, maxThreads])]) {
    addon.setThreads(threads);
    for (const n of [128, 256, 512, 1024, 2048]) {
      kn.seed(n);
      const a = kn.randn([n, n]), b = kn.randn([n, n]);
      const t = await measure(() => a.matmul(b).dispose(), { repeats: n >= 1024 ? 8 : 40, minTimeMs: 400 });
      const gf = (ms: number): number => (2 * n ** 3) / (ms * 1e6);
      console.log(`matmul N=${String(n).padStart(4)} threads=${threads}  ${fmt(gf(t.medianMs))} GFLOP/s (${gf(t.maxMs).toFixed(1)}-${gf(t.minMs).toFixed(1)})`);
      a.dispose();
      b.dispose();
    }
  }
  addon.setThreads(maxThreads);
  console.log('## elementwise, 2^22 float32 elements, Gelem/s (median)');
  const x = kn.randn([1 << 22]);
  for (const [name, f] of [['add', () => x.add(x)], ['exp', () => x.exp()], ['tanh', () => x.tanh()], ['gelu', () => x.gelu()], ['sum', () => x.sum()]] as const) {
    const t = await measure(() => f().dispose(), { repeats: 30 });
    console.log(`${name.padEnd(6)} ${fmt((1 << 22) / (t.medianMs * 1e6), 2)} Gelem/s  (${t.medianMs.toFixed(2)} ms)`);
  }
  x.dispose();
}
