// Hashes of values from data: MurmurHash3 for the hashing encoder, and 52-bit row fingerprints of raw table
// rows (exact values in column order) for leakage checks.
import type { Column } from './columns.js';

/** MurmurHash3 (x86, 32-bit) of a string's UTF-8 bytes. */
export function murmur3(text: string, seed = 0): number {
  const b = new TextEncoder().encode(text);
  let h = seed >>> 0;
  const c1 = 0xcc9e2d51,
    c2 = 0x1b873593;
  const n4 = b.length & ~3;
  for (let i = 0; i < n4; i += 4) {
    let k = b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  switch (b.length & 3) {
    case 3:
      k ^= b[n4 + 2]! << 16;
    // falls through
    case 2:
      k ^= b[n4 + 1]! << 8;
    // falls through
    case 1:
      k ^= b[n4]!;
      k = Math.imul(k, c1);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, c2);
      h ^= k;
  }
  h ^= b.length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A 52-bit fingerprint of each row's values in the given columns (exact values, in column order). */
export function tableRowFingerprints(cols: readonly Column[], n: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const text = JSON.stringify(cols.map((c) => c.values[i] ?? null));
    out[i] = (murmur3(text, 0x9747b28c) & 0xfffff) * 4294967296 + murmur3(text, 0x1b873593);
  }
  return out;
}
