import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { philox } from '../src/backends/js/random.js';
import { nativeBackends, onBackend } from './helpers.js';

test('Philox4x32-10 matches the published known-answer vectors', () => {
  // Random123 kat_vectors: philox4x32_10 with counter/key all zero and all 0xffffffff (counter words 2,3 = 0 here)
  const out = new Uint32Array(4);
  philox(0, 0, 0, 0, out);
  assert.equal(Array.from(out), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
});

test('kn.seed makes every backend draw the same numbers', () => {
  const draw = (b: kn.BackendName): number[][] =>
    onBackend(b, () =>
      kn.tidy(() => {
        kn.seed(123);
        return [
          Array.from(kn.rand([101]).toArray()),
          Array.from(kn.randint([37], 0, 10).toArray()),
          Array.from(kn.randn([10]).toArray()),
        ];
      }),
    );
  const ref = draw('js');
  for (const b of nativeBackends()) {
    const got = draw(b);
    assert.equal(got[0], ref[0], 'rand identical');
    assert.equal(got[1], ref[1], 'randint identical');
    got[2]!.forEach((v, i) => assert.ok(Math.abs(v - ref[2]![i]!) <= 1e-6 * Math.max(1, Math.abs(v)), `randn ${i}`));
  }
});

test('cpu draws the reference bits across its 32-value groups, ragged tails and threads', () => {
  if (!kn.backends().includes('cpu')) return;
  // the cpu kernels run 8 Philox blocks (32 values) per step with vector maths (Box-Muller in double); each size
  // below ends its last group early, exactly or late, and 40001 values (1251 groups) split over the thread pool
  const draw = (b: kn.BackendName, n: number): number[][] =>
    onBackend(b, () =>
      kn.tidy(() => {
        kn.seed(2024 + n);
        kn.rand([3]);
        return [
          Array.from(kn.randn([n], { mean: -0.25, std: 1.5 }).toArray()),
          Array.from(kn.rand([n], { low: -2, high: 5 }).toArray()),
          Array.from(kn.randint([n], -5, 6).toArray()),
          Array.from(kn.randint([n], -2147483648, 2147483647).toArray()),
        ];
      }),
    );
  for (const n of [1, 31, 32, 33, 4099, 40001]) {
    const ref = draw('js', n);
    const got = draw('cpu', n);
    ['randn', 'rand', 'randint', 'randint (full int32 range)'].forEach((name, k) => {
      const bad = got[k]!.findIndex((v, i) => v !== ref[k]![i]);
      assert.ok(bad < 0, `${name} n=${n}: element ${bad} is ${got[k]![bad]}, the reference drew ${ref[k]![bad]}`);
    });
  }
});

test('same seed -> same numbers, successive calls differ, state can be saved and restored', () => {
  kn.seed(5);
  const a = Array.from(kn.rand([8]).toArray());
  const b = Array.from(kn.rand([8]).toArray());
  kn.seed(5);
  assert.equal(Array.from(kn.rand([8]).toArray()), a);
  assert.not.equal(a, b);
  const st = kn.getRngState();
  const c = Array.from(kn.rand([8]).toArray());
  kn.setRngState(st);
  assert.equal(Array.from(kn.rand([8]).toArray()), c);
});

test('distributions have the right moments and ranges', () => {
  kn.seed(99);
  const u = kn.rand([20000], { low: -1, high: 3 });
  const ua = u.toArray();
  assert.ok(Math.min(...ua) >= -1 && Math.max(...ua) < 3);
  assert.ok(Math.abs(u.mean().item() - 1) < 0.03, `uniform mean ${u.mean().item()}`);
  const n = kn.randn([20000], { mean: 2, std: 3 });
  assert.ok(Math.abs(n.mean().item() - 2) < 0.08, `normal mean ${n.mean().item()}`);
  assert.ok(Math.abs(Math.sqrt(n.var().item()) - 3) < 0.08, `normal std ${Math.sqrt(n.var().item())}`);
  const r = kn.randint([20000], -3, 4).toArray();
  const counts = new Map<number, number>();
  for (const v of r) counts.set(v, (counts.get(v) ?? 0) + 1);
  assert.equal(
    [...counts.keys()].sort((x, y) => x - y),
    [-3, -2, -1, 0, 1, 2, 3],
  );
  for (const c of counts.values()) assert.ok(Math.abs(c / 20000 - 1 / 7) < 0.015);
});

test.run();
