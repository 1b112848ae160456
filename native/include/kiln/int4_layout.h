// int4 weight layout shared by the C++, CUDA and WGSL kernels. Mirrors src/quant/layout.ts (INT4_LAYOUT);
// test/quant.test.ts checks that the numbers agree.
//   weights [out, in] -> bytes [out, ceil(in / group) * group / 2]; byte b = (w[2b] + 8) | (w[2b + 1] + 8) << 4
//   scales  [out, ceil(in / group)] float32; w = (nibble - 8) * scale[row, k / group]
#pragma once
namespace kiln {
inline constexpr int kInt4Bits = 4;
inline constexpr int kInt4Offset = 8;
inline constexpr int kInt4Qmin = -8;
inline constexpr int kInt4Qmax = 7;
inline constexpr int kInt4GroupSizes[3] = {32, 64, 128};
inline constexpr bool kInt4LowNibbleFirst = true;
}  // namespace kiln
