// Plain data that crosses from the N-API layer into kernels. No N-API types here.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

#include "kiln/tables.h"

namespace kiln {

// DType, kDTypeNames and kDTypeSize are generated from src/tensor/dtype.ts into kiln/tables.h.
inline constexpr int kMaxDims = 12;

// Error categories; the binding maps them onto KilnError subclasses.
enum StatusCode : int32_t { ST_OK = 0, ST_SHAPE = 1, ST_DTYPE = 2, ST_ARG = 3, ST_OOM = 4, ST_BACKEND = 5 };

struct Status {
  StatusCode code = ST_OK;
  std::string message;
  static Status ok() { return {}; }
  bool good() const { return code == ST_OK; }
};

inline Status fail(StatusCode c, std::string m) { return Status{c, std::move(m)}; }

struct TensorView {
  void* data = nullptr;  // start of the buffer
  int32_t dtype = DT_FLOAT32;
  int32_t ndim = 0;
  int64_t offset = 0;  // in elements
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};  // in elements, never negative

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  bool contiguous() const {
    if (numel() == 0) return true;  // nothing to address: any strides describe it
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; --i) {
      if (shape[i] != 1 && strides[i] != s) return false;
      s *= shape[i];
    }
    return true;
  }
  template <class T>
  T* ptr() const {
    return reinterpret_cast<T*>(data) + offset;
  }
  char* bytes() const { return reinterpret_cast<char*>(data) + offset * kDTypeSize[dtype]; }
};

inline std::string shape_str(const TensorView& t) {
  std::string s = "[";
  for (int i = 0; i < t.ndim; ++i) {
    if (i) s += ", ";
    s += std::to_string(t.shape[i]);
  }
  return s + "]";
}

// Kernel entry: inputs, output (contiguous, freshly allocated, never aliasing an input), attributes.
using KernelFn = Status (*)(const TensorView* in, int nin, const TensorView& out, const double* attrs);

// ---- scalar conversions shared by every backend (must match src/tensor/dtype.ts) ----
inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    if (mant == 0) return bits_f32(sign);
    // subnormal half: value = mant * 2^-24, exactly representable in float32
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
  return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

// Round to nearest, ties to even; overflow -> inf; NaN stays NaN (quiet).
inline uint16_t float_to_half(float x) {
  uint32_t u = f32_bits(x);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u > 0x7f800000u) return sign | 0x7e00u;
  if (u >= 0x47800000u) {  // >= 65536 before rounding: may still round down below 65520? no: 65520 rounds up to inf
    return sign | 0x7c00u;
  }
  if (u < 0x38800000u) {  // |x| < 2^-14: half subnormal or zero. Scale to units of 2^-24 and round to even.
    const float v = bits_f32(u) * 16777216.0f;  // exact (power of two)
    uint32_t q = static_cast<uint32_t>(v);
    const float rem = v - static_cast<float>(q);
    if (rem > 0.5f || (rem == 0.5f && (q & 1u))) ++q;
    return sign | static_cast<uint16_t>(q);  // q may reach 0x400 = smallest normal, which is the right encoding
  }
  // normal: drop 13 mantissa bits with round-to-nearest-even
  const uint32_t lsb = (u >> 13) & 1u;
  u += 0xfffu + lsb;
  u -= (112u << 23);
  const uint32_t h = u >> 13;
  if (h >= 0x7c00u) return sign | 0x7c00u;
  return sign | static_cast<uint16_t>(h);
}

inline float bf16_to_float(uint16_t b) { return bits_f32(static_cast<uint32_t>(b) << 16); }
inline uint16_t float_to_bf16(float x) {
  uint32_t u = f32_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Saturating float -> integer conversion (NaN -> 0, truncation toward zero).
template <class I>
inline I sat_cast(double v, double lo, double hi) {
  if (!(v == v)) return 0;
  if (v <= lo) return static_cast<I>(lo);
  if (v >= hi) return static_cast<I>(hi);
  return static_cast<I>(v);
}

}  // namespace kiln
