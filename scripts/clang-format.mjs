#!/usr/bin/env node
// clang-format over every C++/CUDA source (native/, kernels/cuda/, test/native/) with the repository's
// .clang-format. `--check` fails on any file that is not formatted (npm run lint); otherwise it formats in place
// (npm run format). Generated headers are formatted by their generator's layout and left out.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const GENERATED = new Set(['native/include/kiln/op_ids.h', 'native/include/kiln/tables.h']);
const walk = (d) =>
  readdirSync(d).flatMap((f) => {
    const p = join(d, f);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
const files = ['native', 'kernels/cuda', 'test/native']
  .flatMap((d) => walk(join(root, d)))
  .filter((p) => /\.(cc|h|cu|cuh|inl)$/.test(p) && !GENERATED.has(relative(root, p)));

if (spawnSync('clang-format', ['--version'], { stdio: 'ignore' }).status !== 0) {
  console.error('clang-format was not found (Debian/Ubuntu: apt-get install -y clang-format)');
  process.exit(1);
}
const check = process.argv.includes('--check');
const args = check ? ['--dry-run', '--Werror', ...files] : ['-i', ...files];
const r = spawnSync('clang-format', ['--style=file', ...args], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  if (check) console.error('C++/CUDA files are not formatted: run `npm run format`');
  process.exit(r.status ?? 1);
}
if (check) console.log(`clang-format: ${files.length} files formatted`);
