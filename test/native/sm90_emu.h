// A CPU emulation of what kernels/cuda/matmul_sm90.cu asks of a Hopper GPU beyond cuda_emu.h's thread block:
// the block's dynamic shared memory as a window of addresses, mbarriers (arrival counts, transaction bytes,
// phases, parity waits), TMA tensor maps and their copies into 128-byte-swizzled shared memory, and wgmma reading
// both operands from shared memory through descriptors into each thread's accumulator fragment. Each follows
// the PTX ISA and the CUDA driver's documentation (cuTensorMapEncodeTiled's requirements are checked), and each
// leans the hazardous way a GPU may: a wgmma reads shared memory only when a wait_group retires its group (as
// late as the hardware may), and copies either land at once (a stage released too early is overwritten before
// the late read) or from a separate "TMA unit" thread after a delay (a stage read before its barrier has its
// bytes holds poison). Shared memory is poisoned with NaNs at each block's start.
//
// test/native.test.ts copies the kernel and its host side (run_gemm: plan, pack, tensor maps, launch) verbatim from
// kernels/cuda/matmul_sm90.cu into sm90_emu_kernels.inc, which wgmma_emu_check.cc includes; the functions below
// stand in for the file's inline PTX and for the CUDA runtime it calls, and each `kernel<<<grid, block, smem,
// stream>>>(args);` becomes `emu_kernel(grid, block, smem, stream, [&] { kernel(args); }, "kernel");`.
// What this cannot check is the PTX text itself (ptxas does) and the hardware's own reading of the layouts, which
// here is the documentation's, written once more.
#pragma once
#include <chrono>
#include <cstdio>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "cuda_emu.h"

#define __CUDA_ARCH_FEAT_SM90_ALL 1
#define __grid_constant__

// ---- faults: what a GPU would do wrong or hang on, counted and the first one kept
inline std::mutex emu_fault_mu;
inline std::string emu_first_fault;
inline std::atomic<int> emu_faults{0};
inline std::atomic<bool> emu_abort{false};  // after a hung wait, later waits return at once
inline void emu_fault(const std::string& what) {
  if (emu_faults++ != 0) return;
  std::lock_guard<std::mutex> g(emu_fault_mu);
  emu_first_fault = what;
}

// ---- the checks' report: one line each, "ok" or "FAIL" and what was checked
inline int emu_checks = 0, emu_failures = 0;
inline void expect(bool ok, const std::string& what) {
  ++emu_checks;
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++emu_failures;
}

// ---- shared memory: the window's offsets are the shared-space addresses
inline std::vector<unsigned char> emu_smem;
// the dynamic shared memory starts this far past a 1024-byte boundary, as it may on a GPU (after static shared
// memory), so the kernel's own alignment is exercised
constexpr size_t kEmuSmemSkew = 16;
inline unsigned char* dynamic_smem() { return emu_smem.data() + kEmuSmemSkew; }
inline size_t __cvta_generic_to_shared(const void* p) {
  const auto* c = static_cast<const unsigned char*>(p);
  if (c < emu_smem.data() || c >= emu_smem.data() + emu_smem.size()) {
    emu_fault("a shared-memory address outside the block's shared memory");
    return 0;
  }
  return static_cast<size_t>(c - emu_smem.data());
}
inline bool emu_smem_range(uint64_t off, size_t bytes) {
  if (off + bytes <= emu_smem.size()) return true;
  emu_fault("a shared-memory access past the end of the block's shared memory");
  return false;
}
/** The 128-byte swizzle on a shared-memory address: its 16-byte chunk (bits 4-6) XOR its row of 8 (bits 7-9). */
inline uint64_t emu_swizzle128(uint64_t a) { return a ^ (((a >> 7) & 7) << 4); }

// ---- mbarriers, by shared-memory address
struct EmuBar {
  int count = 0, pending = 0;  // arrivals per phase, and still to come in this one
  int64_t tx = 0;              // transaction bytes still to come in this phase
  uint32_t phase = 0;          // phases completed
};
inline std::mutex emu_bar_mu;
inline std::condition_variable emu_bar_cv;
inline std::map<uint64_t, EmuBar> emu_bars;  // only mbar_init creates one
inline EmuBar* emu_bar_locked(const void* b) {
  auto it = emu_bars.find(__cvta_generic_to_shared(b));
  if (it != emu_bars.end()) return &it->second;
  emu_fault("an mbarrier used before mbarrier.init");
  return nullptr;
}
inline void emu_bar_settle(EmuBar& x) {
  if (x.pending == 0 && x.tx == 0) {
    ++x.phase;
    x.pending = x.count;
    emu_bar_cv.notify_all();
  }
}
inline void emu_bar_arrive_locked(EmuBar& x) {
  if (x.pending <= 0) {
    emu_fault("more arrivals on an mbarrier than its count");
    return;
  }
  --x.pending;
  emu_bar_settle(x);
}
inline void mbar_init(uint64_t* b, uint32_t count) {
  std::lock_guard<std::mutex> g(emu_bar_mu);
  EmuBar& x = emu_bars[__cvta_generic_to_shared(b)];
  x = EmuBar{};
  x.count = x.pending = static_cast<int>(count);
}
inline void mbar_init_fence() {}
inline void mbar_expect_tx(uint64_t* b, uint32_t bytes) {
  std::lock_guard<std::mutex> g(emu_bar_mu);
  if (EmuBar* x = emu_bar_locked(b)) {
    x->tx += bytes;
    if (x->tx >= (int64_t{1} << 20)) emu_fault("an mbarrier's transaction count past its range (2^20 - 1)");
    emu_bar_arrive_locked(*x);
  }
}
inline void mbar_arrive(uint64_t* b) {
  std::lock_guard<std::mutex> g(emu_bar_mu);
  if (EmuBar* x = emu_bar_locked(b)) emu_bar_arrive_locked(*x);
}
inline void emu_complete_tx(uint64_t bar, uint32_t bytes) {
  std::lock_guard<std::mutex> g(emu_bar_mu);
  auto it = emu_bars.find(bar);
  if (it == emu_bars.end()) return emu_fault("a copy completing on an mbarrier that was never initialised");
  it->second.tx -= bytes;  // may run ahead of expect_tx, as on the GPU
  emu_bar_settle(it->second);
}
/** try_wait.parity's rule: the phase of this parity has completed once the current phase's parity differs. */
inline void mbar_wait(uint64_t* b, uint32_t parity) {
  std::unique_lock<std::mutex> g(emu_bar_mu);
  EmuBar* x = emu_bar_locked(b);
  if (!x) return;
  const bool done =
      emu_bar_cv.wait_for(g, std::chrono::seconds(10), [&] { return emu_abort.load() || (x->phase & 1) != parity; });
  if (!done && !emu_abort.exchange(true)) {
    g.unlock();
    emu_fault("an mbarrier wait never completed (the kernel would hang, and trap)");
  }
}

// ---- tensor maps and TMA copies
using cuuint32_t = uint32_t;
using cuuint64_t = uint64_t;
enum CUresult { CUDA_SUCCESS = 0, CUDA_ERROR_INVALID_VALUE = 1 };
enum CUtensorMapDataType { CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 = 9, CU_TENSOR_MAP_DATA_TYPE_FLOAT32 = 7 };
enum CUtensorMapInterleave { CU_TENSOR_MAP_INTERLEAVE_NONE = 0 };
enum CUtensorMapSwizzle { CU_TENSOR_MAP_SWIZZLE_NONE = 0, CU_TENSOR_MAP_SWIZZLE_128B = 3 };
enum CUtensorMapL2promotion { CU_TENSOR_MAP_L2_PROMOTION_L2_256B = 3 };
enum CUtensorMapFloatOOBfill { CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE = 0 };
/** What this emulation keeps of a tiled tensor map (the driver's is 128 opaque bytes). */
struct CUtensorMap {
  const unsigned char* base = nullptr;
  uint32_t elem = 0;
  uint64_t dims[3] = {0, 0, 0}, strides[3] = {0, 0, 0};  // strides in bytes, strides[0] the element size
  uint32_t box[3] = {0, 0, 0};
  bool swizzle128 = false;
};
/** cuTensorMapEncodeTiled for rank 3 and the kernel's data types, checking what its documentation requires. */
inline CUresult emu_encode_tiled(CUtensorMap* map, CUtensorMapDataType type, cuuint32_t rank, void* global,
                                 const cuuint64_t* dims, const cuuint64_t* strides, const cuuint32_t* box,
                                 const cuuint32_t* elem_strides, CUtensorMapInterleave interleave,
                                 CUtensorMapSwizzle swizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill) {
  const uint32_t esize = type == CU_TENSOR_MAP_DATA_TYPE_FLOAT32 ? 4 : 2;
  const auto bad = [](const char* why) {
    emu_fault(std::string("cuTensorMapEncodeTiled would refuse the map: ") + why);
    return CUDA_ERROR_INVALID_VALUE;
  };
  if (rank != 3) return bad("this emulation takes rank 3");
  if (reinterpret_cast<uintptr_t>(global) % 16 != 0) return bad("globalAddress not 16-byte aligned");
  for (int i = 0; i < 3; ++i) {
    if (dims[i] == 0 || dims[i] > (uint64_t{1} << 32)) return bad("a globalDim of 0 or over 2^32");
    if (box[i] == 0 || box[i] > 256) return bad("a boxDim of 0 or over 256");
    if (elem_strides[i] == 0 || elem_strides[i] > 8) return bad("an elementStride of 0 or over 8");
    if (elem_strides[i] != 1) return bad("this emulation takes element strides of 1");
  }
  for (int i = 0; i < 2; ++i)
    if (strides[i] % 16 != 0 || strides[i] >= (uint64_t{1} << 40))
      return bad("a globalStride not a multiple of 16 or not under 2^40");
  if (interleave != CU_TENSOR_MAP_INTERLEAVE_NONE) return bad("this emulation takes no interleave");
  if ((box[0] * esize) % 16 != 0) return bad("boxDim[0] * element size not a multiple of 16 bytes");
  if (swizzle == CU_TENSOR_MAP_SWIZZLE_128B && box[0] * esize > 128)
    return bad("the box's inner dimension over the 128-byte swizzle span");
  if (swizzle != CU_TENSOR_MAP_SWIZZLE_128B || box[0] * esize != 128)
    return bad("this emulation takes 128-byte rows with the 128-byte swizzle");
  *map = CUtensorMap{};
  map->base = static_cast<const unsigned char*>(global);
  map->elem = esize;
  map->strides[0] = esize;
  for (int i = 0; i < 3; ++i) map->dims[i] = dims[i], map->box[i] = box[i];
  map->strides[1] = strides[0];
  map->strides[2] = strides[1];
  map->swizzle128 = true;
  return CUDA_SUCCESS;
}
using EmuEncodeTiled = decltype(&emu_encode_tiled);
inline EmuEncodeTiled encode_tiled() { return &emu_encode_tiled; }

/** One copy: the box at coordinates c of the map, into shared memory at dst (its bytes counted on bar). */
struct EmuCopy {
  CUtensorMap map;  // by value: the kernel's parameter is gone once the producer returns, the GPU's is not
  uint64_t dst, bar;
  int32_t c[3];
};
inline void emu_do_copy(const EmuCopy& j) {
  const CUtensorMap& m = j.map;
  const uint64_t bytes = uint64_t{m.box[0]} * m.box[1] * m.box[2] * m.elem;
  if (j.dst % 1024 != 0) emu_fault("a 128-byte-swizzled TMA copy into shared memory not 1024-byte aligned");
  if (!emu_smem_range(j.dst, bytes)) return;
  uint64_t at = j.dst;  // the box lands row after row, each row (box[0] elements) 128 bytes, then swizzled
  for (uint32_t z = 0; z < m.box[2]; ++z)
    for (uint32_t r = 0; r < m.box[1]; ++r)
      for (uint32_t k = 0; k < m.box[0]; ++k, at += m.elem) {
        const int64_t g[3] = {int64_t{j.c[0]} + k, int64_t{j.c[1]} + r, int64_t{j.c[2]} + z};
        unsigned char* to = emu_smem.data() + emu_swizzle128(at);
        bool inside = true;
        for (int i = 0; i < 3; ++i) inside = inside && g[i] >= 0 && uint64_t(g[i]) < m.dims[i];
        if (inside)
          std::memcpy(to, m.base + g[0] * m.strides[0] + g[1] * m.strides[1] + g[2] * m.strides[2], m.elem);
        else
          std::memset(to, 0, m.elem);  // past the tensor: zeros (FLOAT_OOB_FILL_NONE)
      }
  emu_complete_tx(j.bar, static_cast<uint32_t>(bytes));
}
// the "TMA unit": in late mode a thread that lands each copy after a short random delay, in order
inline bool emu_tma_late = false;
inline std::mutex emu_tma_mu;
inline std::condition_variable emu_tma_cv;
inline std::deque<EmuCopy> emu_tma_queue;
inline bool emu_tma_stop = false;
inline void emu_tma_unit() {
  std::mt19937 rng(7);
  for (;;) {
    EmuCopy j;
    {
      std::unique_lock<std::mutex> g(emu_tma_mu);
      emu_tma_cv.wait(g, [] { return emu_tma_stop || !emu_tma_queue.empty(); });
      if (emu_tma_queue.empty()) return;
      j = emu_tma_queue.front();
      emu_tma_queue.pop_front();
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 200));
    emu_do_copy(j);
  }
}
inline void tma_load(void* dst, const CUtensorMap* map, uint64_t* bar, int32_t k, int32_t row, int32_t z) {
  if (!map->swizzle128) return emu_fault("a TMA copy through a tensor map that was never encoded");
  const EmuCopy j{*map, __cvta_generic_to_shared(dst), __cvta_generic_to_shared(bar), {k, row, z}};
  if (!emu_tma_late) return emu_do_copy(j);
  std::lock_guard<std::mutex> g(emu_tma_mu);
  emu_tma_queue.push_back(j);
  emu_tma_cv.notify_one();
}

// ---- wgmma: each thread's share of a warpgroup's 64 x N x k product, run when a wait retires its group
/**
 * An operand's element (row, k) through a descriptor with the 128-byte swizzle (layout type 1), as the PTX ISA's
 * canonical layouts have it (CUTLASS's make_gmma_desc states them in 16-byte units). K-major: rows of a group of 8
 * one swizzle span (128 bytes) apart, groups of 8 rows the stride byte offset apart, k along the row. MN-major
 * (the transpose immediate; 16-bit types only): 128 bytes of rows along a k-row, k-rows of a group of 8 128
 * bytes apart, groups of 8 k-rows the stride byte offset apart, blocks of 128 bytes of rows the leading byte
 * offset apart.
 */
template <class T>
float emu_desc_read(uint64_t desc, bool mn, int row, int k) {
  const uint64_t start = (desc & 0x3FFF) << 4, lbo = ((desc >> 16) & 0x3FFF) << 4, sbo = ((desc >> 32) & 0x3FFF) << 4;
  if ((desc >> 62) != 1) emu_fault("a wgmma descriptor without the 128-byte swizzle (this emulation's only layout)");
  if (((desc >> 49) & 7) != 0) emu_fault("a wgmma descriptor with a base offset (this emulation takes none)");
  constexpr uint64_t per_row = 128 / sizeof(T);  // elements in a swizzle span
  const uint64_t logical =
      mn ? start + (row / per_row) * lbo + (row % per_row) * sizeof(T) + (k / 8) * sbo + (k % 8) * 128
         : start + (row / 8) * sbo + (row % 8) * 128 + k * sizeof(T);
  const uint64_t at = emu_swizzle128(logical);
  if (!emu_smem_range(at, sizeof(T))) return NAN;
  T v;
  std::memcpy(&v, emu_smem.data() + at, sizeof(T));
  if constexpr (std::is_same<T, float>::value) {
    return kiln::bits_f32(kiln::f32_bits(v) & ~0x1FFFu);  // TF32 reads the top 19 bits
  } else {
    return __bfloat162float(v);
  }
}
struct EmuMma {
  float* d;
  int n;  // accumulators per thread: n / 2 is the instruction's N
  uint64_t da, db;
  bool tf32, a_mn, b_mn;
};
inline thread_local std::vector<EmuMma> emu_open;                // issued since the last commit
inline thread_local std::deque<std::vector<EmuMma>> emu_groups;  // committed, not yet retired
inline thread_local bool emu_fenced = false;                     // a wgmma.fence since the last commit
inline thread_local uint64_t emu_mma_trace = 0;                  // a hash of this thread's wgmma operands
/** The accumulator layout of m64nNk*: warp w of the warpgroup holds rows 16w + lane/4 (+ 8); in the 8-column
 * group j, values 4j .. 4j+3 are (row, 2(lane%4)), (row, +1), (row + 8, 2(lane%4)), (row + 8, +1). */
template <class T>
void emu_mma_run(const EmuMma& m) {
  const int t = static_cast<int>(emu_thread() % 128), warp = t / 32, lane = t % 32;
  const int kinst = 32 / static_cast<int>(sizeof(T));  // 32 bytes of k per instruction
  float a[2][16];
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < kinst; ++k) a[h][k] = emu_desc_read<T>(m.da, m.a_mn, 16 * warp + lane / 4 + 8 * h, k);
  for (int i = 0; i < m.n; ++i) {
    const int j = i / 4, h = (i / 2) % 2, e = i % 2;
    const int col = 8 * j + 2 * (lane % 4) + e;
    double s = 0;
    for (int k = 0; k < kinst; ++k) s += double(a[h][k]) * emu_desc_read<T>(m.db, m.b_mn, col, k);
    m.d[i] = static_cast<float>(m.d[i] + s);
  }
}
template <class T, bool TA, bool TB, size_t N>
void wgmma_step(float (&d)[N], uint64_t da, uint64_t db) {
  if (!emu_fenced) emu_fault("a wgmma without a wgmma.fence before it");
  if (std::is_same<T, float>::value && (TA || TB)) emu_fault("a TF32 wgmma with a transposed (MN-major) operand");
  emu_open.push_back({d, static_cast<int>(N), da, db, std::is_same<T, float>::value, TA, TB});
  emu_mma_trace = (emu_mma_trace ^ da) * 0x100000001B3ull;
  emu_mma_trace = (emu_mma_trace ^ db) * 0x100000001B3ull;
}
template <size_t N>
void fence_accumulators(float (&)[N]) {}
inline void wgmma_fence() { emu_fenced = true; }
inline void wgmma_commit() {
  emu_groups.push_back(std::move(emu_open));
  emu_open.clear();
  emu_fenced = false;
}
template <int N>
void wgmma_wait() {
  while (emu_groups.size() > static_cast<size_t>(N)) {
    for (const EmuMma& m : emu_groups.front()) m.tf32 ? emu_mma_run<float>(m) : emu_mma_run<__nv_bfloat16>(m);
    emu_groups.pop_front();
  }
}
/** At a thread's end: nothing may be left in flight. Returns its trace (the same in every thread of a warpgroup,
 * as wgmma is .sync.aligned) and starts the next block afresh. */
inline uint64_t emu_wgmma_end() {
  if (!emu_open.empty() || !emu_groups.empty()) emu_fault("a thread ended with wgmma still in flight");
  emu_open.clear();
  emu_groups.clear();
  emu_fenced = false;
  const uint64_t t = emu_mma_trace;
  emu_mma_trace = 0;
  return t;
}

// ---- the host side: launches, scratch memory, the device's SM count
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline int stream() { return 0; }
inline int emu_sm_count = 1;
inline int sm_count() { return emu_sm_count; }
inline kiln::Status launched(const char*) { return kiln::Status::ok(); }
inline int64_t emu_scratch_live = 0;   // scratch buffers handed out and not yet released
inline int64_t emu_scratch_taken = 0;  // scratch buffers handed out since the check last cleared it
/** Device scratch: fresh memory full of NaNs (0xFF bytes), 256-byte aligned as cudaMalloc's. */
inline kiln::Status scratch(uint64_t bytes, void** p) {
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  std::memset(*p, 0xFF, bytes);
  ++emu_scratch_live;
  ++emu_scratch_taken;
  return kiln::Status::ok();
}
inline void release_scratch(void* p, uint64_t) {
  std::free(p);
  --emu_scratch_live;
}
inline std::vector<uint64_t> emu_traces;       // per block and thread of the last launch with dynamic shared memory
inline std::vector<std::string> emu_launched;  // the kernels launched, by name, since the check last cleared it
/**
 * A launch: body() as every thread of every block, one block at a time. A kernel with dynamic shared memory (the
 * Hopper GEMM) gets a window of that size, full of NaNs and with no mbarrier at each block's start; each thread's
 * wgmma trace is kept, and a block must end with no copy or barrier phase half done. In late mode a TMA unit
 * thread runs for the launch.
 */
template <class F>
void emu_kernel(dim3 grid, dim3 block, size_t smem, int, F body, const char* name) {
  emu_launched.push_back(name);
  if (smem == 0) return emu_launch({grid.x, grid.y, grid.z}, {block.x, block.y, block.z}, body);
  const unsigned threads = block.x * block.y * block.z;
  emu_smem.assign(kEmuSmemSkew + smem, 0xFF);
  emu_traces.assign(size_t{grid.x} * grid.y * grid.z * threads, 0);
  std::thread unit;
  emu_tma_stop = false;
  if (emu_tma_late) unit = std::thread(emu_tma_unit);
  emu_launch({grid.x, grid.y, grid.z}, {block.x, block.y, block.z}, [&] {
    const unsigned t = emu_thread(), b = blockIdx.x + grid.x * (blockIdx.y + grid.y * blockIdx.z);
    if (t == 0) {
      std::fill(emu_smem.begin(), emu_smem.end(), 0xFF);
      std::lock_guard<std::mutex> g(emu_bar_mu);
      emu_bars.clear();
    }
    __syncthreads();
    body();
    emu_traces[size_t{b} * threads + t] = emu_wgmma_end();
    __syncthreads();
    if (t == 0) {
      std::lock_guard<std::mutex> g(emu_bar_mu);
      for (const auto& at_bar : emu_bars)
        if (at_bar.second.tx != 0 || at_bar.second.pending != at_bar.second.count)
          emu_fault("a block ended with an mbarrier phase half done");
    }
  });
  if (emu_tma_late) {
    {
      std::lock_guard<std::mutex> g(emu_tma_mu);
      emu_tma_stop = true;
    }
    emu_tma_cv.notify_all();
    unit.join();
  }
}
