// The cuda backend without a GPU: kiln_cuda.so built from its own sources (kernels/cuda/*.cu, native/cuda/*.cc) on
// the CPU emulation of the CUDA runtime and of thread blocks (test/native/cuda_emu_runtime.h, cuda_emu.h), opened
// by kiln.node as the real library is (KILN_CUDA_ADDON_PATH). The suites that run every backend (conformance,
// gradcheck, errors, nn, optim, attention, quant, recurrent, higher-order, memory, tensor) run on it as on a
// GPU: the TypeScript backend, the N-API layer, the plugin table, the runtime's caching allocator and error
// flags, every launcher's choice of kernel and grid, and every kernel, against the float64 reference. Then the
// suites with GEMMs run again with cuBLASLt in use (the emulated one, test/native/cublaslt_emu.cc), float32
// products run with KILN_CUDA_GEMM=tf32 (test/emu/tf32.ts) on kiln's TF32 kernels and on cuBLASLt, a training
// step's calls into the runtime are counted (test/emu/steps.ts), and a 2-rank job trains DistributedDataParallel
// on cuda with its gradients reduced by NCCL (test/native/nccl_emu.cc).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { addonOrigin } from '../src/backends/native/binding.js';
import { buildCudaEmulation, type CudaEmulation } from './emulate.js';
import { childJson, maxWeightDiff, tempDir } from './helpers.js';

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
// of those, the ones whose GEMMs cuBLASLt takes when in use: matmul and matmulBf16 (float32 and bfloat16 C, views
// and batches), Linear and the layers over it, qlinearInt4 (its dequantized weight), and their gradients
const GEMM_SUITES = ['conformance', 'gradcheck', 'nn.test', 'quant'];

const cxx = process.env.CXX ?? 'g++';
const hasCompiler = spawnSync(cxx, ['--version']).status === 0;
const dir = tempDir('kiln-cuda-emu-');
let built: CudaEmulation | null = null;
const libs = (): CudaEmulation => {
  // the sanitizer run (scripts/sanitize.sh) builds them with ASan + UBSan, so every kernel's reads and writes are
  // checked against the tensors' own bytes (native/cuda/device.cc poisons the rest of each block)
  built ??= buildCudaEmulation(dir, cxx, (process.env.KILN_EMU_CXXFLAGS ?? '').split(/\s+/).filter(Boolean));
  return built;
};
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** `kiln info` under env: its output. */
function info(env: NodeJS.ProcessEnv): string {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'info'], {
    cwd: root,
    env,
    encoding: 'utf8',
  });
  assert.is(r.status, 0, r.stderr);
  return r.stdout;
}

/** Runs the suites under env and asserts they all pass, more than `atLeast` tests, and no sanitizer spoke. */
function runSuites(env: NodeJS.ProcessEnv, suites: string[], atLeast: number): void {
  const run = spawnSync(process.execPath, ['scripts/run-tests.mjs', ...suites], {
    cwd: root,
    env,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    timeout: 900_000,
  });
  const out = (run.stdout ?? '') + (run.stderr ?? '');
  const at = out.search(/ERROR: AddressSanitizer|runtime error:/);
  const sanitizer = at < 0 ? '' : out.slice(out.lastIndexOf('\n', at) + 1, at + 3000);
  const failures = out
    .split('\n')
    .filter((l) => /FAIL|!!!/.test(l))
    .slice(0, 40)
    .join('\n');
  const summary = /^(\d+) passed, (\d+) failed/m.exec(out.split('\n').slice(-3).join('\n'));
  assert.is(sanitizer, '', 'a sanitizer stopped a suite on the emulated cuda backend');
  assert.ok(summary, `no summary from the suites on the emulated cuda backend:\n${out.slice(-4000)}`);
  assert.is(Number(summary![2]), 0, `suites on the emulated cuda backend:\n${failures}`);
  assert.ok(Number(summary![1]) > atLeast, `only ${summary![1]} tests ran`);
  assert.is(run.status, 0, out.slice(-4000));
}

/**
 * What the emulated libraries wrote at exit (test/native/emu_log.h), one block per process that opened one: each
 * count's values in the order written, and the refusals.
 */
function readEmuLog(path: string): { values: (name: string) => number[]; refused: string[]; text: string } {
  assert.ok(existsSync(path), `${path} was never written: the emulated library never ran`);
  const lines = readFileSync(path, 'utf8').trim().split('\n');
  return {
    values: (name) => lines.filter((l) => l.startsWith(`${name} `)).map((l) => Number(l.slice(name.length + 1))),
    refused: lines.filter((l) => l.startsWith('refused ')),
    text: lines.join('\n'),
  };
}

// webgpu's cases run in their own suites: left out here; cuda must be there (a skip would look green)
const cudaEnv = (): NodeJS.ProcessEnv => ({
  ...process.env,
  KILN_CUDA_ADDON_PATH: libs().cuda,
  KILN_REQUIRE_CUDA: '1',
  KILN_WEBGPU: '0',
  KILN_CUDA_CUBLASLT: '0',
});

test('kiln_cuda.so on the CPU emulation is the cuda backend and passes the suites that run every backend', () => {
  if (!hasCompiler) {
    assert.is(addonOrigin().from, 'prebuild', `${cxx} is missing, yet the addon was built from source`);
    return;
  }
  const env = cudaEnv();
  const out = info(env);
  assert.match(out, /^cuda: CPU emulation of an sm_80 GPU, float32 GEMM fp32, kiln's GEMM kernels/m, out);
  assert.match(out, /^ +cuda +available/m, out);
  runSuites(env, SUITES, 1600);
});

test('with cuBLASLt in use (KILN_CUDA_CUBLASLT), it takes the GEMMs it can and the suites still pass', () => {
  if (!hasCompiler) return;
  const log = join(dir, 'cublaslt.log');
  const env = { ...cudaEnv(), KILN_CUDA_CUBLASLT: libs().cublasLt, KILN_EMU_CUBLASLT_LOG: log };
  const out = info(env);
  assert.match(out, /^cuda: .*GEMMs on cuBLASLt 13\.1\.0 \(.*libcublasLt_emu\.so\)/m, out);
  runSuites(env, GEMM_SUITES, 1000);
  // each process that opened it wrote what it ran and what it refused: kiln must only ask for what it can do
  const lt = readEmuLog(log);
  const count = (what: string): number => lt.values(what).reduce((n, v) => n + v, 0);
  assert.equal(lt.refused, [], 'cuBLASLt refused calls kiln made');
  // float32 and bfloat16 inputs, a bfloat16 D (matmulBf16 to bfloat16), strided batches: all of them went there
  assert.ok(count('products') > 80, `cuBLASLt ran only ${count('products')} products`);
  for (const what of ['bf16-inputs', 'bf16-d', 'batched'])
    assert.ok(count(what) > 0, `cuBLASLt ran no product with ${what}:\n${lt.text}`);
});

test("KILN_CUDA_GEMM=tf32 runs float32 products on TF32, on kiln's kernels and cuBLASLt; exact float32 otherwise", () => {
  if (!hasCompiler) return;
  const log = join(dir, 'cublaslt-tf32.log');
  interface Run {
    matmul: string;
    cublasLt: string;
    products: { what: string; exact: number; tf32: number }[];
  }
  const script = `import ${JSON.stringify(join(root, 'test', 'emu', 'tf32.ts'))};`;
  const run = (env: NodeJS.ProcessEnv): Run => childJson<Run>(script, env as Record<string, string>).value;
  // errors as fractions of sum |a||b| (test/emu/tf32.ts): float32 accumulation over k <= 90 stays under 1e-6;
  // inputs rounded to TF32's 10 mantissa bits move some output by more than 2e-5
  const sums = 1e-6,
    rounding = 2e-5;
  const exact = run(cudaEnv());
  assert.is(exact.matmul, 'fp32');
  for (const p of exact.products) {
    assert.ok(p.exact < sums, `default: ${p.what} is ${p.exact} off exact float32`);
    assert.ok(p.tf32 > rounding, `default: ${p.what} is only ${p.tf32} off the product of its inputs rounded to TF32`);
  }
  for (const lt of [false, true]) {
    const env = { ...cudaEnv(), KILN_CUDA_GEMM: 'tf32' };
    if (lt) Object.assign(env, { KILN_CUDA_CUBLASLT: libs().cublasLt, KILN_EMU_CUBLASLT_LOG: log });
    const r = run(env);
    const where = lt ? 'tf32 on cuBLASLt' : 'tf32';
    assert.is(r.matmul, 'tf32');
    assert.is(r.cublasLt !== '', lt, r.cublasLt);
    for (const p of r.products) {
      assert.ok(p.tf32 < sums, `${where}: ${p.what} is ${p.tf32} off the product of its TF32 inputs`);
      assert.ok(p.exact > rounding, `${where}: ${p.what} is exact float32 (${p.exact}): TF32 not in use`);
    }
  }
  // all four products went to cuBLASLt, each with COMPUTE_32F_FAST_TF32
  const lt = readEmuLog(log);
  assert.equal(lt.refused, []);
  assert.equal([lt.values('products'), lt.values('tf32')], [[4], [4]], lt.text);
});

test('cuda training steps (a loop, fit): no allocation or upload, one wait for the loss, 8 parameters a launch', () => {
  if (!hasCompiler) return;
  type Counts = Record<'launch' | 'sync' | 'malloc' | 'free' | 'memset' | 'h2d' | 'd2h' | 'd2d', number> & {
    kernels: string[];
  };
  interface Model {
    params: number;
    losses: number[];
    phases: Record<'forward' | 'backward' | 'step' | 'item', Counts>;
  }
  const trace = join(dir, 'steps.trace');
  const script = `import ${JSON.stringify(join(root, 'test', 'emu', 'steps.ts'))};`;
  interface Fit {
    batches: number;
    trainLoss: number;
    sync: number;
    steps: number;
    gemmsAfterWait: number;
  }
  const { fit, ...models } = childJson<Record<'mlp' | 'cnn', Model> & { fit: Fit }>(script, {
    ...(cudaEnv() as Record<string, string>),
    KILN_EMU_TRACE: trace,
  }).value;
  // kn.train.fit with clipping: one wait a batch (the loss read, after backward is queued), none for the clipping
  assert.ok(Number.isFinite(fit.trainLoss), JSON.stringify(fit));
  assert.equal([fit.sync, fit.steps, fit.gemmsAfterWait], [fit.batches, fit.batches, 0], JSON.stringify(fit));
  for (const [name, m] of Object.entries(models)) {
    const [l0, , l2] = m.losses as [number, number, number];
    assert.ok(l2 < l0, `${name}: the loss went from ${l0} to ${l2} in two steps`);
    for (const [phase, c] of Object.entries(m.phases)) {
      const at = `${name}, ${phase}: ${JSON.stringify(c)}`;
      // the caching allocator serves a step like the ones before it; inputs, labels and hyperparameters are
      // already on the device or are kernel arguments
      assert.equal([c.malloc, c.free, c.h2d], [0, 0, 0], at);
      // the host waits for the device once, to read the loss
      if (phase === 'item') assert.equal([c.launch, c.sync, c.d2h > 0], [0, 1, true], at);
      else assert.equal([c.sync, c.d2h], [0, 0], at);
      if (phase === 'forward' || phase === 'backward') assert.ok(c.launch > 0, at);
    }
    // Adam and SGD update up to 8 parameters a launch (adamStepMulti, sgdStepMulti)
    const step = m.phases.step;
    assert.is(step.launch, Math.ceil(m.params / 8), `${name}: ${step.kernels.join(', ')}`);
    assert.ok(
      step.kernels.every((k) => k.startsWith('step_multi')),
      step.kernels.join(', '),
    );
  }
});

test('2 ranks with NCCL (emulated): collectives on device buffers, and DDP on cuda equals one process', () => {
  if (!hasCompiler) return;
  const log = join(dir, 'nccl.log');
  // KILN_* variables reach every rank through kiln launch
  const launch = (tag: string, np: number, nccl: string): void => {
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'launch', '-np', String(np), 'test/dist/nccl.ts', dir, tag],
      {
        cwd: root,
        env: { ...cudaEnv(), KILN_NCCL_PATH: nccl, KILN_EMU_NCCL_LOG: log },
        encoding: 'utf8',
        timeout: 300_000,
        killSignal: 'SIGKILL',
      },
    );
    assert.is(r.status, 0, `${tag}: ${r.stdout}${r.stderr}`);
  };
  launch('nccl', 2, libs().nccl);
  launch('host', 2, join(dir, 'no-such-libnccl.so')); // no NCCL: through host memory and MPI
  launch('one', 1, libs().nccl); // one process on the global batch: no collective at all
  interface Out {
    nccl: string;
    ncclReason: string;
    buckets: string;
    backend: string;
    collectives?: Record<string, number[]>;
    losses: number[];
    weights: Record<string, number[]>;
  }
  const read = (f: string): Out => JSON.parse(readFileSync(join(dir, `nccl-${f}.json`), 'utf8')) as Out;
  const [n0, n1, h0, one] = [read('nccl-2-0'), read('nccl-2-1'), read('host-2-0'), read('one-1-0')];
  for (const r of [n0, n1]) {
    assert.is(r.nccl, '', 'NCCL is usable');
    assert.is(r.ncclReason, '', 'DDP reduces the cuda gradients with NCCL');
    assert.is(r.backend, 'cuda');
    // rank r puts [r + 1, 10 r, -r, 7]
    assert.equal(r.collectives, {
      sum: [3, 10, -1, 14],
      mean: [1.5, 5, -0.5, 7],
      max: [2, 10, 0, 7],
      min: [1, 0, -1, 7],
      sumInt32: [3, 10, -1, 14],
      broadcastFrom1: [2, 10, -1, 7],
    });
  }
  assert.match(n0.buckets, /rank 0 of 2, 2 buckets/);
  assert.match(h0.ncclReason, /NCCL not found .*no-such-libnccl\.so.*through host memory and MPI/);
  assert.is(maxWeightDiff(n0.weights, n1.weights), 0, 'replicas are bit-identical');
  assert.is(maxWeightDiff(n0.weights, h0.weights), 0, 'NCCL on the device and MPI through the host give the same bits');
  const d = maxWeightDiff(n0.weights, one.weights);
  assert.ok(d < 1e-5, `2 ranks vs 1 process: max |dw| = ${d}`);
  n0.losses.forEach((l, i) => assert.ok(Math.abs(l - one.losses[i]!) < 1e-5, `losses ${n0.losses} vs ${one.losses}`));
  assert.ok(n0.losses[3]! < n0.losses[0]!, `the loss falls: ${n0.losses}`);
  // every rank's every collective matched the others' and ran: 6 direct ones and 2 buckets in each of 4 steps (the
  // one-process job opens NCCL, to ask ncclStatus, and runs none)
  const nl = readEmuLog(log);
  assert.equal(nl.refused, [], 'NCCL refused calls kiln made');
  assert.equal(nl.values('collectives'), [14, 14, 0]);
});

test.run();
