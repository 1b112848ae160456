// `kiln bench MODEL.safetensors`: one saved model timed across backends, batch sizes, quantization schemes and
// thread counts, with onnxruntime-node running the same model (exported to ONNX) as a peer in the same run.
// Each configuration reports latency p50/p99, throughput, peak memory during a forward, and how far its output
// is from the float model's on the js reference backend (SQNR). A configuration that cannot run gets a line
// saying why; the others still run.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as Ort from 'onnxruntime-node';
import type { BackendName } from '../backends/backend.js';
import { loadAddon } from '../backends/native/binding.js';
import { backends, getBackend, setBackend } from '../backends/registry.js';
import { memory, resetPeakMemory } from '../engine/memory.js';
import { ArgumentError, KilnError } from '../errors.js';
import { modelFromBytes } from '../io/index.js';
import { toOnnx } from '../io/onnx.js';
import { Embedding, Sequential } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import { quiet } from '../autograd/tape.js';
import { randint, randn, seed } from '../ops/random.js';
import { bench } from '../profile/bench.js';
import { quantize } from '../quant/quantize.js';
import { resolveInputShape } from '../serve/model.js';
import { Tensor } from '../tensor/tensor.js';

const require = createRequire(import.meta.url);

export const BENCH_MODEL_HELP = `  bench MODEL.safetensors [--backends cpu,js,webgpu,cuda] [--batch 1,8,64] [--quant none,int8,int4]
        [--threads 1,2] [--input-shape 1,28,28] [--min-time-ms 300] [--no-onnx] [--compare] [--json]
                  time one saved model per backend, batch, quantization and thread count: latency p50/p99,
                  throughput, peak memory, output SQNR against the float model; onnxruntime-node as a peer
`;

/** One measured configuration of `kiln bench MODEL`. */
export interface ModelBenchRow {
  engine: 'kiln' | 'onnxruntime';
  backend: BackendName | 'ort-cpu';
  quant: 'none' | 'int8' | 'int4';
  threads: number | null;
  batch: number;
  p50Ms: number;
  p99Ms: number;
  /** examples per second at the median latency */
  throughput: number;
  /** the most bytes live during one forward (weights, input and activations), or null where not measured */
  peakBytes: number | null;
  /** output SQNR against the float model on the js (float64) reference backend, dB (Infinity when identical;
   * null in `--json` output, which has no Infinity) */
  sqnrDb: number;
  /** with --compare: this throughput / onnxruntime's for the same batch, quantization and threads */
  vsOnnx?: number;
}

/** A configuration that could not run, and why. */
export interface ModelBenchSkip {
  engine: 'kiln' | 'onnxruntime';
  backend: string;
  quant: string;
  reason: string;
}

export interface ModelBenchOptions {
  backends?: string[];
  batches?: number[];
  quant?: string[];
  threads?: number[];
  inputShape?: number[];
  minTimeMs?: number;
  onnx?: boolean;
  compare?: boolean;
  /** each row as it is measured */
  onRow?: (r: ModelBenchRow | ModelBenchSkip) => void;
}

const QUANTS = ['none', 'int8', 'int4'] as const;
type Quant = (typeof QUANTS)[number];

function sqnrOf(ref: Float64Array | Float32Array, out: ArrayLike<number>): number {
  let s = 0,
    n = 0;
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i]!;
    s += r * r;
    n += (r - out[i]!) ** 2;
  }
  return n === 0 ? Infinity : 10 * Math.log10(s / n);
}

/** The first layer inside nested Sequentials. */
function firstLayer(m: Module): Module {
  let l: Module = m;
  while (l instanceof Sequential && l.layers.length) l = l.layers[0]!;
  return l;
}

function p99(samples: readonly number[]): number {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.99 * s.length) - 1)]!;
}

/** Runs `kiln bench MODEL`: every available configuration, rows in measurement order. */
export async function benchModel(
  path: string,
  opts: ModelBenchOptions = {},
): Promise<{ rows: ModelBenchRow[]; skipped: ModelBenchSkip[]; inputShape: number[] }> {
  const bytes = readFileSync(path);
  const prevBackend = getBackend();
  setBackend('js'); // layers are built on the current backend
  let ref: ReturnType<typeof modelFromBytes>;
  try {
    ref = modelFromBytes(bytes, { backend: 'js', where: path });
  } catch (e) {
    setBackend(prevBackend);
    throw e;
  }
  const refModel = ref.model;
  const shape = resolveInputShape(refModel, ref.metadata, opts.inputShape);
  if (!shape) {
    refModel.dispose();
    setBackend(prevBackend);
    throw new ArgumentError(`cannot tell the input shape of ${path}: pass --input-shape (e.g. 1,28,28)`);
  }
  const batches = opts.batches ?? [1, 8, 64];
  const maxBatch = Math.max(...batches);
  const quants = (opts.quant ?? [...QUANTS]) as Quant[];
  for (const q of quants)
    if (!(QUANTS as readonly string[]).includes(q))
      throw new ArgumentError(`--quant takes none, int8 or int4, got '${q}'`);
  const wanted = opts.backends ?? ['cpu', 'js', 'webgpu', 'cuda'];
  const known = ['cpu', 'js', 'webgpu', 'cuda'];
  for (const b of wanted)
    if (!known.includes(b)) throw new ArgumentError(`--backends takes cpu, js, webgpu or cuda, got '${b}'`);
  const minTimeMs = opts.minTimeMs ?? 300;
  const addon = loadAddon().addon;
  const maxThreads = addon?.info().threads ?? 1;
  const threadList = opts.threads ?? [...new Set([1, maxThreads])];
  const rows: ModelBenchRow[] = [];
  const skipped: ModelBenchSkip[] = [];
  const emit = (r: ModelBenchRow | ModelBenchSkip): void => {
    if ('reason' in r) skipped.push(r);
    else rows.push(r);
    opts.onRow?.(r);
  };
  const emb = firstLayer(refModel);
  const intInput = emb instanceof Embedding;
  // the input: fixed seed, on the js backend; float64 reference outputs for the largest batch
  seed(1234);
  const xHost = intInput
    ? randint([maxBatch, ...shape], 0, (emb as Embedding).numEmbeddings)
    : randn([maxBatch, ...shape]);
  const xValues = Float64Array.from(xHost.toArray() as ArrayLike<number>);
  const per = xValues.length / maxBatch;
  const refOut = quiet(() => refModel.call(xHost).toFloat64Array());
  const outPer = refOut.length / maxBatch;
  xHost.dispose();
  const inputOn = (backend: BackendName, b: number): Tensor =>
    Tensor.fromHostNumbers(xValues.subarray(0, b * per), [b, ...shape], backend, intInput ? 'int32' : 'float32');
  /** Latency p50/p99 and throughput of one configuration (kn.bench: warm-up, then repeats for minTimeMs). */
  const timed = async (
    run: () => unknown,
    batch: number,
    sync: boolean,
  ): Promise<{ batch: number; p50Ms: number; p99Ms: number; throughput: number }> => {
    const t = await bench(run, { minTimeMs, warmup: 2, maxRepeats: 2000, sync });
    return { batch, p50Ms: t.medianMs, p99Ms: p99(t.samplesMs), throughput: (1000 * batch) / t.medianMs };
  };
  /** The model on `backend` (the current one), as a float model or quantized with `q` (int8: calibrated on the
   * benchmark input), in eval mode. */
  const variant = (backend: BackendName, q: Quant): Module => {
    const loaded = modelFromBytes(bytes, { backend, where: path }).model;
    if (q === 'none') return loaded.eval();
    const calib = inputOn(backend, Math.min(maxBatch, 64));
    try {
      return quantize(loaded, { scheme: q, calibration: [calib] }).model.eval();
    } finally {
      calib.dispose();
      loaded.dispose();
    }
  };
  try {
    for (const bname of wanted as BackendName[]) {
      if (!backends().includes(bname)) {
        for (const q of quants)
          emit({ engine: 'kiln', backend: bname, quant: q, reason: `backend '${bname}' is not available here` });
        continue;
      }
      setBackend(bname);
      for (const q of quants) {
        let model: Module | null = null;
        try {
          model = variant(bname, q);
          const m = model;
          const ths = bname === 'cpu' ? threadList : [null];
          for (const th of ths) {
            if (th !== null) addon?.setThreads(th);
            for (const b of batches) {
              const x = inputOn(bname, b);
              try {
                const out = quiet(() => m.call(x).toFloat64Array());
                const sq = sqnrOf(refOut.subarray(0, b * outPer), out);
                const baseline = memory().backends[bname]?.bytes ?? 0;
                resetPeakMemory();
                quiet(() => m.call(x).toArray());
                const peak = memory().backends[bname]?.peakBytes ?? baseline;
                const t = await timed(() => quiet(() => void m.call(x).toArray()), b, true);
                emit({ engine: 'kiln', backend: bname, quant: q, threads: th, ...t, peakBytes: peak, sqnrDb: sq });
              } finally {
                x.dispose();
              }
            }
          }
        } catch (e) {
          if (!(e instanceof KilnError)) throw e;
          emit({ engine: 'kiln', backend: bname, quant: q, reason: e.message });
        } finally {
          model?.dispose();
          addon?.setThreads(maxThreads);
        }
      }
    }
    if (opts.onnx !== false) await onnxPeer();
  } finally {
    refModel.dispose();
    setBackend(prevBackend);
  }

  async function onnxPeer(): Promise<void> {
    let ort: typeof Ort;
    try {
      ort = require('onnxruntime-node') as typeof Ort;
    } catch {
      for (const q of quants)
        emit({ engine: 'onnxruntime', backend: 'ort-cpu', quant: q, reason: 'onnxruntime-node is not installed' });
      return;
    }
    setBackend('cpu');
    for (const q of quants) {
      let onnx: Uint8Array;
      let model: Module | null = null;
      try {
        model = variant('cpu', q);
        onnx = toOnnx(model, { inputShape: shape!, inputDtype: intInput ? 'int32' : 'float32' });
      } catch (e) {
        if (!(e instanceof KilnError)) throw e;
        emit({ engine: 'onnxruntime', backend: 'ort-cpu', quant: q, reason: `cannot export to ONNX: ${e.message}` });
        continue;
      } finally {
        model?.dispose();
      }
      for (const th of threadList) {
        let session: Ort.InferenceSession;
        try {
          session = await ort.InferenceSession.create(onnx, {
            intraOpNumThreads: th,
            interOpNumThreads: 1,
            executionMode: 'sequential',
            graphOptimizationLevel: 'all',
          });
        } catch (e) {
          emit({
            engine: 'onnxruntime',
            backend: 'ort-cpu',
            quant: q,
            reason: `onnxruntime cannot load the exported model: ${(e as Error).message.split('\n')[0]}`,
          });
          break;
        }
        try {
          for (const b of batches) {
            const data = xValues.subarray(0, b * per);
            const input = intInput
              ? new ort.Tensor('int32', Int32Array.from(data), [b, ...shape!])
              : new ort.Tensor('float32', Float32Array.from(data), [b, ...shape!]);
            const first = await session.run({ input });
            const sq = sqnrOf(refOut.subarray(0, b * outPer), first.output!.data as Float32Array);
            const t = await timed(
              async () => {
                await session.run({ input });
              },
              b,
              false,
            );
            emit({
              engine: 'onnxruntime',
              backend: 'ort-cpu',
              quant: q,
              threads: th,
              ...t,
              peakBytes: null,
              sqnrDb: sq,
            });
          }
        } finally {
          await session.release();
        }
      }
    }
  }

  if (opts.compare) {
    for (const r of rows) {
      if (r.engine !== 'kiln') continue;
      const peer = rows.find(
        (o) =>
          o.engine === 'onnxruntime' &&
          o.quant === r.quant &&
          o.batch === r.batch &&
          o.threads === (r.threads ?? maxThreads),
      );
      if (peer) r.vsOnnx = r.throughput / peer.throughput;
    }
  }
  return { rows, skipped, inputShape: shape };
}
