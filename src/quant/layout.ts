// The int4 block layout, declared once. native/include/kiln/int4_layout.h mirrors these numbers for the C++,
// CUDA and WGSL kernels (test/quant.test.ts checks that the two agree).
/**
 * int4 weights [out, in]: groups of `groupSize` consecutive inputs per output row share one float32 scale
 * (scale layout [out, ceil(in / groupSize)], row-major). Values in [-8, 7] are stored plus `offset` (0..15),
 * two per byte, row-major [out, ceil(in / groupSize) * groupSize / 2]: byte b holds element 2b in its low
 * nibble and element 2b + 1 in its high nibble. Inputs past `in` (padding of the last group) are zero.
 */
export const INT4_LAYOUT = {
  bits: 4,
  offset: 8,
  qmin: -8,
  qmax: 7,
  groupSizes: [32, 64, 128],
  lowNibbleFirst: true,
} as const;
