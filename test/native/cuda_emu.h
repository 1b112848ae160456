// A CPU emulation of one CUDA thread block, enough to run kiln's CUDA kernels that use only shared memory,
// __syncthreads and shared/global atomics (no warp shuffles, tensor cores or async copies): each thread of a block
// is a std::thread, __syncthreads is a std::barrier (a thread that returns drops out of it, as on a GPU),
// `__shared__` variables are function statics (blocks run one at a time), and atomics are std::atomic_ref.
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

#define __global__
#define __device__
#define __host__
#define __launch_bounds__(n)
#define __shared__ static
#define __forceinline__ inline

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

/** Runs body() as every thread of every block of `grid`, `threads` threads a block, one block at a time. */
inline void emu_launch(EmuDim grid, unsigned threads, const std::function<void()>& body) {
  gridDim = grid;
  blockDim = {threads, 1, 1};
  const unsigned blocks = grid.x * grid.y * grid.z;
  std::barrier<> start(threads + 1), done(threads + 1);  // the workers and this thread
  unsigned block = 0;
  bool stop = false;
  std::vector<std::thread> ts;
  ts.reserve(threads);
  for (unsigned t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      threadIdx = {t, 0, 0};
      for (;;) {
        start.arrive_and_wait();
        if (stop) return;
        blockIdx = {block % grid.x, block / grid.x % grid.y, block / (grid.x * grid.y)};
        body();
        emu_barrier->arrive_and_drop();  // a thread that has returned no longer counts at __syncthreads
        done.arrive_and_wait();
      }
    });
  for (unsigned b = 0; b < blocks; ++b) {
    std::barrier<> bar(threads);
    emu_barrier = &bar;
    block = b;
    start.arrive_and_wait();
    done.arrive_and_wait();
  }
  stop = true;
  start.arrive_and_wait();
  for (auto& t : ts) t.join();
}
