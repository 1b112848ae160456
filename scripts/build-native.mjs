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
// configure every time, then build: `cmake-js compile` alone reuses the first configuration, so an MPI or CUDA
// compiler installed since (or a changed KILN_CUDA / KILN_MPI) would be ignored
const defs = [];
for (const k of ['KILN_CUDA', 'KILN_MPI']) {
  const v = process.env[k];
  if (v === undefined || v === '') continue;
  const norm = v === '0' ? 'OFF' : v === '1' ? 'ON' : v.toUpperCase();
  if (!['AUTO', 'ON', 'OFF'].includes(norm)) {
    console.error(`kiln: ${k} must be AUTO, ON or OFF (or 1/0), got '${v}'`);
    process.exit(1);
  }
  defs.push(`--CD${k}=${norm}`);
}
const run = (step) =>
  spawnSync(process.execPath, [cli, step, '--directory', root, ...defs], { stdio: 'inherit', cwd: root });
let r = force ? run('rebuild') : run('configure');
if (!force && r.status === 0) r = run('build');
if (r.status !== 0 || !existsSync(join(root, 'build', 'Release', 'kiln.node'))) {
  console.error('kiln: building the native addon failed (see the compiler output above).');
  process.exit(r.status || 1);
}
console.log(
  existsSync(join(root, 'build', 'Release', 'kiln_mpi.node'))
    ? 'kiln: built kiln.node and kiln_mpi.node (kn.distributed over MPI)'
    : 'kiln: built kiln.node; no MPI found, so kn.distributed runs one process ' +
        '(apt-get install -y libopenmpi-dev openmpi-bin, then npm rebuild kiln)',
);
