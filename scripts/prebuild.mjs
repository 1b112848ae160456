#!/usr/bin/env node
// `npm pack` / `npm publish` (prepack): puts the prebuilt binaries into prebuilds/ so that installing the package
// needs no compiler and runs no script.
//   linux-x64   kiln.glibc.node      build/Release/kiln.node from the CMake build, the binary the test suite ran
//                                    (one binary for every x86-64 CPU: it picks AVX-512, AVX2 or scalar kernels
//                                    at run time)
//               kiln_mpi.glibc.node  the MPI collectives, linked against Open MPI (libmpi.so.40) when built
//   linux-arm64 kiln.glibc.node      cross-compiled by node-gyp with aarch64-linux-gnu-g++ (portable kernels)
// Options: --require=x64,arm64 (or KILN_PREBUILD_REQUIRE) fails when one of those cannot be built (CI uses it); a platform whose
// toolchain is missing is skipped with a message, and installs there build from source.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const requireArg = process.argv.find((a) => a.startsWith('--require='))?.slice('--require='.length);
const required = new Set((requireArg ?? process.env.KILN_PREBUILD_REQUIRE ?? '').split(',').filter(Boolean));
const have = (cmd) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
const node = (args) => spawnSync(process.execPath, args, { stdio: 'inherit', cwd: root }).status === 0;

function skip(arch, why) {
  if (required.has(arch)) {
    console.error(`kiln prebuild: linux-${arch} is required but ${why}`);
    process.exit(1);
  }
  console.log(`kiln prebuild: skipping linux-${arch}: ${why} (installs there build from source)`);
}

/** The ELF machine of a binary (x86-64 62, aarch64 183), read from its header. */
function elfMachine(path) {
  const b = readFileSync(path);
  return b.readUInt16LE(18);
}

rmSync(join(root, 'prebuilds'), { recursive: true, force: true });
if (process.platform !== 'linux') {
  console.log(`kiln prebuild: prebuilt binaries are made on linux only (this is ${process.platform})`);
  process.exit(0);
}

const rel = join(root, 'build', 'Release');
if (process.arch !== 'x64') skip('x64', `this machine is ${process.arch}`);
else if (!node([join(root, 'scripts', 'build-native.mjs'), '--mpi=auto'])) skip('x64', 'the CMake build failed');
else {
  const dir = join(root, 'prebuilds', 'linux-x64');
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(rel, 'kiln.node'), join(dir, 'kiln.glibc.node'));
  if (existsSync(join(rel, 'kiln_mpi.node')))
    copyFileSync(join(rel, 'kiln_mpi.node'), join(dir, 'kiln_mpi.glibc.node'));
  if (elfMachine(join(dir, 'kiln.glibc.node')) !== 62) skip('x64', 'the built binary is not x86-64');
  console.log(
    `kiln prebuild: linux-x64 ready (${existsSync(join(dir, 'kiln_mpi.glibc.node')) ? 'with' : 'without'} MPI)`,
  );
}

if (process.arch === 'arm64') {
  skip('arm64', 'native arm64 prebuilds come from the x64 path above on an arm64 machine; not set up');
} else if (!have('aarch64-linux-gnu-g++')) {
  skip('arm64', 'the cross compiler is missing (apt-get install -y g++-aarch64-linux-gnu)');
} else {
  const dir = join(root, 'prebuilds', 'linux-arm64');
  if (!node([join(root, 'scripts', 'build-native.mjs'), '--arch=arm64', `--out=${dir}`]))
    skip('arm64', 'the cross build failed');
  else {
    copyFileSync(join(dir, 'kiln.node'), join(dir, 'kiln.glibc.node'));
    rmSync(join(dir, 'kiln.node'));
    if (elfMachine(join(dir, 'kiln.glibc.node')) !== 183) skip('arm64', 'the built binary is not aarch64');
    else console.log('kiln prebuild: linux-arm64 ready');
  }
}
