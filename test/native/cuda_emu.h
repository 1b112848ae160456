// A CPU emulation of one CUDA thread block, enough to run kiln's CUDA kernels that use shared memory,
// __syncthreads, warp shuffles and votes, and atomics (not tensor cores or async copies): each thread of a block
// is a std::thread, __syncthreads is a std::barrier (a thread that returns drops out of it, as on a GPU), a warp
// exchange goes through a slot per thread between two waits on the warp's own barrier, `__shared__` variables
// are function statics (blocks run one at a time), and atomics are std::atomic_ref.
// test/native.test.ts copies the kernels' text verbatim from kernels/cuda/ into cuda_emu_kernels.inc, which
// cuda_emu_check.cc includes: CI has no GPU, and this runs the kernels' index maths, tiling and barriers on real
// numbers against plain references.
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

#include "kiln/tensor_view.h"

struct EmuDim {
  unsigned x = 0, y = 0, z = 0;
};
inline thread_local EmuDim threadIdx, blockIdx;
inline EmuDim gridDim, blockDim;
inline std::barrier<>* emu_barrier = nullptr;
inline std::vector<std::unique_ptr<std::barrier<>>> emu_warps;  // one per warp of the running block
inline std::vector<uint64_t> emu_slots;                         // one exchange word per thread

#define __global__
#define __device__
#define __host__
#define __launch_bounds__(...)
#define __shared__ static
#define __forceinline__ inline
#define __align__(n) __attribute__((aligned(n)))

struct uint4 {
  uint32_t x, y, z, w;
};
inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) { return {x, y, z, w}; }
inline uint32_t __umulhi(uint32_t a, uint32_t b) { return uint32_t((uint64_t{a} * b) >> 32); }
struct float2 {
  float x, y;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
struct float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
// half and bfloat16 as their bits, converted by kiln's host twins (round to nearest even, as CUDA's _rn)
struct __nv_bfloat16 {
  uint16_t bits;
};
inline float __bfloat162float(__nv_bfloat16 h) { return kiln::bf16_to_float(h.bits); }
inline __nv_bfloat16 __float2bfloat16_rn(float x) { return {kiln::float_to_bf16(x)}; }
struct __half {
  uint16_t bits;
};
inline float __half2float(__half h) { return kiln::half_to_float(h.bits); }
inline __half __float2half_rn(float x) { return {kiln::float_to_half(x)}; }

inline void __syncthreads() { emu_barrier->arrive_and_wait(); }
using std::max;
using std::min;
inline unsigned atomicAdd(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_add(v); }
inline unsigned atomicCAS(unsigned* p, unsigned expect, unsigned v) {
  std::atomic_ref<unsigned>(*p).compare_exchange_strong(expect, v);
  return expect;
}
inline unsigned atomicMin(unsigned* p, unsigned v) {
  std::atomic_ref<unsigned> a(*p);
  unsigned cur = a.load();
  while (v < cur && !a.compare_exchange_weak(cur, v)) {}
  return cur;
}
inline float __uint_as_float(uint32_t u) { return kiln::bits_f32(u); }
inline uint32_t __float_as_uint(float f) { return kiln::f32_bits(f); }
using std::isnan;

inline unsigned emu_thread() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
/** Every lane of the calling thread's warp puts v in its slot; each then reads lane `src(lane)`'s. */
template <class T, class Src>
T emu_exchange(T v, Src src) {
  static_assert(sizeof(T) <= 8, "a warp exchange moves up to 8 bytes");
  const unsigned t = emu_thread(), warp = t / 32, lane = t % 32;
  std::memcpy(&emu_slots[t], &v, sizeof(T));
  emu_warps[warp]->arrive_and_wait();
  T r;
  std::memcpy(&r, &emu_slots[warp * 32 + src(lane)], sizeof(T));
  emu_warps[warp]->arrive_and_wait();
  return r;
}
template <class T>
T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  return emu_exchange(v, [&](unsigned lane) {
    return (lane ^ unsigned(mask)) < (lane / width + 1) * width ? lane ^ unsigned(mask) : lane;
  });
}
inline int __any_sync(unsigned, int pred) {
  int any = 0;
  for (unsigned s = 0; s < 32; ++s) any |= emu_exchange(pred, [&](unsigned) { return s; }) != 0;
  return any;
}
inline void __syncwarp(unsigned = 0xffffffffu) { emu_warps[emu_thread() / 32]->arrive_and_wait(); }

/** dp4a: the four byte products of a and b (signed bytes) added to c; dp4a_us takes a's bytes unsigned (the PTX
 * instruction kernels/cuda/quant.cu writes as inline asm). */
inline int __dp4a(int a, int b, int c) {
  for (int i = 0; i < 4; ++i) c += int(int8_t(a >> (8 * i))) * int(int8_t(b >> (8 * i)));
  return c;
}
inline int32_t dp4a_us(uint32_t a, int32_t b, int32_t c) {
  for (int i = 0; i < 4; ++i) c += int(uint8_t(a >> (8 * i))) * int(int8_t(b >> (8 * i)));
  return c;
}
using std::isfinite;

// WMMA: a fragment holds its whole tile in every lane (the collective operations are done once per lane, with
// the same result), as float; mma_sync adds each product in k order with one FMA (tensor cores add in an order of
// their own), and store_matrix_sync writes from lane 0 (the kernels __syncwarp before reading the stores back).
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
namespace precision {
struct tf32 {};
}  // namespace precision
enum layout_t { mem_row_major };
template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static constexpr int rows = std::is_same<Use, matrix_b>::value ? K : M;
  static constexpr int cols = std::is_same<Use, matrix_a>::value ? K : N;
  static constexpr int num_elements = rows * cols;
  float x[num_elements];
};
inline float elem(float v) { return v; }
inline float elem(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class Use, int M, int N, int K, class T, class L>
void fill_fragment(fragment<Use, M, N, K, T, L>& f, float v) {
  for (float& e : f.x) e = v;
}
template <class Use, int M, int N, int K, class T, class L, class P>
void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const P* p, unsigned ldm) {
  using F = fragment<Use, M, N, K, T, L>;
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c) f.x[r * F::cols + c] = elem(p[r * ldm + c]);
}
template <int M, int N, int K, class T, class LA, class LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
              const fragment<matrix_b, M, N, K, T, LB>& b, const fragment<accumulator, M, N, K, float>& c) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float s = c.x[i * N + j];
      for (int k = 0; k < K; ++k) s = std::fma(a.x[i * K + k], b.x[k * N + j], s);
      d.x[i * N + j] = s;
    }
}
template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t) {
  if (emu_thread() % 32 != 0) return;
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) p[r * ldm + c] = f.x[r * N + c];
}
/** TF32: 10 mantissa bits, rounded to nearest with ties away from zero (cvt.rna.tf32.f32). */
inline float __float_to_tf32(float v) {
  uint32_t b = kiln::f32_bits(v);
  if ((b & 0x7f800000u) != 0x7f800000u) b = (b + 0x1000u) & ~0x1fffu;
  return kiln::bits_f32(b);
}
}  // namespace wmma
}  // namespace nvcuda

/** Runs body() as every thread of every block of `grid` (blocks of `block_dim`), one block at a time. */
inline void emu_launch(EmuDim grid, EmuDim block_dim, const std::function<void()>& body) {
  gridDim = grid;
  blockDim = block_dim;
  const unsigned threads = block_dim.x * block_dim.y * block_dim.z;
  const unsigned blocks = grid.x * grid.y * grid.z;
  std::barrier<> start(threads + 1), done(threads + 1);  // the workers and this thread
  unsigned block = 0;
  bool stop = false;
  std::vector<std::thread> ts;
  ts.reserve(threads);
  for (unsigned t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      threadIdx = {t % block_dim.x, t / block_dim.x % block_dim.y, t / (block_dim.x * block_dim.y)};
      for (;;) {
        start.arrive_and_wait();
        if (stop) return;
        blockIdx = {block % grid.x, block / grid.x % grid.y, block / (grid.x * grid.y)};
        body();
        emu_barrier->arrive_and_drop();  // a thread that has returned no longer counts at __syncthreads
        emu_warps[t / 32]->arrive_and_drop();
        done.arrive_and_wait();
      }
    });
  for (unsigned b = 0; b < blocks; ++b) {
    std::barrier<> bar(threads);
    emu_barrier = &bar;
    emu_warps.clear();
    for (unsigned w = 0; w * 32 < threads; ++w)
      emu_warps.push_back(std::make_unique<std::barrier<>>(std::min(32u, threads - w * 32)));
    emu_slots.assign(threads, 0);
    block = b;
    start.arrive_and_wait();
    done.arrive_and_wait();
  }
  stop = true;
  start.arrive_and_wait();
  for (auto& t : ts) t.join();
}
