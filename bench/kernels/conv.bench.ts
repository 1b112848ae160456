// conv2d forward side by side with peers in one run: kiln (direct or im2col + GEMM, as its rule picks),
// onnxruntime-node (a one-node Conv model) and TensorFlow.js wasm and cpu (NHWC, the layout tfjs prefers), on a
// LeNet/ResNet-like 3x3 layer [N, 16, 28, 28] * [32, 16, 3, 3], padding 1. GFLOP/s (median) and the ratio to
// the best peer. Then kiln's two methods against each other per kernel on CNN layer shapes (each in a child
// process with KILN_CONV_ALGO set), with what the rule picks: the measurements behind the rule in conv.cc.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import type * as Ort from 'onnxruntime-node';
import * as kn from '../../src/index.js';
import { cpuBench, fmt, measure, measureAsync } from '../harness.js';
import type { MethodRow } from './conv-methods.js';

const require = createRequire(import.meta.url);
const C = 16,
  O = 32,
  H = 28,
  K = 3;

function convModel(n: number): Uint8Array {
  const { onnx } = require('onnx-proto') as typeof import('onnx-proto');
  const FLOAT = onnx.TensorProto.DataType.FLOAT;
  const w = Float32Array.from({ length: O * C * K * K }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const ints = (name: string, v: number[]) => ({ name, type: onnx.AttributeProto.AttributeType.INTS, ints: v });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'kiln-bench',
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'conv',
      node: [
        {
          opType: 'Conv',
          input: ['X', 'W'],
          output: ['Y'],
          attribute: [ints('kernel_shape', [K, K]), ints('pads', [1, 1, 1, 1])],
        },
      ],
      initializer: [{ name: 'W', dims: [O, C, K, K], dataType: FLOAT, rawData: new Uint8Array(w.buffer) }],
      input: [
        {
          name: 'X',
          type: { tensorType: { elemType: FLOAT, shape: { dim: [n, C, H, H].map((d) => ({ dimValue: d })) } } },
        },
      ],
      output: [{ name: 'Y', type: { tensorType: { elemType: FLOAT } } }],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

export async function run(): Promise<void> {
  const { addon, info } = cpuBench();
  console.log(
    `## conv2d forward [N, ${C}, ${H}, ${H}] * [${O}, ${C}, ${K}, ${K}], padding 1: GFLOP/s (median); ratio = kiln / best peer`,
  );
  const ort = require('onnxruntime-node') as typeof Ort;
  for (const threads of [...new Set([1, info.threads])]) {
    addon.setThreads(threads);
    console.log(`### ${threads} thread(s) (onnxruntime intra-op = ${threads}; tfjs wasm and cpu are single-threaded)`);
    console.log('     N     kiln  onnxruntime  tfjs-wasm  tfjs-cpu   ratio');
    for (const n of [16, 64]) {
      const flops = 2 * n * O * H * H * C * K * K;
      const g = (ms: number): number => flops / (ms * 1e6);
      kn.seed(n);
      const x = kn.randn([n, C, H, H]),
        w = kn.randn([O, C, K, K]);
      const tk = await measure(() => kn.conv2d(x, w, null, { padding: 1 }).dispose(), { repeats: 20, minTimeMs: 300 });
      const xs = x.toArray() as Float32Array;
      x.dispose();
      w.dispose();
      // kiln first: onnxruntime's intra-op threads keep spinning after a run
      const s = await ort.InferenceSession.create(convModel(n), {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
      });
      const ox = new ort.Tensor('float32', xs, [n, C, H, H]);
      const to = await measureAsync(
        async () => {
          await s.run({ X: ox });
        },
        { repeats: 20, minTimeMs: 300 },
      );
      await s.release();
      const tfRates: number[] = [];
      for (const backend of ['wasm', 'cpu'] as const) {
        await tf.setBackend(backend);
        await tf.ready();
        const tx = tf.randomNormal([n, H, H, C]),
          tw = tf.randomNormal([K, K, C, O]);
        const t = await measure(
          () => {
            const y = tf.conv2d(tx as tf.Tensor4D, tw as tf.Tensor4D, 1, 'same');
            y.dataSync();
            y.dispose();
          },
          { warmup: 1, repeats: backend === 'cpu' ? 2 : 5, minTimeMs: 200 },
        );
        tf.dispose([tx, tw]);
        tfRates.push(g(t.medianMs));
      }
      const k = g(tk.medianMs),
        best = Math.max(g(to.medianMs), ...tfRates);
      console.log(
        `${String(n).padStart(6)} ${fmt(k)} ${fmt(g(to.medianMs)).padStart(12)} ${fmt(tfRates[0]!).padStart(10)} ${fmt(tfRates[1]!).padStart(9)} ${(k / best).toFixed(2).padStart(7)}x`,
      );
    }
  }
  addon.setThreads(info.threads);
  methods();
}

/** µs per call of each kernel under im2col, direct and the rule, 1 thread, each method in its own process. */
function methods(): void {
  const child = new URL('./conv-methods.ts', import.meta.url).pathname;
  const rows = (algo: string): MethodRow[] =>
    JSON.parse(
      execFileSync(process.execPath, ['--import', 'tsx', child], {
        env: { ...process.env, KILN_CONV_ALGO: algo, KILN_NUM_THREADS: '1' },
        encoding: 'utf8',
      })
        .trim()
        .split('\n')
        .pop()!,
    ) as MethodRow[];
  const im = rows('im2col'),
    di = rows('direct'),
    au = rows('auto');
  console.log('## conv2d kernels by method, 1 thread: µs per call (median); rule = KILN_CONV_ALGO unset');
  console.log('layer [C x H x W -> O, kernel]            kernel     im2col    direct      rule  rule / best');
  for (let i = 0; i < im.length; i++)
    for (const k of ['fwd', 'input', 'weight'] as const) {
      const a = im[i]![k],
        b = di[i]![k],
        r = au[i]![k];
      console.log(
        `${(k === 'fwd' ? im[i]!.shape : '').padEnd(40)} ${k.padEnd(7)} ${[a, b, r].map((v) => v.toFixed(0).padStart(9)).join(' ')} ${(r / Math.min(a, b)).toFixed(2).padStart(12)}`,
      );
    }
}

if (process.argv[1]?.endsWith('conv.bench.ts')) await run();
