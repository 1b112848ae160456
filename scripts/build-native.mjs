#!/usr/bin/env node
// Builds kiln's native binaries from source (`kiln build`, `npm run build:native`, and the install script when no
// prebuilt binary matches this machine). Prints what is missing instead of a wall of build-tool output.
//
//   node scripts/build-native.mjs [--cuda[=on|auto|off]] [--mpi[=on|auto|off]] [--gyp] [--arch=x64|arm64]
//                                 [--out=DIR] [--force]
//
// The cpu addon kiln.node is always built. --cuda adds the CUDA library kiln_cuda.so (nvcc), --mpi the MPI
// collectives kiln_mpi.node; both need CMake. Without CMake (or with --gyp, or --arch naming another CPU) the cpu
// addon is built by node-gyp from binding.gyp instead: node-gyp ships with npm, and it is pointed at the headers
// of the running Node so nothing is downloaded. KILN_CUDA / KILN_MPI (ON, AUTO, OFF, 1, 0) are read when the
// matching flag is absent.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const have = (cmd) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
const die = (msg, code = 1) => {
  console.error(`kiln build: ${msg}`);
  process.exit(code);
};

const USAGE = `usage: kiln build [--cuda[=on|auto|off]] [--mpi[=on|auto|off]] [--gyp] [--arch=x64|arm64] [--out=DIR] [--force]
  builds kiln's native code from source into build/Release (or --out):
    kiln.node     the cpu backend (always; CMake, or node-gyp where CMake is absent or with --gyp)
    kiln_cuda.so  with --cuda: the CUDA kernels (needs nvcc and CMake); --cuda=auto builds it when nvcc is found
    kiln_mpi.node with --mpi: kn.distributed's MPI collectives (needs an MPI, e.g. apt-get install -y libopenmpi-dev)
  --arch=arm64 cross-compiles the cpu addon with aarch64-linux-gnu-g++ (Debian: apt-get install -y g++-aarch64-linux-gnu)
`;

/** Parses argv into { cuda, mpi, gyp, arch, out, force }. Exported for the CLI's `kiln build`. */
export function parseBuildArgs(argv) {
  const o = { cuda: null, mpi: null, gyp: false, arch: process.arch, out: null, force: false, help: false };
  const mode = (flag, v) => {
    const norm = v === undefined ? 'ON' : v === '0' ? 'OFF' : v === '1' ? 'ON' : v.toUpperCase();
    if (!['AUTO', 'ON', 'OFF'].includes(norm)) die(`${flag} must be on, auto or off, got '${v}'\n\n${USAGE}`, 2);
    return norm;
  };
  for (const a of argv) {
    const [k, v] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    if (k === '--cuda') o.cuda = mode(k, v);
    else if (k === '--mpi') o.mpi = mode(k, v);
    else if (k === '--gyp' && v === undefined) o.gyp = true;
    else if (k === '--force' && v === undefined) o.force = true;
    else if ((k === '-h' || k === '--help') && v === undefined) o.help = true;
    else if (k === '--arch' && (v === 'x64' || v === 'arm64')) o.arch = v;
    else if (k === '--out' && v) o.out = resolve(v);
    else die(`unknown or malformed option '${a}'\n\n${USAGE}`, 2);
  }
  for (const k of ['cuda', 'mpi']) {
    if (o[k] !== null) continue;
    const v = process.env[`KILN_${k.toUpperCase()}`];
    o[k] = v === undefined || v === '' ? 'OFF' : mode(`KILN_${k.toUpperCase()}`, v);
  }
  return o;
}

/** node-gyp: the copy npm runs install scripts with, else the one bundled with this Node's npm. */
function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(
      dirname(process.execPath),
      '..',
      'lib',
      'node_modules',
      'npm',
      'node_modules',
      'node-gyp',
      'bin',
      'node-gyp.js',
    ),
    join(dirname(process.execPath), 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not installed as a package: the npm-bundled copies above
  }
  return candidates.find((c) => c && existsSync(c)) ?? null;
}

/** The running Node's headers (include/node/common.gypi next to the binary), so node-gyp downloads nothing. */
function nodeDir() {
  const dir = resolve(dirname(process.execPath), '..');
  return existsSync(join(dir, 'include', 'node', 'common.gypi')) ? dir : null;
}

function buildGyp(o, out) {
  const gyp = nodeGyp();
  if (!gyp) die('node-gyp was not found (it ships with npm); install npm, or CMake >= 3.18 and a C++17 compiler');
  const nodedir = nodeDir();
  if (!nodedir)
    die(
      `this Node (${process.execPath}) has no headers next to it (include/node/common.gypi), and kiln does not ` +
        'download them: install CMake >= 3.18 (apt-get install -y cmake), or a Node distribution that ships them',
    );
  const cross = o.arch !== process.arch;
  const env = { ...process.env };
  if (cross) {
    if (o.arch !== 'arm64' || process.arch !== 'x64')
      die(`cross-compiling from ${process.arch} to ${o.arch} is not set up`);
    if (!have('aarch64-linux-gnu-g++'))
      die('--arch=arm64 needs the aarch64 cross compiler: apt-get install -y g++-aarch64-linux-gnu');
    Object.assign(env, { CC: 'aarch64-linux-gnu-gcc', CXX: 'aarch64-linux-gnu-g++', LINK: 'aarch64-linux-gnu-g++' });
    Object.assign(env, { AR: 'aarch64-linux-gnu-ar', CC_host: 'gcc', CXX_host: 'g++' });
  } else if (!have('c++') && !have('g++')) {
    die('no C++ compiler was found: apt-get install -y g++ (and make), then run this again');
  }
  // node-gyp always builds into <dir>/build, which CMake uses here: build in a staging directory that links the
  // sources, then copy the addon out
  const stage = mkdtempSync(join(tmpdir(), 'kiln-gyp-'));
  try {
    symlinkSync(join(root, 'native'), join(stage, 'native'));
    copyFileSync(join(root, 'binding.gyp'), join(stage, 'binding.gyp'));
    const jobs = ['--jobs', 'max'];
    const r = spawnSync(
      process.execPath,
      [gyp, 'rebuild', `--directory=${stage}`, `--nodedir=${nodedir}`, `--arch=${o.arch}`, ...jobs],
      { stdio: 'inherit', env },
    );
    const built = join(stage, 'build', 'Release', 'kiln.node');
    if (r.status !== 0 || !existsSync(built))
      die('node-gyp failed to build kiln.node (see the compiler output above)', r.status || 1);
    mkdirSync(out, { recursive: true });
    copyFileSync(built, join(out, 'kiln.node'));
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
  console.log(`kiln build: built ${join(out, 'kiln.node')} with node-gyp (${o.arch})`);
}

function buildCmake(o) {
  const require = createRequire(import.meta.url);
  const cli = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
  // configure every time, then build: `cmake-js compile` alone reuses the first configuration, so a changed
  // --cuda / --mpi (or an MPI or CUDA compiler installed since) would be ignored
  const defs = [`--CDKILN_CUDA=${o.cuda}`, `--CDKILN_MPI=${o.mpi}`];
  const run = (step) =>
    spawnSync(process.execPath, [cli, step, '--directory', root, ...defs], { stdio: 'inherit', cwd: root });
  let r = o.force ? run('rebuild') : run('configure');
  if (!o.force && r.status === 0) r = run('build');
  const rel = join(root, 'build', 'Release');
  if (r.status !== 0 || !existsSync(join(rel, 'kiln.node')))
    die('building the native code failed (see the compiler output above)', r.status || 1);
  const made = ['kiln.node'];
  if (o.cuda !== 'OFF' && existsSync(join(rel, 'kiln_cuda.so'))) made.push('kiln_cuda.so (CUDA)');
  if (o.mpi !== 'OFF' && existsSync(join(rel, 'kiln_mpi.node'))) made.push('kiln_mpi.node (MPI)');
  if (o.out) {
    mkdirSync(o.out, { recursive: true });
    for (const f of ['kiln.node', 'kiln_cuda.so', 'kiln_mpi.node'])
      if (existsSync(join(rel, f))) copyFileSync(join(rel, f), join(o.out, f));
  }
  console.log(`kiln build: built ${made.join(', ')} in ${o.out ?? rel}`);
  if (o.mpi === 'AUTO' && !made.some((m) => m.startsWith('kiln_mpi')))
    console.log(
      'kiln build: no MPI found, so kn.distributed runs one process (apt-get install -y libopenmpi-dev openmpi-bin)',
    );
  if (o.cuda === 'AUTO' && !made.some((m) => m.startsWith('kiln_cuda')))
    console.log('kiln build: no CUDA compiler found, so the cuda backend is unavailable');
}

export function build(argv) {
  const o = parseBuildArgs(argv);
  if (o.help) {
    process.stdout.write(USAGE);
    return;
  }
  const hasCmake = have('cmake') && (have('c++') || have('g++'));
  const gyp = o.gyp || o.arch !== process.arch || !hasCmake;
  if (gyp && (o.cuda === 'ON' || o.mpi === 'ON'))
    die(
      hasCmake
        ? '--cuda and --mpi are built with CMake only (drop --gyp / --arch)'
        : "'cmake' was not found: --cuda and --mpi need CMake >= 3.18 (apt-get install -y cmake g++)",
    );
  if (gyp) buildGyp(o, o.out ?? join(root, 'build', 'Release'));
  else buildCmake(o);
}

if (resolve(process.argv[1] ?? '') === fileURLToPath(import.meta.url)) build(process.argv.slice(2));
