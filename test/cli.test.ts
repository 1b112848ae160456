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

test.run();
