// Finite-difference gradient checks for every differentiable op case, on every available backend.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { record } from '../src/autograd/tape.js';
import { CASES, makeInputs } from './cases.js';
import { nativeBackends, onBackend, rng } from './helpers.js';

const diff = CASES.map((c, i) => [c, i] as const).filter(([c]) => c.grad);

test('there are gradient checks for the differentiable ops', () => {
  const ops = new Set(diff.flatMap(([c]) => c.ops));
  for (const op of [
    'exp',
    'log',
    'sqrt',
    'tanh',
    'sigmoid',
    'gelu',
    'silu',
    'neg',
    'abs',
    'relu',
    'clamp',
    'add',
    'sub',
    'mul',
    'div',
    'pow',
    'maximum',
    'minimum',
    'where',
    'sum',
    'max',
    'min',
    'softmax',
    'logSoftmax',
    'matmul',
    'attention',
    'layerNorm',
    'conv2d',
    'maxPool2d',
    'avgPool2d',
    'concat',
    'gather',
    'copy',
    'biasAct',
  ] as const) {
    assert.ok(ops.has(op), `no gradcheck case for ${op}`);
  }
});

for (const b of ['js', ...nativeBackends()] as kn.BackendName[]) {
  for (const [c, i] of diff) {
    test(`gradcheck ${c.name} on ${b}`, () => {
      onBackend(b, () =>
        kn.tidy(() => {
          const xs = makeInputs(c, rng(5000 + i));
          const floatIdx = xs.map((x, k) => (x.dtype === 'float32' ? k : -1)).filter((k) => k >= 0);
          const f = (...fs: kn.Tensor[]): kn.Tensor => {
            const all = xs.slice();
            floatIdx.forEach((k, j) => {
              all[k] = fs[j]!;
            });
            // constant (integer) inputs must live where gradcheck evaluates f: js for the numeric pass
            for (let k = 0; k < all.length; k++)
              if (all[k]!.backend !== fs[0]!.backend) all[k] = all[k]!.to(fs[0]!.backend);
            return c.run(...all);
          };
          const r = kn.gradcheck(
            f,
            floatIdx.map((k) => xs[k]!),
            b === 'js' ? {} : { atol: 2e-3, rtol: 2e-2 },
          );
          assert.ok(r.ok, `${b}: maxAbsErr ${r.maxAbsErr} worst ${JSON.stringify(r.worst)}`);
          // second order: every vjp (fused backward kernels included) is differentiable again, in its input
          // and in the output gradient
          const r2 = kn.gradgradcheck(
            f,
            floatIdx.map((k) => xs[k]!),
            b === 'js' ? {} : { atol: 2e-3, rtol: 2e-2 },
          );
          assert.ok(r2.ok, `${b} second order: maxAbsErr ${r2.maxAbsErr} worst ${JSON.stringify(r2.worst)}`);
        }),
      );
    });
  }
}

test('gradgradcheck catches a vjp that is right but not differentiable', () => {
  // x^2 whose vjp computes 2 x g from a detached x: first order right, second order missing the 2 g term
  const sq = (x: kn.Tensor): kn.Tensor =>
    record(
      'badSquare',
      kn.noGrad(() => x.mul(x)),
      [x],
      [x],
      (g, [xx]) => [g.mul(xx!.detach()).mul(2)],
    );
  assert.ok(kn.gradcheck(sq, [kn.tensor([1, 2, 3])]).ok);
  const r = kn.gradgradcheck(sq, [kn.tensor([1, 2, 3])]);
  assert.not.ok(r.ok);
  assert.ok(r.worst !== null && r.worst.input === 0, JSON.stringify(r.worst));
});

test('gradcheck catches a wrong gradient', () => {
  // a custom op whose recorded gradient is off by a factor of 2: x*x computed through mul of two views
  const bad = (x: kn.Tensor): kn.Tensor => kn.noGrad(() => x.mul(x)).add(x.mul(0));
  const r = kn.gradcheck(bad, [kn.tensor([1, 2, 3])]);
  assert.not.ok(r.ok);
  assert.ok(r.worst !== null && Math.abs(r.worst.analytic) < 1e-12 && r.worst.numeric > 1, JSON.stringify(r.worst));
});

test('gradcheck reports NaN gradients as failures', () => {
  const r = kn.gradcheck((x) => x.sqrt(), [kn.tensor([0, 1])], { eps: 1e-3 });
  assert.not.ok(r.ok);
});

test.run();
