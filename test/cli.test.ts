import { spawnSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const cli = (...args: string[]): { code: number | null; out: string; err: string } => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

test('kiln info lists every backend and says why a missing one is missing', () => {
  const r = cli('info');
  assert.is(r.code, 0, r.err);
  assert.match(r.out, /^kiln \d+\.\d+\.\d+ on Node v\d+/);
  assert.match(r.out, /cpu\s+available/);
  assert.match(r.out, /js\s+available/);
  assert.match(r.out, /cuda\s+missing: .+/);
  assert.match(r.out, /webgpu\s+missing: .+/);
});

test('kiln info --json is machine readable', () => {
  const r = cli('info', '--json');
  assert.is(r.code, 0, r.err);
  const j = JSON.parse(r.out) as { backends: { name: string; available: boolean; reason: string | null }[]; cpu: { isa: string } };
  assert.ok(j.backends.some((b) => b.name === 'cpu' && b.available));
  assert.ok(['avx512', 'avx2', 'scalar'].includes(j.cpu.isa));
});

test('unknown commands and options fail with a usage message', () => {
  const r = cli('frobnicate');
  assert.is(r.code, 2);
  assert.match(r.err, /unknown command 'frobnicate'/);
  const o = cli('info', '--nope');
  assert.is(o.code, 2);
  assert.match(o.err, /^kiln: .*'--nope'/);
  assert.not.match(o.err, /    at /, 'no stack trace');
});

test('kiln bench times the kernels and prints JSON rows; bad arguments exit 2 with a message', () => {
  const r = cli('bench', 'matmul', 'mlp', '--sizes', '32,48', '--threads', '1', '--json', '--min-time-ms', '1');
  assert.is(r.code, 0, r.err);
  const rows = r.out.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(rows.map((x) => [x.bench, x.size, x.threads]), [['matmul', '32x32x32', 1], ['matmul', '48x48x48', 1], ['mlp', '784-256-10, batch 32, Adam', 1]]);
  assert.ok(rows.every((x) => x.rate > 0 && x.minMs <= x.medianMs && x.medianMs <= x.maxMs));
  assert.equal(rows.map((x) => x.unit), ['GFLOP/s', 'GFLOP/s', 'steps/s']);
  const c = cli('bench', 'conv', '--sizes', '2', '--threads', '1', '--min-time-ms', '1');
  assert.is(c.code, 0, c.err);
  assert.match(c.out, /^conv {3}cpu threads=1 {2}2x16x28x28 \* 32x16x3x3 \(fwd\+bwd\) +[\d.]+ GFLOP\/s/);
  const bad = cli('bench', 'fft');
  assert.is(bad.code, 2);
  assert.match(bad.err, /unknown benchmark 'fft'; choose from matmul, int8, conv, mlp/);
  const bad2 = cli('bench', 'matmul', '--sizes', 'x');
  assert.is(bad2.code, 2);
  assert.match(bad2.err, /--sizes takes positive integers/);
});

test.run();
