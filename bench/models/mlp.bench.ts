// Training throughput of an MLP 784-256-10 (ReLU), batch 128, softmax cross-entropy, Adam (lr 3e-4):
// kiln on the cpu backend against TensorFlow.js (tfjs-backend-cpu and tfjs-backend-wasm) in the same process.
// Each step includes forward, loss, backward, the optimizer update and reading the loss value back.
import { cpus } from 'node:os';
import * as tf from '@tensorflow/tfjs'; // tfjs-core + gradients + tfjs-backend-cpu
import '@tensorflow/tfjs-backend-wasm';
import * as kn from '../../src/index.js';
import { loadAddon } from '../../src/backends/native/binding.js';
import { fmt, measure, perCallPacking, mlp } from '../harness.js';

const B = 128,
  IN = 784,
  H = 256,
  OUT = 10;

function data(): { x: Float32Array; y: Int32Array } {
  kn.seed(0);
  return kn.tidy(() => ({
    x: kn.randn([B, IN]).toArray() as Float32Array,
    y: kn.randint([B], 0, OUT).toArray() as Int32Array,
  }));
}

async function kilnStep(backend: kn.BackendName, d: { x: Float32Array; y: Int32Array }): Promise<number> {
  kn.setBackend(backend);
  kn.seed(1);
  const model = mlp([IN, H, OUT]);
  const opt = new kn.optim.Adam(model.parameters());
  const x = kn.tensor(d.x, [B, IN]),
    y = kn.tensor(d.y, [B]);
  const t = await measure(
    () =>
      kn.tidy(() => {
        opt.zeroGrad();
        const loss = kn.nn.loss.crossEntropy(model.call(x), y);
        loss.backward();
        opt.step();
        return loss.item();
      }),
    { warmup: 5, repeats: 200, minTimeMs: 1500 },
  );
  opt.dispose();
  model.dispose();
  x.dispose();
  y.dispose();
  return 1000 / t.medianMs;
}

async function tfStep(backend: 'cpu' | 'wasm', d: { x: Float32Array; y: Int32Array }): Promise<number> {
  await tf.setBackend(backend);
  await tf.ready();
  const x = tf.tensor2d(d.x, [B, IN]);
  const y = tf.oneHot(tf.tensor1d(d.y, 'int32'), OUT);
  const w1 = tf.variable(tf.randomUniform([IN, H], -0.035, 0.035, 'float32', 1)),
    b1 = tf.variable(tf.zeros([H]));
  const w2 = tf.variable(tf.randomUniform([H, OUT], -0.06, 0.06, 'float32', 2)),
    b2 = tf.variable(tf.zeros([OUT]));
  const opt = tf.train.adam(3e-4, 0.9, 0.999, 1e-8);
  const t = await measure(
    () => {
      const cost = opt.minimize(
        () =>
          tf.losses.softmaxCrossEntropy(
            y,
            tf.add(tf.matMul(tf.relu(tf.add(tf.matMul(x, w1), b1)), w2), b2),
          ) as tf.Scalar,
        true,
      );
      cost!.dataSync();
      cost!.dispose();
    },
    { warmup: 5, repeats: 200, minTimeMs: 1500 },
  );
  opt.dispose();
  tf.dispose([x, y, w1, b1, w2, b2]);
  return 1000 / t.medianMs;
}

export async function run(): Promise<void> {
  const { addon } = loadAddon();
  const info = addon?.info();
  console.log(
    `# cpu: ${cpus()[0]?.model} x${cpus().length} | kiln kernels ${info?.isa ?? 'n/a'}, ${info?.threads ?? 1} threads | tfjs ${tf.version_core}`,
  );
  console.log(`## MLP ${IN}-${H}-${OUT}, batch ${B}, Adam: training steps/s (median), ratio = kiln cpu / peer`);
  const d = data();
  // fixed data: real training batches are fresh tensors, which are never packed
  const restorePacking = addon ? perCallPacking(addon) : (): void => undefined;
  const kiln = await kilnStep('cpu', d);
  const rows: [string, number][] = [['kiln cpu', kiln]];
  if (addon && info && info.threads > 1) {
    addon.setThreads(1);
    rows.push(['kiln cpu, 1 thread', await kilnStep('cpu', d)]);
    addon.setThreads(info.threads);
  }
  restorePacking();
  rows.push(['kiln js (float64 reference)', await kilnStep('js', d)]);
  for (const b of ['cpu', 'wasm'] as const) {
    try {
      rows.push([`tfjs-backend-${b}`, await tfStep(b, d)]);
    } catch (e) {
      console.log(`tfjs-backend-${b}: unavailable (${(e as Error).message})`);
    }
  }
  await tf.setBackend('wasm').catch(() => false);
  const flag = (f: string): string => {
    try {
      return String(tf.env().getBool(f));
    } catch {
      return '?';
    }
  };
  console.log(
    `(tfjs-backend-wasm: SIMD ${flag('WASM_HAS_SIMD_SUPPORT')}, threads ${flag('WASM_HAS_MULTITHREAD_SUPPORT')})`,
  );
  for (const [name, sps] of rows)
    console.log(`${name.padEnd(30)} ${fmt(sps)} steps/s   kiln cpu is ${fmt(kiln / sps, 2)}x`);
  kn.setBackend('cpu');
}
