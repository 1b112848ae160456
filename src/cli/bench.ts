// `kiln bench [matmul|int8|conv|mlp ...] [--sizes 256,512] [--threads 1,2] [--backend cpu] [--json]`: kiln's own
// kernels, timed with warm-up and repeats (median, min-max). The comparison with peers (OpenBLAS,
// onnxruntime-node, TensorFlow.js) is `npm run bench` in a source checkout.
import { parseArgs } from 'node:util';
import type { BackendName } from '../backends/backend.js';
import { loadAddon } from '../backends/native/binding.js';
import { getBackend, setBackend } from '../backends/registry.js';
import { tidy } from '../engine/memory.js';
import { ArgumentError } from '../errors.js';
import { Linear, ReLU, Sequential } from '../nn/layers.js';
import { crossEntropy } from '../nn/loss.js';
import { Adam } from '../optim/adam.js';
import { conv2d } from '../ops/conv.js';
import { qlinearInt8 } from '../ops/quant.js';
import { randint, randn, seed } from '../ops/random.js';
import { measure } from './timing.js';
import { benchModel, type ModelBenchRow, type ModelBenchSkip } from './bench_model.js';

/** One measured configuration. */
export interface BenchRow {
  bench: 'matmul' | 'int8' | 'conv' | 'mlp';
  backend: BackendName;
  threads: number;
  size: string;
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** GFLOP/s (matmul, conv), GOP/s (int8: multiply-adds count 2) or steps/s (mlp), from the median */
  rate: number;
  unit: 'GFLOP/s' | 'GOP/s' | 'steps/s';
}

const BENCHES = ['matmul', 'int8', 'conv', 'mlp'] as const;

function list(v: string | undefined, what: string, def: number[]): number[] {
  if (v === undefined) return def;
  const xs = v.split(',').map((s) => Number(s.trim()));
  if (!xs.length || !xs.every((x) => Number.isInteger(x) && x > 0))
    throw new ArgumentError(`--${what} takes positive integers separated by commas, got '${v}'`);
  return xs;
}

function rowOf(
  bench: BenchRow['bench'],
  backend: BackendName,
  threads: number,
  size: string,
  t: { medianMs: number; minMs: number; maxMs: number },
  work: number,
  unit: BenchRow['unit'],
): BenchRow {
  return {
    bench,
    backend,
    threads,
    size,
    ...t,
    rate: unit === 'steps/s' ? 1000 / t.medianMs : work / (t.medianMs * 1e6),
    unit,
  };
}

/** Runs the selected benchmarks and returns their rows (also used by the tests). */
export async function runBench(opts: {
  benches: readonly string[];
  sizes?: number[];
  threads?: number[];
  backend?: BackendName;
  minTimeMs?: number;
}): Promise<BenchRow[]> {
  const benches = opts.benches.length ? opts.benches : [...BENCHES];
  for (const b of benches)
    if (!(BENCHES as readonly string[]).includes(b))
      throw new ArgumentError(`unknown benchmark '${b}'; choose from ${BENCHES.join(', ')}`);
  const backend = opts.backend ?? getBackend();
  const prevBackend = getBackend();
  setBackend(backend);
  const addon = backend === 'cpu' ? loadAddon().addon : null;
  const maxThreads = addon?.info().threads ?? 1;
  const threadList = opts.threads ?? [...new Set([1, maxThreads])];
  const minTimeMs = opts.minTimeMs ?? 300;
  const rows: BenchRow[] = [];
  try {
    for (const th of threadList) {
      addon?.setThreads(th);
      for (const b of benches) {
        if (b === 'matmul') {
          for (const n of opts.sizes ?? [128, 256, 512, 1024]) {
            seed(n);
            const a = randn([n, n]),
              c = randn([n, n]);
            const t = await measure(() => a.matmul(c).dispose(), { repeats: n >= 1024 ? 8 : 40, minTimeMs });
            a.dispose();
            c.dispose();
            rows.push(rowOf('matmul', backend, th, `${n}x${n}x${n}`, t, 2 * n ** 3, 'GFLOP/s'));
          }
        } else if (b === 'int8') {
          // the int8 linear kernel on an N x N x N product: x float32 quantized per row inside the kernel
          for (const n of opts.sizes ?? [128, 256, 512, 1024]) {
            seed(n);
            const x = randn([n, n]),
              wq = randint([n, n], -127, 128).cast('int8'),
              ws = randn([n]).abs();
            const t = await measure(() => qlinearInt8(x, wq, ws).dispose(), { repeats: n >= 1024 ? 8 : 40, minTimeMs });
            [x, wq, ws].forEach((v) => v.dispose());
            rows.push(rowOf('int8', backend, th, `${n}x${n}x${n} (dynamic int8 linear)`, t, 2 * n ** 3, 'GOP/s'));
          }
        } else if (b === 'conv') {
          // a LeNet/ResNet-like 3x3 layer, forward and backward: [N, C, H, W] x [O, C, 3, 3], padding 1
          for (const n of opts.sizes ?? [16, 64]) {
            seed(n);
            const x = randn([n, 16, 28, 28]),
              w = randn([32, 16, 3, 3]);
            w.requiresGrad = true;
            x.requiresGrad = true;
            const t = await measure(
              () =>
                tidy(() => {
                  conv2d(x, w, null, { padding: 1 }).sum().backward();
                  x.grad?.dispose();
                  x.grad = null;
                  w.grad?.dispose();
                  w.grad = null;
                }),
              { repeats: 20, minTimeMs },
            );
            x.dispose();
            w.dispose();
            const flops = 3 * 2 * n * 32 * 28 * 28 * 16 * 9; // forward + input grad + weight grad
            rows.push(rowOf('conv', backend, th, `${n}x16x28x28 * 32x16x3x3 (fwd+bwd)`, t, flops, 'GFLOP/s'));
          }
        } else {
          const batch = opts.sizes?.[0] ?? 128;
          seed(1);
          const model = new Sequential(new Linear(784, 256), new ReLU(), new Linear(256, 10));
          const opt = new Adam(model.parameters());
          const x = randn([batch, 784]),
            y = randint([batch], 0, 10);
          const t = await measure(
            () =>
              tidy(() => {
                opt.zeroGrad();
                const loss = crossEntropy(model.call(x), y);
                loss.backward();
                opt.step();
                return loss.item();
              }),
            { repeats: 200, minTimeMs },
          );
          opt.dispose();
          model.dispose();
          x.dispose();
          y.dispose();
          rows.push(rowOf('mlp', backend, th, `784-256-10, batch ${batch}, Adam`, t, 0, 'steps/s'));
        }
      }
    }
  } finally {
    addon?.setThreads(maxThreads);
    setBackend(prevBackend);
  }
  return rows;
}

function modelRowLine(r: ModelBenchRow | ModelBenchSkip): string {
  if ('reason' in r)
    return `${r.engine.padEnd(11)} ${r.backend.padEnd(7)} ${r.quant.padEnd(5)}  cannot run: ${r.reason}\n`;
  const mb = r.peakBytes === null ? '-' : (r.peakBytes / 2 ** 20).toFixed(2);
  const sq = Number.isFinite(r.sqnrDb) ? r.sqnrDb.toFixed(1) : 'exact';
  return (
    `${r.engine.padEnd(11)} ${r.backend.padEnd(7)} ${r.quant.padEnd(5)} ${String(r.threads ?? '-').padStart(7)} ${String(r.batch).padStart(5)}` +
    ` ${r.p50Ms.toFixed(3).padStart(9)} ${r.p99Ms.toFixed(3).padStart(9)} ${r.throughput.toFixed(1).padStart(11)} ${mb.padStart(8)} ${sq.padStart(8)}` +
    (r.vsOnnx !== undefined ? ` ${r.vsOnnx.toFixed(2).padStart(7)}x` : '') +
    '\n'
  );
}

/** The `kiln bench` command. */
export async function benchCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      sizes: { type: 'string' },
      threads: { type: 'string' },
      backend: { type: 'string' },
      backends: { type: 'string' },
      batch: { type: 'string' },
      quant: { type: 'string' },
      'input-shape': { type: 'string' },
      'no-onnx': { type: 'boolean', default: false },
      compare: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      'min-time-ms': { type: 'string' },
    },
  });
  const minTimeMs = values['min-time-ms'] === undefined ? undefined : list(values['min-time-ms'], 'min-time-ms', [])[0];
  const threads = values.threads === undefined ? undefined : list(values.threads, 'threads', []);
  if (positionals.length > 0 && positionals[0]!.endsWith('.safetensors')) {
    if (positionals.length > 1) throw new ArgumentError(`bench takes one model file, got ${positionals.length}`);
    const words = (v: string | undefined): string[] | undefined => v?.split(',').map((s) => s.trim());
    if (!values.json) {
      process.stdout.write(
        `${'engine'.padEnd(11)} ${'backend'.padEnd(7)} ${'quant'.padEnd(5)} ${'threads'.padStart(7)} ${'batch'.padStart(5)} ${'p50 ms'.padStart(9)} ${'p99 ms'.padStart(9)} ${'examples/s'.padStart(11)} ${'peak MB'.padStart(8)} ${'SQNR dB'.padStart(8)}` +
          (values.compare ? ` ${'vs ORT'.padStart(8)}` : '') +
          '\n',
      );
    }
    const res = await benchModel(positionals[0]!, {
      backends: words(values.backends ?? values.backend),
      batches: values.batch === undefined ? undefined : list(values.batch, 'batch', []),
      quant: words(values.quant),
      threads,
      inputShape: values['input-shape'] === undefined ? undefined : list(values['input-shape'], 'input-shape', []),
      minTimeMs,
      onnx: !values['no-onnx'],
      compare: values.compare,
      // with --compare the ratios are known only at the end: print then
      onRow: values.compare || values.json ? undefined : (r) => process.stdout.write(modelRowLine(r)),
    });
    if (values.json) {
      for (const r of [...res.rows, ...res.skipped]) process.stdout.write(JSON.stringify(r) + '\n');
    } else if (values.compare) {
      for (const r of [...res.rows, ...res.skipped]) process.stdout.write(modelRowLine(r));
    }
    if (!values.json)
      process.stdout.write(
        `input [batch, ${res.inputShape.join(', ')}], random (seed 1234); SQNR against the float model on the js (float64) backend\n`,
      );
    return res.rows.length > 0 ? 0 : 1;
  }
  const rows = await runBench({
    benches: positionals,
    sizes: values.sizes === undefined ? undefined : list(values.sizes, 'sizes', []),
    threads,
    backend: values.backend as BackendName | undefined,
    minTimeMs,
  });
  if (values.json) {
    for (const r of rows) process.stdout.write(JSON.stringify(r) + '\n');
    return 0;
  }
  for (const r of rows) {
    process.stdout.write(
      `${r.bench.padEnd(6)} ${r.backend} threads=${r.threads}  ${r.size.padEnd(40)} ${r.rate.toFixed(1).padStart(8)} ${r.unit}` +
        `  (median ${r.medianMs.toFixed(3)} ms, ${r.minMs.toFixed(3)}-${r.maxMs.toFixed(3)})\n`,
    );
  }
  return 0;
}
