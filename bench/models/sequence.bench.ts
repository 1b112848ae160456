// Sequence models against PyTorch CPU (Debian's python3-torch, bench/peers/torch_seq.py, in a child process per
// thread count) and TensorFlow.js (wasm) where it has the layer, on 1 and all threads:
// - a Transformer encoder layer training step: d 256, 4 heads, feed-forward 1024, dropout 0.1, batch 16 x 128
//   tokens, loss mean(y^2), Adam;
// - an LSTM training step: 128 -> 256, batch 32 x 64 steps, the same loss, Adam (tfjs-wasm: tf.layers.lstm);
// - causal attention forward + backward, 4 heads of 64, L = 512 and 2048: kiln's fused kernel, kiln's ops path
//   and PyTorch (1.13 has no fused attention on CPU), with kiln's peak memory above the inputs for both paths;
// - greedy generation of 128 tokens after a 128-token prompt from charLM (d 256, 4 heads, 4 layers, vocabulary
//   96): kn.models.generate with its KV cache and without (the whole context each step), against the same
//   model in PyTorch with a hand-written KV cache (GPT-2 style; 1.13 has none built in) and without.
// ratio = peer time / kiln time (> 1: kiln is faster).
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import * as kn from '../../src/index.js';
import { bench, cpuBench, fmt, perCallPacking } from '../harness.js';
import { coreType, torchPython, torchRows, type TorchRow } from '../peers/torch.js';

const MIN_MS = Number(process.env.KILN_BENCH_MIN_MS ?? 600);

function stepOf(model: kn.nn.Module, x: kn.Tensor): () => number {
  const opt = new kn.optim.Adam(model.parameters());
  return () =>
    kn.tidy(() => {
      opt.zeroGrad();
      const loss = model.call(x).pow(2).mean();
      loss.backward();
      opt.step();
      return loss.item();
    });
}

/** One causal attention forward + backward on [4, L, 64]; `ops` forces the unfused path (a learned mask). */
function attentionStep(L: number, ops: boolean): { run: () => void; peakMiB: () => number } {
  kn.seed(L);
  const q = kn.randn([4, L, 64]),
    k = kn.randn([4, L, 64]),
    v = kn.randn([4, L, 64]);
  const mask = ops ? kn.zeros([L, L]) : null;
  if (mask) mask.requiresGrad = true;
  const run = (): void =>
    kn.tidy(() => {
      const [qq, kk, vv] = [q, k, v].map((t) => {
        const c = t.clone();
        c.requiresGrad = true;
        return c;
      }) as [kn.Tensor, kn.Tensor, kn.Tensor];
      kn.nn.scaledDotProductAttention(qq, kk, vv, { isCausal: true, attnMask: mask }).sum().backward();
      mask?.grad?.dispose();
      if (mask) mask.grad = null;
    });
  const peakMiB = (): number => {
    kn.resetPeakMemory();
    const base = kn.memory().numBytes;
    run();
    return (kn.memory().peakBytes - base) / 2 ** 20;
  };
  return { run, peakMiB };
}

async function tfLstmStep(): Promise<number> {
  await tf.setBackend('wasm');
  await tf.ready();
  const lstm = tf.layers.lstm({ units: 256, returnSequences: true, inputShape: [64, 128] });
  const x = tf.randomNormal([32, 64, 128]);
  lstm.apply(x); // builds the weights
  const opt = tf.train.adam(3e-4);
  const t = await bench(
    () =>
      tf.tidy(() => {
        opt.minimize(() => tf.mean(tf.square(lstm.apply(x) as tf.Tensor)) as tf.Scalar);
      }),
    { minTimeMs: MIN_MS },
  );
  x.dispose();
  return t.medianMs;
}

export async function run(): Promise<void> {
  const { addon, info } = cpuBench('sequence models against PyTorch CPU');
  const restorePacking = perCallPacking(addon); // fixed data: real batches are fresh, never packed
  const py = torchPython();
  if (!py.python) console.log(`# ${py.reason}`);
  else console.log(`# PyTorch ${py.version} (${py.python}), OPENBLAS_CORETYPE=${coreType()}`);
  for (const threads of [...new Set([1, info.threads])]) {
    addon.setThreads(threads);
    console.log(`### ${threads} thread(s)`);
    console.log('work                                   kiln ms  PyTorch ms   ratio');
    const theirs: TorchRow[] = py.python ? torchRows(py.python, threads, MIN_MS / 1000, 'torch_seq.py') : [];
    const peer = (work: TorchRow['work'], size: number): number | undefined =>
      theirs.find((r) => r.work === work && r.size === size)?.medianMs;
    const line = (label: string, ms: number, p: number | undefined): void =>
      console.log(
        `${label.padEnd(36)} ${fmt(ms, 3)}  ${p ? fmt(p, 3) : '       -'}  ${p ? fmt(p / ms, 2) : '       -'}`,
      );
    kn.seed(1);
    const enc = new kn.nn.TransformerEncoderLayer(256, 4, { dimFeedforward: 1024, dropout: 0.1, batchFirst: true });
    const xe = kn.randn([16, 128, 256]);
    line(
      'encoder layer step (16x128, d 256)',
      (await bench(stepOf(enc, xe), { minTimeMs: MIN_MS })).medianMs,
      peer('encoder', 128),
    );
    enc.dispose();
    xe.dispose();
    const lstm = new kn.nn.LSTM(128, 256, { batchFirst: true });
    const xl = kn.randn([32, 64, 128]);
    const lstmMs = (await bench(stepOf(lstm, xl), { minTimeMs: MIN_MS })).medianMs;
    line('LSTM step (32x64, 128 -> 256)', lstmMs, peer('lstm', 64));
    lstm.dispose();
    xl.dispose();
    for (const L of [512, 2048]) {
      const fused = attentionStep(L, false),
        ops = attentionStep(L, true);
      const fm = fused.peakMiB(),
        om = ops.peakMiB();
      const p = peer('attention', L);
      line(`attention fwd+bwd L=${L}, fused`, (await bench(fused.run, { minTimeMs: MIN_MS })).medianMs, p);
      line(`attention fwd+bwd L=${L}, ops path`, (await bench(ops.run, { minTimeMs: MIN_MS })).medianMs, p);
      console.log(`  kiln peak memory above the inputs: fused ${fm.toFixed(1)} MiB, ops path ${om.toFixed(1)} MiB`);
    }
    kn.seed(2);
    const lm = kn.models.charLM({ vocabSize: 96, blockSize: 256, dModel: 256, nHead: 4, numLayers: 4 });
    const prompt = Array.from({ length: 128 }, (_, i) => i % 96);
    for (const kvCache of [true, false]) {
      const gen = (): void => void kn.models.generate(lm, prompt, { maxNewTokens: 128, topK: 1, kvCache });
      line(
        `generate 128+128 tokens, ${kvCache ? 'KV cache' : 'whole context'}`,
        (await bench(gen, { minTimeMs: MIN_MS, warmup: 1 })).medianMs,
        peer(kvCache ? 'generate' : 'generate-full', 128),
      );
    }
    lm.dispose();
  }
  addon.setThreads(info.threads);
  restorePacking();
  try {
    console.log(`tfjs-backend-wasm LSTM step (same work): ${fmt(await tfLstmStep(), 3)} ms`);
  } catch (e) {
    console.log(`tfjs-backend-wasm LSTM: unavailable (${(e as Error).message})`);
  }
}
