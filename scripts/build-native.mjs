#!/usr/bin/env node
// Builds the native addon from source with cmake-js (run by `npm install`). Prints what is missing when the
// toolchain is not there, instead of a wall of CMake output.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const force = process.argv.includes('--force');
const have = (cmd) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;

for (const tool of ['cmake', 'c++']) {
  if (!have(tool)) {
    console.error(
      `kiln: '${tool}' was not found. Install a C++17 compiler and CMake >= 3.18 ` +
        `(Debian/Ubuntu: apt-get install -y cmake g++), then run 'npm rebuild kiln'.`,
    );
    process.exit(1);
  }
}
const require = createRequire(import.meta.url);
const cli = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
const args = [cli, force ? 'rebuild' : 'compile', '--directory', root];
if (process.env.KILN_CUDA === '0' || process.env.KILN_CUDA === 'OFF') args.push('--CDKILN_CUDA=OFF');
const r = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: root });
if (r.status !== 0 || !existsSync(join(root, 'build', 'Release', 'kiln.node'))) {
  console.error('kiln: building the native addon failed (see the compiler output above).');
  process.exit(r.status || 1);
}
