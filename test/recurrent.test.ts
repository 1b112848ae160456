// LSTM and GRU: PyTorch's numbers (test/ref/rnn_torch.py, float64) for two bidirectional layers with an initial
// state, full and packed by lengths, on every backend; finite-difference gradients; specs; bad input.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { allclose, nativeBackends, onBackend, randomArray, rng, sinFill, throwsKiln, tempDir } from './helpers.js';

const BACKENDS = ['js', ...nativeBackends()] as kn.BackendName[];
const close = (a: ArrayLike<number>, e: ArrayLike<number>, what: string, atol = 2e-5): void => {
  const r = allclose(a, e, atol, 1e-4);
  assert.ok(r.ok, `${what}: ${r.message}`);
};
const f64 = (t: kn.Tensor): number[] => Array.from(t.toFloat64Array());

interface Case {
  y: number[];
  h: number[];
  c?: number[];
}
const ref = JSON.parse(readFileSync(new URL('./ref/rnn_torch.json', import.meta.url), 'utf8')) as {
  N: number;
  L: number;
  F: number;
  H: number;
  lengths: number[];
  cases: Record<'LSTM' | 'GRU', { full: Case; packed: Case; names: string[] }>;
};
const { N, L, F, H } = ref;
const fill = sinFill;

for (const b of BACKENDS) {
  test(`LSTM and GRU give PyTorch's numbers: 2 layers, bidirectional, initial state, packed (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        for (const kind of ['LSTM', 'GRU'] as const) {
          const m = new kn.nn[kind](F, H, { numLayers: 2, bidirectional: true, batchFirst: true });
          const names = m.namedParameters().map(([n]) => n);
          assert.equal(names, ref.cases[kind].names, 'PyTorch parameter names and order');
          m.loadStateDict(Object.fromEntries(m.namedParameters().map(([n, p], i) => [n, fill([...p.shape], 1 + i)])));
          const x = fill([N, L, F], 0.25);
          const h0 = fill([4, N, H], 0.7),
            c0 = fill([4, N, H], 0.8);
          const state = kind === 'LSTM' ? { h0, c0 } : { h0 };
          for (const [name, extra] of [
            ['full', {}],
            ['packed', { lengths: ref.lengths }],
          ] as const) {
            const r = m.run(x, { ...state, ...extra });
            const want = ref.cases[kind][name];
            close(f64(r.output), want.y, `${kind} ${name} output`);
            close(f64(r.h), want.h, `${kind} ${name} h`);
            if (want.c) close(f64(r.c!), want.c, `${kind} ${name} c`);
          }
        }
      }),
    ));

  test(`LSTM and GRU pass gradient checks, packed and bidirectional (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        for (const kind of ['LSTM', 'GRU'] as const) {
          const r = kn.gradcheck(
            (x) =>
              onBackend(x!.backend, () => {
                kn.seed(4);
                return new kn.nn[kind](3, 2, { bidirectional: true, numLayers: 2 });
              }).run(x!, { lengths: [3, 1] }).output,
            [kn.tensor(randomArray(rng(3), 3 * 2 * 3), [3, 2, 3])],
            { atol: 2e-3, rtol: 2e-3 },
          );
          assert.ok(r.ok, `${kind}: max abs err ${r.maxAbsErr} at ${JSON.stringify(r.worst)}`);
        }
      }),
    ));
}

test('the LSTM sequence node: long sequences, the same gradients as per-step ops, second order', () =>
  kn.tidy(() => {
    kn.seed(21);
    const lstm = new kn.nn.LSTM(3, 4, { bidirectional: true });
    // 70 steps: more than one kernel call's 64 inputs when the steps are joined
    const x = kn.randn([70, 2, 3]);
    x.requiresGrad = true;
    const g = kn.randn([70, 2, 8]);
    const run = (): number[][] => {
      lstm.zeroGrad();
      x.grad = null;
      const r = lstm.run(x, { lengths: [70, 33] });
      r.output.mul(g).sum().add(r.h.sum()).add(r.c!.mul(2).sum()).backward();
      return [x.grad!, ...lstm.parameters().map((p) => p.grad!)].map(f64);
    };
    const fused = run();
    // the per-step path: a float32 view of the module that runs the generic directions
    const proto = Object.getPrototypeOf(Object.getPrototypeOf(lstm)) as { directionOf: unknown };
    const own = Object.getOwnPropertyDescriptor(kn.nn.LSTM.prototype, 'directionOf')!;
    Object.defineProperty(kn.nn.LSTM.prototype, 'directionOf', { value: proto.directionOf, configurable: true });
    try {
      const plain = run();
      fused.forEach((a, i) => close(a, plain[i]!, `gradient ${i}`, 1e-4));
    } finally {
      Object.defineProperty(kn.nn.LSTM.prototype, 'directionOf', own);
    }
    const small = kn.randn([3, 1, 2]);
    const r2 = kn.gradgradcheck(
      (t) =>
        onBackend(t!.backend, () => {
          kn.seed(5);
          return new kn.nn.LSTM(2, 2);
        })
          .run(t!, { lengths: [2] })
          .output.tanh(),
      [small],
      { atol: 2e-3, rtol: 2e-2 },
    );
    assert.ok(r2.ok, `LSTM second order: ${r2.maxAbsErr}`);
  }));

test('recurrent layers: defaults, dropout, specs and files, bad input', async () => {
  kn.seed(9);
  const lstm = new kn.nn.LSTM(4, 6);
  assert.equal(lstm.call(kn.ones([5, 2, 4])).shape, [5, 2, 6]);
  const all = lstm.parameters().flatMap((p) => Array.from(p.toFloat64Array()));
  assert.ok(
    all.every((v) => Math.abs(v) <= 1 / Math.sqrt(6)),
    'U(+-1/sqrt(hidden)) as PyTorch',
  );
  const gru = new kn.nn.GRU(4, 3, { numLayers: 3, dropout: 0.5, batchFirst: true, bias: false });
  assert.is(gru.parameters().length, 6);
  const x = kn.randn([2, 5, 4]);
  gru.eval();
  assert.equal(f64(gru.call(x)), f64(gru.call(x)), 'eval is deterministic');
  gru.train();
  assert.not.equal(f64(gru.call(x)), f64(gru.call(x)), 'dropout between layers in training');
  gru.eval();
  const seq = new kn.nn.Sequential(gru, new kn.nn.SequencePool('last'), new kn.nn.Linear(3, 2));
  const file = join(tempDir('kiln-rnn-'), 'rnn.safetensors');
  await kn.io.save(file, seq);
  const { model } = await kn.io.loadModel(file);
  model.eval();
  assert.equal(kn.nn.toSpec(model), kn.nn.toSpec(seq));
  close(f64(model.call(x)), f64(seq.call(x)), 'loaded model');
  throwsKiln(() => lstm.call(kn.ones([5, 2, 3])), kn.ShapeError, /expects \[L, N, 4\]/);
  throwsKiln(() => lstm.run(kn.ones([5, 2, 4]), { h0: kn.ones([2, 2, 6]) }), kn.ShapeError, /h0 must be \[1, 2, 6\]/);
  throwsKiln(() => lstm.run(kn.ones([5, 2, 4]), { lengths: [5, 6] }), kn.ArgumentError, /lengths\[1\]/);
  throwsKiln(() => gru.run(x, { c0: kn.ones([3, 2, 3]) }), kn.ArgumentError, /no cell state/);
  throwsKiln(() => new kn.nn.LSTM(4, 0), kn.ArgumentError, /hiddenSize/);
  throwsKiln(
    () => kn.nn.fromSpec({ type: 'LSTM', inputSize: 1e5, hiddenSize: 1e5, numLayers: 1e3 }),
    kn.FormatError,
    /parameter values/,
  );
});

test.run();
