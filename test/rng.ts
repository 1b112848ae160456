// mulberry32: a small deterministic generator for tests, the fuzzer and benches, independent of kiln's own
// Philox generator (the same sequence for the same seed on every machine). No imports: scripts/fuzz.ts uses it.
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
