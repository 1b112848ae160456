// Random tensors from one counter-based generator (Philox4x32-10): kn.seed(n) gives the same numbers on
// every backend, and each call advances a shared 64-bit counter by ceil(n / 4).
import { runKernel } from '../engine/dispatch.js';
import { ArgumentError, checkOptions, describe } from '../errors.js';
import { assertDType, type DType } from '../tensor/dtype.js';
import { numel, validateShape } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';

const state = { key0: 0, key1: 0, counter: 0 };
let last = 0;

function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
  return (x ^ (x >>> 16)) >>> 0;
}

/**
 * Seeds every random op on every backend.
 * @example kn.seed(42); const a = kn.rand([3]); kn.seed(42); kn.rand([3]) // same values as a
 */
export function seed(n: number): void {
  if (typeof n !== 'number' || !Number.isSafeInteger(n))
    throw new ArgumentError(`seed must be a safe integer, got ${describe(n)}`);
  const lo = n >>> 0,
    hi = Math.floor(n / 4294967296) >>> 0;
  state.key0 = mix32(lo ^ 0x9e3779b9);
  state.key1 = mix32(hi ^ mix32(lo + 0x85ebca6b));
  state.counter = 0;
  last = n;
}
seed(0);

/**
 * The number last given to kn.seed (0 until it is called): what experiment tracking records as the seed.
 * @example kn.seed(1234); kn.lastSeed() // 1234
 */
export function lastSeed(): number {
  return last;
}

/**
 * The generator state (saved in checkpoints so a resumed run draws the same numbers).
 * @example const s = kn.getRngState(); kn.rand([2]); kn.setRngState(s)
 */
export function getRngState(): { key0: number; key1: number; counter: number } {
  return { ...state };
}
/**
 * Restores a state from getRngState().
 * @example const s = kn.getRngState(); const a = kn.rand([2]).toList(); kn.setRngState(s); JSON.stringify(kn.rand([2]).toList()) === JSON.stringify(a) // true
 */
export function setRngState(s: { key0: number; key1: number; counter: number }): void {
  for (const k of ['key0', 'key1', 'counter'] as const) {
    if (!Number.isSafeInteger(s?.[k]) || s[k] < 0)
      throw new ArgumentError(`RNG state ${k} must be a non-negative safe integer, got ${describe(s?.[k])}`);
  }
  Object.assign(state, { key0: s.key0 >>> 0, key1: s.key1 >>> 0, counter: s.counter });
}

function nextAttrs(n: number): number[] {
  const c = state.counter;
  state.counter += Math.ceil(n / 4);
  return [state.key0, state.key1, c % 4294967296, Math.floor(c / 4294967296)];
}

function num(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new ArgumentError(`${what} must be a finite number, got ${describe(v)}`);
  return v;
}

/**
 * Uniform in [low, high) (default [0, 1)).
 * @example kn.rand([3]).shape // [3]
 */
export function rand(shape: readonly number[], opts: { low?: number; high?: number; dtype?: DType } = {}): Tensor {
  const s = validateShape(shape);
  checkOptions(opts, 'rand', ['low', 'high', 'dtype']);
  const low = num(opts.low ?? 0, 'rand low'),
    high = num(opts.high ?? 1, 'rand high');
  if (!(low <= high)) throw new ArgumentError(`rand: low (${low}) must not exceed high (${high})`);
  return runKernel('randomUniform', [], [...nextAttrs(numel(s)), low, high], s, assertDType(opts.dtype ?? 'float32'));
}

/**
 * Normal with mean and std (default 0, 1).
 * @example kn.randn([2, 3], { std: 0.1 }).shape // [2, 3]
 */
export function randn(shape: readonly number[], opts: { mean?: number; std?: number; dtype?: DType } = {}): Tensor {
  const s = validateShape(shape);
  checkOptions(opts, 'randn', ['mean', 'std', 'dtype']);
  const mean = num(opts.mean ?? 0, 'randn mean'),
    std = num(opts.std ?? 1, 'randn std');
  if (std < 0) throw new ArgumentError(`randn: std must be >= 0, got ${std}`);
  return runKernel('randomNormal', [], [...nextAttrs(numel(s)), mean, std], s, assertDType(opts.dtype ?? 'float32'));
}

/**
 * Integers uniform in [low, high), int32.
 * @example kn.randint([4], 0, 1) // [0, 0, 0, 0]
 */
export function randint(shape: readonly number[], low: number, high: number): Tensor {
  const s = validateShape(shape);
  if (!Number.isInteger(low) || !Number.isInteger(high) || !(low < high) || low < -2147483648 || high > 2147483648) {
    throw new ArgumentError(
      `randint needs integers low < high within int32, got ${describe(low)} and ${describe(high)}`,
    );
  }
  return runKernel('randomInt', [], [...nextAttrs(numel(s)), low, high], s, 'int32');
}
