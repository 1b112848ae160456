// Benchmark harness: timing is kn.bench (src/profile/bench.ts, a public API), shared with `kiln bench`.
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import * as kn from '../src/index.js';
import { loadAddon } from '../src/backends/native/binding.js';
export { measure, measureAsync, type Timing, type MeasureOptions } from '../src/cli/timing.js';
import { bench } from '../src/profile/bench.js';
export { bench, summarize, type BenchResult } from '../src/profile/bench.js';

type Addon = NonNullable<ReturnType<typeof loadAddon>['addon']>;

/**
 * Turns the packed-weight cache off and returns what turns it back on: kernel benchmarks multiply the same
 * operands over and over, and their peers (OpenBLAS, PyTorch, onnxruntime) pack them on every call, so kiln must
 * too for a fair ratio. Model benchmarks (inference on fixed weights) keep the cache on, as users get it.
 */
export function perCallPacking(addon: Addon): () => void {
  const prev = addon.setPackCacheLimit(0);
  return () => void addon.setPackCacheLimit(prev);
}

/**
 * Runs 128x128 products for `ms` so V8 has optimised the dispatcher's JavaScript before anything is timed: its
 * first few thousand calls run unoptimised (a 128x128 product took 44 us then, 27 us after), which a timing loop
 * of a few dozen calls, or bench()'s default cap of 1000 repeats, never gets past. The peers warm up likewise.
 */
export async function warmDispatch(ms = 800): Promise<void> {
  const a = kn.randn([128, 128]);
  await bench(() => a.matmul(a).dispose(), { minTimeMs: ms, maxRepeats: 1e6 });
  a.dispose();
}

/** The cpu backend for a kernel bench: selected, with its addon and info, and the machine line printed. */
export function cpuBench(note = ''): { addon: Addon; info: ReturnType<Addon['info']> } {
  const { addon } = loadAddon();
  if (!addon) throw new Error('cpu backend unavailable');
  kn.setBackend('cpu');
  const info = addon.info();
  console.log(
    `# cpu: ${cpus()[0]?.model} | kiln kernels ${info.isa} | threads up to ${info.threads}${note ? ` | ${note}` : ''}`,
  );
  return { addon, info };
}

export function fmt(n: number, digits = 1): string {
  return n.toFixed(digits).padStart(8);
}

/** A training step over fixed data: zeroGrad, cross-entropy, backward, Adam step, loss read back. */
export function trainer(model: kn.nn.Module, x: kn.Tensor, y: kn.Tensor): { step: () => number; dispose: () => void } {
  const opt = new kn.optim.Adam(model.parameters());
  return {
    step: () =>
      kn.tidy(() => {
        opt.zeroGrad();
        const loss = kn.nn.loss.crossEntropy(model.call(x), y);
        loss.backward();
        opt.step();
        return loss.item();
      }),
    dispose: () => {
      opt.dispose();
      model.dispose();
      x.dispose();
      y.dispose();
    },
  };
}

/** An MLP with ReLU between its Linear layers: mlp([784, 512, 256, 10]) is the MNIST MLP several benches use. */
export function mlp(sizes: readonly number[]): kn.nn.Sequential {
  const layers: kn.nn.Module[] = [];
  for (let i = 1; i < sizes.length; i++) {
    if (i > 1) layers.push(new kn.nn.ReLU());
    layers.push(new kn.nn.Linear(sizes[i - 1]!, sizes[i]!));
  }
  return new kn.nn.Sequential(...layers);
}

/** The LeNet-5-like network the CPU benches train (28x28 single-channel input, 10 classes). */
export function lenet(): kn.nn.Module {
  return new kn.nn.Sequential(
    new kn.nn.Conv2d(1, 6, 5, { padding: 2 }),
    new kn.nn.ReLU(),
    new kn.nn.MaxPool2d(2),
    new kn.nn.Conv2d(6, 16, 5),
    new kn.nn.ReLU(),
    new kn.nn.MaxPool2d(2),
    new kn.nn.Flatten(),
    new kn.nn.Linear(16 * 5 * 5, 120),
    new kn.nn.ReLU(),
    new kn.nn.Linear(120, 84),
    new kn.nn.ReLU(),
    new kn.nn.Linear(84, 10),
  );
}

/**
 * Peak RSS (MB) of a child that runs `code` (an ESM body with kn imported): its VmHWM, which starts afresh at exec
 * (getrusage's maxRSS carries this process's peak into the child on Linux).
 */
export function peakMb(code: string): number {
  const r = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      `import * as kn from './src/index.ts';\n${code}\nconsole.log(/VmHWM:\\s*(\\d+)/.exec((await import('node:fs')).readFileSync('/proc/self/status', 'utf8'))[1]);`,
    ],
    { cwd: fileURLToPath(new URL('..', import.meta.url)), encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`child failed: ${r.stderr}`);
  return Number(r.stdout.trim().split('\n').at(-1)) / 1024;
}
