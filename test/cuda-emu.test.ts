// The cuda backend without a GPU: kiln_cuda.so built from its own sources (kernels/cuda/*.cu, native/cuda/*.cc) on
// the CPU emulation of the CUDA runtime and of thread blocks (test/native/cuda_emu_runtime.h, cuda_emu.h), opened
// by kiln.node as the real library is (KILN_CUDA_ADDON_PATH). The suites that run every backend (conformance,
// gradcheck, errors, nn, optim, attention, quant, recurrent, higher-order, memory, tensor) run on it as on a
// GPU: the TypeScript backend, the N-API layer, the plugin table, the runtime's caching allocator and error
// flags, every launcher's choice of kernel and grid, and every kernel, against the float64 reference.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { addonOrigin } from '../src/backends/native/binding.js';
import { buildCudaEmulation } from './emulate.js';

const root = join(import.meta.dirname, '..');
// the suites that run each case on every available backend (test/*.test.ts by file name)
const SUITES = [
  'conformance',
  'gradcheck',
  'errors',
  'nn.test',
  'optim',
  'attention',
  'quant',
  'recurrent',
  'higher-order',
  'memory',
  'tensor.test',
];

test('kiln_cuda.so on the CPU emulation is the cuda backend and passes the suites that run every backend', () => {
  const cxx = process.env.CXX ?? 'g++';
  if (spawnSync(cxx, ['--version']).status !== 0) {
    assert.is(addonOrigin().from, 'prebuild', `${cxx} is missing, yet the addon was built from source`);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'kiln-cuda-emu-'));
  try {
    const lib = buildCudaEmulation(dir, cxx);
    // webgpu's cases run in their own suites: left out here; cuda must be there (a skip would look green)
    const env = { ...process.env, KILN_CUDA_ADDON_PATH: lib, KILN_REQUIRE_CUDA: '1', KILN_WEBGPU: '0' };
    const info = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'info'], {
      cwd: root,
      env,
      encoding: 'utf8',
    });
    assert.is(info.status, 0, info.stderr);
    assert.match(info.stdout, /^cuda: CPU emulation of an sm_80 GPU, float32 GEMM fp32/m, info.stdout);
    assert.match(info.stdout, /^ +cuda +available/m, info.stdout);

    const run = spawnSync(process.execPath, ['scripts/run-tests.mjs', ...SUITES], {
      cwd: root,
      env,
      encoding: 'utf8',
      maxBuffer: 64 << 20,
      timeout: 900_000,
    });
    const out = (run.stdout ?? '') + (run.stderr ?? '');
    const failures = out
      .split('\n')
      .filter((l) => /FAIL|!!!/.test(l))
      .slice(0, 40)
      .join('\n');
    const summary = /^(\d+) passed, (\d+) failed/m.exec(out.split('\n').slice(-3).join('\n'));
    assert.ok(summary, `no summary from the suites on the emulated cuda backend:\n${out.slice(-4000)}`);
    assert.is(Number(summary![2]), 0, `suites on the emulated cuda backend:\n${failures}`);
    assert.ok(Number(summary![1]) > 1600, `only ${summary![1]} tests ran`);
    assert.is(run.status, 0, out.slice(-4000));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
