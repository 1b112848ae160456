// A CPU emulation of one CUDA thread block, enough to run kiln's CUDA kernels that use shared memory,
// __syncthreads, warp shuffles and votes, and atomics (not tensor cores or async copies): each thread of a block
// is a std::thread, __syncthreads is a std::barrier (a thread that returns drops out of it, as on a GPU), a warp
// exchange goes through a slot per thread between two waits on the warp's own barrier, `__shared__` variables
// are function statics (blocks run one at a time), and atomics are std::atomic_ref.
// test/native.test.ts copies the kernels' text verbatim from kernels/cuda/ into cuda_emu_kernels.inc, which
// cuda_emu_check.cc includes: CI has no GPU, and this runs the kernels' index maths, tiling and barriers on real
// numbers against plain references. With KILN_EMU_FIBERS defined (cuda_emu_runtime.h, which builds the whole
// CUDA library on this emulation), a block's threads are fibers instead (see below). std::threads are kept from
// launch to launch either way.
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <semaphore>
#include <thread>
#include <type_traits>
#include <vector>

#include "kiln/tensor_view.h"
#ifdef KILN_EMU_FIBERS
#include <cstdio>
// How a fiber switches: by kiln_emu_switch (below) on x86-64, by ucontext elsewhere and under AddressSanitizer,
// which follows a stack switch only through swapcontext. swapcontext saves and restores the signal mask, a system
// call each time, and with it the emulated conformance suite took twice as long (59 s, 18 s of it in the kernel).
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KILN_EMU_UCONTEXT 1
#endif
#endif
#else
#define KILN_EMU_UCONTEXT 1
#endif
#ifdef KILN_EMU_UCONTEXT
#include <ucontext.h>
#endif
#endif

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

inline void emu_block_sync();         // every live thread of the block has arrived
inline void emu_warp_sync(unsigned);  // every live thread of warp w has arrived
inline void __syncthreads() { emu_block_sync(); }
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
  emu_warp_sync(warp);
  T r;
  std::memcpy(&r, &emu_slots[warp * 32 + src(lane)], sizeof(T));
  emu_warp_sync(warp);
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
inline void __syncwarp(unsigned = 0xffffffffu) { emu_warp_sync(emu_thread() / 32); }

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

// WMMA: a warp's fragment is held whole by its lane 0, as float; the collective operations run on lane 0 alone
// (once per warp, as the hardware does them) and the other lanes' copies are left as they are, so a kernel must
// reach a fragment's values only through the wmma calls (kiln's do). mma_sync adds each product in k order with
// one FMA (tensor cores add in an order of their own), and store_matrix_sync writes from lane 0 (the kernels
// __syncwarp before reading the stores back).
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
  if (emu_thread() % 32 != 0) return;
  for (float& e : f.x) e = v;
}
template <class Use, int M, int N, int K, class T, class L, class P>
void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const P* p, unsigned ldm) {
  using F = fragment<Use, M, N, K, T, L>;
  if (emu_thread() % 32 != 0) return;
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c) f.x[r * F::cols + c] = elem(p[r * ldm + c]);
}
template <int M, int N, int K, class T, class LA, class LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
              const fragment<matrix_b, M, N, K, T, LB>& b, const fragment<accumulator, M, N, K, float>& c) {
  if (emu_thread() % 32 != 0) return;
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

#ifdef KILN_EMU_FIBERS
// ---- fibers (KILN_EMU_FIBERS): a block's threads as fibers on the launching thread, each running until
// it waits at a barrier or returns, then the next; a barrier releases its waiters once every live thread of the
// block (or warp) has arrived. Far cheaper than a std::thread per thread where kernels sync often, but one order
// of threads per block where std::threads interleave at will (so the kernel checks keep threads); a wait that can
// never complete (threads at different barriers) is a hang on a GPU, and aborts here with a message.
struct EmuSync {
  unsigned live = 0, arrived = 0;
  uint64_t gen = 0;  // completed phases
};
#ifdef KILN_EMU_UCONTEXT
using EmuContext = ucontext_t;
#else
// A fiber's context is its stack pointer: kiln_emu_switch(&from, to) pushes the registers the SysV x86-64 ABI has a
// callee keep (rbx, rbp, r12-r15, and the SSE and x87 control words), stores the stack pointer in `from`, loads
// `to`, and pops that fiber's registers and returns into it. Weak and hidden: every file that includes this header
// defines it, once in the library, and nothing outside it sees it.
using EmuContext = void*;
extern "C" void kiln_emu_switch(EmuContext* from, EmuContext to);
asm(R"(
  .text
  .weak kiln_emu_switch
  .hidden kiln_emu_switch
  .type kiln_emu_switch, @function
kiln_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size kiln_emu_switch, .-kiln_emu_switch
)");
#endif
struct EmuFiber {
  EmuContext ctx;
  std::unique_ptr<char[]> stack;
  bool done = false;
  const EmuSync* wait = nullptr;  // the barrier it waits at, in phase wait_gen
  uint64_t wait_gen = 0;
};
constexpr size_t kEmuFiberStack = size_t{256} << 10;
inline std::vector<EmuFiber> emu_fibers;  // one per thread of the largest block so far (stacks kept)
inline EmuContext emu_scheduler;
inline EmuSync emu_block_barrier;
inline std::vector<EmuSync> emu_warp_barriers;
inline unsigned emu_running = 0;
inline const std::function<void()>* emu_body = nullptr;
/** Saves the running context in `from` and runs `to`'s. */
#ifdef KILN_EMU_UCONTEXT
inline void emu_switch(EmuContext* from, EmuContext* to) { swapcontext(from, to); }
#else
inline void emu_switch(EmuContext* from, EmuContext* to) { kiln_emu_switch(from, *to); }
#endif

inline void emu_arrive(EmuSync& s) {
  if (++s.arrived == s.live) {  // the last to arrive: the phase completes and this thread goes on
    s.arrived = 0;
    ++s.gen;
    return;
  }
  EmuFiber& f = emu_fibers[emu_running];
  f.wait = &s;
  f.wait_gen = s.gen;
  emu_switch(&f.ctx, &emu_scheduler);
}
inline void emu_leave(EmuSync& s) {  // a thread that has returned no longer counts
  if (--s.live > 0 && s.arrived == s.live) {
    s.arrived = 0;
    ++s.gen;
  }
}
inline void emu_block_sync() { emu_arrive(emu_block_barrier); }
inline void emu_warp_sync(unsigned w) { emu_arrive(emu_warp_barriers[w]); }
inline void emu_fiber_main() {
  (*emu_body)();
  const unsigned t = emu_running;
  emu_leave(emu_block_barrier);
  emu_leave(emu_warp_barriers[t / 32]);
  emu_fibers[t].done = true;
}
#ifdef KILN_EMU_UCONTEXT
/** Makes f start emu_fiber_main when next switched to, on its own stack, and return to the scheduler from it. */
inline void emu_fiber_start(EmuFiber& f) {
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = f.stack.get();
  f.ctx.uc_stack.ss_size = kEmuFiberStack;
  f.ctx.uc_link = &emu_scheduler;
  makecontext(&f.ctx, emu_fiber_main, 0);
}
#else
/** A fiber's first code: its body, then back to the scheduler, which never switches to a finished fiber. */
[[noreturn]] inline void emu_fiber_entry() {
  emu_fiber_main();
  EmuContext finished;
  kiln_emu_switch(&finished, emu_scheduler);
  std::abort();
}
/**
 * Makes f start emu_fiber_entry when next switched to: at the top of its stack, a frame as kiln_emu_switch leaves
 * one (the control words as they are now, zeroed registers, emu_fiber_entry as the return address, and above it a
 * null one, where a call would have left it), so the entry finds its stack aligned as after a call.
 */
inline void emu_fiber_start(EmuFiber& f) {
  auto top = reinterpret_cast<uintptr_t>(f.stack.get() + kEmuFiberStack) & ~uintptr_t{15};
  auto* sp = reinterpret_cast<uint64_t*>(top) - 2;  // 16-byte aligned: [0] the entry, [1] a null return address
  sp[1] = 0;
  sp[0] = reinterpret_cast<uint64_t>(&emu_fiber_entry);
  sp -= 7;  // r15, r14, r13, r12, rbx, rbp above the control words
  for (int i = 0; i < 7; ++i) sp[i] = 0;
  uint32_t mxcsr;
  uint16_t fpu;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpu));
  std::memcpy(sp, &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(sp) + 4, &fpu, 2);
  f.ctx = sp;
}
#endif

/** Runs body() as every thread of every block of `grid` (blocks of `block_dim`), one block at a time. */
inline void emu_launch(EmuDim grid, EmuDim block_dim, const std::function<void()>& body) {
  gridDim = grid;
  blockDim = block_dim;
  emu_body = &body;
  const unsigned threads = block_dim.x * block_dim.y * block_dim.z;
  const unsigned blocks = grid.x * grid.y * grid.z;
  if (emu_fibers.size() < threads) emu_fibers.resize(threads);
  for (unsigned b = 0; b < blocks; ++b) {
    blockIdx = {b % grid.x, b / grid.x % grid.y, b / (grid.x * grid.y)};
    emu_block_barrier = {threads, 0, 0};
    emu_warp_barriers.assign((threads + 31) / 32, {});
    for (unsigned w = 0; w * 32 < threads; ++w) emu_warp_barriers[w].live = std::min(32u, threads - w * 32);
    emu_slots.assign(threads, 0);
    for (unsigned t = 0; t < threads; ++t) {
      EmuFiber& f = emu_fibers[t];
      if (!f.stack) f.stack.reset(new char[kEmuFiberStack]);
      emu_fiber_start(f);
      f.done = false;
      f.wait = nullptr;
    }
    for (unsigned left = threads; left > 0;) {
      bool ran = false;
      // threads in order in even blocks, in reverse in odd ones: a read of what another thread writes before a
      // barrier, with no barrier between, sees nothing written in one of the two
      for (unsigned i = 0; i < threads; ++i) {
        const unsigned t = b % 2 ? threads - 1 - i : i;
        EmuFiber& f = emu_fibers[t];
        if (f.done || (f.wait && f.wait->gen == f.wait_gen)) continue;
        f.wait = nullptr;
        emu_running = t;
        threadIdx = {t % block_dim.x, t / block_dim.x % block_dim.y, t / (block_dim.x * block_dim.y)};
        emu_switch(&emu_scheduler, &f.ctx);
        ran = true;
        if (f.done) --left;
      }
      if (!ran) {
        std::fprintf(stderr, "CUDA emulation: the threads of block %u wait at barriers that cannot complete (a hang)\n",
                     b);
        std::abort();
      }
    }
  }
}
#else
inline void emu_block_sync() { emu_barrier->arrive_and_wait(); }
inline void emu_warp_sync(unsigned w) { emu_warps[w]->arrive_and_wait(); }

/**
 * The threads that run blocks, kept from launch to launch (a launch of 256-thread blocks would otherwise start and
 * join 256 threads): worker i waits on its own semaphore, runs the launch's job(i), and reports it done. Never
 * destroyed: parked workers may outlive main.
 */
struct EmuWorkers {
  std::mutex mu;  // one launch at a time
  std::vector<std::binary_semaphore*> go;
  std::function<void(unsigned)> job;
  std::counting_semaphore<> finished{0};
};
inline EmuWorkers& emu_workers() {
  static EmuWorkers* w = new EmuWorkers();
  return *w;
}
/** Runs job(0) .. job(n - 1) on n workers (started as needed) and waits for all of them. */
inline void emu_run_workers(unsigned n, std::function<void(unsigned)> job) {
  EmuWorkers& w = emu_workers();
  std::lock_guard<std::mutex> lock(w.mu);
  w.job = std::move(job);
  while (w.go.size() < n) {
    auto* go = new std::binary_semaphore(0);
    const unsigned i = static_cast<unsigned>(w.go.size());
    w.go.push_back(go);
    std::thread([&w, go, i] {
      for (;;) {
        go->acquire();
        w.job(i);
        w.finished.release();
      }
    }).detach();
  }
  for (unsigned i = 0; i < n; ++i) w.go[i]->release();
  for (unsigned i = 0; i < n; ++i) w.finished.acquire();
}

/** Runs body() as every thread of every block of `grid` (blocks of `block_dim`), one block at a time. */
inline void emu_launch(EmuDim grid, EmuDim block_dim, const std::function<void()>& body) {
  gridDim = grid;
  blockDim = block_dim;
  const unsigned threads = block_dim.x * block_dim.y * block_dim.z;
  const unsigned blocks = grid.x * grid.y * grid.z;
  std::barrier<> start(threads + 1), done(threads + 1);  // the workers and the block loop
  unsigned block = 0;
  bool stop = false;
  std::thread blocks_loop([&] {
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
  });
  emu_run_workers(threads, [&](unsigned t) {
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
  blocks_loop.join();
}
#endif
