import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { nativeBackends, onBackend } from './helpers.js';

for (const b of ['js', ...nativeBackends()] as kn.BackendName[]) {
  test(`10k ops inside tidy leave memory where it started (${b})`, () =>
    onBackend(b, () => {
      const x = kn.randn([8, 8]);
      const before = kn.memory();
      kn.tidy(() => {
        let y = x;
        for (let i = 0; i < 2500; i++) y = y.mul(0.5).add(x).tanh().reshape([64]).reshape([8, 8]);
      });
      const after = kn.memory();
      assert.is(after.numTensors, before.numTensors);
      assert.is(after.numBuffers, before.numBuffers);
      assert.is(after.numBytes, before.numBytes);
      x.dispose();
    }));

  test(`tidy keeps returned tensors and autograd survives disposal (${b})`, () =>
    onBackend(b, () => {
      const start = kn.memory();
      const w = kn.randn([4, 3]);
      w.requiresGrad = true;
      const { loss, kept } = kn.tidy(() => {
        const h = kn.randn([5, 4]).matmul(w).relu();
        const l = h.sum();
        return { loss: l, kept: [h.shape.length] };
      });
      assert.equal(kept, [2]);
      loss.backward(); // intermediates were disposed by tidy, but the graph holds its own aliases
      assert.ok(w.grad !== null);
      assert.equal(w.grad!.shape, [4, 3]);
      loss.dispose();
      w.dispose();
      const end = kn.memory();
      assert.is(end.numBuffers, start.numBuffers);
      assert.is(end.numTensors, start.numTensors);
    }));

  test(`a graph that is never backpropagated frees its saved tensors when disposed (${b})`, () =>
    onBackend(b, () => {
      const start = kn.memory();
      const w = kn.randn([3, 3]);
      w.requiresGrad = true;
      kn.tidy(() => {
        for (let i = 0; i < 50; i++) w.mul(w).exp().sum();
      });
      w.dispose();
      assert.is(kn.memory().numBuffers, start.numBuffers);
    }));

  test(`views share storage (${b})`, () =>
    onBackend(b, () => {
      const start = kn.memory().numBuffers;
      const base = kn.arange(12);
      const x = base.reshape([3, 4]);
      base.dispose();
      const xt = x.transpose();
      const v = xt.slice([1], [3]);
      xt.dispose();
      assert.is(kn.memory().numBuffers, start + 1);
      assert.equal(v.toList(), [
        [1, 5, 9],
        [2, 6, 10],
      ]);
      x.dispose();
      assert.equal(v.toList(), [
        [1, 5, 9],
        [2, 6, 10],
      ]); // still alive through the view
      v.dispose();
      assert.is(kn.memory().numBuffers, start);
    }));

  test(`broadcast operand views are freed by the op, outside tidy, inside it and on a throw (${b})`, () =>
    onBackend(b, () => {
      const start = kn.memory();
      const a = kn.randn([2, 3, 4]),
        w = kn.randn([4, 5]),
        row = kn.randn([4]),
        cond = kn.tensor([1, 0, 1, 1], [4], { dtype: 'bool' });
      // the ops make stride-0 views of w, row and cond for their kernels; none may outlive the call
      const ys = [a.matmul(w), a.add(row), kn.where(cond, a, row), a.matmul(row)];
      assert.equal(
        ys.map((y) => y.shape),
        [
          [2, 3, 5],
          [2, 3, 4],
          [2, 3, 4],
          [2, 3],
        ],
      );
      assert.ok(Math.abs((ys[1]!.toArray()[5]! as number) - (a.toArray()[5]! + row.toArray()[1]!)) < 1e-5);
      ys.forEach((y) => y.dispose());
      assert.is(kn.memory().numTensors, start.numTensors + 4, 'only the four inputs are alive');
      kn.tidy(() => {
        a.add(row).matmul(w);
        assert.is(kn.memory().numTensors, start.numTensors + 6, 'the results, not the views, are in the scope');
      });
      // an op that fails after making its views frees them too; tidy() could not do it for the op, as the views
      // join no scope. The failure: a 2^44-element output, refused by every backend's size limit before anything
      // is allocated (an allocation that is merely too big for the machine would abort under AddressSanitizer)
      const one = kn.ones([1, 1, 1]);
      const tall = one.expand([2 ** 22, 1, 1]),
        wide = one.expand([1, 1, 2 ** 22]);
      assert.throws(() => tall.matmul(wide), /allocate/);
      assert.is(kn.memory().numTensors, start.numTensors + 7);
      [one, tall, wide].forEach((t) => t.dispose());
      [a, w, row, cond].forEach((t) => t.dispose());
      const end = kn.memory();
      assert.equal([end.numTensors, end.numBuffers], [start.numTensors, start.numBuffers]);
    }));
}

test('tidy rejects async functions and disposes on throw', () => {
  const start = kn.memory().numTensors;
  assert.throws(
    () =>
      kn.tidy(() => {
        kn.ones([2]);
        throw new Error('boom');
      }),
    /boom/,
  );
  assert.is(kn.memory().numTensors, start);
  assert.throws(
    () => kn.tidy((async () => kn.ones([1])) as unknown as () => kn.Tensor),
    (e: Error) => e instanceof kn.ArgumentError,
  );
});

test('kn.keep survives tidy', () => {
  let k: kn.Tensor | null = null;
  kn.tidy(() => {
    k = kn.keep(kn.ones([2]));
  });
  assert.equal(Array.from(k!.toArray()), [1, 1]);
  k!.dispose();
});

test('the finalizer releases tensors nobody disposed', async () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  assert.ok(gc, 'run with node --expose-gc (scripts/run-tests.mjs does)');
  const start = kn.memory().numBuffers;
  (() => {
    for (let i = 0; i < 100; i++) kn.ones([16]);
  })();
  assert.ok(kn.memory().numBuffers >= start + 100, 'the tensors are live before collection');
  for (let i = 0; i < 20 && kn.memory().numBuffers > start; i++) {
    gc!();
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.is(kn.memory().numBuffers, start);
});

test('a tensor made outside tidy() joins the finalizer in a batch: not at all when disposed first', async () => {
  // count FinalizationRegistry registrations (kiln's registry looks the method up on the prototype per call)
  const proto = FinalizationRegistry.prototype as { register: (...a: unknown[]) => void };
  const register = proto.register;
  let registered = 0;
  proto.register = function (this: FinalizationRegistry<unknown>, ...a: unknown[]) {
    registered++;
    register.apply(this, a);
  };
  try {
    await Promise.resolve(); // anything queued before the test is registered by now
    registered = 0;
    const a = kn.ones([8]);
    for (let i = 0; i < 500; i++) a.add(1).dispose(); // made and disposed within one task
    a.dispose();
    await Promise.resolve();
    assert.is(registered, 0, 'tensors disposed before their batch never register');
    const kept = kn.ones([8]);
    assert.is(registered, 0, 'registration waits for the end of the task');
    await Promise.resolve();
    assert.is(registered, 1, 'a live tensor is registered at the end of the task');
    const many: kn.Tensor[] = [];
    for (let i = 0; i < 200; i++) many.push(kn.ones([2]));
    assert.ok(registered >= 1 + 192, `a long synchronous loop registers in batches of 64 (${registered - 1} of 200)`);
    await Promise.resolve();
    assert.is(registered, 201);
    [kept, ...many].forEach((t) => t.dispose());
  } finally {
    proto.register = register;
  }
});

test('tensors that leave tidy() (returned, kept, saved for backward) are still under the finalizer', async () => {
  const gc = (globalThis as { gc?: () => void }).gc!;
  const start = kn.memory().numBuffers;
  (() => {
    for (let i = 0; i < 30; i++) {
      kn.tidy(() => kn.ones([16]).add(1)); // returned out of the only scope
      kn.tidy(() => {
        kn.keep(kn.ones([16]).mul(2));
      }); // kept
      kn.tidy(() => kn.tidy(() => kn.ones([16]).neg())); // returned through two scopes
      const w = kn.ones([4], { requiresGrad: true });
      kn.tidy(() => w.mul(w).sum()); // a graph that saved aliases of w
    }
  })();
  assert.ok(kn.memory().numBuffers >= start + 120);
  for (let i = 0; i < 30 && kn.memory().numBuffers > start; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.is(kn.memory().numBuffers, start);
});

test.run();
