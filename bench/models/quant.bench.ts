// Quantized inference on CPU: kiln float32, int8 (static, calibrated), int8 dynamic and int4 against
// onnxruntime-node running kiln's own ONNX exports (float, and QDQ int8 which onnxruntime turns into its
// integer kernels), on the MNIST MLP (784-512-256-10) at batch sizes 1, 32 and 256, and on the demo's CNN at
// 1, 64 and 256. Examples per second.
import { createRequire } from 'node:module';
import type * as Ort from 'onnxruntime-node';
import * as kn from '../../src/index.js';
import { cnn } from '../../examples/mnist_data.js';
import { cpuBench, measure, measureAsync, mlp } from '../harness.js';

const ort = createRequire(import.meta.url)('onnxruntime-node') as typeof Ort;

/**
 * Examples per second of each variant of one model at each batch size, then onnxruntime on the ONNX exports of
 * the first two variants (float32 and static int8), printed as one table with ratios to the first variant.
 */
async function table(
  title: string,
  variants: [string, kn.nn.Module][],
  inputShape: number[],
  batches: number[],
  threads: number,
): Promise<void> {
  // kiln first, then onnxruntime: its intra-op threads keep spinning after a run and would steal the cores
  const rates = new Map<number, number[]>(batches.map((b) => [b, []]));
  for (const B of batches) {
    const x = kn.randn([B, ...inputShape]);
    for (const [, m] of variants) {
      const t = await measure(
        () =>
          kn.tidy(() => {
            kn.noGrad(() => m.call(x)).toArray();
          }),
        { warmup: 50, repeats: 2000, minTimeMs: 500 },
      );
      rates.get(B)!.push((B * 1000) / t.medianMs);
    }
    x.dispose();
  }
  const names = variants.map(([n]) => `kiln ${n}`);
  for (const [name, m] of variants.slice(0, 2)) {
    const label = `onnxruntime ${name === 'float32' ? 'float32' : 'QDQ int8'}`;
    names.push(label);
    const s = await ort.InferenceSession.create(kn.io.toOnnx(m, { inputShape }), {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    });
    for (const B of batches) {
      kn.seed(B);
      const x = kn.randn([B, ...inputShape]);
      const ox = new ort.Tensor('float32', x.toArray() as Float32Array, [B, ...inputShape]);
      x.dispose();
      const t = await measureAsync(
        async () => {
          await s.run({ input: ox });
        },
        { warmup: 50, repeats: 2000, minTimeMs: 500 },
      );
      rates.get(B)!.push((B * 1000) / t.medianMs);
    }
    await s.release();
  }
  console.log(`## ${title}, examples/s (median); ratio = / kiln float32`);
  console.log(`${'batch'.padStart(6)} ${names.map((h) => h.padStart(22)).join('')}`);
  for (const B of batches) {
    const r = rates.get(B)!;
    console.log(
      `${String(B).padStart(6)} ${r.map((v) => `${v.toFixed(0)} (${(v / r[0]!).toFixed(2)}x)`.padStart(22)).join('')}`,
    );
  }
}

export async function run(): Promise<void> {
  const { info } = cpuBench('kiln and onnxruntime use every thread');
  const threads = info.threads;
  kn.seed(1);
  const model = mlp([784, 512, 256, 10]).eval();
  const calib = [kn.randn([256, 784])];
  await table(
    'MLP 784-512-256-10 inference',
    [
      ['float32', model],
      ['int8 static', kn.quant.quantize(model, { scheme: 'int8', calibration: calib }).model],
      ['int8 dynamic', kn.quant.quantize(model, { scheme: 'int8-dynamic' }).model],
      ['int4 (g32)', kn.quant.quantize(model, { scheme: 'int4' }).model],
    ],
    [784],
    [1, 32, 256],
    threads,
  );
  // the demo's CNN (conv3x3(16)-pool-conv3x3(32)-pool-linear): both convolutions on the int8 conv kernel
  kn.seed(2);
  const net = cnn().eval();
  const calibImages = [kn.rand([128, 1, 28, 28])];
  await table(
    "MNIST CNN (the demo's) inference",
    [
      ['float32', net],
      ['int8 static', kn.quant.quantize(net, { scheme: 'int8', calibration: calibImages }).model],
      ['int8 dynamic', kn.quant.quantize(net, { scheme: 'int8-dynamic' }).model],
    ],
    [1, 28, 28],
    [1, 64, 256],
    threads,
  );
}

if (process.argv[1]?.endsWith('quant.bench.ts')) await run();
