#!/usr/bin/env node
// npm's install hook. The package ships prebuilt binaries (prebuilds/<platform>-<arch>/kiln.<libc>.node): when one
// matches this machine and loads, there is nothing to do, and nothing runs with --ignore-scripts either, because
// the loader finds the same file at run time (src/backends/native/locate.ts). Only when none matches (another
// platform, musl, an older glibc than the prebuild needs) is the cpu addon built from source, with CMake or
// node-gyp. A source checkout (no prebuilds, or an existing build/) always builds. KILN_BUILD_FROM_SOURCE=1 forces
// a source build; CUDA and MPI are never built here (`kiln build --cuda --mpi`).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function prebuild() {
  const report = process.platform === 'linux' ? process.report?.getReport() : undefined;
  const libc = process.platform !== 'linux' ? '' : report?.header?.glibcVersionRuntime ? 'glibc' : 'musl';
  return join(root, 'prebuilds', `${process.platform}-${process.arch}`, libc ? `kiln.${libc}.node` : 'kiln.node');
}

/** '' when the prebuilt addon loads here, else why not. */
function tryPrebuild(path) {
  if (!existsSync(path)) return `no prebuilt binary for ${process.platform}-${process.arch} (${path})`;
  try {
    const addon = createRequire(import.meta.url)(path);
    const info = addon.info();
    return info.isaError || '';
  } catch (e) {
    return `the prebuilt binary does not load here: ${e.message}`;
  }
}

const sourceBuild = existsSync(join(root, 'build', 'Release', 'kiln.node')) || !existsSync(join(root, 'prebuilds'));
const force = /^(1|true|yes)$/i.test(process.env.KILN_BUILD_FROM_SOURCE ?? '');
const why = force ? 'KILN_BUILD_FROM_SOURCE is set' : sourceBuild ? '' : tryPrebuild(prebuild());
if (!force && !sourceBuild && why === '') process.exit(0); // the prebuilt addon works: nothing to build
if (why) console.log(`kiln: ${why}; building the cpu addon from source`);
const { build } = await import('./build-native.mjs');
build([]);
