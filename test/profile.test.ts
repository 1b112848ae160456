import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { activeRecorder } from '../src/profile/recorder.js';
import { onBackend, throwsKiln, tempDir } from './helpers.js';

const dir = tempDir('kiln-profile-');

async function rejects(p: Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.match((e as Error).message, re);
    return;
  }
  assert.unreachable(`expected a rejection matching ${re}`);
}

/** A Linear-ReLU-Linear classifier step (the ReLU fuses into the first Linear's biasAct). */
function mlpStep(): { step: () => number; model: kn.nn.Sequential; dispose: () => void } {
  kn.seed(3);
  const model = new kn.nn.Sequential(new kn.nn.Linear(6, 5), new kn.nn.ReLU(), new kn.nn.Linear(5, 3));
  const opt = new kn.optim.Adam(model.parameters());
  const x = kn.randn([4, 6]),
    y = kn.randint([4], 0, 3);
  const step = (): number =>
    kn.tidy(() => {
      opt.zeroGrad();
      const l = kn.nn.loss.crossEntropy(model.call(x), y);
      l.backward();
      opt.step();
      return l.item();
    });
  return {
    step,
    model,
    dispose: () => {
      opt.dispose();
      model.dispose();
      x.dispose();
      y.dispose();
    },
  };
}

const count = (p: kn.Profile, pred: (e: kn.OpEvent) => boolean): number => p.events.filter(pred).length;

for (const b of kn.backends()) {
  test(`profile of an MLP training step lists exactly the expected kernels (${b})`, () =>
    onBackend(b, () => {
      const { step, dispose } = mlpStep();
      step(); // optimizer state exists from here on: every profiled step is the same
      const p = kn.profile(step);
      // forward: per Linear one matmul and one fused bias(+ReLU), the fused loss, its mean
      const fwd = (op: string, module: string): number =>
        count(p, (e) => e.phase === 'forward' && e.op === op && e.module === module && e.depth === 0);
      assert.is(fwd('matmul', 'Sequential.0'), 1);
      assert.is(fwd('biasAct', 'Sequential.0'), 1);
      assert.is(fwd('matmul', 'Sequential.2'), 1);
      assert.is(fwd('biasAct', 'Sequential.2'), 1);
      assert.is(fwd('softmaxCrossEntropy', ''), 1);
      // backward: two matmuls per Linear except the first layer's input gradient (x needs none) = 3, charged
      // to the Linear that recorded them; the ReLU gradient (one reluGrad, no gt + where) to the fused layer
      const bwd = (op: string, module?: string): number =>
        count(p, (e) => e.phase === 'backward' && e.op === op && (module === undefined || e.module === module));
      assert.is(bwd('matmul'), 3);
      assert.is(bwd('matmul', 'Sequential.2'), 2);
      assert.is(bwd('matmul', 'Sequential.0'), 1);
      assert.is(bwd('softmaxCrossEntropyBackward'), 1);
      assert.is(bwd('reluGrad', 'Sequential.0'), 1);
      assert.is(bwd('where') + bwd('gt'), 0);
      // the mean's divisor is a constant: its backward is one div, with no gradient for the divisor (mul, neg)
      assert.is(bwd('div'), 1);
      assert.is(bwd('mul') + bwd('neg'), 0);
      // the optimizer: one multi-tensor Adam update for the four parameters
      assert.is(
        count(p, (e) => e.phase === 'optimizer' && e.op === 'adamStepMulti'),
        1,
      );
      assert.is(
        count(p, (e) => e.phase === 'optimizer' && e.op !== 'adamStepMulti'),
        0,
      );
      // FLOPs of the first matmul: 2 * M * N * K
      const mm = p.events.find((e) => e.op === 'matmul')!;
      assert.equal(mm.inputShapes, [
        [4, 6],
        [6, 5],
      ]);
      assert.equal(mm.inputDtypes, ['float32', 'float32']);
      assert.is(mm.flops, 2 * 4 * 5 * 6);
      assert.is(mm.bytes, 4 * 5 * (b === 'js' ? 8 : 4)); // the js reference stores float64
      assert.is(mm.backend, b);
      // aggregates agree with the events
      const agg = p.ops.find((o) => o.op === 'matmul')!;
      assert.is(
        agg.count,
        count(p, (e) => e.op === 'matmul'),
      );
      assert.ok(
        Math.abs(agg.flops - p.events.filter((e) => e.op === 'matmul').reduce((s, e) => s + e.flops, 0)) < 1e-9,
      );
      const sumKernel = p.events.reduce((s, e) => s + e.kernelUs, 0) / 1000;
      assert.ok(Math.abs(p.kernelMs - sumKernel) < 1e-9);
      assert.ok(p.kernelMs > 0 && p.kernelMs + p.dispatchMs <= p.wallMs + 1e-6, `${p.kernelMs} ${p.wallMs}`);
      const shares = p.ops.reduce((s, o) => s + o.share, 0);
      assert.ok(Math.abs(shares - 1) < 1e-9, String(shares));
      // modules: each Linear called once in forward, and the root includes both
      const l0 = p.modules.find((m) => m.module === 'Sequential.0')!;
      assert.is(l0.type, 'Linear');
      assert.is(l0.calls, 1);
      assert.ok(l0.backwardMs > 0);
      const root = p.modules.find((m) => m.module === 'Sequential')!;
      const l2 = p.modules.find((m) => m.module === 'Sequential.2')!;
      assert.ok(Math.abs(root.inclusiveMs - (l0.forwardMs + l0.backwardMs + l2.forwardMs + l2.backwardMs)) < 1e-9);
      // the table names the top op and states peak and overhead
      const t = p.table();
      assert.match(t, /matmul/);
      assert.match(t, /Sequential\.0\s+Linear/);
      assert.match(t, /profiler: recording ~[\d.]+ µs per kernel call/);
      if (b === 'cpu') {
        assert.ok(p.peakGflops! > 0);
        assert.match(t, /% of the measured peak/);
      } else assert.match(t, /no measured peak/);
      dispose();
    }));
}

test('a profile records nothing outside it and costs one null check when off', () => {
  const { step, dispose } = mlpStep();
  assert.is(activeRecorder, null);
  const p = kn.profile(() => kn.ones([2]).add(1).sum().item());
  const n = p.events.length;
  step(); // outside: not recorded
  assert.is(p.events.length, n);
  assert.is(activeRecorder, null);
  assert.equal(
    p.events.map((e) => e.op),
    ['fill', 'fill', 'add', 'sum'], // the scalar 1 is a filled tensor too
  );
  dispose();
});

test('assign within a backend and optimizer steps are recorded as the kernels they run', () => {
  const dst = kn.zeros([2, 3]),
    f16 = kn.zeros([2, 3], { dtype: 'float16' });
  const src = kn.arange(6).reshape([2, 3]).cast('float32');
  const p = kn.profile(() => {
    dst.assign(src); // the same dtype: a copy into dst's buffer
    f16.assign(src); // another dtype: a cast into it
  });
  assert.equal(
    p.events.map((e) => [e.op, e.outShape, e.outDtype, e.bytes, e.depth]),
    [
      ['copy', [2, 3], 'float32', 0, 0],
      ['cast', [2, 3], 'float16', 0, 0],
    ],
  );
  assert.equal(p.events[1]!.inputDtypes, ['float32']);
  assert.equal(Array.from(f16.toArray()), [0, 1, 2, 3, 4, 5]);
  // an in-place optimizer kernel is recorded once, with the shape of what it updates
  const w = kn.ones([4], { requiresGrad: true });
  w.sum().backward();
  const opt = new kn.optim.SGD([w], { lr: 0.5 });
  const q = kn.profile(() => opt.step());
  const steps = q.events.filter((e) => e.phase === 'optimizer');
  assert.ok(steps.length >= 1);
  assert.ok(steps.every((e) => e.bytes === 0));
  assert.equal(Array.from(w.toArray()), [0.5, 0.5, 0.5, 0.5]);
  for (const t of [dst, f16, src, w]) t.dispose();
});

test('Chrome trace is valid trace-event JSON whose events nest per thread', () => {
  const { step, dispose } = mlpStep();
  step();
  const file = join(dir, 'step.trace.json');
  const p = kn.profile(step, { trace: file });
  const trace = JSON.parse(readFileSync(file, 'utf8')) as kn.ChromeTrace;
  const schema = {
    type: 'object',
    required: ['traceEvents'],
    properties: {
      displayTimeUnit: { enum: ['ms', 'ns'] },
      traceEvents: {
        type: 'array',
        items: {
          type: 'object',
          required: ['name', 'ph', 'pid', 'tid'],
          properties: {
            name: { type: 'string' },
            cat: { type: 'string' },
            ph: { enum: ['X', 'M'] },
            ts: { type: 'number', minimum: 0 },
            dur: { type: 'number', minimum: 0 },
            pid: { type: 'integer' },
            tid: { type: 'integer' },
            args: { type: 'object' },
          },
          if: { properties: { ph: { const: 'X' } } },
          then: { required: ['ts', 'dur'] },
        },
      },
    },
  };
  const ajv = new Ajv({ allErrors: true });
  const ok = ajv.validate(schema, trace);
  assert.ok(ok, ajv.errorsText());
  assert.equal(trace, JSON.parse(JSON.stringify(p.toChromeTrace())));
  const xs = trace.traceEvents.filter((e) => e.ph === 'X');
  assert.is(xs.filter((e) => e.cat!.startsWith('op,')).length, p.events.length);
  assert.ok(trace.traceEvents.some((e) => e.ph === 'M' && e.name === 'thread_name'));
  // nesting: on each thread, every pair of complete events is either disjoint or one contains the other
  // (1 ns slack for float rounding of µs timestamps)
  const eps = 1e-3;
  for (const tid of new Set(xs.map((e) => e.tid))) {
    const evs = xs.filter((e) => e.tid === tid).sort((a, b) => a.ts! - b.ts! || b.dur! - a.dur!);
    const stack: kn.TraceEvent[] = [];
    for (const e of evs) {
      while (stack.length && stack[stack.length - 1]!.ts! + stack[stack.length - 1]!.dur! <= e.ts! + eps) stack.pop();
      const top = stack[stack.length - 1];
      if (top) assert.ok(e.ts! + e.dur! <= top.ts! + top.dur! + eps, `${e.name} overlaps ${top.name}`);
      stack.push(e);
    }
  }
  // kernels of the first Linear's forward sit inside its module span, and backward kernels inside 'backward'
  const span = xs.find((e) => e.cat === 'module' && e.name === 'Sequential.0')!;
  const mm = xs.find((e) => e.name === 'matmul')!;
  assert.ok(mm.ts! >= span.ts! - eps && mm.ts! + mm.dur! <= span.ts! + span.dur! + eps);
  const bw = xs.find((e) => e.cat === 'backward')!;
  for (const e of xs.filter((e) => e.cat === 'op,backward'))
    assert.ok(e.ts! >= bw.ts! - eps && e.ts! + e.dur! <= bw.ts! + bw.dur! + eps);
  dispose();
});

test('profile: async functions, errors, nesting and bad options', async () => {
  const p = await kn.profile(async () => {
    await new Promise((r) => setTimeout(r, 1));
    return kn.tidy(() => kn.ones([3]).mul(2).sum().item());
  });
  assert.is(p.result, 6);
  assert.equal(
    p.events.map((e) => e.op),
    ['fill', 'fill', 'mul', 'sum'],
  );
  throwsKiln(
    () =>
      kn.profile(() => {
        throw new kn.ShapeError('inner failure');
      }),
    kn.ShapeError,
    /inner failure/,
  );
  assert.is(activeRecorder, null); // a failure stops the profile
  throwsKiln(() => kn.profile(() => kn.profile(() => 1)), kn.ArgumentError, /already running/);
  assert.is(activeRecorder, null);
  throwsKiln(() => kn.profile(42 as never), kn.ArgumentError, /takes a function/);
  throwsKiln(() => kn.profile(() => 1, { peakGflops: -1 }), kn.ArgumentError, /peakGflops/);
  throwsKiln(() => kn.profile(() => 1, { trace: '' }), kn.ArgumentError, /trace must be a file path or a boolean/);
  throwsKiln(
    () => kn.profile(() => 1, { trace: 3 as never }),
    kn.ArgumentError,
    /trace must be a file path or a boolean/,
  );
  // trace: true writes no file; the trace is in the profile either way
  const cwd = readdirSync('.');
  const traced = kn.profile(
    () =>
      kn
        .ones([4, 4])
        .matmul(kn.ones([4, 4]))
        .sum()
        .item(),
    { trace: true },
  );
  assert.ok(traced.toChromeTrace().traceEvents.some((e) => e.name === 'matmul'));
  assert.equal(readdirSync('.'), cwd, 'no file was written');
  // a failing kernel inside a profile is not recorded, and the profile goes on
  const q = kn.profile(() => {
    try {
      kn.ones([2, 3]).matmul(kn.ones([2, 3]));
    } catch {
      /* expected: shapes do not match */
    }
    return kn.ones([1]).item();
  });
  assert.not.ok(q.events.some((e) => e.op === 'matmul'));
});

test('estimateFlops: GEMM, convolution (forward and both gradients) and pooling', () => {
  assert.is(
    kn.estimateFlops(
      'matmul',
      [
        [2, 8, 16],
        [2, 16, 4],
      ],
      [2, 8, 4],
      [],
    ),
    2 * 2 * 8 * 4 * 16,
  );
  // conv: N=2, C=3 -> O=4, 3x3 kernel, 5x5 output
  const out = [2, 4, 5, 5];
  const w = [4, 3, 3, 3];
  const fwd = 2 * (2 * 4 * 25) * (3 * 9);
  assert.is(kn.estimateFlops('conv2d', [[2, 3, 7, 7], w], out, [1, 1, 0, 0, 1, 1, 1]), fwd);
  assert.is(kn.estimateFlops('conv2dBackwardInput', [out, w], [2, 3, 7, 7], []), fwd);
  assert.is(kn.estimateFlops('conv2dBackwardWeight', [[2, 3, 7, 7], out], w, []), fwd);
  assert.is(kn.estimateFlops('maxPool2d', [[1, 1, 4, 4]], [1, 1, 2, 2], [2, 2, 2, 2, 0, 0]), 16);
  assert.is(kn.estimateFlops('copy', [[100]], [100], []), 0);
});

test('profile a conv net on the cpu: conv kernels charged to the Conv2d, FLOPs as the layer computes', () =>
  onBackend('cpu', () => {
    kn.seed(1);
    const model = new kn.nn.Sequential(
      new kn.nn.Conv2d(2, 4, 3, { padding: 1 }),
      new kn.nn.ReLU(),
      new kn.nn.MaxPool2d(2),
      new kn.nn.Flatten(),
      new kn.nn.Linear(4 * 4 * 4, 3),
    );
    const x = kn.randn([2, 2, 8, 8]);
    const p = kn.profile(() => kn.tidy(() => model.call(x).sum().backward()));
    const conv = p.events.filter((e) => e.op.startsWith('conv2d'));
    assert.equal(conv.map((e) => e.op).sort(), ['conv2d', 'conv2dBackwardWeight']); // x needs no gradient
    for (const e of conv) assert.is(e.module, 'Sequential.0');
    assert.is(conv[0]!.flops, 2 * (2 * 4 * 8 * 8) * (2 * 9));
    const pool = p.modules.find((m) => m.module === 'Sequential.2')!;
    assert.is(pool.type, 'MaxPool2d');
    assert.ok(pool.backwardMs > 0); // maxPool2dBackward charged to the pool
    model.dispose();
    x.dispose();
  }));

test('fit({ profile }) profiles the asked steps and writes the trace', async () => {
  kn.seed(5);
  const n = 64;
  const x = kn.randn([n, 4]);
  const y = kn.tidy(() => x.sum(1).gt(0).cast('int32'));
  const ds = new kn.data.Dataset({ x, y });
  const train = new kn.data.DataLoader(ds, { batchSize: 16, shuffle: true, seed: 1 });
  const model = new kn.nn.Sequential(new kn.nn.Linear(4, 8), new kn.nn.ReLU(), new kn.nn.Linear(8, 2));
  const optimizer = new kn.optim.Adam(model.parameters());
  const lines: string[] = [];
  const logStream = new (await import('node:stream')).Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  const trace = join(dir, 'fit.trace.json');
  const r = await kn.train.fit(model, {
    train,
    loss: 'crossEntropy',
    optimizer,
    epochs: 2,
    verbose: 'json',
    logStream,
    profile: { steps: 3, skip: 2, trace },
  });
  const p = r.profile!;
  assert.ok(p);
  // 3 steps: 3 forward losses, 3 multi-tensor Adam updates (4 parameters each)
  assert.is(
    count(p, (e) => e.op === 'softmaxCrossEntropy'),
    3,
  );
  assert.is(
    count(p, (e) => e.op === 'adamStepMulti'),
    3,
  );
  const t = JSON.parse(readFileSync(trace, 'utf8')) as kn.ChromeTrace;
  assert.is(t.traceEvents.filter((e) => e.cat?.startsWith('op,')).length, p.events.length);
  const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((o) => 'profile' in o);
  assert.ok(logged, 'a JSON line with the profile');
  assert.equal(r.history.length, 2);
  // without the option: no profile
  const r2 = await kn.train.fit(model, { train, loss: 'crossEntropy', optimizer, epochs: 1, verbose: 'silent' });
  assert.is(r2.profile, null);
  await rejects(
    kn.train.fit(model, {
      train,
      loss: 'crossEntropy',
      optimizer,
      epochs: 1,
      verbose: 'silent',
      profile: { steps: 0 },
    }),
    /profile\.steps/,
  );
  optimizer.dispose();
  model.dispose();
});

test('kn.bench: warm-up, repeats, outliers and an interleaved comparison', async () => {
  const calls: string[] = [];
  const r = await kn.bench(() => void calls.push('a'), {
    warmup: 2,
    minRepeats: 7,
    maxRepeats: 7,
    minTimeMs: 0,
    compare: () => void calls.push('b'),
  });
  assert.is(r.repeats, 7);
  assert.is(r.samplesMs.length, 7);
  assert.is(calls.length, 2 * (2 + 7));
  // interleaved, with the order alternating after warm-up: a b | a b  b a  a b  b a ...
  assert.equal(calls.slice(4, 10), ['a', 'b', 'b', 'a', 'a', 'b']);
  assert.ok(r.compare && r.compare.repeats === 7 && r.compare.speedup > 0);
  assert.ok(r.minMs <= r.medianMs && r.medianMs <= r.maxMs);
  // async functions are awaited: each timed run includes the promise
  let done = 0;
  await kn.bench(
    async () => {
      await Promise.resolve();
      done++;
    },
    { warmup: 0, minRepeats: 3, maxRepeats: 3, minTimeMs: 0 },
  );
  assert.is(done, 3);
  // bad options
  await rejects(
    kn.bench(() => 1, { minRepeats: 0 }),
    /minRepeats/,
  );
  await rejects(
    kn.bench(() => 1, { minRepeats: 5, maxRepeats: 2 }),
    /maxRepeats/,
  );
  await rejects(kn.bench('x' as never), /takes a function/);
});

test('summarize: median, spread and Tukey outliers on fixed samples', async () => {
  const { summarize } = await import('../src/profile/bench.js');
  const s = summarize([1, 2, 3, 4, 100]);
  assert.is(s.medianMs, 3);
  assert.is(s.minMs, 1);
  assert.is(s.maxMs, 100);
  assert.is(s.outliers, 1);
  assert.is(s.meanMs, 2.5); // 100 left out
  assert.ok(Math.abs(s.stdMs - Math.sqrt(5 / 3)) < 1e-12);
  const k = summarize([1, 2, 3, 4, 100], 'keep');
  assert.is(k.meanMs, 22);
  assert.is(summarize([2, 4]).medianMs, 3);
});

test('memory peak: resetPeakMemory starts a new peak that a step raises', () =>
  onBackend('cpu', () => {
    const base = kn.memory().backends.cpu?.bytes ?? 0;
    kn.resetPeakMemory();
    assert.is(kn.memory().backends.cpu?.peakBytes ?? 0, base);
    kn.tidy(() => {
      kn.zeros([1024, 64]).add(1);
    });
    const m = kn.memory();
    assert.ok(m.backends.cpu!.peakBytes >= base + 2 * 1024 * 64 * 4);
    assert.is(m.backends.cpu!.bytes, base);
    assert.ok(m.peakBytes >= m.backends.cpu!.peakBytes);
  }));

test.run();
