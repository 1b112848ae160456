// Installing kiln: where the native binaries are found (env, source build, prebuild), the install hook's choice
// between a prebuilt binary and a source build, the optional CUDA library's error reporting, the build script's
// arguments, and what `npm pack` ships. (.ci/run installs the packed tarball into a fresh package with no
// compiler on PATH and runs a smoke test; it also builds kiln.node with node-gyp and runs the cpu suites on it.)
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { addonPath, loadAddon } from '../src/backends/native/binding.js';
import { libc, locate, packageRoot, prebuildName } from '../src/backends/native/locate.js';
import { renderBindingGyp } from '../scripts/gen-tables.js';
import { tempDir } from './helpers.js';

const root = packageRoot();
const withEnv = <T>(vars: Record<string, string | undefined>, fn: () => T): T => {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(vars)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    return fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
};
const tmp = (): string => tempDir('kiln-install-');

test('prebuild names follow platform-arch/name.libc.node', () => {
  assert.is(libc(), process.platform === 'linux' ? 'glibc' : '', 'this machine runs glibc');
  assert.equal(prebuildName('kiln'), { dir: `${process.platform}-${process.arch}`, file: 'kiln.glibc.node' });
  assert.equal(prebuildName('kiln_mpi').file, 'kiln_mpi.glibc.node');
});

test('locate: an explicit path, then a source build, then the prebuilt binary', () => {
  const dir = tmp();
  try {
    const clear = { KILN_ADDON_PATH: undefined, KILN_MPI_ADDON_PATH: undefined, KILN_CUDA_ADDON_PATH: undefined };
    withEnv(clear, () => {
      assert.equal(locate('kiln', dir).from, 'none');
      assert.is(locate('kiln', dir).tried.length, 2, 'looked in build/Release and prebuilds');
      const p = prebuildName('kiln');
      mkdirSync(join(dir, 'prebuilds', p.dir), { recursive: true });
      writeFileSync(join(dir, 'prebuilds', p.dir, p.file), 'x');
      const pre = locate('kiln', dir);
      assert.is(pre.from, 'prebuild');
      assert.is(pre.path, join(dir, 'prebuilds', p.dir, p.file));
      mkdirSync(join(dir, 'build', 'Release'), { recursive: true });
      writeFileSync(join(dir, 'build', 'Release', 'kiln.node'), 'x');
      assert.is(locate('kiln', dir).from, 'source build', 'a source build wins over the prebuild');
      // the CUDA library is never prebuilt: only a source build or an explicit path
      assert.is(locate('kiln_cuda', dir).from, 'none');
      assert.is(locate('kiln_cuda', dir).tried.length, 1);
    });
    withEnv({ KILN_ADDON_PATH: '/some/where/kiln.node' }, () => {
      assert.equal(locate('kiln', dir), {
        path: '/some/where/kiln.node',
        from: 'env',
        tried: ['/some/where/kiln.node'],
      });
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the addon in use is the one locate found, and kn.info says where it came from', async () => {
  assert.ok(loadAddon().addon, loadAddon().reason);
  const kn = await import('../src/index.js');
  const cpu = kn.info().cpu;
  assert.ok(cpu);
  assert.is(cpu.addon.path, addonPath());
  assert.ok(['env', 'source build', 'prebuild'].includes(cpu.addon.from));
});

/** Runs kn.info() in a child process with `env` added; returns its cuda section and a cuda tensor's error. */
function cudaInChild(env: Record<string, string>): {
  compiled: boolean;
  reason: string;
  error: string;
  matmul: string;
  cublasLt: string;
  cublasLtReason: string;
  wgmma: boolean;
  wgmmaReason: string;
  required: string;
} {
  const dir = tmp();
  const script = join(dir, 'cuda.mts');
  writeFileSync(
    script,
    `import * as kn from ${JSON.stringify(join(root, 'src', 'index.ts'))};
const c = kn.info().cuda!;
let error = '';
try { kn.tensor([1, 2], [2], { backend: 'cuda' }); } catch (e) { error = (e as Error).name + ': ' + (e as Error).message; }
let required = '';
try { kn.backends(); } catch (e) { required = (e as Error).name + ': ' + (e as Error).message; }
console.log(JSON.stringify({ compiled: c.compiled, reason: c.reason, error, matmul: c.matmul, cublasLt: c.cublasLt, cublasLtReason: c.cublasLtReason, wgmma: c.wgmma, wgmmaReason: c.wgmmaReason, required }));
process.exit(0);
`,
  );
  try {
    const r = spawnSync(process.execPath, ['--import', 'tsx', script], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, ...env },
    });
    assert.is(r.status, 0, r.stderr);
    const line = r.stdout.trim().split('\n').pop() ?? '';
    return JSON.parse(line) as ReturnType<typeof cudaInChild>;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('cuda: a missing or foreign kiln_cuda.so is reported, never a crash', () => {
  const missing = cudaInChild({ KILN_CUDA_ADDON_PATH: join(tmpdir(), 'no-such-kiln_cuda.so') });
  assert.is(missing.compiled, false);
  assert.match(missing.reason, /kiln_cuda\.so could not be opened/);
  assert.match(missing.reason, /npx kiln build --cuda/);
  assert.match(missing.error, /^BackendError: .*cuda/);
  // a real shared library that is not kiln's CUDA library (kiln.node itself has no kiln_cuda_plugin symbol)
  const foreign = cudaInChild({ KILN_CUDA_ADDON_PATH: addonPath() });
  assert.is(foreign.compiled, false);
  assert.match(foreign.reason, /is not kiln's CUDA library \(no kiln_cuda_plugin symbol\)/);
});

test('cuda: without the library (or without a GPU) the backend says why', () => {
  const built = locate('kiln_cuda');
  const info = cudaInChild({});
  if (built.path) {
    // built here (CI builds it with --cuda): it loads, and with no GPU it says so
    assert.is(info.compiled, true);
    if (info.reason === '') {
      assert.is(info.error, '', 'a GPU: a cuda tensor is made'); // nothing is missing
      return;
    }
    assert.match(info.reason, /CUDA|cuda/);
  } else {
    assert.is(info.compiled, false);
    assert.match(info.reason, /installed without its CUDA library \(kiln_cuda\.so\).*npx kiln build --cuda/);
  }
  assert.match(info.error, /^BackendError: backend 'cuda' is not available/);
});

test('cuda: float32 GEMM is exact by default, TF32 only on request; KILN_REQUIRE_CUDA fails loudly', () => {
  if (!locate('kiln_cuda').path) return; // the library is not built here (CI builds it with --cuda)
  const plain = cudaInChild({});
  if (!plain.compiled) return; // a stale library from an older build: the test above checks that reason
  assert.is(plain.matmul, 'fp32');
  assert.is(cudaInChild({ KILN_CUDA_GEMM: 'tf32' }).matmul, 'tf32');
  assert.is(cudaInChild({ KILN_CUDA_GEMM: 'simt' }).matmul, 'fp32');
  if (plain.reason === '') return; // a GPU: nothing is missing
  assert.is(plain.required, '', 'without the variable a missing backend is only left out');
  const req = cudaInChild({ KILN_REQUIRE_CUDA: '1' });
  assert.match(req.required, /^BackendError: KILN_REQUIRE_CUDA=1 but backend 'cuda' is not available: /);
});

test('cuda: cuBLASLt only when KILN_CUDA_CUBLASLT asks, and a clear reason when it cannot be used', () => {
  if (!locate('kiln_cuda').path) return; // the library is not built here (CI builds it with --cuda)
  const plain = cudaInChild({});
  if (!plain.compiled) return; // a stale library from an older build
  assert.is(plain.cublasLt, '', "not asked for: kiln's own kernels");
  assert.is(plain.cublasLtReason, '');
  assert.is(cudaInChild({ KILN_CUDA_CUBLASLT: '0' }).cublasLtReason, '');
  const none = cudaInChild({ KILN_CUDA_CUBLASLT: join(tmpdir(), 'no-such-libcublasLt.so') });
  assert.is(none.cublasLt, '');
  assert.match(none.cublasLtReason, /^KILN_CUDA_CUBLASLT=.*no-such-libcublasLt\.so but cuBLASLt could not be opened: /);
  // a real shared library that is not cuBLASLt
  const foreign = cudaInChild({ KILN_CUDA_CUBLASLT: addonPath() });
  assert.is(foreign.cublasLt, '');
  assert.match(foreign.cublasLtReason, /kiln\.node is not cuBLASLt \(it lacks cublasLtMatmul/);
  // by name: the versions kiln knows, from the library path (found where CUDA's or PyTorch's libraries are)
  const named = cudaInChild({ KILN_CUDA_CUBLASLT: '1' });
  if (named.cublasLt) assert.match(named.cublasLt, /^cuBLASLt 1\d\.\d+\.\d+ \(libcublasLt\.so\.1[123]\)$/);
  else assert.match(named.cublasLtReason, /libcublasLt\.so\.13.*libcublasLt\.so\.12.*libcublasLt\.so\.11/);
});

test('cuda: the wgmma kernel only when KILN_CUDA_WGMMA=1 asks, and a clear reason when it cannot run', () => {
  if (!locate('kiln_cuda').path) return; // the library is not built here (CI builds it with --cuda)
  const plain = cudaInChild({});
  if (!plain.compiled) return; // a stale library from an older build
  assert.is(plain.wgmma, false, 'not asked for');
  assert.is(plain.wgmmaReason, '');
  assert.is(cudaInChild({ KILN_CUDA_WGMMA: '0' }).wgmmaReason, '');
  const asked = cudaInChild({ KILN_CUDA_WGMMA: '1' });
  if (asked.wgmma) return; // a Hopper GPU: it runs (bench/gpu/check.sh checks its products)
  if (plain.reason !== '') {
    assert.match(asked.wgmmaReason, /^KILN_CUDA_WGMMA=1 but there is no usable CUDA device$/);
  } else {
    // a GPU of another generation, or a library built without the sm_90a kernel
    assert.match(asked.wgmmaReason, /^KILN_CUDA_WGMMA=1 but (the device has compute capability|this kiln_cuda\.so)/);
  }
});

const buildScript = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });

test('kiln build: bad options are refused with the usage, before anything is built', () => {
  const bad = buildScript(['--bogus']);
  assert.is(bad.status, 2);
  assert.match(bad.stderr, /unknown or malformed option '--bogus'/);
  assert.match(bad.stderr, /usage: kiln build/);
  const mode = buildScript(['--cuda=maybe']);
  assert.is(mode.status, 2);
  assert.match(mode.stderr, /--cuda must be on, auto or off, got 'maybe'/);
  const env = buildScript([], { KILN_MPI: 'sometimes' });
  assert.is(env.status, 2);
  assert.match(env.stderr, /KILN_MPI must be on, auto or off/);
  const gyp = buildScript(['--gyp', '--cuda']);
  assert.is(gyp.status, 1);
  assert.match(gyp.stderr, /--cuda and --mpi are built with CMake only/);
  const help = buildScript(['--help']);
  assert.is(help.status, 0);
  assert.match(help.stdout, /kiln_cuda\.so +with --cuda/);
  // the CLI runs the same script
  const cli = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'build', '--arch=sparc'], {
    cwd: root,
    encoding: 'utf8',
  });
  assert.is(cli.status, 2);
  assert.match(cli.stderr, /unknown or malformed option '--arch=sparc'/);
});

/** A fake installed package: install.mjs, a stand-in build-native.mjs that records the call, and `prebuilt`. */
function fakePackage(prebuilt: 'working' | 'broken' | 'none'): {
  dir: string;
  run: () => { out: string; built: boolean };
} {
  const dir = tmp();
  mkdirSync(join(dir, 'scripts'));
  copyFileSync(join(root, 'scripts', 'install.mjs'), join(dir, 'scripts', 'install.mjs'));
  writeFileSync(
    join(dir, 'scripts', 'build-native.mjs'),
    "import { writeFileSync } from 'node:fs';\nexport function build(a) { writeFileSync(new URL('../built', import.meta.url), JSON.stringify(a)); }\n",
  );
  const p = prebuildName('kiln');
  mkdirSync(join(dir, 'prebuilds', p.dir), { recursive: true });
  if (prebuilt === 'working') copyFileSync(addonPath(), join(dir, 'prebuilds', p.dir, p.file));
  if (prebuilt === 'broken') writeFileSync(join(dir, 'prebuilds', p.dir, p.file), 'not an ELF file');
  return {
    dir,
    run: () => {
      const r = spawnSync(process.execPath, [join(dir, 'scripts', 'install.mjs')], { encoding: 'utf8' });
      assert.is(r.status, 0, r.stderr);
      const marker = join(dir, 'built');
      const built = existsSync(marker) && (JSON.parse(readFileSync(marker, 'utf8')) as unknown[]).length === 0;
      return { out: r.stdout, built };
    },
  };
}

test('install hook: a prebuilt binary that loads means no build; otherwise it builds the cpu addon', () => {
  const ok = fakePackage('working');
  const broken = fakePackage('broken');
  const none = fakePackage('none');
  try {
    const a = ok.run();
    assert.is(a.built, false, 'nothing built when the prebuild loads');
    assert.is(a.out, '');
    const b = broken.run();
    assert.is(b.built, true, 'a prebuild that does not load falls back to a source build (cpu only)');
    assert.match(b.out, /the prebuilt binary does not load here/);
    const c = none.run();
    assert.is(c.built, true);
    assert.match(c.out, /no prebuilt binary for/);
  } finally {
    for (const f of [ok, broken, none]) rmSync(f.dir, { recursive: true, force: true });
  }
});

test('binding.gyp builds the same sources as CMake, with exceptions on and C++17', () => {
  const gyp = readFileSync(join(root, 'binding.gyp'), 'utf8');
  assert.is(gyp, renderBindingGyp(), 'binding.gyp is generated (npm run gen)');
  const target = (JSON.parse(gyp.slice(gyp.indexOf('{'))) as { targets: Record<string, string[]>[] }).targets[0]!;
  const list = (k: string): string[] => target[k] ?? [];
  const cmake = readFileSync(join(root, 'CMakeLists.txt'), 'utf8');
  for (const s of list('sources').filter((f) => !f.startsWith('native/cpu/') || /threadpool|registry/.test(f)))
    assert.ok(cmake.includes(s), `${s} is in CMakeLists.txt too`);
  assert.ok(list('cflags_cc').includes('-std=c++17'));
  assert.ok(list('cflags_cc!').includes('-fno-exceptions'), 'exceptions stay on (the addon catches bad_alloc)');
  assert.ok(list('defines').includes('NAPI_VERSION=8'));
});

test('npm pack ships the prebuilds, the sources for a source build, and no tests or build trees', () => {
  const r = spawnSync('npm', ['pack', '--dry-run', '--ignore-scripts', '--json'], { cwd: root, encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  const files = (JSON.parse(r.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
  for (const f of [
    'package.json',
    'binding.gyp',
    'CMakeLists.txt',
    'scripts/install.mjs',
    'scripts/build-native.mjs',
    'native/cpu/matmul.cc',
    'native/cuda/plugin_loader.cc',
    'kernels/cuda/matmul.cu',
    'kernels/wgsl/matmul.wgsl',
  ])
    assert.ok(files.includes(f), `${f} is packed`);
  for (const f of files) assert.not.match(f, /^(test|build|bench|build-coverage|build-sanitize|node_modules)\//);
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    files: string[];
    scripts: Record<string, string>;
  };
  assert.ok(pkg.files.includes('prebuilds'));
  assert.is(pkg.scripts.prepack, 'node scripts/prebuild.mjs');
  assert.is(pkg.scripts.install, 'node scripts/install.mjs');
});

test.run();
