// Run by test/cuda-emu.test.ts on the emulated cuda backend, once per GEMM setting (KILN_CUDA_GEMM unset or tf32,
// KILN_CUDA_CUBLASLT off or the emulated cuBLASLt): float32 products of random operands with full mantissas, on the
// kernels each shape reaches (64x64 and 128x128 blocks, K not a multiple of a k-step, A transposed, batches).
// Prints one JSON line: the setting kn.info() reports, and per product the largest error against two float64
// references, each as a fraction of the sum of |a||b| over k (the scale of float32's accumulation error):
// `exact` with the float32 inputs as they are, `tf32` with every input first rounded as TF32 tensor cores read it
// (10 mantissa bits, to nearest, ties away from zero: cvt.rna.tf32.f32).
import * as kn from '../../src/index.js';
import { randomArray, rng } from '../helpers.js';

kn.setBackend('cuda');
const r = rng(24);
const bits = new DataView(new ArrayBuffer(4));
/** v as TF32 keeps it: the top 19 bits, rounded to nearest with ties away from zero. */
const tf32 = (v: number): number => {
  bits.setFloat32(0, v);
  const b = bits.getUint32(0);
  if ((b & 0x7f800000) !== 0x7f800000) bits.setUint32(0, ((b + 0x1000) & ~0x1fff) >>> 0);
  return bits.getFloat32(0);
};
// float32 operands in [-1, 1) with all of their mantissa bits in use
const fill = (n: number): Float32Array => randomArray(r, n, -1, 1);

interface Product {
  what: string;
  exact: number;
  tf32: number;
}
/** C = A B over `batch` products of [m, k] by [k, n], A stored transposed when `ta`. */
function product(what: string, batch: number, m: number, k: number, n: number, ta: boolean): Product {
  const a = fill(batch * m * k),
    b = fill(batch * k * n);
  // element (i, p) of batch z's A, wherever A is stored
  const at = (z: number, i: number, p: number): number => a[z * m * k + (ta ? p * m + i : i * k + p)]!;
  const out = kn.tidy(() => {
    const ta4 = kn.tensor(a, ta ? [batch, k, m] : [batch, m, k]);
    const av = ta ? ta4.transpose(1, 2) : ta4;
    return av.matmul(kn.tensor(b, [batch, k, n])).toArray() as Float32Array;
  });
  let exact = 0,
    rounded = 0;
  for (let z = 0; z < batch; z++)
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0,
          st = 0,
          scale = 0;
        for (let p = 0; p < k; p++) {
          const x = at(z, i, p),
            y = b[z * k * n + p * n + j]!;
          s += x * y;
          st += tf32(x) * tf32(y);
          scale += Math.abs(x * y);
        }
        const c = out[z * m * n + i * n + j]!;
        exact = Math.max(exact, Math.abs(c - s) / scale);
        rounded = Math.max(rounded, Math.abs(c - st) / scale);
      }
  return { what, exact, tf32: rounded };
}

const products = [
  product('[70, 90] x [90, 50]', 1, 70, 90, 50, false),
  product('A transposed, [45, 61] x [61, 37]', 1, 45, 61, 37, true),
  product('3 x [33, 40] x [40, 21]', 3, 33, 40, 21, false),
  product('[256, 44] x [44, 256], 128x128 blocks', 1, 256, 44, 256, false),
];
const { matmul, cublasLt } = kn.info().cuda!;
console.log(JSON.stringify({ matmul, cublasLt, products }));
