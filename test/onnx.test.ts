// ONNX export, checked by running the exported file in onnxruntime-node (CPU) and comparing its outputs with
// kiln's on the same inputs: float models with every supported layer, and QDQ-quantized models.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type * as Ort from 'onnxruntime-node';
import * as kn from '../src/index.js';
import { tempDir } from './helpers.js';

const ort = createRequire(import.meta.url)('onnxruntime-node') as typeof Ort;
const dir = tempDir('kiln-onnx-');

async function compare(
  model: kn.nn.Module,
  x: kn.Tensor,
  opts: kn.io.OnnxExportOptions,
  file: string,
  minSqnr: number,
): Promise<number> {
  const path = join(dir, file);
  await kn.io.exportOnnx(model, path, opts);
  const session = await ort.InferenceSession.create(readFileSync(path));
  const input =
    x.dtype === 'int32'
      ? new ort.Tensor('int32', x.toArray() as Int32Array, [...x.shape])
      : new ort.Tensor('float32', x.toArray() as Float32Array, [...x.shape]);
  const res = await session.run({ input });
  await session.release();
  const got = res.output!.data as Float32Array;
  const want = model.call(x);
  assert.equal([...res.output!.dims], [...want.shape], `${file}: output shape`);
  const w = want.toArray() as Float32Array;
  let s = 0,
    n = 0;
  for (let i = 0; i < w.length; i++) {
    s += w[i]! ** 2;
    n += (w[i]! - got[i]!) ** 2;
  }
  const db = n === 0 ? Infinity : 10 * Math.log10(s / n);
  console.log(`${file}: onnxruntime vs kiln SQNR ${db.toFixed(1)} dB`);
  assert.ok(db >= minSqnr, `${file}: onnxruntime vs kiln SQNR ${db.toFixed(1)} dB < ${minSqnr}`);
  want.dispose();
  return db;
}

test('float models: Linear, Conv2d, BatchNorm, pooling, Flatten, activations, Dropout, LayerNorm', async () => {
  kn.seed(1);
  const mlp = new kn.nn.Sequential(
    new kn.nn.Linear(12, 16),
    new kn.nn.GELU(),
    new kn.nn.LayerNorm(16),
    new kn.nn.Dropout(0.3),
    new kn.nn.Linear(16, 8),
    new kn.nn.BatchNorm1d(8),
    new kn.nn.Tanh(),
    new kn.nn.Linear(8, 3, { bias: false }),
    new kn.nn.Sigmoid(),
  );
  mlp.train();
  mlp.call(kn.randn([32, 12])).dispose(); // move the running statistics
  mlp.eval();
  await compare(mlp, kn.randn([5, 12]), {}, 'mlp.onnx', 80);
  const cnn = new kn.nn.Sequential(
    new kn.nn.Conv2d(2, 6, 3, { padding: 1 }),
    new kn.nn.BatchNorm2d(6),
    new kn.nn.ReLU(),
    new kn.nn.MaxPool2d(2),
    new kn.nn.Conv2d(6, 4, [3, 2], { stride: [1, 2], dilation: [2, 1], padding: [1, 0] }),
    new kn.nn.ReLU(),
    new kn.nn.Flatten(),
    new kn.nn.Linear(4 * 2 * 2, 5),
  ).eval();
  assert.equal(cnn.call(kn.randn([1, 2, 8, 8])).shape, [1, 5]);
  await compare(cnn, kn.randn([3, 2, 8, 8]), { inputShape: [2, 8, 8] }, 'cnn.onnx', 80);
  const emb = new kn.nn.Sequential(new kn.nn.Embedding(10, 4), new kn.nn.Flatten(), new kn.nn.Linear(12, 2));
  await compare(
    emb,
    kn.tensor(new Int32Array([1, 2, 3, 9, 0, 5]), [2, 3]),
    { inputShape: [3], inputDtype: 'int32' },
    'emb.onnx',
    80,
  );
});

test('quantized models in QDQ form run in onnxruntime and agree with kiln', async () => {
  kn.seed(2);
  const mlp = new kn.nn.Sequential(new kn.nn.Linear(32, 64), new kn.nn.ReLU(), new kn.nn.Linear(64, 10));
  const cnn = new kn.nn.Sequential(
    new kn.nn.Conv2d(1, 4, 3, { padding: 1 }),
    new kn.nn.ReLU(),
    new kn.nn.Flatten(),
    new kn.nn.Linear(4 * 36, 3),
  );
  const xm = kn.randn([8, 32]),
    xc = kn.randn([4, 1, 6, 6]);
  const s8 = kn.quant.quantize(mlp, { scheme: 'int8', calibration: [xm] }).model;
  await compare(s8, xm, {}, 'mlp-int8.onnx', 35);
  const c8 = kn.quant.quantize(cnn, { scheme: 'int8', calibration: [xc] }).model;
  await compare(c8, xc, { inputShape: [1, 6, 6] }, 'cnn-int8.onnx', 35);
  // dynamic: onnxruntime quantizes per tensor where kiln quantizes per row, so they agree less closely
  const d8 = kn.quant.quantize(mlp, { scheme: 'int8-dynamic' }).model;
  await compare(d8, xm, {}, 'mlp-int8-dynamic.onnx', 25);
  const i4 = kn.quant.quantize(mlp, { scheme: 'int4' }).model;
  await compare(i4, xm, {}, 'mlp-int4.onnx', 80);
});

test('attention, Transformer models, ResNet, Conv1d and pooling run in onnxruntime and agree with kiln', async () => {
  kn.seed(21);
  const tc = kn.models.transformerClassifier({ vocabSize: 40, numClasses: 5, dModel: 16, nHead: 4, maxLen: 32 });
  tc.eval();
  await compare(tc, kn.randint([3, 12], 0, 40), { inputShape: [12], inputDtype: 'int32' }, 'transformer-cls.onnx', 80);
  const lm = kn.models.charLM({ vocabSize: 20, blockSize: 16, dModel: 16, nHead: 2, numLayers: 2 });
  lm.eval();
  await compare(lm, kn.randint([2, 9], 0, 20), { inputShape: [9], inputDtype: 'int32' }, 'charlm.onnx', 80);
  const post = new kn.nn.Sequential(
    new kn.nn.SinusoidalPositionalEncoding(8, 64, { batchFirst: false }),
    new kn.nn.TransformerEncoderLayer(8, 2, { dimFeedforward: 12 }),
    new kn.nn.SequencePool('first', { batchFirst: false }),
  );
  post.eval();
  await compare(post, kn.randn([6, 2, 8]), { inputShape: [2, 8] }, 'encoder-seqfirst.onnx', 80);
  const rn = kn.models.resnet({ blocks: 1, widths: [4, 8], numClasses: 3 });
  rn.eval();
  await compare(rn, kn.randn([2, 3, 8, 8]), { inputShape: [3, 8, 8] }, 'resnet.onnx', 80);
  const gn1 = new kn.nn.GroupNorm(2, 4);
  gn1.weight!.assign(kn.randn([4]));
  gn1.bias!.assign(kn.randn([4]));
  const seq = new kn.nn.Sequential(
    new kn.nn.Conv1d(3, 4, 3, { padding: 1, stride: 2 }),
    gn1,
    new kn.nn.ReLU(),
    new kn.nn.Flatten(),
  );
  await compare(seq, kn.randn([2, 3, 10]), { inputShape: [3, 10] }, 'conv1d.onnx', 80);
  const pool = new kn.nn.Sequential(
    new kn.nn.AvgPool2d(2, { padding: 1, countIncludePad: false }),
    new kn.nn.AdaptiveAvgPool2d(1),
  );
  await compare(pool, kn.randn([2, 2, 5, 5]), { inputShape: [2, 5, 5] }, 'pool.onnx', 80);
  const gn = new kn.nn.GroupNorm(3, 6, { eps: 1e-3 });
  gn.weight!.assign(kn.randn([6]));
  gn.bias!.assign(kn.randn([6]));
  const grouped = new kn.nn.Sequential(
    new kn.nn.Conv2d(2, 6, 3, { padding: 1 }),
    gn,
    new kn.nn.ReLU(),
    new kn.nn.GroupNorm(6, 6, { affine: false }),
  );
  await compare(grouped, kn.randn([2, 2, 5, 5]), { inputShape: [2, 5, 5] }, 'groupnorm.onnx', 80);
  const ups = new kn.nn.Sequential(
    new kn.nn.Conv2d(2, 3, 3, { padding: 'same' }),
    new kn.nn.Upsample({ scaleFactor: 2, mode: 'bilinear' }),
    new kn.nn.Upsample({ size: [13, 7] }),
    new kn.nn.Upsample({ scaleFactor: [0.5, 1.5] }),
    new kn.nn.Upsample({ size: [9, 9], mode: 'bilinear', alignCorners: true }),
    new kn.nn.Upsample({ size: [4, 3], mode: 'bilinear' }),
  );
  await compare(ups, kn.randn([2, 2, 5, 6]), { inputShape: [2, 5, 6] }, 'upsample.onnx', 80);
  const g = new kn.nn.Graph();
  const x = g.input();
  const lin = new kn.nn.Linear(6, 4);
  const h = g.concat([
    x.then(new kn.nn.Linear(6, 4)).then(new kn.nn.ReLU()),
    g.mul(x.then(lin), x.then(lin).then(new kn.nn.Sigmoid())),
  ]);
  g.output(g.add(h, x.then(new kn.nn.Linear(6, 8))).then(new kn.nn.Linear(8, 3)));
  await compare(g, kn.randn([4, 6]), { inputShape: [6] }, 'graph.onnx', 80);
  for (const kind of ['LSTM', 'GRU'] as const) {
    const rnn = new kn.nn.Sequential(
      new kn.nn[kind](5, 6, { numLayers: 2, bidirectional: true, batchFirst: true }),
      new kn.nn.SequencePool('last'),
      new kn.nn.Linear(12, 3),
    );
    rnn.eval();
    await compare(rnn, kn.randn([2, 7, 5]), { inputShape: [7, 5] }, `${kind.toLowerCase()}.onnx`, 80);
    const seqFirst = new kn.nn[kind](4, 3);
    await compare(seqFirst, kn.randn([6, 2, 4]), { inputShape: [2, 4] }, `${kind.toLowerCase()}-seqfirst.onnx`, 80);
  }
  const rot = new kn.nn.MultiheadAttention(8, 2, { batchFirst: true, rotary: true });
  assert.throws(() => kn.io.toOnnx(rot, { inputShape: [3, 8] }), /rotary/);
  assert.throws(() => kn.io.toOnnx(new kn.nn.TransformerDecoderLayer(8, 2), { inputShape: [3, 8] }), /encoder output/);
});

test('unsupported layers and bad arguments are refused with a clear error', async () => {
  class Custom extends kn.nn.Module {
    forward(x: kn.Tensor): kn.Tensor {
      return x;
    }
  }
  try {
    kn.io.toOnnx(new kn.nn.Sequential(new kn.nn.Linear(2, 2), new Custom()));
    assert.unreachable();
  } catch (e) {
    assert.instance(e, kn.ValidationError);
    assert.match((e as Error).message, /model\.1 is a Custom, which ONNX export does not support/);
  }
  assert.throws(() => kn.io.toOnnx(new kn.nn.Sequential(new kn.nn.ReLU())), /needs inputShape/);
  assert.throws(
    () => kn.io.toOnnx(new kn.nn.Sequential(new kn.nn.Flatten(0, 1)), { inputShape: [2] }),
    /Flatten\(1, -1\) only/,
  );
  assert.throws(() => kn.io.toOnnx(42 as never), /takes a kn.nn.Module/);
});

test.run();
