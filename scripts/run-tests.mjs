#!/usr/bin/env node
// Runs every test/*.test.ts with `uvu -r tsx test <file>` in its own process, echoes the output, and ends
// with one line `N passed, N failed` (summed over suites). Exits non-zero on any failure. Words after the script
// pick suites by file name.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const uvu = join(root, 'node_modules', 'uvu', 'bin.js');
// `npm test -- conformance gradcheck`: only the suites whose file names contain one of the words
const only = process.argv.slice(2);
const all = readdirSync(join(root, 'test')).filter((f) => f.endsWith('.test.ts'));
for (const word of only) {
  if (!all.some((f) => f.includes(word))) {
    console.error(`run-tests: no test/*.test.ts file name contains "${word}"`);
    process.exit(1);
  }
}
const files = all.filter((f) => only.length === 0 || only.some((word) => f.includes(word))).sort();

let passed = 0,
  failed = 0,
  skipped = 0;
for (const f of files) {
  const pattern = '^' + f.replace(/[.]/g, '\\.') + '$';
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['--expose-gc', uvu, '-r', 'tsx', 'test', pattern], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1', NODE_DISABLE_COLORS: '1', FORCE_COLOR: '0' },
    maxBuffer: 64 << 20,
  });
  const out = (r.stdout ?? '') + (r.stderr ?? '');
  process.stdout.write(`\n=== ${f} (${((Date.now() - t0) / 1000).toFixed(1)}s)\n${out}`);
  const num = (k) => Number((out.match(new RegExp(`${k}:\\s+(\\d+)`)) ?? [])[1] ?? NaN);
  const total = num('Total'),
    ok = num('Passed'),
    skip = num('Skipped') || 0;
  if (Number.isNaN(total) || Number.isNaN(ok)) {
    failed += 1; // crashed before uvu could summarise
    process.stdout.write(`!!! ${f} did not report a summary (exit ${r.status}, signal ${r.signal ?? 'none'})\n`);
    continue;
  }
  passed += ok;
  skipped += skip;
  failed += total - ok - skip;
  if (r.status !== 0 && total - ok - skip === 0) {
    failed += 1;
    process.stdout.write(`!!! ${f} exited with ${r.status} although every test passed\n`);
  }
}
console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 || files.length === 0 ? 1 : 0);
