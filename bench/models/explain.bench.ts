// Explanations and distillation on the demo's MNIST models (cpu backend, the machine's threads):
//  - integrated gradients (32 steps) for 64 test digits on the MLP and the CNN, with 1, 4, 16 and 64 examples
//    (32 to 2,048 rows) per forward/backward: what batching the steps buys, and where it stops paying;
//  - permutation importance of 16 pixel groups (7x7 patches), 3 repeats, on 1,000 test digits, with the MLP;
//  - distillation: the demo CNN (teacher, 5 epochs) into an MLP 784-128-10 (20 epochs, T = 4, alpha = 0.9), against
//    the same MLP trained alone with the same seed, epochs and optimizer; test accuracy of both.
import * as kn from '../../src/index.js';
import { cnn, loadMnist, mlp, normalise } from '../../examples/mnist_data.js';
import { cpuBench } from '../harness.js';

const SEED = 42;

async function trainModel(
  model: kn.nn.Module,
  train: kn.data.DataLoader,
  epochs: number,
  loss: kn.train.LossFn = 'crossEntropy',
): Promise<number> {
  const t0 = performance.now();
  const optimizer = new kn.optim.Adam(model.parameters(), { lr: 1e-3 });
  await kn.train.fit(model, { train, loss, optimizer, epochs, verbose: 'silent' });
  return (performance.now() - t0) / 1000;
}

export async function run(): Promise<void> {
  cpuBench('attributions and distillation on MNIST');
  kn.seed(SEED);
  const { pixels, labels } = loadMnist();
  normalise(pixels, 7000);
  const xTrain = kn.tensor(pixels.subarray(0, 7000 * 784), [7000, 1, 28, 28]);
  const yTrain = kn.tensor(labels.subarray(0, 7000), [7000]);
  const xTest = kn.tensor(pixels.subarray(8000 * 784), [2000, 1, 28, 28]);
  const yTest = kn.tensor(labels.subarray(8000), [2000]);
  const train = new kn.data.DataLoader(new kn.data.Dataset({ x: xTrain, y: yTrain }), {
    batchSize: 64,
    shuffle: true,
    seed: SEED,
  });
  const acc = (m: kn.nn.Module): number => {
    m.eval();
    const out = kn.noGrad(() => m.call(xTest));
    const a = kn.metrics.accuracy(yTest, out);
    out.dispose();
    return a;
  };

  kn.seed(SEED);
  const teacher = cnn();
  const teacherSecs = await trainModel(teacher, train, 5);
  kn.seed(SEED);
  const net = mlp();
  await trainModel(net, train, 5);
  console.log(
    `demo CNN: 5 epochs in ${teacherSecs.toFixed(1)} s, test accuracy ${(100 * acc(teacher)).toFixed(2)}%; ` +
      `demo MLP (5 epochs): ${(100 * acc(net)).toFixed(2)}%`,
  );

  console.log('\n## integrated gradients, 32 Gauss-Legendre steps, 64 test digits: ms by examples per pass');
  console.log('model   1 (32 rows)   4 (128)   16 (512)   64 (2048)   best vs 1   max |completeness gap|');
  const x64 = xTest.slice([0], [64]);
  for (const [name, model] of [
    ['MLP', net],
    ['CNN', teacher],
  ] as const) {
    const time = (perPass: number): { ms: number; gap: number } => {
      let best = Infinity,
        gap = 0;
      for (let rep = 0; rep < 3; rep++) {
        const t0 = performance.now();
        const r = kn.explain.integratedGradients(model, x64, { steps: 32, maxRows: 32 * perPass });
        best = Math.min(best, performance.now() - t0);
        gap = Math.max(...r.delta.map(Math.abs));
        r.attributions.dispose();
      }
      return { ms: best, gap };
    };
    time(64); // warm-up
    const runs = [1, 4, 16, 64].map(time);
    const best = Math.min(...runs.map((r) => r.ms));
    console.log(
      `${name.padEnd(7)} ${runs.map((r, i) => r.ms.toFixed(1).padStart([11, 9, 10, 11][i]!)).join(' ')}   ` +
        `${(runs[0]!.ms / best).toFixed(2).padStart(8)}x   ${runs[3]!.gap.toExponential(2)}`,
    );
  }

  console.log('\n## permutation importance: 16 groups of 7x7 pixels, 3 repeats, 1,000 test digits, MLP');
  const groups = Array.from({ length: 16 }, (_, g) => {
    const r0 = Math.floor(g / 4) * 7,
      c0 = (g % 4) * 7;
    const columns: number[] = [];
    for (let r = r0; r < r0 + 7; r++) for (let c = c0; c < c0 + 7; c++) columns.push(r * 28 + c);
    return { name: `patch r${r0} c${c0}`, columns };
  });
  const flat = xTest.slice([0], [1000]).reshape([1000, 784]);
  const y1000 = yTest.slice([0], [1000]);
  const t0 = performance.now();
  const imp = kn.explain.permutationImportance((z) => net.call(z.reshape([z.shape[0]!, 1, 28, 28])), flat, y1000, {
    repeats: 3,
    groups,
  });
  const secs = (performance.now() - t0) / 1000;
  const top = [...imp.importances].sort((a, b) => b.mean - a.mean).slice(0, 3);
  console.log(
    `${secs.toFixed(2)} s for ${16 * 3} permuted copies (${16 * 3 * 1000} rows, one forward per group); baseline ` +
      `accuracy ${(100 * imp.baseline).toFixed(2)}%; most important: ` +
      top.map((t) => `${t.feature} (-${(100 * t.mean).toFixed(1)} pts)`).join(', '),
  );

  console.log('\n## distillation: CNN teacher -> MLP 784-128-10 student, 20 epochs each, same seed and optimizer');
  const student = (): kn.nn.Module =>
    new kn.nn.Sequential(new kn.nn.Flatten(), new kn.nn.Linear(784, 128), new kn.nn.ReLU(), new kn.nn.Linear(128, 10));
  kn.seed(SEED);
  const alone = student();
  const aloneSecs = await trainModel(alone, train, 20);
  kn.seed(SEED);
  const distilled = student();
  const d = kn.train.distill(teacher, distilled, { temperature: 4, alpha: 0.9 });
  const t1 = performance.now();
  await kn.train.fit(d, {
    train,
    loss: d.loss,
    optimizer: new kn.optim.Adam(distilled.parameters(), { lr: 1e-3 }),
    epochs: 20,
    verbose: 'silent',
  });
  const distSecs = (performance.now() - t1) / 1000;
  const a1 = acc(alone),
    a2 = acc(distilled);
  console.log(`student alone:     test accuracy ${(100 * a1).toFixed(2)}% (${aloneSecs.toFixed(1)} s)`);
  console.log(
    `student distilled: test accuracy ${(100 * a2).toFixed(2)}% (${distSecs.toFixed(1)} s, T = 4, alpha = 0.9)`,
  );
  console.log(
    `distillation ${a2 > a1 ? 'beats' : 'does NOT beat'} training alone by ${(100 * (a2 - a1)).toFixed(2)} points`,
  );
}
