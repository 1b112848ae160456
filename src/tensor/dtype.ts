import { ArgumentError, DTypeError, describe } from '../errors.js';

export type DType = 'float32' | 'float16' | 'bfloat16' | 'int32' | 'int8' | 'uint8' | 'bool';
export const DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16', 'int32', 'int8', 'uint8', 'bool'];

/** Must match `enum DType` in native/include/kiln/tensor_view.h. */
export const DTYPE_CODES: Readonly<Record<DType, number>> = {
  float32: 0,
  float16: 1,
  bfloat16: 2,
  int32: 3,
  int8: 4,
  uint8: 5,
  bool: 6,
};
/** Short names (safetensors' dtype strings; the WGSL DT_* constants). */
export const DTYPE_SHORT_NAMES: Readonly<Record<DType, string>> = {
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
  int32: 'I32',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
};
export const DTYPE_SIZE: Readonly<Record<DType, number>> = {
  float32: 4,
  float16: 2,
  bfloat16: 2,
  int32: 4,
  int8: 1,
  uint8: 1,
  bool: 1,
};

/** The raw storage array of each dtype (float16/bfloat16 are raw bits). */
export type StorageArray = Float32Array | Int32Array | Uint16Array | Int8Array | Uint8Array;
/** What `toArray()` returns: float16/bfloat16 are decoded to float32. */
export type HostArray = Float32Array | Int32Array | Int8Array | Uint8Array;

export function storageArray(dtype: DType, n: number): StorageArray {
  switch (dtype) {
    case 'float32':
      return new Float32Array(n);
    case 'int32':
      return new Int32Array(n);
    case 'float16':
    case 'bfloat16':
      return new Uint16Array(n);
    case 'int8':
      return new Int8Array(n);
    default:
      return new Uint8Array(n);
  }
}

export function isFloat(d: DType): boolean {
  return d === 'float32' || d === 'float16' || d === 'bfloat16';
}
export function isInt(d: DType): boolean {
  return d === 'int32' || d === 'int8' || d === 'uint8';
}

export function assertDType(d: unknown, what = 'dtype'): DType {
  if (typeof d !== 'string' || !(DTYPES as readonly string[]).includes(d)) {
    throw new ArgumentError(`${what} must be one of ${DTYPES.join(', ')}; got ${describe(d)}`);
  }
  return d as DType;
}

const RANK: Record<DType, number> = { bool: 0, uint8: 1, int8: 1, int32: 2, float16: 3, bfloat16: 3, float32: 4 };

/** Result dtype of a binary op between two tensors (NumPy/PyTorch-like, without 16/64-bit ints). */
export function promote(a: DType, b: DType): DType {
  if (a === b) return a;
  if ((a === 'float16' && b === 'bfloat16') || (a === 'bfloat16' && b === 'float16')) return 'float32';
  if ((a === 'int8' && b === 'uint8') || (a === 'uint8' && b === 'int8')) return 'int32';
  return RANK[a] >= RANK[b] ? a : b;
}

// ---- scalar conversions (bit-exact twins of native/include/kiln/tensor_view.h) ----
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function floatToHalfBits(x: number): number {
  f32[0] = x;
  let u = u32[0]!;
  const sign = (u >>> 16) & 0x8000;
  u &= 0x7fffffff;
  if (u > 0x7f800000) return sign | 0x7e00;
  if (u >= 0x47800000) return sign | 0x7c00;
  if (u < 0x38800000) {
    f32[0] = x < 0 ? -x : x;
    const v = f32[0]! * 16777216;
    let q = Math.floor(v);
    const rem = v - q;
    if (rem > 0.5 || (rem === 0.5 && (q & 1) === 1)) q++;
    return sign | q;
  }
  const lsb = (u >>> 13) & 1;
  u = u + 0xfff + lsb - (112 << 23);
  const h = u >>> 13;
  if (h >= 0x7c00) return sign | 0x7c00;
  return sign | h;
}

export function halfBitsToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 5.9604644775390625e-8;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function floatToBf16Bits(x: number): number {
  f32[0] = x;
  let u = u32[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  u = (u + 0x7fff + ((u >>> 16) & 1)) >>> 0;
  return u >>> 16;
}

export function bf16BitsToFloat(b: number): number {
  u32[0] = (b << 16) >>> 0;
  return f32[0]!;
}

function sat(v: number, lo: number, hi: number): number {
  if (Number.isNaN(v)) return 0;
  if (v <= lo) return lo;
  if (v >= hi) return hi;
  return Math.trunc(v);
}

/**
 * Converts a number to the value a dtype stores: float16/bfloat16 round (through float32, like the
 * native cast), integers truncate toward zero and saturate (NaN -> 0), bool is `v != 0` (NaN -> true).
 * float32 keeps full double precision: the `js` backend is the float64 reference.
 */
export function castValue(v: number, d: DType): number {
  switch (d) {
    case 'float32':
      return v;
    case 'float16':
      return halfBitsToFloat(floatToHalfBits(Math.fround(v)));
    case 'bfloat16':
      return bf16BitsToFloat(floatToBf16Bits(Math.fround(v)));
    case 'int32':
      return sat(v, -2147483648, 2147483647);
    case 'int8':
      return sat(v, -128, 127);
    case 'uint8':
      return sat(v, 0, 255);
    default:
      return v !== 0 ? 1 : 0;
  }
}

/** Decodes a storage array to numbers. */
export function decodeStorage(a: StorageArray, d: DType): Float64Array {
  const out = new Float64Array(a.length);
  if (d === 'float16') for (let i = 0; i < a.length; i++) out[i] = halfBitsToFloat(a[i]!);
  else if (d === 'bfloat16') for (let i = 0; i < a.length; i++) out[i] = bf16BitsToFloat(a[i]!);
  else for (let i = 0; i < a.length; i++) out[i] = a[i]!;
  return out;
}

/** Encodes numbers (already valid for the dtype) into a storage array. */
export function encodeStorage(v: ArrayLike<number>, d: DType): StorageArray {
  const out = storageArray(d, v.length);
  if (d === 'float16') for (let i = 0; i < v.length; i++) out[i] = floatToHalfBits(v[i]!);
  else if (d === 'bfloat16') for (let i = 0; i < v.length; i++) out[i] = floatToBf16Bits(v[i]!);
  else if (d === 'bool') for (let i = 0; i < v.length; i++) out[i] = v[i] ? 1 : 0;
  else for (let i = 0; i < v.length; i++) out[i] = castValue(v[i]!, d);
  return out;
}

/** Storage array -> what users get from toArray(). */
export function toHostArray(a: StorageArray, d: DType): HostArray {
  if (d === 'float16' || d === 'bfloat16') return Float32Array.from(decodeStorage(a, d));
  return a as HostArray;
}

export function dtypeOfTypedArray(a: ArrayBufferView): DType | null {
  if (a instanceof Float32Array || a instanceof Float64Array) return 'float32';
  if (a instanceof Int32Array || a instanceof Int16Array || a instanceof Uint16Array) return 'int32';
  if (a instanceof Int8Array) return 'int8';
  if (a instanceof Uint8Array || a instanceof Uint8ClampedArray) return 'uint8';
  return null;
}

export function requireDType(actual: DType, allowed: readonly DType[], what: string): void {
  if (!allowed.includes(actual)) {
    throw new DTypeError(`${what} takes ${allowed.join(' or ')}, got ${actual}`);
  }
}
