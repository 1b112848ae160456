// Reduced-precision GEMM against kiln's float32 GEMM on the same N x N x N product, with measured peaks so each
// figure is also a fraction of the physical limit. Goals (CPU issue): int8 >= 3x float32, bf16 >= 2x.
//   int8: the dynamic int8 linear kernel (x float32 quantized per row inside the kernel, int8 weights, VNNI)
//   bf16: bfloat16 x bfloat16 with float32 accumulation (AVX512-BF16), the mixed-precision training path
// Then the int8 convolution (kn.qconv2dInt8, static quantization, bias, ReLU in the kernel) against float32
// conv2d + bias + relu on CNN layer shapes: what a quantized conv + ReLU pair costs against the float one.
import * as kn from '../../src/index.js';
import { cpuBench, perCallPacking, fmt, measure } from '../harness.js';
import { helper, peakBf16, peakFma, peakVnni } from '../peers/openblas.js';

const SIZES = [256, 512, 1024, 2048];

export async function run(): Promise<void> {
  const { addon, info } = cpuBench();
  const restorePacking = perCallPacking(addon);
  const peaks = helper().exe !== null;
  console.log('## int8 linear and bf16 matmul vs float32 matmul (square N): GOP/s / GFLOP/s (median)');
  for (const threads of [...new Set([1, info.threads])]) {
    addon.setThreads(threads);
    const pv = peaks ? peakVnni(threads) : NaN,
      pf = peaks ? peakFma(threads) : NaN,
      pb = peaks ? peakBf16(threads) : NaN;
    console.log(
      `### ${threads} thread(s), measured peaks: VNNI ${pv.toFixed(1)} GOP/s, BF16 ${pb.toFixed(1)} GFLOP/s, FMA ${pf.toFixed(1)} GFLOP/s`,
    );
    console.log(
      '     N   int8 GOP/s  bf16 GFLOP/s  f32 GFLOP/s  int8/f32  bf16/f32  int8 %peak  bf16 %peak  f32 %peak',
    );
    for (const n of SIZES) {
      kn.seed(n);
      const x = kn.randn([n, n]),
        w = kn.randn([n, n]);
      const wq = kn.randint([n, n], -127, 128).cast('int8'),
        ws = kn.randn([n]).abs();
      const reps = { repeats: n >= 1024 ? 6 : 30, minTimeMs: 300 };
      const xb = x.cast('bfloat16'),
        wb = w.cast('bfloat16');
      const tq = await measure(() => kn.qlinearInt8(x, wq, ws).dispose(), reps);
      const tb = await measure(() => xb.matmul(wb).dispose(), reps);
      const tf = await measure(() => x.matmul(w).dispose(), reps);
      [x, w, wq, ws, xb, wb].forEach((t) => t.dispose());
      const g = (ms: number): number => (2 * n ** 3) / (ms * 1e6);
      const q = g(tq.medianMs),
        bf = g(tb.medianMs),
        f = g(tf.medianMs);
      console.log(
        `${String(n).padStart(6)} ${fmt(q).padStart(11)} ${fmt(bf).padStart(13)} ${fmt(f).padStart(12)} ${(q / f).toFixed(2).padStart(8)}x ${(bf / f).toFixed(2).padStart(8)}x` +
          ` ${((100 * q) / pv).toFixed(0).padStart(10)}% ${((100 * bf) / pb).toFixed(0).padStart(10)}% ${((100 * f) / pf).toFixed(0).padStart(9)}%`,
      );
    }
  }
  console.log('## int8 conv2d + ReLU vs float32 conv2d + bias + relu (3x3, padding 1): ms (median), GOP/s');
  const LAYERS: [number, number, number, number][] = [
    [64, 1, 28, 16],
    [64, 16, 14, 32],
    [16, 16, 28, 32],
    [1, 64, 56, 64],
    [8, 128, 14, 128],
  ];
  for (const threads of [...new Set([1, info.threads])]) {
    addon.setThreads(threads);
    console.log(`### ${threads} thread(s)`);
    console.log('layer [N, C, HxW] -> O          int8 ms  int8 GOP/s  f32 ms  f32 GFLOP/s  int8/f32');
    for (const [N, C, HW, O] of LAYERS) {
      kn.seed(N * C + O);
      const x = kn.randn([N, C, HW, HW]),
        w = kn.randn([O, C, 3, 3]),
        b = kn.randn([O]);
      const wq = kn.randint([O, C, 3, 3], -127, 128).cast('int8'),
        ws = kn.rand([O], { low: 0.001, high: 0.02 });
      const reps = { repeats: 30, minTimeMs: 300 };
      const act = { scale: 0.03, zeroPoint: 128 };
      const tq = await measure(() => kn.qconv2dInt8(x, wq, ws, b, { padding: 1, act, relu: true }).dispose(), reps);
      const tf = await measure(() => kn.tidy(() => void kn.relu(kn.conv2d(x, w, b, { padding: 1 }))), reps);
      [x, w, b, wq, ws].forEach((t) => t.dispose());
      const ops = 2 * N * O * HW * HW * C * 9;
      const label = `[${N}, ${C}, ${HW}x${HW}] -> ${O}`;
      console.log(
        `${label.padEnd(30)} ${tq.medianMs.toFixed(3).padStart(8)} ${fmt(ops / (tq.medianMs * 1e6)).padStart(11)}` +
          ` ${tf.medianMs.toFixed(3).padStart(7)} ${fmt(ops / (tf.medianMs * 1e6)).padStart(12)} ${(tf.medianMs / tq.medianMs).toFixed(2).padStart(8)}x`,
      );
    }
  }
  addon.setThreads(info.threads);
  restorePacking();
}

if (process.argv[1]?.endsWith('int8.bench.ts')) await run();
