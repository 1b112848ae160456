#!/usr/bin/env node
// Line coverage of the addon's own sources (native/**) from a --coverage build: runs gcov in JSON mode on every
// object that has run data and merges lines across translation units (a header such as gemm.inl is compiled into
// several; a line counts as covered when any of them ran it). Prints "<pct>% <covered>/<total>".
//   node scripts/gcov-summary.mjs BUILD_DIR
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

const build = resolve(process.argv[2] ?? 'build-coverage');
const walk = (d) =>
  readdirSync(d).flatMap((f) => (statSync(join(d, f)).isDirectory() ? walk(join(d, f)) : [join(d, f)]));
const lines = new Map(); // "file:line" -> covered
for (const gcda of walk(build).filter((f) => f.endsWith('.gcda'))) {
  const out = execFileSync('gcov', ['--json-format', '--stdout', '-o', dirname(gcda), basename(gcda, '.gcda') + '.o'], {
    cwd: build,
    encoding: 'utf8',
    maxBuffer: 256 << 20,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  for (const doc of out.split('\n').filter((l) => l.startsWith('{'))) {
    for (const f of JSON.parse(doc).files) {
      if (!/\/native\//.test(f.file) && !f.file.startsWith('native/')) continue;
      for (const l of f.lines) {
        const key = `${f.file}:${l.line_number}`;
        lines.set(key, (lines.get(key) ?? false) || l.count > 0);
      }
    }
  }
}
const total = lines.size;
const covered = [...lines.values()].filter(Boolean).length;
console.log(total ? `${((100 * covered) / total).toFixed(2)}% ${covered}/${total}` : 'n/a n/a');
