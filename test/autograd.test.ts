import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { allclose, nativeBackends, onBackend, throwsKiln } from './helpers.js';

for (const b of ['js', ...nativeBackends()] as kn.BackendName[]) {
  test(`known gradients (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        const x = kn.tensor([1, 2, 3], undefined, { requiresGrad: true });
        x.mul(x).sum().backward();
        assert.equal(Array.from(x.grad!.toArray()), [2, 4, 6]);
        // accumulation into leaves across two backward passes
        x.mul(3).sum().backward();
        assert.equal(Array.from(x.grad!.toArray()), [5, 7, 9]);
      }),
    ));

  test(`leaves that receive the same gradient get separate storage (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        const a = kn.ones([3], { requiresGrad: true });
        const c = kn.ones([3], { requiresGrad: true });
        // mul's vjp gives add a contiguous gradient, which add's vjp hands to both inputs as the same tensor
        const y = a
          .add(c)
          .mul(kn.tensor([1, 2, 3]))
          .sum();
        const before = kn.memory().numBuffers;
        y.backward();
        assert.is(kn.memory().numBuffers - before, 2, 'one buffer per leaf grad, not one shared');
        assert.equal(Array.from(a.grad!.toArray()), [1, 2, 3]);
        assert.equal(Array.from(c.grad!.toArray()), [1, 2, 3]);
      }),
    ));

  test(`broadcast gradients reduce to the input shape (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        const a = kn.ones([3, 1], { requiresGrad: true });
        const c = kn.ones([4], { requiresGrad: true });
        a.add(c).sum().backward();
        assert.equal(a.grad!.shape, [3, 1]);
        assert.equal(Array.from(a.grad!.toArray()), [4, 4, 4]);
        assert.equal(Array.from(c.grad!.toArray()), [3, 3, 3, 3]);
      }),
    ));

  test(`retainGraph and freed graphs (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        const x = kn.tensor([2], undefined, { requiresGrad: true });
        const y = x.exp().mul(x);
        y.backward(undefined, { retainGraph: true });
        y.backward();
        assert.ok(allclose(x.grad!.toArray(), [2 * 3 * Math.exp(2)], 1e-4, 1e-5).ok);
        assert.throws(() => y.backward(), /already freed/);
      }),
    ));

  test(`kn.grad, noGrad and detach (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        const df = kn.grad((x: kn.Tensor) => x.pow(3).sum());
        assert.ok(allclose((df(kn.tensor([1, 2])) as kn.Tensor).toArray(), [3, 12], 1e-5).ok);
        const dxy = kn.grad((x: kn.Tensor, y: kn.Tensor) => x.mul(y).sum()) as (...a: kn.Tensor[]) => kn.Tensor[];
        const [gx, gy] = dxy(kn.tensor([1, 2]), kn.tensor([3, 4]));
        assert.equal(Array.from(gx!.toArray()), [3, 4]);
        assert.equal(Array.from(gy!.toArray()), [1, 2]);
        const w = kn.ones([2], { requiresGrad: true });
        const z = kn.noGrad(() => w.mul(2));
        assert.not.ok(z.requiresGrad);
        assert.not.ok(w.mul(2).detach().requiresGrad);
      }),
    ));

  test(`cast is differentiable between float dtypes (straight through rounding) (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        const x = kn.tensor([0.1, 0.2], undefined, { requiresGrad: true });
        x.cast('float16').cast('float32').mul(3).sum().backward();
        assert.equal(Array.from(x.grad!.toArray()), [3, 3]);
        assert.is(x.grad!.dtype, 'float32');
      }),
    ));

  // a cast to the dtype a tensor has is a view, and it used to leave the graph: the gradient silently stopped
  test(`a cast to the same dtype stays in the graph (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        const x = kn.tensor([0.5, -2], undefined, { requiresGrad: true });
        const y = x.cast('float32');
        assert.ok(y.requiresGrad);
        y.mul(y).sum().backward();
        assert.equal(Array.from(x.grad!.toArray()), [1, -4]);
        const z = x.detach().cast('float32');
        assert.not.ok(z.requiresGrad);
        assert.equal(Array.from(z.toArray()), [0.5, -2]);
      }),
    ));

  test(`an MLP step: loss decreases with plain gradient descent (${b})`, () =>
    onBackend(b, () => {
      kn.seed(7);
      const X = kn.randn([32, 4]);
      const yTrue = X.matmul(kn.tensor([[1], [-2], [0.5], [3]]));
      let p1 = kn.randn([4, 16], { std: 0.5 }),
        p2 = kn.randn([16, 1], { std: 0.5 });
      const ls: number[] = [];
      for (let step = 0; step < 40; step++) {
        const f = (a: kn.Tensor, c: kn.Tensor): kn.Tensor => {
          const d = X.matmul(a).gelu().matmul(c).sub(yTrue);
          return d.mul(d).mean();
        };
        ls.push(kn.tidy(() => f(p1, p2).item()));
        const [g1, g2] = kn.grad(f)(p1, p2) as kn.Tensor[];
        const n1 = kn.noGrad(() => p1.sub(g1!.mul(0.05)));
        const n2 = kn.noGrad(() => p2.sub(g2!.mul(0.05)));
        [p1, p2, g1, g2].forEach((t) => t!.dispose());
        p1 = n1;
        p2 = n2;
      }
      assert.ok(ls[ls.length - 1]! < 0.5 * ls[0]!, `loss went ${ls[0]} -> ${ls[ls.length - 1]}`);
    }));
}

test('a binary op computes no gradient for an operand that needs none (a constant costs no kernels)', () =>
  kn.tidy(() => {
    kn.seed(21);
    // both operands broadcast, so each operand's gradient costs at least one kernel (a sum)
    const av = kn.rand([4, 1]).add(0.5),
      bv = kn.rand([1, 3]).add(0.5);
    const ops: [string, (a: kn.Tensor, b: kn.Tensor) => kn.Tensor][] = [
      ['add', (a, b) => a.add(b)],
      ['sub', (a, b) => a.sub(b)],
      ['mul', (a, b) => a.mul(b)],
      ['div', (a, b) => a.div(b)],
      ['pow', (a, b) => a.pow(b)],
      ['maximum', (a, b) => a.maximum(b)],
      ['minimum', (a, b) => a.minimum(b)],
      ['where', (a, b) => kn.where(kn.rand([4, 3]).gt(0.5), a, b)],
      ['biasAct', (a, b) => kn.biasAct(a.expand([4, 3]), b.reshape([3]), 'relu')],
    ];
    for (const [name, f] of ops) {
      // which operands require a gradient: a, b, both
      const run = (ga: boolean, gb: boolean): { kernels: number; grads: (number[] | null)[] } => {
        kn.seed(5);
        const a = av.clone(),
          b = bv.clone();
        a.requiresGrad = ga;
        b.requiresGrad = gb;
        const y = f(a, b)
          .mul(kn.rand([4, 3]))
          .sum();
        const p = kn.profile(() => y.backward());
        return {
          kernels: p.events.filter((e) => e.phase === 'backward').length,
          grads: [a, b].map((t) => (t.grad ? Array.from(t.grad.toFloat64Array()) : null)),
        };
      };
      const both = run(true, true),
        onlyA = run(true, false),
        onlyB = run(false, true);
      assert.ok(onlyA.kernels < both.kernels, `${name}: a alone ran ${onlyA.kernels} kernels, both ${both.kernels}`);
      assert.ok(onlyB.kernels < both.kernels, `${name}: b alone ran ${onlyB.kernels} kernels, both ${both.kernels}`);
      assert.equal(onlyA.grads, [both.grads[0], null], name);
      assert.equal(onlyB.grads, [null, both.grads[1]], name);
    }
  }));

test('cpu and js compute the same gradients for a small conv net', () => {
  if (!nativeBackends().includes('cpu')) return;
  const run = (b: kn.BackendName): Float64Array[] =>
    onBackend(b, () =>
      kn.tidy(() => {
        kn.seed(3);
        const x = kn.randn([2, 1, 8, 8]);
        const w = kn.randn([4, 1, 3, 3], { std: 0.3 });
        const v = kn.randn([64, 3], { std: 0.1 });
        w.requiresGrad = true;
        v.requiresGrad = true;
        const h = kn.maxPool2d(kn.conv2d(x, w, null, { padding: 1 }).relu(), 2).reshape([2, 64]);
        h.matmul(v).logSoftmax().mean().neg().backward();
        return [w.grad!.toFloat64Array(), v.grad!.toFloat64Array()];
      }),
    );
  const [a, c] = [run('js'), run('cpu')];
  for (let i = 0; i < 2; i++) {
    const r = allclose(
      c[i]!,
      a[i]!.map((v) => Math.fround(v)),
      1e-5,
      1e-3,
    );
    assert.ok(r.ok, r.message);
  }
});

// t.to(backend) used to copy the values and drop the graph: a model split over two backends (the error for mixed
// backends says to move one with .to) silently stopped its gradient at the move
test('a graph spans backends: .to() passes the gradient back to the tensor on its own backend', () => {
  for (const other of nativeBackends()) {
    const [w, y] = onBackend('js', () => {
      const w = kn.tensor([0.5, -1, 2], undefined, { requiresGrad: true });
      return [w, w.mul(3)] as const;
    });
    const z = onBackend(other, () => {
      const m = y.to(other).exp();
      assert.ok(m.requiresGrad, `${other}: the moved tensor is in the graph`);
      return m.to('js').mul(w).sum();
    });
    z.backward();
    assert.is(w.grad!.backend, 'js');
    // d/dw sum(exp(3w) * w) = 3 exp(3w) w + exp(3w)
    const want = [0.5, -1, 2].map((v) => Math.exp(3 * v) * (3 * v + 1));
    const r = allclose(w.grad!.toFloat64Array(), want, 1e-5, 1e-5);
    assert.ok(r.ok, `${other}: ${r.message}`);
    const d = onBackend(other, () => kn.tensor([1, 2], undefined, { requiresGrad: true }));
    assert.not.ok(d.detach().to('js').requiresGrad);
  }
});

// A saved tensor overwritten in place between forward and backward used to give a silently wrong gradient (an
// optimizer step, a loaded state); backward now refuses, as PyTorch's version counter does
test('backward refuses a saved tensor changed in place since it was saved', () => {
  for (const b of ['js', ...nativeBackends()] as kn.BackendName[])
    onBackend(b, () =>
      kn.tidy(() => {
        const w = kn.tensor(
          [
            [1, 2],
            [3, 4],
          ],
          undefined,
          { requiresGrad: true },
        );
        const x = kn.tensor([[1, -1]]);
        const h = x.matmul(w);
        const loss = h.mul(h).sum();
        const opt = new kn.optim.SGD([w], { lr: 0.1 });
        loss.backward({ retainGraph: true });
        opt.step(); // matmul saved w
        throwsKiln(() => loss.backward(), kn.ArgumentError, /'matmul' saved its input 1 \[2, 2\].*modified in place/);
        // a view shares the count: the step changed the storage under w.reshape
        opt.zeroGrad();
        x.matmul(w).sum().backward(); // a gradient for the next step
        const viaView = w
          .reshape([4])
          .mul(w.reshape([4]))
          .sum();
        opt.step();
        throwsKiln(() => viaView.backward(), kn.ArgumentError, /version 2, saved at 1/);
        // a saved output: exp keeps its result, here overwritten by a loaded state
        const v = kn.tensor([0.5, 1], undefined, { requiresGrad: true });
        const y = v.exp();
        const z = y.sum();
        y.assign(kn.zeros([2]));
        throwsKiln(() => z.backward(), kn.ArgumentError, /'exp' saved its output \[2\]/);
        // forward after the step, then backward, is the normal order: allowed, and the gradient is right
        opt.zeroGrad();
        const fresh = x.matmul(w).sum();
        fresh.backward();
        const r = allclose(w.grad!.toFloat64Array(), [1, 1, -1, -1], 1e-6, 1e-6);
        assert.ok(r.ok, `${b}: ${r.message}`);
      }),
    );
});

test.run();
