// Shared by kiln's CUDA kernels (one .cu file per op family, the stems of native/cpu/). Host launchers validate
// every op-specific shape rule before launching (the addon has already checked that each view lies inside its
// buffer), launch on the backend's stream, and turn launch failures into Status values: no CUDA error and no
// C++ exception crosses into N-API.
#pragma once
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "kiln/cpu_common.h"
#include "kiln/cuda_runtime.h"
#include "kiln/op_ids.h"
#include "kiln/tensor_view.h"

namespace kiln {
namespace cuda {

cudaStream_t stream();
/** The float32 GEMM mode from KILN_CUDA_GEMM: "fp32" (exact, the default; "simt" is an alias) or "tf32". */
const char* gemm_mode();
/** The device's streaming multiprocessors (1 without a device): how many blocks fill it. */
int sm_count();
/** Device scratch memory from the caching allocator; release after the kernels that use it are queued. */
Status scratch(uint64_t bytes, void** p);
void release_scratch(void* p, uint64_t bytes);

/** Status of the last launch (or of a runtime call). */
inline Status check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::ok();
  return fail(e == cudaErrorMemoryAllocation ? ST_OOM : ST_BACKEND,
              std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}
inline Status launched(const char* what) { return check(cudaGetLastError(), what); }

constexpr int kThreads = 256;
inline unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 2147483647 ? 2147483647 : b));
}

/**
 * One k-step of a 64x64 output tile per 16x16 threads from tiles staged in shared memory (sa[k][row],
 * sb[k][col]): thread (ty, tx) owns rows ty + 16a and columns tx + 16b, and adds each k's term with
 * acc = madd(acc, a, b), in k order. The SIMT GEMM and the implicit-GEMM convolutions share it.
 */
template <int KS, int LD, class T, class MAdd>
__device__ inline void tile_step_4x4(const T (&sa)[KS][LD], const T (&sb)[KS][LD], T (&acc)[4][4], int ty, int tx,
                                     MAdd madd) {
#pragma unroll
  for (int k = 0; k < KS; ++k) {
    T av[4], bv[4];
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      av[t] = sa[k][ty + 16 * t];
      bv[t] = sb[k][tx + 16 * t];
    }
#pragma unroll
    for (int a = 0; a < 4; ++a)
#pragma unroll
      for (int b = 0; b < 4; ++b) acc[a][b] = madd(acc[a][b], av[a], bv[b]);
  }
}
/** tile_step_4x4's float32 step: one FMA per term (so a tile's sums are the per-output loops' bits). */
struct FmaStep {
  __device__ float operator()(float acc, float a, float b) const { return fmaf(a, b, acc); }
};

/** c[i] = part[0][i] + part[1][i] + ... in split order (matmul.cu): split-K's second pass. */
__global__ void sum_splits(const float* part, float* c, int64_t total, int32_t splits);

// A strided view as a kernel argument (by value), after merging the dims it can.
constexpr int kViewDims = 8;
struct View {
  int64_t offset;
  int32_t ndim;
  int64_t shape[kViewDims];
  int64_t strides[kViewDims];
};

/** The views' dims merged where every view steps through two dims as one; false if more than kViewDims remain. */
bool merge_views(const int64_t* shape, int ndim, const TensorView* const* views, int nviews, View* out);

__device__ inline int64_t view_index(const View& v, int64_t e) {
  int64_t idx = v.offset;
  for (int d = v.ndim - 1; d >= 0; --d) {
    const int64_t s = v.shape[d];
    idx += (e % s) * v.strides[d];
    e /= s;
  }
  return idx;
}

__host__ __device__ inline bool is_int_dt(int32_t dt) {
  return dt == DT_INT32 || dt == DT_INT8 || dt == DT_UINT8 || dt == DT_BOOL;
}
__host__ __device__ inline int dt_size(int32_t dt) {
  return dt == DT_FLOAT32 || dt == DT_INT32 ? 4 : (dt == DT_FLOAT16 || dt == DT_BFLOAT16 ? 2 : 1);
}

// ---- dtype-generic element access (bit-exact twins of src/tensor/dtype.ts) ----
__device__ inline float load_f(const void* p, int32_t dt, int64_t i) {
  switch (dt) {
    case DT_FLOAT16: return __half2float(static_cast<const __half*>(p)[i]);
    case DT_BFLOAT16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case DT_INT32: return static_cast<float>(static_cast<const int32_t*>(p)[i]);
    case DT_INT8: return static_cast<float>(static_cast<const int8_t*>(p)[i]);
    case DT_UINT8:
    case DT_BOOL: return static_cast<float>(static_cast<const uint8_t*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

__device__ inline int32_t sat_i32(float x, int32_t lo, int32_t hi) {
  if (isnan(x)) return 0;
  if (x <= static_cast<float>(lo)) return lo;
  if (x >= static_cast<float>(hi)) return hi;
  return static_cast<int32_t>(truncf(x));
}

__device__ inline int32_t load_i(const void* p, int32_t dt, int64_t i) {
  switch (dt) {
    case DT_INT32: return static_cast<const int32_t*>(p)[i];
    case DT_INT8: return static_cast<const int8_t*>(p)[i];
    case DT_UINT8:
    case DT_BOOL: return static_cast<const uint8_t*>(p)[i];
    default: return sat_i32(load_f(p, dt, i), INT32_MIN, INT32_MAX);
  }
}

__device__ inline void store_f(void* p, int32_t dt, int64_t i, float v) {
  switch (dt) {
    case DT_FLOAT16: static_cast<__half*>(p)[i] = __float2half_rn(v); break;
    case DT_BFLOAT16: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v); break;
    case DT_INT32: static_cast<int32_t*>(p)[i] = sat_i32(v, INT32_MIN, INT32_MAX); break;
    case DT_INT8: static_cast<int8_t*>(p)[i] = static_cast<int8_t>(sat_i32(v, -128, 127)); break;
    case DT_UINT8: static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(sat_i32(v, 0, 255)); break;
    case DT_BOOL: static_cast<uint8_t*>(p)[i] = v != 0.f || isnan(v) ? 1 : 0; break;
    default: static_cast<float*>(p)[i] = v;
  }
}

__device__ inline void store_i(void* p, int32_t dt, int64_t i, int32_t v) {
  switch (dt) {
    case DT_INT32: static_cast<int32_t*>(p)[i] = v; break;
    case DT_INT8: static_cast<int8_t*>(p)[i] = static_cast<int8_t>(v < -128 ? -128 : (v > 127 ? 127 : v)); break;
    case DT_UINT8: static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v)); break;
    case DT_BOOL: static_cast<uint8_t*>(p)[i] = v != 0 ? 1 : 0; break;
    default: store_f(p, dt, i, static_cast<float>(v));
  }
}

/** Copies the raw bytes of element i (any dtype) from a to b. */
__device__ inline void copy_elem(const void* a, int64_t ia, void* b, int64_t ib, int size) {
  switch (size) {
    case 4: static_cast<uint32_t*>(b)[ib] = static_cast<const uint32_t*>(a)[ia]; break;
    case 2: static_cast<uint16_t*>(b)[ib] = static_cast<const uint16_t*>(a)[ia]; break;
    default: static_cast<uint8_t*>(b)[ib] = static_cast<const uint8_t*>(a)[ia];
  }
}

// error flags for data-dependent checks done on the device (an index out of range): kind k's word is set and
// the first bad (position, value) recorded; the runtime reads them at the next sync or read
DeviceFlags* device_flags();

/** The strided elementwise map kernel (elementwise.cu) over up to 3 inputs viewed in the output's shape: op is a
 * MAP_* code; a and b are its scalar attributes. Also runs copy (movement.cu). */
Status run_map(int32_t op, const TensorView* in, int nin, const TensorView& out, double a, double b, bool as_int,
               const char* name);
// v combined by op (commutative) over each group of Width lanes by butterfly shuffles: every lane of a group ends
// with the combination of the group, in an order fixed by the lane layout
template <int Width = 32, class T, class Op>
__device__ inline T warp_all(T v, Op op) {
  for (int s = Width / 2; s > 0; s >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, s));
  return v;
}
// v combined by op over a block of kThreads threads (the result in thread 0): each warp, then the warps' results
template <class T, class Op>
__device__ inline T block_all(T v, Op op) {
  constexpr int kWarps = kThreads / 32;
  __shared__ T sh[kWarps];
  v = warp_all(v, op);
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) v = warp_all<kWarps>(sh[threadIdx.x % kWarps], op);
  return v;
}
struct SumOp {
  template <class T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
__device__ inline float warp_sum_all(float v) { return warp_all(v, SumOp{}); }
__device__ inline float block_sum(float v) { return block_all(v, SumOp{}); }

__device__ inline void report(DeviceFlags* f, FlagKind kind, int64_t pos, int value, int64_t bound, int64_t extra = 0) {
  if (atomicCAS(&f->set[kind], 0u, 1u) == 0u) {
    f->pos[kind] = static_cast<unsigned>(pos);
    f->value[kind] = value;
    f->bound[kind] = static_cast<unsigned>(bound);
    f->extra[kind] = static_cast<unsigned>(extra);
  }
}

}  // namespace cuda
}  // namespace kiln
