// Bad input gets a clear KilnError, never a crash: shapes, dtypes, argument types, disposed tensors, huge
// sizes, and hostile descriptors sent straight to the addon.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';
import * as kn from '../src/index.js';
import { loadAddon } from '../src/backends/native/binding.js';
import { nativeBackends, onBackend, throwsKiln } from './helpers.js';

for (const b of ['js', ...nativeBackends()] as kn.BackendName[]) {
  test(`shape mismatches on ${b}`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        throwsKiln(() => kn.ones([2, 3]).add(kn.ones([4])), kn.ShapeError, /\[2, 3\] and \[4\] cannot be broadcast/);
        throwsKiln(() => kn.matmul(kn.ones([2, 3]), kn.ones([4, 5])), kn.ShapeError, /inner dimensions differ.*3 vs 4/);
        throwsKiln(
          () => kn.ones([2, 3]).reshape([4, 2]),
          kn.ShapeError,
          /cannot reshape \[2, 3\] \(6 elements\) to \[4, 2\] \(8 elements\)/,
        );
        throwsKiln(
          () => kn.conv2d(kn.ones([1, 3, 4, 4]), kn.ones([2, 2, 3, 3])),
          kn.ShapeError,
          /3 channels .* expects 2/,
        );
        throwsKiln(
          () => kn.conv2d(kn.ones([1, 1, 2, 2]), kn.ones([1, 1, 3, 3])),
          kn.ShapeError,
          /larger than the padded input/,
        );
        throwsKiln(() => kn.concat([kn.ones([2, 3]), kn.ones([3, 3])], 1), kn.ShapeError, /input 1 has shape \[3, 3\]/);
        throwsKiln(() => kn.tensor([[1, 2], [3]]), kn.ShapeError, /ragged/);
        throwsKiln(() => kn.tensor([1, 2, 3], [2, 2]), kn.ShapeError, /needs 4 values, but the data has 3/);
        throwsKiln(
          () =>
            kn
              .ones([0, 3])
              .max(1)
              .add(kn.ones([0, 3]).max(0)),
          kn.ShapeError,
          /empty axis/,
        );
        throwsKiln(() => kn.ones([2, 3]).backward(), kn.ArgumentError, /does not require a gradient/);
      }),
    ));

  test(`dtype and argument errors on ${b}`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        throwsKiln(
          () => kn.ones([2]).gather(kn.ones([1])),
          kn.DTypeError,
          /indices must be an integer tensor.*float32/,
        );
        throwsKiln(
          () => {
            kn.ones([2], { dtype: 'int32' }).requiresGrad = true;
          },
          kn.DTypeError,
          /only floating-point/,
        );
        throwsKiln(
          () => kn.ones([2], { dtype: 'float64' as kn.DType }),
          kn.ArgumentError,
          /dtype must be one of .* got "float64"/,
        );
        throwsKiln(() => kn.tensor('abc' as unknown as number[]), kn.ArgumentError, /tensor data must be .* got "abc"/);
        throwsKiln(
          () => kn.tensor([1, 'x' as unknown as number]),
          kn.ArgumentError,
          /\[1\] must be a number or boolean, got "x"/,
        );
        throwsKiln(() => kn.zeros([2, -1]), kn.ArgumentError, /shape\[1\] must be a non-negative integer, got -1/);
        throwsKiln(() => kn.zeros([2.5]), kn.ArgumentError, /non-negative integer, got 2.5/);
        throwsKiln(() => kn.zeros('3' as unknown as number[]), kn.ArgumentError, /shape must be an array/);
        throwsKiln(() => kn.ones([2, 3]).sum(2), kn.ArgumentError, /axis 2 is out of range for a 2-d tensor/);
        throwsKiln(() => kn.ones([2]).add('1' as unknown as number), kn.ArgumentError, /Tensor or a number, got "1"/);
        // a data-dependent check: at the call on js/cpu, at the next read on webgpu (where only the GPU sees the data)
        throwsKiln(
          () =>
            kn
              .ones([3])
              .gather(kn.tensor([0, 3], undefined, { dtype: 'int32' }))
              .toArray(),
          kn.ArgumentError,
          /index 3 at position 1 is out of range for axis 0 of size 3/,
        );
        throwsKiln(() => kn.ones([3]).clamp(2, 1), kn.ArgumentError, /min \(2\) must not exceed max \(1\)/);
        throwsKiln(() => kn.ones([3]).item(), kn.ArgumentError, /one element/);
        throwsKiln(() => kn.randint([2], 5, 5), kn.ArgumentError, /low < high/);
        throwsKiln(() => kn.seed(1.5), kn.ArgumentError, /safe integer/);
        // options: a bare value or a misspelt key fails rather than being ignored
        const bare = 'float16' as unknown as kn.TensorOptions;
        throwsKiln(() => kn.zeros([2], bare), kn.ArgumentError, /zeros options must be an object, got "float16"/);
        throwsKiln(() => kn.tensor([1], [1], bare), kn.ArgumentError, /tensor options must be an object/);
        const typo = { dtyp: 'float16' } as kn.TensorOptions;
        throwsKiln(() => kn.ones([2], typo), kn.ArgumentError, /ones: unknown option "dtyp" \(the options are dtype,/);
        throwsKiln(() => kn.full([2], 3, [] as kn.TensorOptions), kn.ArgumentError, /full options must be an object/);
        throwsKiln(() => kn.arange(0, 4, 1, 'int32' as never), kn.ArgumentError, /arange options must be an object/);
        throwsKiln(() => kn.randn([2], 0.1 as never), kn.ArgumentError, /randn options must be an object, got 0.1/);
        throwsKiln(() => kn.rand([2], { hi: 2 } as never), kn.ArgumentError, /rand: unknown option "hi"/);
        assert.is(kn.full([2], 3, { dtype: 'int32', backend: b }).dtype, 'int32');
        throwsKiln(() => kn.setBackend('tpu' as kn.BackendName), kn.ArgumentError, /backend must be one of/);
      }),
    ));

  test(`disposed tensors on ${b}`, () =>
    onBackend(b, () => {
      const t = kn.ones([2]);
      t.dispose();
      t.dispose(); // idempotent
      throwsKiln(() => t.add(1), kn.ArgumentError, /was disposed/);
      throwsKiln(() => t.toArray(), kn.ArgumentError, /was disposed/);
      throwsKiln(() => kn.ones([2]).add(t), kn.ArgumentError, /was disposed/);
    }));

  test(`huge sizes on ${b}`, () =>
    onBackend(b, () => {
      throwsKiln(() => kn.zeros([1e8, 1e8, 1e8]), kn.ShapeError, /more than the maximum/);
      throwsKiln(() => kn.zeros([2 ** 26, 2 ** 26]), kn.KilnError, /out of memory|allocate|16 TiB/);
    }));
}

test('mixing backends is an error that says how to fix it', () => {
  if (!nativeBackends().includes('cpu')) return;
  const a = onBackend('js', () => kn.ones([2]));
  const b = onBackend('cpu', () => kn.ones([2]));
  throwsKiln(() => a.add(b), kn.BackendError, /different backends \('js' and 'cpu'\).*t\.to\('js'\)/);
  const c = b.to('js');
  assert.equal(Array.from(a.add(c).toArray()), [2, 2]);
});

test('addon rejects hostile descriptors without touching memory', () => {
  const { addon } = loadAddon();
  if (!addon) return;
  const id = addon.alloc(0, 4);
  const out = addon.alloc(0, 4);
  const run = (desc: number[], o: number[], attrs: number[] = [], op = 2): void =>
    addon.run(op, Float64Array.from(desc), Float64Array.from(o), Float64Array.from(attrs));
  const expectCode = (fn: () => void, code: string, re: RegExp): void => {
    try {
      fn();
    } catch (e) {
      const err = e as { code?: string; message: string };
      assert.is(err.code, code, err.message);
      assert.match(err.message, re);
      return;
    }
    assert.unreachable('no error');
  };
  expectCode(() => run([1, id, 0, 1, 0, 5, 1], [out, 0, 1, 4]), 'KILN_ARG', /reaches past the end/); // view too long
  expectCode(() => run([1, id, 0, 1, 2, 4, 1], [out, 0, 1, 4]), 'KILN_ARG', /reaches past the end/); // offset overrun
  expectCode(() => run([1, id, 0, 1, 0, 2, 4], [out, 0, 1, 4]), 'KILN_ARG', /reaches past the end/); // stride overrun
  expectCode(() => run([1, 999, 0, 1, 0, 4, 1], [out, 0, 1, 4]), 'KILN_ARG', /does not exist/); // unknown id
  expectCode(() => run([1, id, 3, 1, 0, 4, 1], [out, 0, 1, 4]), 'KILN_DTYPE', /holds float32/); // dtype lie
  expectCode(() => run([1, id, 0, 1, -1, 4, 1], [out, 0, 1, 4]), 'KILN_ARG', /offset/); // negative offset
  expectCode(() => run([1, id, 0, 1, 0, 4, -1], [out, 0, 1, 4]), 'KILN_ARG', /stride/); // negative stride
  expectCode(() => run([1, id, 0, 13, 0], [out, 0, 1, 4]), 'KILN_SHAPE', /rank/); // rank too big
  expectCode(() => run([1, id, 0, 1, 0, 4], [out, 0, 1, 4]), 'KILN_ARG', /truncated/); // truncated
  expectCode(() => run([1, id, 0, 1, 0, 4, 1], [id, 0, 1, 4]), 'KILN_ARG', /aliases/); // in-place
  expectCode(() => run([1, id, 0, 1, 0, 4, 1], [out, 0, 1, 3]), 'KILN_SHAPE', /element count/); // output size
  expectCode(() => run([2, id, 0, 1, 0, 4, 1, id, 0, 1, 0, 4, 1], [out, 0, 1, 4]), 'KILN_ARG', /takes 1 inputs/); // arity
  expectCode(
    () =>
      run(
        [1, id, 0, 1, 0, 4, 1],
        [out, 0, 0],
        [NaN, 1],
        kn.OP_TABLE.findIndex((o) => o.name === 'sum'),
      ),
    'KILN_ARG',
    /attribute 0/,
  ); // NaN attr
  expectCode(
    () => addon.run(999, new Float64Array([0]), new Float64Array([out, 0, 1, 4]), new Float64Array()),
    'KILN_ARG',
    /op id/,
  );
  expectCode(
    () => addon.run(2, [1, id] as unknown as Float64Array, new Float64Array([out, 0, 1, 4]), new Float64Array()),
    'KILN_ARG',
    /Float64Array/,
  );
  expectCode(() => addon.write(id, new Float32Array(5), 0), 'KILN_ARG', /overruns/);
  expectCode(() => addon.write(id, new Int32Array(2) as unknown as Float32Array, 0), 'KILN_DTYPE', /does not match/);
  expectCode(() => addon.read(id, new Float32Array(2), 3), 'KILN_ARG', /overruns/);
  expectCode(() => addon.alloc(0, -1), 'KILN_ARG', /element count/);
  expectCode(() => addon.alloc(9, 1), 'KILN_ARG', /dtype/);
  expectCode(() => addon.alloc(0, 2 ** 50), 'KILN_OOM', /16 TiB/);
  expectCode(() => addon.free(123456789), 'KILN_ARG', /does not exist/);
  addon.free(id);
  addon.free(out);
  expectCode(() => addon.free(id), 'KILN_ARG', /does not exist/);
});

test('errors from the addon become KilnError subclasses', () => {
  if (!nativeBackends().includes('cpu')) return;
  onBackend('cpu', () => {
    throwsKiln(
      () => kn.ones([2, 2]).gather(kn.tensor([[0, 5]], undefined, { dtype: 'int32' }), 1),
      kn.ArgumentError,
      /index 5 .* size 2/,
    );
  });
});

test('options objects: a bare value or an unknown key fails, naming the options there are', async () => {
  const params = new kn.nn.Linear(2, 1).parameters();
  // PyTorch's positional lr: Adam(params, 1e-3) would otherwise train at the default 3e-4
  throwsKiln(
    () => new kn.optim.Adam(params, 1e-3 as never),
    kn.ArgumentError,
    /Adam options must be an object, got 0.001/,
  );
  throwsKiln(
    () => new kn.optim.AdamW(params, null as never),
    kn.ArgumentError,
    /AdamW options must be an object, got null/,
  );
  throwsKiln(
    () => new kn.optim.Adam(params, { learningRate: 1e-3 } as never),
    kn.ArgumentError,
    /Adam: unknown option "learningRate" \(the options are lr, betas, eps, weightDecay, amsgrad\)/,
  );
  throwsKiln(
    () => new kn.optim.SGD(params, { momentun: 0.9 } as never),
    kn.ArgumentError,
    /SGD: unknown option "momentun"/,
  );
  const opt = new kn.optim.SGD(params, { lr: 0.1 });
  throwsKiln(
    () => new kn.optim.StepLR(opt, { stepSize: 2, gama: 0.5 } as never),
    kn.ArgumentError,
    /StepLR: unknown option "gama"/,
  );
  throwsKiln(() => new kn.optim.CosineLR(opt, [10] as never), kn.ArgumentError, /CosineLR options must be an object/);
  throwsKiln(
    () => new kn.optim.WarmupLR(opt, { warmup: 3 } as never),
    kn.ArgumentError,
    /WarmupLR: unknown option "warmup"/,
  );
  // layers
  throwsKiln(
    () => new kn.nn.Linear(2, 3, { biases: false } as never),
    kn.ArgumentError,
    /Linear: unknown option "biases"/,
  );
  throwsKiln(() => new kn.nn.Conv2d(1, 2, 3, { pad: 1 } as never), kn.ArgumentError, /Conv2d: unknown option "pad"/);
  throwsKiln(
    () => new kn.nn.Conv1d(1, 2, 3, { strides: 2 } as never),
    kn.ArgumentError,
    /Conv1d: unknown option "strides"/,
  );
  throwsKiln(() => new kn.nn.MaxPool2d(2, 2 as never), kn.ArgumentError, /MaxPool2d options must be an object, got 2/);
  throwsKiln(
    () => new kn.nn.AvgPool2d(2, { count: true } as never),
    kn.ArgumentError,
    /AvgPool2d: unknown option "count"/,
  );
  throwsKiln(
    () => new kn.nn.BatchNorm2d(3, { epsilon: 1e-3 } as never),
    kn.ArgumentError,
    /BatchNorm2d: unknown option "epsilon"/,
  );
  throwsKiln(
    () => new kn.nn.LayerNorm(3, { momentum: 0.1 } as never),
    kn.ArgumentError,
    /LayerNorm: unknown option "momentum"/,
  );
  throwsKiln(() => new kn.nn.LSTM(3, 4, { layers: 2 } as never), kn.ArgumentError, /LSTM: unknown option "layers"/);
  throwsKiln(
    () => new kn.nn.MultiheadAttention(4, 2, { heads: 2 } as never),
    kn.ArgumentError,
    /MultiheadAttention: unknown option "heads"/,
  );
  throwsKiln(
    () => new kn.nn.TransformerEncoderLayer(4, 2, { dimFeedForward: 8 } as never),
    kn.ArgumentError,
    /TransformerEncoderLayer: unknown option "dimFeedForward"/,
  );
  throwsKiln(
    () =>
      kn.nn.loss.crossEntropy(kn.zeros([2, 3]), kn.tensor([0, 1], undefined, { dtype: 'int32' }), {
        smoothing: 0.1,
      } as never),
    kn.ArgumentError,
    /crossEntropy: unknown option "smoothing"/,
  );
  // the data loader, in both of its call shapes, and fit with its nested options
  const ds = new kn.data.Dataset({ x: kn.randn([4, 2]), y: kn.randn([4, 1]) });
  throwsKiln(
    () => new kn.data.DataLoader(ds, { batch_size: 2 } as never),
    kn.ArgumentError,
    /DataLoader: unknown option "batch_size"/,
  );
  throwsKiln(
    () => new kn.data.DataLoader({ dataset: ds, suffle: true } as never),
    kn.ArgumentError,
    /DataLoader: unknown option "suffle"/,
  );
  assert.is(new kn.data.DataLoader({ dataset: ds, batchSize: 3 }).batchSize, 3);
  const model = new kn.nn.Linear(2, 1);
  const base = {
    train: new kn.data.DataLoader(ds),
    loss: 'mse' as const,
    optimizer: new kn.optim.Adam(model.parameters()),
    epochs: 1,
    verbose: 'silent' as const,
  };
  await rejectsKiln(kn.train.fit(model, { ...base, epoch: 2 } as never), /fit: unknown option "epoch"/);
  await rejectsKiln(
    kn.train.fit(model, { ...base, earlyStopping: { patients: 2 } } as never),
    /fit earlyStopping: unknown option "patients"/,
  );
  await rejectsKiln(
    kn.train.fit(model, { ...base, profile: { step: 2 } } as never),
    /fit profile: unknown option "step"/,
  );
  const r = await kn.train.fit(model, base);
  assert.is(r.history.length, 1);
  // autograd, gradient checks, clipping, models, state dicts, reductions, metrics and files
  const x = kn.ones([2], { requiresGrad: true });
  const sq = (t: kn.Tensor): kn.Tensor => t.mul(t).sum();
  const bad = { creatGraph: true } as never;
  const cases: [string, () => unknown][] = [
    ['backward', () => kn.backward(sq(x), undefined, bad)],
    ['grad(f, opts)', () => kn.grad(sq, bad)],
    ['vjp', () => kn.vjp(sq, x, kn.ones([]), bad)],
    ['jvp', () => kn.jvp(sq, x, kn.ones([2]), bad)],
    ['jacobian', () => kn.jacobian(sq, x, bad)],
    ['hvp', () => kn.hvp(sq, x, kn.ones([2]), bad)],
    ['hessian', () => kn.hessian(sq, x, bad)],
    ['gradcheck', () => kn.gradcheck(sq, [x], bad)],
    ['gradgradcheck', () => kn.gradgradcheck(sq, [x], bad)],
    ['gradNorm', () => kn.optim.gradNorm([x], bad)],
    ['clipGradNorm', () => kn.optim.clipGradNorm([x], 1, bad)],
    ['mlp', () => kn.models.mlp(2, [3], 1, bad)],
    ['lenet5', () => kn.models.lenet5(bad)],
    ['resnet', () => kn.models.resnet(bad)],
    ['generate', () => kn.models.generate(model, [0], bad)],
    ['loadStateDict', () => model.loadStateDict(model.stateDict(), bad)],
    ['var', () => x.var(0, bad)],
    ['confusionMatrix', () => kn.metrics.confusionMatrix([0, 1], [1, 1], bad)],
    ['precision', () => kn.metrics.precision([0, 1], [1, 1], bad)],
    ['recall', () => kn.metrics.recall([0, 1], [1, 1], bad)],
    ['f1', () => kn.metrics.f1([0, 1], [1, 1], bad)],
    ['classificationReport', () => kn.metrics.classificationReport([0, 1], [1, 1], bad)],
    ['rocAuc', () => kn.metrics.rocAuc([0, 1], [0.2, 0.7], bad)],
    ['modelFromBytes', () => kn.io.modelFromBytes(new Uint8Array(8), bad)],
  ];
  for (const [fn, call] of cases)
    throwsKiln(
      call,
      kn.ArgumentError,
      new RegExp(`^${fn.replace(/[()]/g, '\\$&')}: unknown option "creatGraph" \\(the options are `),
    );
  for (const fn of ['save', 'load', 'loadWithMetadata', 'loadModel'] as const) {
    const call = (
      fn === 'save' ? kn.io.save('/tmp/kiln-never-written', model, bad) : kn.io[fn]('/tmp/kiln-never', bad)
    ) as Promise<unknown>;
    await rejectsKiln(call, new RegExp(`^${fn}: unknown option "creatGraph"`));
  }
  assert.equal(Array.from((kn.grad(sq, { createGraph: false })(x) as kn.Tensor).toArray()), [2, 2]);
  // the options of data, evaluation, explanation, pruning, quantization, tracking and the training checks are
  // checked before the other arguments, so placeholders stand in for those
  const u = undefined as never;
  const sweep: [string, () => unknown][] = [
    ['fromArrowWithVocab', () => kn.data.fromArrowWithVocab(u, bad)],
    ['fromArrow', () => kn.data.fromArrow(u, bad)],
    ['arrowToMatrix', () => kn.data.arrowToMatrix(u, bad)],
    ['toArrow', () => kn.data.toArrow(u, bad)],
    ['writeArrow', () => kn.data.writeArrow(u, u, bad)],
    ['randomFlip', () => kn.data.augment.randomFlip(bad)],
    ['randomCrop', () => kn.data.augment.randomCrop(u, bad)],
    ['randomRotation', () => kn.data.augment.randomRotation(u, bad)],
    ['cutout', () => kn.data.augment.cutout(u, bad)],
    ['gaussianNoise', () => kn.data.augment.gaussianNoise(u, bad)],
    ['driftReport', () => kn.data.driftReport(u, u, bad)],
    ['OneHotEncoder', () => new kn.data.OneHotEncoder(bad)],
    ['OrdinalEncoder', () => new kn.data.OrdinalEncoder(bad)],
    ['TargetEncoder', () => new kn.data.TargetEncoder(bad)],
    ['HashingEncoder', () => new kn.data.HashingEncoder(bad)],
    ['CalendarStep', () => new kn.data.CalendarStep(bad)],
    ['Reservoir', () => new kn.data.Reservoir(u, bad)],
    ['undersample', () => kn.data.undersample(u, bad)],
    ['oversample', () => kn.data.oversample(u, bad)],
    ['smote', () => kn.data.smote(u, u, bad)],
    ['StandardScaler', () => new kn.data.StandardScaler(bad)],
    ['MinMaxScaler', () => new kn.data.MinMaxScaler(bad)],
    ['RobustScaler', () => new kn.data.RobustScaler(bad)],
    ['SimpleImputer', () => new kn.data.SimpleImputer(bad)],
    ['OutlierClipper', () => new kn.data.OutlierClipper(bad)],
    ['kFold', () => kn.data.kFold(u, u, bad)],
    ['trainTestSplit', () => kn.data.trainTestSplit(u, bad)],
    ['stratifiedKFold', () => kn.data.stratifiedKFold(u, u, bad)],
    ['calendarFeatures', () => kn.data.calendarFeatures(u, bad)],
    ['lagFeatures', () => kn.data.lagFeatures(u, u, bad)],
    ['timeSeriesSplit', () => kn.data.timeSeriesSplit(u, bad)],
    ['validate', () => kn.data.validate(u, u, bad)],
    ['errorAnalysis', () => kn.evaluate.errorAnalysis(u, u, u, bad)],
    ['calibration', () => kn.evaluate.calibration(u, u, bad)],
    ['temperatureScale', () => kn.evaluate.temperatureScale(u, u, bad)],
    ['predictProba', () => kn.evaluate.predictProba(u, u, bad)],
    ['bySlice', () => kn.evaluate.bySlice(u, u, u, bad)],
    ['integratedGradients', () => kn.explain.integratedGradients(u, u, bad)],
    ['gradientXInput', () => kn.explain.gradientXInput(u, u, bad)],
    ['kernelShap', () => kn.explain.kernelShap(u, u, u, bad)],
    ['conv2d', () => kn.conv2d(kn.ones([1, 1, 3, 3]), kn.ones([1, 1, 2, 2]), null, bad)],
    ['maxPool2d', () => kn.maxPool2d(u, u, bad)],
    ['avgPool2d', () => kn.avgPool2d(u, u, bad)],
    ['readParquet', () => kn.data.readParquet('/tmp/kiln-never.parquet', bad)],
    ['writeParquet', () => kn.data.writeParquet('/tmp/kiln-never.parquet', u, bad)],
    ['startRun', () => kn.track.startRun(bad)],
    ['Batcher', () => new kn.serve.Batcher((rows: number[]) => rows, bad)],
    ['transformerClassifier', () => kn.models.transformerClassifier(bad)],
    ['charLM', () => kn.models.charLM(bad)],
    ['quantize', () => kn.quant.quantize(model, { scheme: 'int8', creatGraph: true } as never)],
    ['kaimingUniform', () => kn.nn.init.kaimingUniform(u, bad)],
    ['kaimingNormal', () => kn.nn.init.kaimingNormal(u, bad)],
    ['xavierUniform', () => kn.nn.init.xavierUniform(u, bad)],
    ['xavierNormal', () => kn.nn.init.xavierNormal(u, bad)],
    ['mse', () => kn.nn.loss.mse(u, u, bad)],
    ['bce', () => kn.nn.loss.bce(u, u, bad)],
    ['bceWithLogits', () => kn.nn.loss.bceWithLogits(u, u, bad)],
    ['gradual', () => kn.prune.gradual(u, u, bad)],
    ['magnitude', () => kn.prune.magnitude(u, { amount: 0.5, creatGraph: true } as never)],
    ['structured', () => kn.prune.structured(new kn.nn.Sequential(), { amount: 0.5, creatGraph: true } as never)],
    ['QuantLinear', () => new kn.quant.QuantLinear(u, u, bad)],
    ['Int4Linear', () => new kn.quant.Int4Linear(u, u, u, bad)],
    ['listRuns', () => kn.track.listRuns(u, bad)],
    ['registry.list', () => kn.registry.list(u, bad)],
    ['registry.promote', () => kn.registry.promote(u, u, u, bad)],
    ['registry.production', () => kn.registry.production(u, bad)],
    ['registry.rollback', () => kn.registry.rollback(u, bad)],
    ['registry.compare', () => kn.registry.compare(u, u, u, bad)],
    ['initialLoss', () => kn.train.checks.initialLoss(u, u, bad)],
    ['overfitOneBatch', () => kn.train.checks.overfitOneBatch(u, u, bad)],
    ['zeroInputBaseline', () => kn.train.checks.zeroInputBaseline(u, u, bad)],
    ['gradientFlow', () => kn.train.checks.gradientFlow(u, u, bad)],
    ['batchIndependence', () => kn.train.checks.batchIndependence(u, u, bad)],
    ['capacity', () => kn.train.checks.capacity(u, u, bad)],
    ['Distiller', () => new kn.train.Distiller(u, u, bad)],
    ['distill', () => kn.train.distill(u, u, bad)],
  ];
  const sweepAsync: [string, () => Promise<unknown>][] = [
    ['datasetManifest', () => kn.data.datasetManifest(u, bad)],
    ['verifyManifest', () => kn.data.verifyManifest(u, bad)],
    ['syncRuns', () => kn.track.syncRuns(u, bad)],
    ['server', () => kn.serve.createServer(u, bad)],
    [
      'StreamingDataset.open',
      () => kn.data.StreamingDataset.open(u, { columns: { x: 'a' }, creatGraph: true } as never),
    ],
    ['submit', () => new kn.serve.Batcher((rows: number[]) => rows).submit(1, bad)],
  ];
  // countIncludePad is avgPool2d's alone
  throwsKiln(
    () => kn.maxPool2d(u, u, { countIncludePad: true } as never),
    kn.ArgumentError,
    /maxPool2d: unknown option "countIncludePad"/,
  );
  for (const [fn, call] of sweep) throwsKiln(call, kn.ArgumentError, new RegExp(`^${fn}: unknown option "creatGraph"`));
  for (const [fn, call] of sweepAsync) await rejectsKiln(call(), new RegExp(`^${fn}: unknown option "creatGraph"`));
});

test('options objects: the rest of the API, nested options, and options a call cannot do without', async () => {
  const bad = { creatGraph: true } as never;
  const u = undefined as never;
  const lin = new kn.nn.Linear(2, 2);
  const rm = kn.serve.rowModel((x: kn.Tensor) => x.mul(2), { inputShape: [2] });
  const sweep: [string, () => unknown][] = [
    ['scaledDotProductAttention', () => kn.nn.scaledDotProductAttention(u, u, u, bad)],
    ['applyRotary', () => kn.nn.applyRotary(u, bad)],
    ['SinusoidalPositionalEncoding', () => new kn.nn.SinusoidalPositionalEncoding(8, 16, bad)],
    ['LearnedPositionalEmbedding', () => new kn.nn.LearnedPositionalEmbedding(16, 8, bad)],
    ['SequencePool', () => new kn.nn.SequencePool('mean', bad)],
    ['MultiheadAttention.attend masks', () => new kn.nn.MultiheadAttention(4, 2).attend(u, u, u, bad)],
    ['TransformerEncoderLayer.encode masks', () => new kn.nn.TransformerEncoderLayer(4, 2).encode(u, bad)],
    ['TransformerDecoderLayer.decode masks', () => new kn.nn.TransformerDecoderLayer(4, 2).decode(u, u, bad)],
    [
      'TransformerDecoderLayer.decode masks.memory',
      () => new kn.nn.TransformerDecoderLayer(4, 2).decode(u, u, { memory: bad }),
    ],
    ['qconv2dInt8', () => kn.qconv2dInt8(u, u, u, null, bad)],
    ['profile', () => kn.profile(() => 1, bad)],
    ['Profile.table', () => kn.profile(() => 1).table(bad)],
    ['init', () => kn.distributed.init(bad)],
    ['allreduce', () => kn.distributed.allreduce(u, bad)],
    ['DistributedDataParallel', () => new kn.distributed.DistributedDataParallel(lin, bad)],
    ['DistributedSampler', () => new kn.distributed.DistributedSampler(4, bad)],
    ['toOnnx', () => kn.io.toOnnx(u, bad)],
    ['rowModel', () => kn.serve.rowModel(u, bad)],
    ['monitor', () => new kn.serve.Monitor(bad, 1)],
    ['mixup', () => kn.data.augment.mixup(0.2, bad)],
    ['stratifiedSample', () => kn.data.stratifiedSample([0, 1], bad)],
    ['register', () => kn.registry.register(u, bad)],
    ['adversarial', () => kn.evaluate.adversarial(u, u, u, bad)],
    ['fromSpec', () => kn.nn.fromSpec(u, bad)],
    ['GradualSchedule', () => new kn.prune.GradualSchedule(bad)],
    ['startRun remote', () => kn.track.startRun({ remote: bad })],
    ['leakageReport', () => kn.data.leakageReport({ splits: {}, creatGraph: true } as never)],
    ['rollingFeatures', () => kn.data.rollingFeatures(u, u, bad)],
    ['counterfactual', () => kn.explain.counterfactual(u, u, bad)],
    ['smoothGrad', () => kn.explain.smoothGrad(u, u, bad)],
    ['permutationImportance', () => kn.explain.permutationImportance(u, u, u, bad)],
    ['lime', () => kn.explain.lime(u, u, bad)],
    ['fairness', () => kn.evaluate.fairness(bad)],
    ['fairness thresholds', () => kn.evaluate.fairness({ yTrue: [0], yPred: [0], sensitive: ['a'], thresholds: bad })],
    ['evaluate', () => kn.train.evaluate(u, u, bad)],
    ['QuantConv2d', () => new kn.quant.QuantConv2d(1, 1, 1, bad)],
    ['saveCheckpointSync', () => kn.io.saveCheckpointSync('x', bad)],
    ['loadCheckpointSync', () => kn.io.loadCheckpointSync('x', bad)],
    ['modelCard', () => kn.registry.modelCard(u, bad)],
    ['quantizeTensor', () => kn.quant.quantizeTensor(u, bad)],
  ];
  const sweepAsync: [string, () => Promise<unknown>][] = [
    ['bench', () => kn.bench(() => 1, bad)],
    ['allreduceAsync', () => kn.distributed.allreduceAsync(u, bad)],
    ['exportOnnx', () => kn.io.exportOnnx(u, u, bad)],
    ['Batcher.close', () => new kn.serve.Batcher((rows: number[]) => rows).close(bad)],
    ['readRequestLog', () => kn.serve.readRequestLog(u, bad)],
    ['tuneBatchSize', () => kn.serve.tuneBatchSize(u, u, bad)],
    ['runPipeline', () => kn.serve.runPipeline(u, bad)],
    ['watchPipeline', () => kn.serve.watchPipeline(u, bad)],
    ['syncRuns remote', () => kn.track.syncRuns(u, { remote: bad })],
    ['server tls', () => kn.serve.createServer(u, { tls: { cert: 'x', creatGraph: true } as never })],
    ['autoRollback', () => kn.serve.createServer(u, { autoRollback: bad })],
    ['reservoirSample', () => kn.data.reservoirSample(u, u, bad)],
    ['dropColumnImportance', () => kn.explain.dropColumnImportance(u, u, bad)],
    ['saveCheckpoint', () => kn.io.saveCheckpoint('x', bad)],
    ['loadCheckpoint', () => kn.io.loadCheckpoint('x', bad)],
  ];
  for (const [fn, call] of sweep)
    throwsKiln(call, kn.ArgumentError, new RegExp(`^${fn}: unknown option "creatGraph" \\(the options are `));
  for (const [fn, call] of sweepAsync) await rejectsKiln(call(), new RegExp(`^${fn}: unknown option "creatGraph"`));
  // the options a call cannot run without: an omitted argument is an error, not a crash
  const required: [string, () => unknown][] = [
    ['evaluate', () => kn.train.evaluate(u, u, u)],
    ['magnitude', () => kn.prune.magnitude(lin, u)],
    ['structured', () => kn.prune.structured(new kn.nn.Sequential(lin), u)],
    ['quantize', () => kn.quant.quantize(lin, u)],
    ['GradualSchedule', () => new kn.prune.GradualSchedule(u)],
    ['mixup', () => kn.data.augment.mixup(0.2, u)],
    ['rowModel', () => kn.serve.rowModel((x: kn.Tensor) => x, u)],
  ];
  for (const [fn, call] of required)
    throwsKiln(call, kn.ArgumentError, new RegExp(`^${fn} options must be an object, got undefined`));
  // values the key check lets through are still checked
  throwsKiln(() => kn.nn.fromSpec(u, { maxParams: NaN }), kn.ArgumentError, /maxParams must be an integer >= 0/);
  throwsKiln(() => kn.io.toOnnx(lin, { inputDtype: 'int8' } as never), kn.ArgumentError, /inputDtype must be/);
  await rejectsKiln(kn.serve.tuneBatchSize(rm, []), /tuneBatchSize sizes must be a non-empty list/);
  await rejectsKiln(kn.serve.tuneBatchSize(rm, [1], { repeats: 0 }), /repeats must be an integer >= 1/);
  await rejectsKiln(kn.serve.tuneBatchSize(rm, [1], { share: 2 }), /share must be in \(0, 1\]/);
  const tuned = await kn.serve.tuneBatchSize(rm, [1, 2], { repeats: 1 });
  assert.ok([1, 2].includes(tuned.size));
  rm.dispose();
  // and the nested options of fit, of a server's keys and of a monitor's rules
  await rejectsKiln(
    kn.train.fit(lin, {
      train: new kn.data.DataLoader(new kn.data.Dataset({ x: kn.randn([4, 2]), y: kn.randn([4, 2]) })),
      loss: 'mse',
      optimizer: new kn.optim.SGD(lin.parameters(), { lr: 0.1 }),
      epochs: 1,
      verbose: 'silent',
      report: { path: '/tmp/kiln-never.html', titel: 'x' } as never,
    }),
    /^fit report: unknown option "titel" \(the options are path, title, classes, examples\)/,
  );
  const key = 'kiln_key_for_the_options_test';
  await rejectsKiln(
    kn.serve.createServer((x: kn.Tensor) => x, {
      inputShape: [2],
      auth: { keys: { [key]: { scopes: ['predict'], ratelimit: 5 } as never } },
    }),
    /^auth key kiln_key_for\.\.\.: unknown option "ratelimit" \(the options are scopes, rateLimit, burst, maxRows\)/,
  );
  throwsKiln(
    () =>
      new kn.serve.Monitor(
        {
          reference: Array.from({ length: 10 }, (_, i) => [i]),
          rules: [{ name: 'A', metric: 'feature_psi_max', op: '>', treshold: 1 } as never],
        },
        1,
      ),
    kn.ArgumentError,
    /^alert rule 0 \("A"\): unknown option "treshold"/,
  );
});

// functions that take an options object and hand it to one that checks it (or that only kiln calls)
const OPTIONS_CHECKED_ELSEWHERE = new Set([
  'src/data/features.ts register', // FeatureStore.check
  'src/data/parquet.ts read', // checkSelection
  'src/data/arrow_reader.ts read', // columnsOf
  'src/data/arrow_reader.ts chunks',
  'src/errors.ts constructor', // Error's own { cause }, handed to Error as it is
  'src/data/parquet.ts readParquet',
  'src/data/csv.ts readCsv', // csvSettings, shared with openCsv
  'src/data/csv.ts openCsv',
  'src/data/parquet.ts writeParquet', // writerProperties, shared with writeParquetStream
  'src/data/parquet.ts writeParquetStream',
  'src/data/table.ts writeTable', // hands its Parquet options to writeParquet
  'src/data/table.ts writeTableStream', // to writeParquetStream
  'src/distributed/comm.ts allreduce', // reduceArgs
  'src/distributed/comm.ts allreduceAsync',
  'src/nn/attention.ts constructor', // TransformerLayer's constructor
  'src/nn/layers.ts constructor', // BatchNorm's constructor
  'src/nn/recurrent.ts constructor', // the recurrent base's constructor
  'src/ops/creation.ts full', // target()
  'src/ops/creation.ts zeros',
  'src/ops/creation.ts ones',
  'src/profile/profile.ts profile', // startProfile
  'src/errors.ts checkOptions',
  'src/nn/layers.ts convOptions', // internal: picks conv2d's keys out of a layer's
  'src/ops/matmul.ts fusedAttention', // internal
  'src/quant/quantize.ts int8Layer', // internal
  'src/serve/http.ts httpApp', // internal: the server's routes
  'src/serve/traffic.ts constructor', // internal
  'src/serve/versions.ts constructor', // internal
  'src/track/mlflow.ts remoteOptions', // internal: startRun and syncRuns check first
  'src/track/mlflow.ts constructor',
  'src/track/report.ts constructor', // internal: fit checks its report option
]);

test('every public function that takes an options object checks it (a scan of src/)', () => {
  const missing: string[] = [];
  const walk = (d: string): string[] =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith('.ts') ? [join(d, e.name)] : [],
    );
  const root = join(import.meta.dirname, '..');
  const files = walk(join(root, 'src')).map((file) => ({
    rel: relative(root, file),
    sf: ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true),
  }));
  // an options bag under any name: a parameter typed as an object type (inline, or an interface or type alias
  // declared in src/) that has an optional property holding data rather than a function
  const optionalData = (members: ts.NodeArray<ts.TypeElement>): boolean =>
    members.some((m) => ts.isPropertySignature(m) && m.questionToken && !(m.type && ts.isFunctionTypeNode(m.type)));
  const bags = new Set<string>();
  for (const { sf } of files)
    ts.forEachChild(sf, (n) => {
      if (ts.isInterfaceDeclaration(n) && optionalData(n.members)) bags.add(n.name.text);
      if (ts.isTypeAliasDeclaration(n) && ts.isTypeLiteralNode(n.type) && optionalData(n.type.members))
        bags.add(n.name.text);
    });
  const isBag = (t: ts.TypeNode | undefined): boolean =>
    t !== undefined &&
    ((ts.isTypeLiteralNode(t) && optionalData(t.members)) ||
      (ts.isTypeReferenceNode(t) && bags.has(t.typeName.getText())));
  // classes that some class extends: a base class's public methods reach users through its subclasses
  const extended = new Set<string>();
  for (const { sf } of files)
    ts.forEachChild(sf, (n) => {
      if (ts.isClassDeclaration(n))
        for (const h of n.heritageClauses ?? [])
          if (h.token === ts.SyntaxKind.ExtendsKeyword) for (const t of h.types) extended.add(t.expression.getText());
    });
  let seen = 0;
  for (const { rel, sf } of files) {
    if (rel.startsWith('src/backends/') || rel.startsWith('src/cli/')) continue;
    const visit = (n: ts.Node, inExportedClass: boolean): void => {
      if (
        (ts.isFunctionDeclaration(n) || ts.isMethodDeclaration(n) || ts.isConstructorDeclaration(n)) &&
        n.body !== undefined
      ) {
        const flags = ts.getCombinedModifierFlags(n);
        const isPublic = ts.isFunctionDeclaration(n)
          ? (flags & ts.ModifierFlags.Export) !== 0
          : inExportedClass && (flags & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) === 0;
        const name = n.name ? n.name.getText() : 'constructor';
        const internal = /@internal/.test(n.getFullText().slice(0, n.getStart() - n.getFullStart()));
        const takesOptions = n.parameters.some(
          (p) =>
            /^(opts|options|masks)$/.test(p.name.getText()) ||
            /Options\b/.test(p.type?.getText() ?? '') ||
            isBag(p.type),
        );
        if (isPublic && !internal && takesOptions) {
          seen++;
          if (
            !/checkOptions|checkDeploy|checkProfileOptions|checkOnnxOptions|checkParts|checkCard/.test(n.body.getText())
          )
            if (!OPTIONS_CHECKED_ELSEWHERE.has(`${rel} ${name}`)) missing.push(`${rel} ${name}`);
        }
      }
      // a class's public methods are entry points when it is exported, or is a base class that exported ones
      // extend (Recurrent's run is LSTM's and GRU's)
      const exported = ts.isClassDeclaration(n)
        ? (ts.getCombinedModifierFlags(n) & ts.ModifierFlags.Export) !== 0 || extended.has(n.name?.text ?? '')
        : inExportedClass;
      ts.forEachChild(n, (c) => visit(c, exported));
    };
    visit(sf, false);
  }
  assert.ok(seen > 150, `the scan found ${seen} entry points`);
  assert.equal(missing, [], `these take options and check none: ${missing.join('; ')}`);
});

async function rejectsKiln(p: Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, kn.ArgumentError);
    assert.match((e as Error).message, re);
    return;
  }
  assert.unreachable(`expected an ArgumentError matching ${re}`);
}

test.run();
