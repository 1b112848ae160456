import * as kn from '../src/index.js';

/** Deterministic test RNG (mulberry32), independent of kiln's own generator. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomArray(r: () => number, n: number, lo = -2, hi = 2): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * r();
  return a;
}

export interface CloseResult { ok: boolean; message: string }

/** |a - e| <= atol + rtol * |e| elementwise. NaN never passes unless both are NaN and equalNan is set. */
export function allclose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol = 1e-5, rtol = 1e-4, equalNan = false): CloseResult {
  if (actual.length !== expected.length) return { ok: false, message: `length ${actual.length} vs ${expected.length}` };
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    if (Number.isNaN(a) || Number.isNaN(e)) {
      if (equalNan && Number.isNaN(a) && Number.isNaN(e)) continue;
      return { ok: false, message: `index ${i}: ${a} vs ${e} (NaN)` };
    }
    if (a === e) continue; // also equal infinities
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) return { ok: false, message: `index ${i}: ${a} vs ${e} (diff ${Math.abs(a - e)})` };
  }
  return { ok: true, message: '' };
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
    if (!(e instanceof cls)) throw new Error(`expected ${cls.name}, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    if (!(e instanceof kn.KilnError)) throw new Error(`expected a KilnError subclass, got ${(e as Error).constructor.name}`);
    if (!re.test((e as Error).message)) throw new Error(`message ${JSON.stringify((e as Error).message)} does not match ${re}`);
    return;
  }
  throw new Error(`expected ${cls.name} matching ${re}, but nothing was thrown`);
}
