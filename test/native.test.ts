// The native build: the generated op table, each ISA's kernels against the js reference, and CUDA reporting.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as kn from '../src/index.js';
import { loadAddon } from '../src/backends/native/binding.js';
import { renderOpIds } from '../scripts/gen-op-ids.js';
import { allclose, onBackend, rng, randomArray } from './helpers.js';

test('op_ids.h is generated from the current op table', () => {
  const file = readFileSync(new URL('../native/include/kiln/op_ids.h', import.meta.url), 'utf8');
  assert.ok(file === renderOpIds(), 'native/include/kiln/op_ids.h is stale: run npm run gen');
});

test('the addon loads and agrees with the op table', () => {
  const { addon, reason } = loadAddon();
  assert.ok(addon, reason);
  const info = addon!.info();
  assert.is(info.opCount, kn.OP_TABLE.length);
  for (const o of kn.OP_TABLE) assert.ok(addon!.supports(kn.OP_TABLE.indexOf(o)), `cpu has no kernel for ${o.name}`);
  assert.ok(info.supportedIsas.includes('scalar'));
  assert.ok(info.threads >= 1);
});

test('CUDA: the addon reports a clear reason when there is no device', () => {
  const { addon } = loadAddon();
  const c = addon!.info().cuda;
  if (c.available) return; // a real GPU: the CUDA suite covers it
  assert.match(c.reason, /no CUDA device|without CUDA|no CUDA kernels/);
  assert.not.ok(kn.backends().includes('cuda'));
});

// Every ISA path on odd sizes and non-contiguous inputs, forced per call.
const { addon } = loadAddon();
const isas = addon ? addon.info().supportedIsas : [];
for (const isa of isas) {
  test(`ISA ${isa}: matmul, elementwise, reductions, conv match js on odd sizes`, () => {
    const prev = addon!.info().isa;
    addon!.setIsa(isa);
    try {
      for (const n of [1, 7, 31, 33, 257]) {
        const r = rng(n);
        const a = randomArray(r, n * 9), bb = randomArray(r, 9 * (n % 13 + 1)), v = randomArray(r, n * 3, -10, 10);
        const calc = (b: kn.BackendName): Float64Array[] => onBackend(b, () => kn.tidy(() => {
          const A = kn.tensor(a, [n, 9]), B = kn.tensor(bb, [9, n % 13 + 1]), V = kn.tensor(v, [3, n]).transpose();
          return [
            A.matmul(B).toFloat64Array(),
            B.transpose().matmul(A.transpose()).toFloat64Array(),
            V.exp().add(V.tanh()).mul(V.sigmoid()).add(V.gelu()).toFloat64Array(),
            V.abs().add(0.1).log().toFloat64Array(),
            V.sum(0).toFloat64Array(),
            V.softmax(0).toFloat64Array(),
            V.max(1).toFloat64Array(),
            kn.conv2d(A.reshape([1, 1, n, 9]), kn.tensor(bb.slice(0, 9), [1, 1, 3, 3]), null, { padding: 1 }).toFloat64Array(),
          ];
        }));
        const ref = calc('js'), got = calc('cpu');
        ref.forEach((rv, i) => {
          const res = allclose(got[i]!, rv.map((x) => Math.fround(x)), 1e-4, 1e-4);
          assert.ok(res.ok, `${isa} n=${n} output ${i}: ${res.message}`);
        });
      }
    } finally {
      addon!.setIsa(prev);
    }
  });
}

test('KILN_CPU_ISA is honoured and an impossible one is reported, not crashed on', () => {
  const script = "import('./src/backends/native/binding.ts').then(m => { const r = m.loadAddon(); console.log(JSON.stringify({ ok: !!r.addon, isa: r.addon?.info().isa, reason: r.reason })); })";
  const run = (isa: string): { ok: boolean; isa?: string; reason: string } => JSON.parse(execFileSync(process.execPath,
    ['--import', 'tsx', '-e', script], { env: { ...process.env, KILN_CPU_ISA: isa }, encoding: 'utf8' }).trim().split('\n').pop()!);
  const s = run('scalar');
  assert.ok(s.ok && s.isa === 'scalar');
  const bad = run('avx9000');
  assert.not.ok(bad.ok);
  assert.match(bad.reason, /not one of avx512, avx2, scalar/);
});

test.run();
