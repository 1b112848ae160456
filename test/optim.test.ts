import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { runInPlace } from '../src/engine/dispatch.js';
import { allclose, nativeBackends, onBackend, throwsKiln } from './helpers.js';

const BACKENDS = ['js', ...nativeBackends()] as kn.BackendName[];
const close = (a: ArrayLike<number>, e: ArrayLike<number>, atol = 1e-6, rtol = 1e-5): void => {
  const r = allclose(a, e, atol, rtol);
  assert.ok(r.ok, r.message);
};

/** Closed-form Adam (Kingma & Ba, Algorithm 1, with PyTorch's eps placement and L2/decoupled decay) in float64. */
function adamRef(
  p0: number[],
  grads: number[][],
  o: { lr: number; b1: number; b2: number; eps: number; wd?: number; decoupled?: boolean; amsgrad?: boolean },
): number[] {
  const p = [...p0],
    m = p.map(() => 0),
    v = p.map(() => 0),
    vmax = p.map(() => 0);
  grads.forEach((g, k) => {
    const t = k + 1;
    for (let i = 0; i < p.length; i++) {
      if (o.decoupled) p[i]! *= 1 - o.lr * (o.wd ?? 0);
      const gi = g[i]! + (o.decoupled ? 0 : (o.wd ?? 0) * p[i]!);
      m[i] = o.b1 * m[i]! + (1 - o.b1) * gi;
      v[i] = o.b2 * v[i]! + (1 - o.b2) * gi * gi;
      vmax[i] = Math.max(vmax[i]!, v[i]!);
      const mhat = m[i]! / (1 - o.b1 ** t);
      const vhat = (o.amsgrad ? vmax[i]! : v[i]!) / (1 - o.b2 ** t);
      p[i]! -= (o.lr * mhat) / (Math.sqrt(vhat) + o.eps);
    }
  });
  return p;
}

function runSteps(make: (w: kn.Tensor) => kn.optim.Optimizer, p0: number[], grads: number[][]): Float32Array {
  return kn.tidy(() => {
    const w = kn.tensor(p0, undefined, { requiresGrad: true });
    const opt = make(w);
    for (const g of grads) {
      w.grad = kn.tensor(g);
      opt.step();
    }
    opt.dispose();
    return w.toArray() as Float32Array;
  });
}

const P0 = [0.5, -1.5, 2, 0, 1e-3];
const GRADS = [
  [0.1, -0.2, 3, 0, 1e-4],
  [0.3, 0.1, -1, 2, -1e-4],
  [-0.05, 0.2, 0.5, -2, 0],
];

for (const b of BACKENDS) {
  test(`Adam matches the closed-form equations on known numbers (${b})`, () =>
    onBackend(b, () => {
      // first step by hand: m = 0.1 g, v = 0.001 g^2, mhat = g, vhat = g^2 -> p -= lr * g / (|g| + eps)
      const one = runSteps((w) => new kn.optim.Adam([w], { lr: 0.01 }), [1, 1], [[0.5, -2]]);
      close(one, [1 - (0.01 * 0.5) / (0.5 + 1e-8), 1 + (0.01 * 2) / (2 + 1e-8)]);
      close(
        runSteps((w) => new kn.optim.Adam([w], { lr: 0.01 }), P0, GRADS),
        adamRef(P0, GRADS, { lr: 0.01, b1: 0.9, b2: 0.999, eps: 1e-8 }),
      );
      close(
        runSteps((w) => new kn.optim.Adam([w], { lr: 0.1, betas: [0.5, 0.8], eps: 1e-3, weightDecay: 0.1 }), P0, GRADS),
        adamRef(P0, GRADS, { lr: 0.1, b1: 0.5, b2: 0.8, eps: 1e-3, wd: 0.1 }),
      );
      close(
        runSteps((w) => new kn.optim.AdamW([w], { lr: 0.1, weightDecay: 0.5 }), P0, GRADS),
        adamRef(P0, GRADS, { lr: 0.1, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.5, decoupled: true }),
      );
    }));

  test(`Adam and SGD constants round once from float64, as PyTorch (${b})`, () =>
    onBackend(b, () => {
      // Adam's first step is lr * g / (|g| + eps) whatever g: 1 - 0.999 rounded in float32 (0.00099998713) made
      // it 6.5e-6 too large, 6.5e-7 here; float32 allows about an ulp of 0.1 (7.5e-9)
      const one = runSteps((w) => new kn.optim.Adam([w], { lr: 0.1 }), [0, 0, 0], [[0.3, -7, 1e-3]]);
      for (const [i, e] of [-0.1, 0.1, -0.1 * (1e-3 / (1e-3 + 1e-8))].entries())
        assert.ok(Math.abs(one[i]! - e) < 1.5e-8, `Adam first step ${i}: ${one[i]} vs ${e}`);
      const amsW = runSteps((w) => new kn.optim.AdamW([w], { lr: 0.1, amsgrad: true, betas: [0.7, 0.99] }), [0], [[2]]);
      assert.ok(Math.abs(amsW[0]! + 0.1) < 1.5e-8, `AdamW first step: ${amsW[0]}`);
      // SGD's 1 - dampening: 1 - 0.8 from float64 is 0.2f (0.20000000298), from float32 0.19999998808
      const sgd = runSteps((w) => new kn.optim.SGD([w], { lr: 1, momentum: 0.5, dampening: 0.8 }), [0], [[1], [1]]);
      assert.is(sgd[0], Math.fround(-1 - Math.fround(0.5 + Math.fround(0.2))));
    }));

  test(`AMSGrad keeps the running max of v (${b})`, () =>
    onBackend(b, () => {
      // a large gradient then small ones: v decays but vmax does not, so AMSGrad moves less
      const grads = [[5], [0.01], [0.01], [0.01]];
      const ams = runSteps((w) => new kn.optim.Adam([w], { lr: 0.1, amsgrad: true }), [0], grads);
      const plain = runSteps((w) => new kn.optim.Adam([w], { lr: 0.1 }), [0], grads);
      close(ams, adamRef([0], grads, { lr: 0.1, b1: 0.9, b2: 0.999, eps: 1e-8, amsgrad: true }));
      close(plain, adamRef([0], grads, { lr: 0.1, b1: 0.9, b2: 0.999, eps: 1e-8 }));
      assert.ok(Math.abs(ams[0]! - plain[0]!) > 1e-4);
    }));

  test(`SGD momentum, dampening and Nesterov match the closed form (${b})`, () =>
    onBackend(b, () => {
      const ref = (mom: number, damp: number, nest: boolean, wd: number): number[] => {
        const p = [...P0],
          buf = p.map(() => 0);
        GRADS.forEach((g, k) => {
          for (let i = 0; i < p.length; i++) {
            let gi = g[i]! + wd * p[i]!;
            if (mom) {
              buf[i] = k === 0 ? gi : mom * buf[i]! + (1 - damp) * gi;
              gi = nest ? gi + mom * buf[i]! : buf[i]!;
            }
            p[i]! -= 0.1 * gi;
          }
        });
        return p;
      };
      close(
        runSteps((w) => new kn.optim.SGD([w], { lr: 0.1 }), P0, GRADS),
        ref(0, 0, false, 0),
      );
      close(
        runSteps((w) => new kn.optim.SGD([w], { lr: 0.1, weightDecay: 0.2 }), P0, GRADS),
        ref(0, 0, false, 0.2),
      );
      close(
        runSteps((w) => new kn.optim.SGD([w], { lr: 0.1, momentum: 0.9, dampening: 0.5 }), P0, GRADS),
        ref(0.9, 0.5, false, 0),
      );
      close(
        runSteps((w) => new kn.optim.SGD([w], { lr: 0.1, momentum: 0.8, nesterov: true }), P0, GRADS),
        ref(0.8, 0, true, 0),
      );
    }));

  test(`optimizer state dict: resuming gives the same parameters as not stopping (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        const grads = [
          [1, 2],
          [-1, 0.5],
          [0.3, 0.3],
          [2, -2],
        ];
        const straight = runSteps((w) => new kn.optim.Adam([w], { lr: 0.05, amsgrad: true }), [1, 1], grads);
        const w = kn.tensor([1, 1], undefined, { requiresGrad: true });
        const a = new kn.optim.Adam([w], { lr: 0.05, amsgrad: true });
        for (const g of grads.slice(0, 2)) {
          w.grad = kn.tensor(g);
          a.step();
        }
        const sd = a.stateDict();
        assert.equal(sd.steps, [2]);
        assert.equal(Object.keys(sd.tensors).sort(), ['0.m', '0.v', '0.vmax']);
        const b2 = new kn.optim.Adam([w], { lr: 0.05, amsgrad: true });
        b2.loadStateDict(sd);
        for (const g of grads.slice(2)) {
          w.grad = kn.tensor(g);
          b2.step();
        }
        assert.equal(Array.from(w.toArray()), Array.from(straight));
        throwsKiln(
          () => new kn.optim.SGD([w]).loadStateDict(sd),
          kn.ValidationError,
          /state is for Adam, this optimizer is SGD/,
        );
        // a bad entry after good ones, or a bad lr: an error, the optimizer unchanged, nothing allocated
        const w2 = kn.tensor([1, 1, 1], undefined, { requiresGrad: true });
        const c = new kn.optim.Adam([w, w2], { lr: 0.05, amsgrad: true });
        const sd2 = c.stateDict();
        sd2.steps = [2, 0];
        const keep = (): string => JSON.stringify([c.lr, c.stateDict().steps]);
        const was = keep();
        for (const [bad, cls, re] of [
          [
            { ...sd2, tensors: { ...sd.tensors, '1.m': kn.zeros([2]) } },
            kn.ShapeError,
            /'1\.m' has shape \[2\] but parameter 1 is \[3\]/,
          ],
          [{ ...sd2, tensors: sd.tensors, hyper: { lr: -1 } }, kn.ArgumentError, /lr must be/],
        ] as const) {
          const live = kn.memory().numTensors;
          throwsKiln(() => c.loadStateDict(bad), cls, re);
          assert.is(kn.memory().numTensors, live);
          assert.is(keep(), was);
        }
      }),
    ));
}

test('Adam defaults: lr 3e-4, betas 0.9/0.999, eps 1e-8', () => {
  const opt = new kn.optim.Adam(new kn.nn.Linear(2, 2).parameters());
  assert.is(opt.lr, 3e-4);
  assert.is(opt.beta1, 0.9);
  assert.is(opt.beta2, 0.999);
  assert.is(opt.eps, 1e-8);
  assert.is(opt.amsgrad, false);
  assert.is(new kn.optim.AdamW(new kn.nn.Linear(2, 2).parameters()).weightDecay, 0.01);
});

test('the fused step touches only parameters with a gradient, and zeroGrad clears them', () =>
  kn.tidy(() => {
    const a = kn.ones([2], { requiresGrad: true }),
      c = kn.ones([2], { requiresGrad: true });
    const opt = new kn.optim.SGD([a, c], { lr: 1 });
    a.mul(3).sum().backward();
    opt.step();
    assert.equal(Array.from(a.toArray()), [-2, -2]);
    assert.equal(Array.from(c.toArray()), [1, 1]);
    opt.zeroGrad();
    assert.is(a.grad, null);
  }));

test('clipGradNorm: global L2 and max norms, scaling, non-finite', () =>
  kn.tidy(() => {
    const a = kn.tensor([3, 0], undefined, { requiresGrad: true }),
      c = kn.tensor([0, 4], undefined, { requiresGrad: true });
    a.mul(a).mul(0.5).sum().add(c.mul(c).mul(0.5).sum()).backward();
    const n = kn.optim.clipGradNorm([a, c], 1);
    assert.ok(Math.abs(n - 5) < 1e-6);
    close(a.grad!.toArray(), [0.6, 0]);
    close(c.grad!.toArray(), [0, 0.8]);
    assert.ok(Math.abs(kn.optim.clipGradNorm([a, c], 10) - 1) < 1e-5); // under the limit: untouched
    close(a.grad!.toArray(), [0.6, 0]);
    assert.ok(Math.abs(kn.optim.clipGradNorm([a, c], 0.4, { normType: Infinity }) - 0.8) < 1e-6);
    close(c.grad!.toArray(), [0, 0.4], 1e-6);
    c.grad = kn.tensor([NaN, 1]);
    assert.ok(Number.isNaN(kn.optim.clipGradNorm([a, c], 1)));
    throwsKiln(() => kn.optim.clipGradNorm([a, c], 1, { errorIfNonfinite: true }), kn.ValidationError, /NaN or Inf/);
    throwsKiln(() => kn.optim.clipGradNorm([a], -1), kn.ArgumentError, /maxNorm/);
  }));

test('clipGradNorm and gradNorm on half-precision gradients square in float32', () => {
  for (const b of BACKENDS)
    for (const dtype of ['float16', 'bfloat16'] as const)
      onBackend(b, () =>
        kn.tidy(() => {
          // float16 squares of 300 and 400 are past its range: the norm was Infinity and nothing was clipped
          const w = kn.tensor([300, 0, -400], undefined, { dtype, requiresGrad: true });
          w.mul(w).mul(0.5).sum().backward();
          assert.is(kn.optim.gradNorm([w]), 500, `${b} ${dtype}`);
          assert.is(kn.optim.gradNorm([w], { normType: Infinity }), 400, `${b} ${dtype}`);
          assert.is(kn.optim.clipGradNorm([w], 1), 500, `${b} ${dtype}`);
          assert.is(w.grad!.dtype, dtype);
          close(w.grad!.toArray(), [0.6, 0, -0.8], 4e-3, 0);
        }),
      );
});

test('schedulers: StepLR, CosineLR, WarmupLR (+ hand-over) and their state', () => {
  const opt = (): kn.optim.SGD => new kn.optim.SGD(new kn.nn.Linear(1, 1).parameters(), { lr: 0.8 });
  const s = new kn.optim.StepLR(opt(), { stepSize: 2, gamma: 0.5 });
  const lrs: number[] = [s.lr];
  for (let i = 0; i < 5; i++) {
    s.step();
    lrs.push(s.lr);
  }
  assert.equal(lrs, [0.8, 0.8, 0.4, 0.4, 0.2, 0.2]);
  const c = new kn.optim.CosineLR(opt(), { tMax: 4, etaMin: 0.1 });
  close([c.lrAt(0), c.lrAt(2), c.lrAt(4), c.lrAt(9)], [0.8, 0.45, 0.1, 0.1], 1e-12);
  const o = opt();
  const w = new kn.optim.WarmupLR(o, {
    warmupSteps: 4,
    startFactor: 0.25,
    after: new kn.optim.CosineLR(o, { tMax: 2 }),
  });
  assert.is(o.lr, 0.2);
  close([w.lrAt(2), w.lrAt(4), w.lrAt(5), w.lrAt(6)], [0.5, 0.8, 0.4, 0], 1e-12);
  w.step();
  w.step();
  const st = w.stateDict();
  const o2 = opt();
  const w2 = new kn.optim.WarmupLR(o2, {
    warmupSteps: 4,
    startFactor: 0.25,
    after: new kn.optim.CosineLR(o2, { tMax: 2 }),
  });
  w2.loadStateDict(st);
  assert.is(o2.lr, o.lr);
  throwsKiln(() => new kn.optim.StepLR(opt(), { stepSize: 0 }), kn.ArgumentError, /stepSize/);
});

test('bad optimizer input gets clear errors', () => {
  throwsKiln(() => new kn.optim.Adam([]), kn.ArgumentError, /empty parameter list/);
  throwsKiln(() => new kn.optim.Adam([kn.ones([2], { dtype: 'float16' })]), kn.DTypeError, /float16.*float32/);
  throwsKiln(() => new kn.optim.Adam([kn.ones([2, 2]).transpose()]), kn.ArgumentError, /non-contiguous/);
  throwsKiln(
    () => new kn.optim.Adam(new kn.nn.Linear(1, 1).parameters(), { lr: NaN }),
    kn.ArgumentError,
    /lr must be a number/,
  );
  throwsKiln(
    () => new kn.optim.Adam(new kn.nn.Linear(1, 1).parameters(), { betas: [1, 0.9] }),
    kn.ArgumentError,
    /beta1/,
  );
  throwsKiln(
    () => new kn.optim.SGD(new kn.nn.Linear(1, 1).parameters(), { nesterov: true }),
    kn.ArgumentError,
    /nesterov needs momentum/,
  );
  const w = kn.ones([2], { requiresGrad: true });
  throwsKiln(() => new kn.optim.SGD([w, w]), kn.ArgumentError, /appears twice/);
  const opt = new kn.optim.SGD([w]);
  w.grad = kn.ones([3]);
  throwsKiln(() => opt.step(), kn.ShapeError, /gradient of shape \[3\]/);
  // every gradient is checked before any parameter moves or any step count rises: a good gradient on the first
  // parameter and a bad one (disposed, or on another backend) on the second leave both as they were
  const a = kn.ones([2], { requiresGrad: true }),
    c = kn.ones([2], { requiresGrad: true });
  const adam = new kn.optim.Adam([a, c], { lr: 0.1 });
  const other = a.backend === 'js' ? null : 'js';
  const bad: [() => kn.Tensor, new (...args: never[]) => Error, RegExp][] = [
    [
      () => {
        const g = kn.ones([2]);
        g.dispose();
        return g;
      },
      kn.ArgumentError,
      /gradient of optimizer parameter 1: tensor \[2\] float32 was disposed/,
    ],
  ];
  if (other)
    bad.push([
      () => kn.ones([2], { backend: other }),
      kn.BackendError,
      /parameter 1 is on \w+ but its gradient is on js/,
    ]);
  for (const [make, kind, message] of bad) {
    a.grad = kn.ones([2]);
    c.grad = make();
    throwsKiln(() => adam.step(), kind, message);
    assert.equal(Array.from(a.toArray()), [1, 1], 'the first parameter did not move');
    assert.equal(adam.stateDict().steps, [0, 0]);
  }
  // a gradient of another float dtype is cast, as before
  a.grad = kn.ones([2], { dtype: 'float16' });
  c.grad = kn.full([2], 2);
  adam.step();
  assert.equal(adam.stateDict().steps, [1, 1]);
  assert.ok(a.toArray()[0]! < 1 && c.toArray()[0]! < 1, 'both moved once the gradients were good');
});

for (const b of BACKENDS) {
  test(`in-place kernels refuse shared storage and non-float32 state (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        const p = kn.ones([4]),
          g = kn.ones([4]),
          m = kn.zeros([4]);
        throwsKiln(
          () => runInPlace('sgdStep', [p, g, p], [0.1, 0.9, 0, 0, 0, 1]),
          kn.ArgumentError,
          /input 0 is updated in place but shares its storage with input 2/,
        );
        throwsKiln(
          () => runInPlace('adamStep', [p, p.reshape([4]), m, kn.zeros([4])], [0.1, 0.9, 0.99, 1e-8, 0, 0, 0.1, 0.01]),
          kn.ArgumentError,
          /shares its storage/,
        );
        throwsKiln(
          () => runInPlace('sgdStep', [kn.ones([4], { dtype: 'bfloat16' }), g], [0.1, 0, 0, 0, 0, 1]),
          kn.DTypeError,
          /must be float32/,
        );
        throwsKiln(() => runInPlace('sgdStep', [p, kn.ones([5])], [0.1, 0, 0, 0, 0, 1]), kn.ShapeError, /shape/);
        throwsKiln(
          () => runInPlace('adamStep', [p, g, m], [0.1, 0.9, 0.99, 1e-8, 0, 0, 0.1, 0.01]),
          kn.ArgumentError,
          /adamStep takes/,
        );
        throwsKiln(
          () => runInPlace('adamStep', [p, g, m, kn.zeros([4])], [0.1, 0.9, 0.99, 1e-8, 0, 0, 0, 0.01]),
          kn.ArgumentError,
          /bias corrections/,
        );
        // the multi-tensor steps: whole groups (Adam's of four, SGD's of three), at most 8 of them, one shape per
        // group, and no buffer written in place shared with another input (two parameters cut from one buffer)
        const ADAM = [0.1, 0.9, 0.99, 1e-8, 0, 0, 0.1, 0.01];
        const multi: ['adamStepMulti' | 'sgdStepMulti', number[], number][] = [
          ['adamStepMulti', ADAM, 4],
          ['sgdStepMulti', [0.1, 0.9, 0, 0, 0, 1], 3],
        ];
        for (const [op, attrs, width] of multi) {
          const group = (n = 4): kn.Tensor[] => [
            kn.ones([n]),
            kn.ones([n]),
            ...Array.from({ length: width - 2 }, () => kn.zeros([n])),
          ];
          throwsKiln(() => runInPlace(op, [...group(), p, g], attrs), kn.ArgumentError, /1 to 8 groups/);
          throwsKiln(
            () => runInPlace(op, Array.from({ length: 9 }, () => group()).flat(), attrs),
            kn.ArgumentError,
            /at most 32 inputs|1 to 8 groups/,
          );
          const bad = group(5);
          bad[2] = kn.zeros([4]);
          throwsKiln(() => runInPlace(op, [...group(), ...bad], attrs), kn.ShapeError, /shape/);
          const flat = kn.zeros([8]);
          const [one, two] = [group(), group()];
          one[0] = flat.slice([0], [4]);
          two[0] = flat.slice([4], [8]);
          throwsKiln(
            () => runInPlace(op, [...one, ...two], attrs),
            kn.ArgumentError,
            new RegExp(`input 0 is updated in place but shares its storage with input ${width}`),
          );
        }
        throwsKiln(
          () =>
            runInPlace(
              'adamStepMulti',
              [...Array.from({ length: 8 }, () => kn.ones([4]))],
              [...ADAM.slice(0, 6), 0, 0.01],
            ),
          kn.ArgumentError,
          /adamStepMulti: bias corrections/,
        );
      }),
    ));

  /**
   * Twelve parameters of 5 cut from `init`, as separate copies or as views of one flat buffer, stepped `steps`
   * times by `make`'s optimizer with the gradients `gradOf(step, k)` (null: none that step). Returns the
   * parameters' values after the last step and each step's profile.
   */
  const stepTwelve = (
    init: kn.Tensor,
    views: boolean,
    make: (ps: kn.Tensor[]) => kn.optim.Optimizer,
    steps: number,
    gradOf: (step: number, k: number) => kn.Tensor | null,
  ): { values: number[]; profiles: kn.Profile[] } => {
    const flat = init.clone();
    const ps = Array.from({ length: 12 }, (_, k) => {
      const v = flat.slice([5 * k], [5 * k + 5]);
      const t = views ? v : v.clone();
      t.requiresGrad = true;
      return t;
    });
    const opt = make(ps);
    const profiles: kn.Profile[] = [];
    for (let step = 0; step < steps; step++) {
      ps.forEach((t, k) => {
        t.grad?.dispose();
        t.grad = gradOf(step, k);
      });
      profiles.push(kn.profile(() => opt.step()));
    }
    const values = ps.flatMap((t) => Array.from(t.toArray() as ArrayLike<number>));
    opt.dispose();
    return { values, profiles };
  };
  const calls = (p: kn.Profile, op: string): number => p.events.filter((e) => e.op === op).length;

  test(`Adam updates up to 8 parameters per kernel call, as one call per parameter would (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        kn.seed(3);
        const init = kn.randn([60]),
          grad = kn.randn([60]);
        // 12 parameters of 5: separate buffers (batched 8 + 4), views of one flat buffer (each its own call,
        // since a call may not write a buffer that another of its inputs reads) and AMSGrad (per parameter);
        // two steps of one gradient, the second profiled
        const run = (views: boolean, amsgrad: boolean): { values: number[]; profile: kn.Profile } => {
          const { values, profiles } = stepTwelve(
            init,
            views,
            (ps) => new kn.optim.Adam(ps, { lr: 0.01, amsgrad }),
            2,
            (_, k) => grad.slice([5 * k], [5 * k + 5]).clone(),
          );
          return { values, profile: profiles[1]! };
        };
        const sep = run(false, false),
          views = run(true, false),
          ams = run(false, true);
        assert.is(calls(sep.profile, 'adamStepMulti'), 2);
        assert.is(calls(sep.profile, 'adamStep'), 0);
        assert.is(calls(views.profile, 'adamStep'), 12);
        assert.is(calls(ams.profile, 'adamStep'), 12);
        // the same arithmetic: identical numbers (AMSGrad's max changes nothing in two steps of one gradient)
        assert.equal(sep.values, views.values);
        assert.equal(sep.values, ams.values);
        assert.not.equal(sep.values, Array.from(init.toArray() as ArrayLike<number>));
      }),
    ));

  test(`SGD with momentum updates up to 8 parameters per kernel call, as one call per parameter would (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        kn.seed(4);
        const init = kn.randn([60]),
          grad = kn.randn([60]);
        // 12 parameters of 5 over three steps, parameter 2 without a gradient in the first (so the second step
        // has a new buffer beside 11 old ones): separate buffers (batched), views of one flat buffer (a call
        // each) and no momentum (sgdStep per parameter, no buffer; compared with itself only)
        const run = (views: boolean, momentum: boolean): { values: number[]; profiles: kn.Profile[] } =>
          // dampening 0.1: a buffer's first step (the gradient as it is) differs from a later one on a zero buffer
          stepTwelve(
            init,
            views,
            (ps) =>
              new kn.optim.SGD(ps, {
                lr: 0.01,
                momentum: momentum ? 0.9 : 0,
                dampening: momentum ? 0.1 : 0,
                weightDecay: 0.01,
              }),
            3,
            (step, k) => (step === 0 && k === 2 ? null : grad.slice([5 * k], [5 * k + 5]).mul(step + 1)),
          );
        const sep = run(false, true),
          views = run(true, true),
          plain = run(false, false);
        // step 1: 11 first steps (8 + 3); step 2: 11 old buffers (8 + 3) and parameter 2's first (alone: sgdStep)
        assert.equal(
          sep.profiles.map((p) => [calls(p, 'sgdStepMulti'), calls(p, 'sgdStep')]),
          [
            [2, 0],
            [2, 1],
            [2, 0],
          ],
        );
        assert.equal(
          views.profiles.map((p) => [calls(p, 'sgdStepMulti'), calls(p, 'sgdStep')]),
          [
            [0, 11],
            [0, 12],
            [0, 12],
          ],
        );
        assert.equal(
          plain.profiles.map((p) => calls(p, 'sgdStepMulti')),
          [0, 0, 0],
        );
        assert.equal(sep.values, views.values);
        assert.not.equal(sep.values, plain.values);
        // the first step of a buffer takes the gradient as it is: parameter 2 moved in steps 2 and 3 only
        const p2 = sep.values.slice(10, 15),
          x0 = Array.from(init.toArray() as ArrayLike<number>).slice(10, 15),
          g2 = Array.from(grad.toArray() as ArrayLike<number>).slice(10, 15);
        p2.forEach((v, j) => {
          let x = x0[j]!,
            buf = 0;
          for (const [s, first] of [
            [2, true],
            [3, false],
          ] as const) {
            const gi = g2[j]! * s + 0.01 * x;
            buf = first ? gi : 0.9 * buf + 0.9 * gi;
            x -= 0.01 * buf;
          }
          assert.ok(Math.abs(v - x) < 1e-5, `parameter 2 element ${j}: ${v} vs ${x}`);
        });
      }),
    ));
}

test.run();
