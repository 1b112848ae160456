// Included INSIDE each ISA pass (no include guard on purpose) by files that include <immintrin.h> in their
// head on x86 (native/cpu/conv.cc, native/cpu/quant.cc): row copies with masked vector tails.

// Copies the whole vectors of src[0, n) to dst and returns where they stop (n rounded down to vectors).
static inline int64_t copy_whole_vectors(float* __restrict dst, const float* __restrict src, int64_t n) {
  int64_t i = 0;
  for (; i + kVL <= n; i += kVL) {
    vfloat v = vload(src + i);
#if defined(__x86_64__)
    __asm__("" : "+x"(v));  // opaque to GCC, which would otherwise make the loop a memcpy call (10% on short rows)
#endif
    vstore(dst + i, v);
  }
  return i;
}

// dst[0, n) = src[0, n) for the short rows of these kernels (tens of floats), inline with a masked tail: a call
// to memcpy per row, or a scalar tail, cost as much as a sixth of the direct convolution.
static inline void copy_row(float* __restrict dst, const float* __restrict src, int64_t n) {
  int64_t i = copy_whole_vectors(dst, src, n);
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

// dst[0, n) = src[0, n), then zeros up to the end of the last vector that reaches len: it writes dst[0, e) with
// e = max(n, len) rounded up to whole vectors, all unmasked stores (the padded rows of the direct convolution: an
// image row and the zero gap after it). The caller leaves room for the spill past len and writes whatever must
// not be zero there afterwards. Masked stores here cost ~50% more a row (2.7 against 1.8 ns for 28 floats).
static inline void copy_row_spill(float* __restrict dst, const float* __restrict src, int64_t n, int64_t len) {
  int64_t i = copy_whole_vectors(dst, src, n);
  if (i < n) {
#if KILN_VEC_BYTES == 64
    _mm512_storeu_ps(dst + i, _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << (n - i)) - 1u), src + i));
#elif KILN_VEC_BYTES == 32
    const __m256i m =
        _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - i)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    _mm256_storeu_ps(dst + i, _mm256_maskload_ps(src + i, m));
#else
    for (int64_t l = 0; l < kVL; ++l) dst[i + l] = i + l < n ? src[i + l] : 0.f;
#endif
    i += kVL;
  }
  for (; i < len; i += kVL) vstore(dst + i, vfloat{});
}

// dst[0, n) = 0, inline for the short runs of the padded rows
static inline void zero_row(float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + kVL <= n; i += kVL) vstore(dst + i, vfloat{});
#if KILN_VEC_BYTES == 64
  if (i < n) _mm512_mask_storeu_ps(dst + i, static_cast<__mmask16>((1u << (n - i)) - 1u), _mm512_setzero_ps());
#else
  for (; i < n; ++i) dst[i] = 0.f;
#endif
}
