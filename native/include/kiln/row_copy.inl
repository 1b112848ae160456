// Included INSIDE each ISA pass (no include guard on purpose) by files that include <immintrin.h> in their
// head on x86 (native/cpu/conv.cc, native/cpu/quant.cc): row copies with masked vector tails.

// dst[0, n) = src[0, n) for the short rows of these kernels (tens of floats), inline with a masked tail: a call
// to memcpy per row, or a scalar tail, cost as much as a sixth of the direct convolution.
static inline void copy_row(float* __restrict dst, const float* __restrict src, int64_t n) {
  int64_t i = 0;
  for (; i + kVL <= n; i += kVL) {
    vfloat v = vload(src + i);
#if defined(__x86_64__)
    __asm__("" : "+x"(v));  // opaque to GCC, which would otherwise make the loop a memcpy call (10% on short rows)
#endif
    vstore(dst + i, v);
  }
  if (i == n) return;
#if KILN_VEC_BYTES == 64
  const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
  _mm512_mask_storeu_ps(dst + i, m, _mm512_maskz_loadu_ps(m, src + i));
#elif KILN_VEC_BYTES == 32
  const __m256i m =
      _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - i)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  _mm256_maskstore_ps(dst + i, m, _mm256_maskload_ps(src + i, m));
#else
  for (; i < n; ++i) dst[i] = src[i];
#endif
}
