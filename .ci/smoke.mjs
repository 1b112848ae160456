// Run by .ci/consumer.sh inside a fresh package that installed the packed kiln tarball with --ignore-scripts and
// no compiler on PATH: a few ops with known answers, one training step, and a save/load round trip.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as kn from 'kiln';

const check = (ok, what) => {
  if (!ok) throw new Error(`smoke: ${what}`);
  console.log(`ok  ${what}`);
};
const close = (a, b, tol = 1e-5) => a.length === b.length && a.every((v, i) => Math.abs(v - b[i]) <= tol);

const info = kn.info();
check(
  info.cpu !== null,
  `the cpu addon loads (${info.backends.find((b) => b.name === 'cpu').reason ?? 'kernels: ' + info.cpu?.isa})`,
);
check(info.cpu.addon.from === 'prebuild', `it is the prebuilt binary (${info.cpu.addon.path})`);

const a = kn.tensor([1, 2, 3, 4, 5, 6], [2, 3], { backend: 'cpu' });
const b = kn.tensor([1, 0, 0, 1, 1, 1], [3, 2], { backend: 'cpu' });
check(close(Array.from(a.matmul(b).toArray()), [4, 5, 10, 11]), 'matmul [2,3]x[3,2] on cpu');
check(
  close(
    Array.from(a.exp().sum().toArray()),
    [Math.E + Math.E ** 2 + Math.E ** 3 + Math.E ** 4 + Math.E ** 5 + Math.E ** 6],
    1e-3,
  ),
  'exp + sum',
);
check(close(Array.from(a.relu().mean([1]).toArray()), [2, 5]), 'relu + mean over an axis');

kn.seed(7);
const model = new kn.nn.Sequential(new kn.nn.Linear(4, 8), new kn.nn.ReLU(), new kn.nn.Linear(8, 3));
const opt = new kn.optim.Adam(model.parameters(), { lr: 1e-2 });
const x = kn.randn([16, 4]);
const y = kn.tensor(
  Array.from({ length: 16 }, (_, i) => i % 3),
  [16],
  { dtype: 'int32' },
);
const lossAt = () => kn.noGrad(() => kn.nn.loss.crossEntropy(model.call(x), y).item());
const before = lossAt();
for (let step = 0; step < 20; step++) {
  opt.zeroGrad();
  const loss = kn.nn.loss.crossEntropy(model.call(x), y);
  loss.backward();
  opt.step();
}
const after = lossAt();
check(
  Number.isFinite(after) && after < before,
  `Adam steps lower the loss (${before.toFixed(4)} -> ${after.toFixed(4)})`,
);

const dir = mkdtempSync(join(tmpdir(), 'kiln-smoke-'));
try {
  const file = join(dir, 'model.safetensors');
  await kn.io.save(file, model);
  const { model: loaded } = await kn.io.loadModel(file);
  const same = close(Array.from(loaded.call(x).toArray()), Array.from(model.call(x).toArray()), 0);
  check(same, 'save + loadModel round trip gives identical outputs');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log('smoke: all checks passed');
