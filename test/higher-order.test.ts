// Gradients of gradients (createGraph), the functional transforms (vjp, jvp, jacobian, hessian, hvp) and
// activation checkpointing, on every available backend; worked examples: a WGAN-GP gradient penalty step, the
// Hessian-vector product of an MLP loss, and a one-step MAML whose outer gradient matches PyTorch's.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { Tensor } from '../src/tensor/tensor.js';
import { allclose, onBackend, throwsKiln } from './helpers.js';

/** A tensor holding exactly these numbers (float64 on the js reference backend, float32 elsewhere). */
const exact = (v: readonly number[], shape: number[], b: kn.BackendName = 'js'): kn.Tensor =>
  Tensor.fromHostNumbers(v, shape, b);
const list = (t: kn.Tensor | kn.Tensor[]): number[] => Array.from((t as kn.Tensor).toArray() as ArrayLike<number>);
const close = (got: ArrayLike<number>, want: ArrayLike<number>, atol = 1e-5, rtol = 1e-4, what = ''): void => {
  const r = allclose(got, want, atol, rtol);
  assert.ok(r.ok, `${what} ${r.message}`);
};

for (const b of kn.backends()) {
  test(`derivatives to the third order, through grad and backward(createGraph) (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        // f = sum(x^3 + sin-like tanh): closed forms up to f'''
        const f = (x: kn.Tensor): kn.Tensor => x.pow(3).add(x.tanh()).sum();
        const d1 = kn.grad(f, { createGraph: true });
        const d2 = kn.grad((x) => (d1(x) as kn.Tensor).sum(), { createGraph: true });
        const d3 = kn.grad((x) => (d2(x) as kn.Tensor).sum());
        const xs = [-0.7, 0.2, 1.1];
        const x = kn.tensor(xs);
        const t = xs.map(Math.tanh);
        close(
          list(d1(x)),
          xs.map((v, i) => 3 * v * v + 1 - t[i]! ** 2),
          1e-5,
          1e-4,
          'first',
        );
        close(
          list(d2(x)),
          xs.map((v, i) => 6 * v - 2 * t[i]! * (1 - t[i]! ** 2)),
          1e-5,
          1e-4,
          'second',
        );
        close(
          list(d3(x)),
          xs.map((_, i) => 6 - 2 * (1 - t[i]! ** 2) * (1 - 3 * t[i]! ** 2)),
          1e-4,
          1e-3,
          'third',
        );
        // backward(createGraph): the .grad carries a graph and can be differentiated again
        const w = kn.tensor([2, -1], undefined, { requiresGrad: true });
        kn.backward(w.pow(3).sum(), undefined, { createGraph: true });
        const g = w.grad!;
        assert.ok(g.requiresGrad);
        close(list(g), [12, 3]);
        w.grad = null;
        g.mul(g).sum().backward(); // d/dw sum((3w^2)^2) = 36 w^3
        close(list(w.grad!), [288, -36]);
        // without createGraph the gradient is a constant
        const v = kn.tensor([2], undefined, { requiresGrad: true });
        kn.backward(v.pow(3).sum());
        assert.not.ok(v.grad!.requiresGrad);
      }),
    ));

  test(`relu's fused gradient is differentiable in the upstream gradient (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        // h(w) = sum(c * d/dx sum(w * act(x))) = sum(c * w * [x > 0]): dh/dw = c * [x > 0], for relu and for
        // biasAct's fused relu (whose gradient reads the layer's output)
        const x = kn.tensor([[-1, 0.5, 2, -0, 3]]);
        const c = kn.tensor([1, 2, 3, 4, 5]);
        const w = kn.tensor([0.3, -0.2, 0.7, 1, 2]);
        for (const act of [(t: kn.Tensor) => t.relu(), (t: kn.Tensor) => kn.biasAct(t, kn.zeros([5]), 'relu')]) {
          const inner = kn.grad((t: kn.Tensor, v: kn.Tensor) => act(t).mul(v).sum(), { createGraph: true });
          const h = (v: kn.Tensor): kn.Tensor => (inner(x, v) as kn.Tensor[])[0]!.mul(c).sum();
          close(list(kn.grad(h)(w) as kn.Tensor), [0, 2, 3, 0, 5]);
        }
      }),
    ));

  test(`vjp, jvp, jacobian, hessian and hvp agree with closed forms and with each other (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        kn.seed(7);
        const A = kn.randn([3, 4]),
          x = kn.randn([4]),
          v = kn.randn([4]),
          u = kn.randn([3]);
        const f = (z: kn.Tensor): kn.Tensor => A.matmul(z.tanh());
        const J = kn.jacobian(f, x) as kn.Tensor; // [3, 4] = A diag(1 - tanh^2)
        assert.equal(J.shape, [3, 4]);
        const sech2 = list(x).map((z) => 1 - Math.tanh(z) ** 2);
        const Av = list(A);
        close(
          list(J),
          Av.map((a, k) => a * sech2[k % 4]!),
          1e-5,
          1e-4,
          'jacobian',
        );
        // jvp = J v, vjp = u^T J
        close(list(kn.jvp(f, x, v)), list(J.matmul(v)), 1e-5, 1e-4, 'jvp');
        close(list(kn.vjp(f, x, u)), list(u.matmul(J)), 1e-5, 1e-4, 'vjp');
        // a scalar function of two inputs: Hessian blocks vs hvp
        const g = (p: kn.Tensor, q: kn.Tensor): kn.Tensor => p.mul(q).sum().mul(p.sum()).add(q.pow(3).sum());
        const p = kn.tensor([1, 2]),
          q = kn.tensor([3, 4]);
        const H = kn.hessian(g, [p, q]) as kn.Tensor[][];
        close(list(H[0]![0]!), [6, 7, 7, 8], 1e-5, 1e-4, 'H_pp'); // b_i + b_j
        close(list(H[0]![1]!), [4, 2, 1, 5], 1e-5, 1e-4, 'H_pq'); // delta_ij sum(p) + p_j
        close(list(H[1]![1]!), [18, 0, 0, 24], 1e-5, 1e-4, 'H_qq'); // 6 q
        const hv = kn.hvp(g, [p, q], [kn.tensor([1, 0]), kn.tensor([0, 1])]) as kn.Tensor[];
        // H [e1; e2] rows: p-block = H_pp e1 + H_pq e2, q-block = H_qp e1 + H_qq e2
        close(list(hv[0]!), [6 + 2, 7 + 5], 1e-5, 1e-4, 'hvp p');
        close(list(hv[1]!), [4 + 0, 2 + 24], 1e-5, 1e-4, 'hvp q');
        // bad arguments
        throwsKiln(() => kn.vjp(f, x, kn.ones([2])), kn.ShapeError, /vjp: v must have shape \[3\]/);
        throwsKiln(() => kn.hvp(f, x, v), kn.ShapeError, /scalar-valued/);
        throwsKiln(() => kn.jvp(f, [x, x], [v]), kn.ArgumentError, /2 inputs need 2 tangents/);
        // a function that does not depend on its input: zero derivatives, not an error
        close(list(kn.jacobian(() => A.sum(), x) as kn.Tensor), [0, 0, 0, 0]);
      }),
    ));

  test(`checkpoint: gradients bit-identical to the plain run, dropout masks replayed (${b})`, () =>
    onBackend(b, () => {
      kn.seed(0);
      const blocks = Array.from(
        { length: 6 },
        () => new kn.nn.Sequential(new kn.nn.Linear(16, 16), new kn.nn.Tanh(), new kn.nn.Dropout(0.2)),
      );
      const model = new kn.nn.Sequential(...blocks);
      const x = kn.randn([8, 16]);
      const run = (ck: boolean, inputGrad: boolean): number[][] => {
        kn.seed(5);
        for (const p of model.parameters()) p.grad = null;
        const xi = x.detach();
        xi.requiresGrad = inputGrad;
        kn.tidy(() => {
          let h = xi;
          for (const blk of blocks) h = ck ? kn.checkpoint((z) => blk.call(z), h) : blk.call(h);
          h.sum().backward();
        });
        const out = model.parameters().map((p) => Array.from(p.grad!.toArray() as Float32Array));
        if (inputGrad) out.push(Array.from(xi.grad!.toArray() as Float32Array));
        xi.dispose();
        return out;
      };
      // the data input needs no gradient: parameters inside still get theirs
      assert.equal(run(true, false), run(false, false));
      assert.equal(run(true, true), run(false, true));
      model.dispose();
      x.dispose();
    }));
}

// the layers compose ops that gradcheck.test checks to second order on every backend; here they are checked
// whole on the js reference (gradgradcheck's finite differences run there, and a layer's parameters live on
// the backend that built it)
for (const b of ['js'] as const) {
  test(`second order through the layers: LayerNorm, BatchNorm, Embedding, Conv2d + pooling, losses (${b})`, () =>
    onBackend(b, () =>
      kn.tidy(() => {
        kn.seed(21);
        const ln = new kn.nn.LayerNorm([4]);
        const bn = new kn.nn.BatchNorm1d(4);
        const idx = kn.tensor(Int32Array.from([0, 3, 3, 1]), [4]);
        const conv = new kn.nn.Conv2d(2, 3, 3, { padding: 1, stride: 2 });
        const y = kn.tensor(Int32Array.from([1, 0, 2]), [3]);
        const checks: [string, (...x: kn.Tensor[]) => kn.Tensor, kn.Tensor[]][] = [
          ['LayerNorm', (x) => ln.call(x).tanh(), [kn.randn([3, 4])]],
          ['BatchNorm1d (training)', (x) => bn.call(x).gelu(), [kn.randn([5, 4])]],
          ['Embedding (gather of rows)', (w) => kn.gather(w, idx, 0).pow(2), [kn.randn([5, 3])]],
          [
            'Conv2d + maxPool2d + avgPool2d',
            (x) => kn.avgPool2d(kn.maxPool2d(conv.call(x).tanh(), 2, { stride: 1 }), 2, { stride: 1 }),
            [kn.randn([1, 2, 6, 6])],
          ],
          [
            'crossEntropy with label smoothing',
            (x) => kn.nn.loss.crossEntropy(x, y, { labelSmoothing: 0.2 }),
            [kn.randn([3, 4])],
          ],
          ['bceWithLogits', (x) => kn.nn.loss.bceWithLogits(x, kn.tensor([1, 0, 1])), [kn.randn([3])]],
          ['mse', (x) => kn.nn.loss.mse(x.tanh(), kn.tensor([0.5, -0.5, 0])), [kn.randn([3])]],
        ];
        for (const [name, f, xs] of checks) {
          const r = kn.gradgradcheck(f, xs);
          assert.ok(r.ok, `${name} on ${b}: ${JSON.stringify(r.worst)}`);
        }
      }),
    ));
}

test('checkpoint keeps less memory alive between forward and backward (deep MLP)', () =>
  onBackend('cpu', () => {
    kn.seed(1);
    const blocks = Array.from(
      { length: 16 },
      () => new kn.nn.Sequential(new kn.nn.Linear(256, 256), new kn.nn.GELU(), new kn.nn.Linear(256, 256)),
    );
    const x = kn.randn([128, 256]);
    const peak = (ck: boolean): number =>
      kn.tidy(() => {
        kn.resetPeakMemory();
        const before = kn.memory().numBytes;
        let h = x;
        for (const blk of blocks) h = ck ? kn.checkpoint((z) => blk.call(z), h) : blk.call(h);
        h.sum().backward();
        for (const blk of blocks) for (const p of blk.parameters()) p.grad = null;
        return kn.memory().peakBytes - before;
      });
    // the parameter gradients are the same in both runs; compare what is left (activations and temporaries)
    const grads = blocks.flatMap((blk) => blk.parameters()).reduce((s, p) => s + 4 * p.size, 0);
    const plain = peak(false) - grads,
      ck = peak(true) - grads;
    // the plain run holds every block's activations until backward; checkpointing holds block outputs only
    assert.ok(ck < 0.6 * plain, `peak beyond the gradients with checkpointing ${ck} vs ${plain} bytes`);
    for (const blk of blocks) blk.dispose();
    x.dispose();
  }));

test('Hessian-vector product of an MLP loss matches finite differences of the gradient', () => {
  kn.seed(3);
  const host = (t: kn.Tensor): number[] => list(t);
  const [X, Y, W1, W2, V1, V2] = kn.tidy(() => [
    host(kn.randn([6, 5])),
    host(kn.randint([6], 0, 3)),
    host(kn.randn([5, 4]).mul(0.5)),
    host(kn.randn([4, 3]).mul(0.5)),
    host(kn.randn([5, 4])),
    host(kn.randn([4, 3])),
  ]);
  // the same loss on either backend (the data built there)
  const lossOn = (b: kn.BackendName) => {
    const x = onBackend(b, () => exact(X!, [6, 5], b)),
      y = onBackend(b, () => kn.tensor(Int32Array.from(Y!), [6]));
    return (a: kn.Tensor, c: kn.Tensor): kn.Tensor => kn.nn.loss.crossEntropy(x.matmul(a).gelu().matmul(c), y);
  };
  const hv = onBackend('cpu', () =>
    (
      kn.hvp(
        lossOn('cpu'),
        [exact(W1!, [5, 4], 'cpu'), exact(W2!, [4, 3], 'cpu')],
        [exact(V1!, [5, 4], 'cpu'), exact(V2!, [4, 3], 'cpu')],
      ) as kn.Tensor[]
    ).map(list),
  );
  // (grad(w + eps v) - grad(w - eps v)) / 2 eps, in float64 on the js backend
  const fd = onBackend('js', () => {
    const eps = 1e-4;
    const loss = lossOn('js');
    const at = (s: number): number[][] =>
      (
        kn.grad(loss)(
          exact(
            W1!.map((w, k) => w + s * eps * V1![k]!),
            [5, 4],
            'js',
          ),
          exact(
            W2!.map((w, k) => w + s * eps * V2![k]!),
            [4, 3],
            'js',
          ),
        ) as kn.Tensor[]
      ).map(list);
    const [p, m] = [at(1), at(-1)];
    return p.map((t, i) => t.map((v, k) => (v - m[i]![k]!) / (2 * eps)));
  });
  close(hv[0]!, fd[0]!, 1e-4, 1e-3, 'W1');
  close(hv[1]!, fd[1]!, 1e-4, 1e-3, 'W2');
});

test('WGAN-GP: a critic step with the gradient penalty (||grad_x D(x_hat)|| - 1)^2', () =>
  kn.tidy(() => {
    kn.seed(11);
    const critic = new kn.nn.Sequential(new kn.nn.Linear(4, 16), new kn.nn.Tanh(), new kn.nn.Linear(16, 1));
    const opt = new kn.optim.Adam(critic.parameters(), { lr: 1e-3 });
    const real = kn.randn([8, 4]).add(1),
      fake = kn.randn([8, 4]);
    const lambda = 10;
    const criticLoss = (): kn.Tensor => {
      const eps = kn.rand([8, 1]);
      const xhat = real
        .mul(eps)
        .add(fake.mul(eps.neg().add(1)))
        .detach();
      xhat.requiresGrad = true;
      const [gx] = [kn.grad((z) => critic.call(z).sum(), { createGraph: true })(xhat) as kn.Tensor];
      const norm = gx.mul(gx).sum(1).add(1e-12).sqrt();
      const gp = norm.sub(1).pow(2).mean();
      return critic.call(fake).mean().sub(critic.call(real).mean()).add(gp.mul(lambda));
    };
    // the penalty's gradient reaches the critic's weights through the input gradient: check one weight
    // against central differences of the whole loss (same interpolation: fixed seed per evaluation)
    const w = critic.parameters()[0]!;
    const lossAt = (): number => {
      kn.seed(99);
      return kn.noGrad(() => 0) + kn.tidy(() => criticLoss().item());
    };
    kn.seed(99);
    opt.zeroGrad();
    kn.tidy(() => criticLoss().backward());
    const analytic = list(w.grad!)[5]!;
    const base = list(w);
    const eps = 1e-3;
    const setW = (d: number): void => {
      const v = base.slice();
      v[5]! += d;
      kn.noGrad(() => w.assign(kn.tensor(v, w.shape)));
    };
    setW(eps);
    const lp = lossAt();
    setW(-eps);
    const lm = lossAt();
    setW(0);
    const numeric = (lp - lm) / (2 * eps);
    assert.ok(Math.abs(analytic - numeric) < 2e-2 * Math.max(1, Math.abs(numeric)), `${analytic} vs ${numeric}`);
    // and the training step runs: the loss goes down over a few steps
    const first = lossAt();
    for (let i = 0; i < 20; i++) {
      opt.zeroGrad();
      kn.tidy(() => criticLoss().backward());
      opt.step();
    }
    assert.ok(lossAt() < first, 'critic loss decreases');
    opt.dispose();
    critic.dispose();
  }));

test('one-step MAML: the outer gradient through the inner SGD step matches PyTorch', () =>
  onBackend('js', () =>
    kn.tidy(() => {
      // the same numbers as test/ref/maml_torch.py (float64 there and on the js backend here; kiln's scalar
      // operands are float32 values, so the script uses float32(0.4) as the step size; agreement to ~1e-8)
      const W = exact([0.5, -0.3, 0.8, 0.1, 0.4, -0.6], [2, 3]);
      const bias = exact([0.05, -0.1], [2]);
      const xs = exact([1.0, 0.5, -0.2, 0.3, -1.0, 0.7, -0.4, 0.2, 0.9], [3, 3]);
      const ys = exact([0.2, -0.1, 0.0, 0.3, -0.2, 0.1], [3, 2]);
      const xq = exact([0.6, -0.3, 0.1, -0.8, 0.4, 0.5], [2, 3]);
      const yq = exact([0.1, 0.2, -0.3, 0.0], [2, 2]);
      const alpha = 0.4;
      const net = (w: kn.Tensor, c: kn.Tensor, x: kn.Tensor): kn.Tensor => x.matmul(w.transpose()).add(c).tanh();
      const mse = (a: kn.Tensor, y: kn.Tensor): kn.Tensor => a.sub(y).pow(2).mean();
      let outerLoss = 0;
      const outer = (w: kn.Tensor, c: kn.Tensor): kn.Tensor => {
        const [gw, gc] = kn.grad((a, d) => mse(net(a, d, xs), ys), { createGraph: true })(w, c) as kn.Tensor[];
        const l = mse(net(w.sub(gw!.mul(alpha)), c.sub(gc!.mul(alpha)), xq), yq);
        outerLoss = l.item();
        return l;
      };
      const [dW, db] = kn.grad(outer)(W, bias) as kn.Tensor[];
      close([outerLoss], [0.056835051233604], 1e-12, 1e-7, 'outer loss');
      close(
        list(dW!),
        [
          0.02528612417250465, -0.041488024198371665, 0.03812202136437744, -0.017799874938135667, 0.04630559595474043,
          -0.07605256364141291,
        ],
        1e-12,
        1e-7,
        'dW',
      );
      close(list(db!), [0.14007875482202986, -0.24881304279268113], 1e-12, 1e-7, 'db');
      // first-order MAML (no createGraph) gives a different answer: the second-order term matters here
      const firstOrder = kn.grad((w: kn.Tensor, c: kn.Tensor) => {
        const [gw, gc] = kn.grad((a, d) => mse(net(a, d, xs), ys))(w, c) as kn.Tensor[];
        return mse(net(w.sub(gw!.mul(alpha)), c.sub(gc!.mul(alpha)), xq), yq);
      })(W, bias) as kn.Tensor[];
      assert.ok(Math.abs(list(firstOrder[0]!)[0]! - list(dW!)[0]!) > 1e-4);
    }),
  ));

test.run();
