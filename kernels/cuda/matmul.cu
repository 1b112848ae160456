// Matmul family on CUDA: C[b] = A[b] B[b] over strided (transposed, broadcast-batch) operands, float32 or
// bfloat16 inputs, float32 accumulation. Two kernels:
// - SIMT (exact float32, the default for float32, as PyTorch's): 128x128 tiles of 256 threads with 8x8 register
//   tiles, double-buffered shared memory (the next k-step's loads are in flight during this one's FMAs), when
//   there are enough tiles to give every SM one; else 64x64 tiles of 16x16 threads with 4x4 register tiles
//   (like kernels/wgsl/matmul.wgsl), four times as many blocks, and with fewer than 64 of those a k of 256 or
//   more is split into chunks of 128 whose partial products are added in chunk order (a rule of the shape only,
//   so the bits do not depend on the GPU). Without a split both kernels sum each output over k in order, so they
//   give the same bits;
// - tensor cores (sm_80+): WMMA m16n16k16 BF16 for bfloat16 always, and m16n16k8 TF32 for float32 only when
//   KILN_CUDA_GEMM=tf32 opts in (TF32 keeps 10 mantissa bits: ~1e-3 relative error). A 128x128 block of C per 8
//   warps (each 32x64, double-buffered as the SIMT kernel) when there is a tile for every SM, else a 64x64 block
//   per 4 warps (each 32x32); tiles staged through shared memory with bounds checks, so any shape and any
//   strides work. The int4 linear (quant.cu, gemm_abt) always runs exact float32.
// With KILN_CUDA_CUBLASLT, every product cuBLASLt can take in one strided-batch call (kiln/gemm_plan.h) runs there
// instead, in the same mode (native/cuda/cublaslt.cc).
#include <mma.h>

#include <cstdlib>
#include <cstring>

#include "common.cuh"
#include "kiln/attention.h"
#include "kiln/cublaslt.h"

namespace kiln {
namespace cuda {

struct MmArgs {
  const void* a;
  const void* b;
  float* c;
  int32_t dta, dtb;
  int64_t M, N, K;
  int64_t offA, rsA, csA, offB, rsB, csB;
  View batch_a, batch_b;  // batch dims (shape + strides of each operand)
  int32_t nbatch;
  // split-K (the 64x64 SIMT kernel only): blockIdx.z = product * splits + s sums k in [s kchunk, (s+1) kchunk)
  // into the partial product s of `part` ([splits][batch][M][N]); splits = 1 writes c directly
  int32_t splits = 1;
  int64_t kchunk = 0;
  float* part = nullptr;
};

__device__ inline int64_t batch_offset(const View& v, int32_t nb, int64_t z) {
  int64_t off = 0;
  for (int d = nb - 1; d >= 0; --d) {
    off += (z % v.shape[d]) * v.strides[d];
    z /= v.shape[d];
  }
  return off;
}

__device__ inline float ld(const void* p, int32_t dt, int64_t i) {
  return dt == DT_BFLOAT16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i])
                           : static_cast<const float*>(p)[i];
}

/**
 * Where element r of a thread's share of a ROWS x COLS tile goes (NT threads, ROWS * COLS / NT each): along the
 * rows when `rows_fast` (the operand is contiguous down a column), else along the columns, so a warp's loads
 * read consecutive addresses whichever way the operand is laid out (a transposed weight as much as a plain one).
 */
template <int ROWS, int COLS, int NT>
__device__ inline void tile_pos(int tid, int r, bool rows_fast, int& row, int& col) {
  const int e = tid + r * NT;
  row = rows_fast ? e % ROWS : e / COLS;
  col = rows_fast ? e / ROWS : e % COLS;
}

/** Operand A (rows m, columns k) is contiguous down its columns; B (rows k, columns n) likewise. */
__device__ inline bool a_rows_fast(const MmArgs& g) { return g.rsA == 1 && g.csA != 1; }
__device__ inline bool b_rows_fast(const MmArgs& g) { return g.rsB == 1 && g.csB != 1; }

__global__ void matmul_simt(MmArgs g) {
  __shared__ float sa[16][64 + 4];  // [k][m]; the padding spreads a column-major walk over the banks
  __shared__ float sb[16][64 + 4];  // [k][n]
  const int64_t z = blockIdx.z / g.splits, split = blockIdx.z % g.splits;
  const int64_t kbeg = g.splits > 1 ? split * g.kchunk : 0;
  const int64_t kend = g.splits > 1 ? min(g.K, kbeg + g.kchunk) : g.K;
  const int64_t oa = g.offA + batch_offset(g.batch_a, g.nbatch, z), ob = g.offB + batch_offset(g.batch_b, g.nbatch, z);
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * 64, n0 = static_cast<int64_t>(blockIdx.x) * 64;
  const int tx = threadIdx.x, ty = threadIdx.y, li = ty * 16 + tx;
  const bool af = a_rows_fast(g), bf = b_rows_fast(g);
  float acc[4][4] = {};
  for (int64_t k0 = kbeg; k0 < kend; k0 += 16) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      int m, kk, k2, n;
      tile_pos<64, 16, 256>(li, r, af, m, kk);
      tile_pos<16, 64, 256>(li, r, bf, k2, n);
      const int64_t ga = k0 + kk, gb = k0 + k2;
      sa[kk][m] = (m0 + m < g.M && ga < kend) ? ld(g.a, g.dta, oa + (m0 + m) * g.rsA + ga * g.csA) : 0.f;
      sb[k2][n] = (n0 + n < g.N && gb < kend) ? ld(g.b, g.dtb, ob + gb * g.rsB + (n0 + n) * g.csB) : 0.f;
    }
    __syncthreads();
    tile_step_4x4(sa, sb, acc, ty, tx, FmaStep{});
    __syncthreads();
  }
  float* c = g.splits > 1 ? g.part + (split * (gridDim.z / g.splits) + z) * g.M * g.N : g.c + z * g.M * g.N;
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + ty + i * 16;
    if (m >= g.M) continue;
    for (int j = 0; j < 4; ++j) {
      const int64_t n = n0 + tx + j * 16;
      if (n < g.N) c[m * g.N + n] = acc[i][j];
    }
  }
}

/**
 * The double-buffered k loop of the 128x128 kernels over k-steps of STEP: fetch(k0) loads step k0's tiles into
 * registers, stash(buf) stores them into shared buffer buf, compute(buf) works on buffer buf. Step t+1's loads go
 * out before step t's compute and land in the other buffer after it, so they are in flight during it.
 */
template <int STEP, class Fetch, class Stash, class Compute>
__device__ inline void pipelined_k(int64_t K, Fetch&& fetch, Stash&& stash, Compute&& compute) {
  fetch(0);
  stash(0);
  __syncthreads();
  int buf = 0;
  for (int64_t k0 = 0; k0 < K; k0 += STEP) {
    const bool more = k0 + STEP < K;
    if (more) fetch(k0 + STEP);
    compute(buf);
    if (more) stash(buf ^ 1);  // nobody reads buf ^ 1 now: every thread passed the last barrier after reading it
    __syncthreads();
    buf ^= 1;
  }
}

// The large-problem SIMT kernel: a 128x128 block of C per 256 threads, each owning an 8x8 register tile made of
// rows {4ty..4ty+3, 64+4ty..} and columns {4tx..4tx+3, 64+4tx..} (so its float4 reads of shared memory are
// conflict-free), over k-steps of 8. Tiles are stored k-major ([k][m], [k][n]); two buffers, so the loads of step
// t+1 go out to registers before step t's 512 FMAs per thread and land in the other buffer after them.
constexpr int kBig = 128, kBigK = 8, kBigPad = 4;
__global__ void __launch_bounds__(256, 2) matmul_simt128(MmArgs g) {
  __shared__ __align__(16) float sa[2][kBigK][kBig + kBigPad];
  __shared__ __align__(16) float sb[2][kBigK][kBig + kBigPad];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t z = blockIdx.z;
  const int64_t oa = g.offA + batch_offset(g.batch_a, g.nbatch, z), ob = g.offB + batch_offset(g.batch_b, g.nbatch, z);
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kBig, n0 = static_cast<int64_t>(blockIdx.x) * kBig;
  const bool af = a_rows_fast(g), bf = b_rows_fast(g);
  const float* A = static_cast<const float*>(g.a) + oa;  // float32 only (bfloat16 runs on tensor cores)
  const float* B = static_cast<const float*>(g.b) + ob;
  float ra[4], rb[4];
  auto fetch = [&](int64_t k0) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      int m, k, k2, n;
      tile_pos<kBig, kBigK, 256>(tid, r, af, m, k);
      tile_pos<kBigK, kBig, 256>(tid, r, bf, k2, n);
      ra[r] = (m0 + m < g.M && k0 + k < g.K) ? A[(m0 + m) * g.rsA + (k0 + k) * g.csA] : 0.f;
      rb[r] = (n0 + n < g.N && k0 + k2 < g.K) ? B[(k0 + k2) * g.rsB + (n0 + n) * g.csB] : 0.f;
    }
  };
  auto stash = [&](int buf) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      int m, k, k2, n;
      tile_pos<kBig, kBigK, 256>(tid, r, af, m, k);
      tile_pos<kBigK, kBig, 256>(tid, r, bf, k2, n);
      sa[buf][k][m] = ra[r];
      sb[buf][k2][n] = rb[r];
    }
  };
  float acc[8][8] = {};
  pipelined_k<kBigK>(g.K, fetch, stash, [&](int buf) {
#pragma unroll
    for (int k = 0; k < kBigK; ++k) {
      const float4 a0 = *reinterpret_cast<const float4*>(&sa[buf][k][4 * ty]);
      const float4 a1 = *reinterpret_cast<const float4*>(&sa[buf][k][64 + 4 * ty]);
      const float4 b0 = *reinterpret_cast<const float4*>(&sb[buf][k][4 * tx]);
      const float4 b1 = *reinterpret_cast<const float4*>(&sb[buf][k][64 + 4 * tx]);
      const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
  });
  float* c = g.c + z * g.M * g.N;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int64_t m = m0 + (i < 4 ? 4 * ty + i : 64 + 4 * ty + i - 4);
    if (m >= g.M) continue;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t n = n0 + 64 * h + 4 * tx;
      float* p = c + m * g.N + n;
      if (n + 3 < g.N && reinterpret_cast<uintptr_t>(p) % 16 == 0) {
        *reinterpret_cast<float4*>(p) =
            make_float4(acc[i][4 * h], acc[i][4 * h + 1], acc[i][4 * h + 2], acc[i][4 * h + 3]);
      } else {
        for (int j = 0; j < 4; ++j)
          if (n + j < g.N) p[j] = acc[i][4 * h + j];
      }
    }
  }
}

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
using namespace nvcuda;
// Tensor-core GEMM: 4 warps per block, each owning a 32x32 piece of the block's 64x64 C tile (2x2 fragments).
template <bool BF16>
__global__ void matmul_wmma(MmArgs g) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int KT = BF16 ? 16 : 8;  // k per fragment
  using In = typename std::conditional<BF16, __nv_bfloat16, wmma::precision::tf32>::type;
  using Elem = typename std::conditional<BF16, __nv_bfloat16, float>::type;
  // WMMA loads and stores need 256-bit aligned pointers: every fragment offset below is a multiple of 32 bytes
  // row-major A tile [m][k], padded against bank conflicts: rows of 12 floats (TF32) or 24 bfloat16, which keep
  // every 16-row fragment 32-byte aligned
  constexpr int LDA = BF16 ? KT + 8 : KT + 4;
  __shared__ __align__(32) Elem sa[64][LDA];
  __shared__ __align__(32) Elem sb[KT][64 + 8];  // row-major B tile [k][n]
  __shared__ __align__(32) float sc[4][32][32 + 4];
  const int warp = threadIdx.x / 32;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;
  const int64_t z = blockIdx.z;
  const int64_t oa = g.offA + batch_offset(g.batch_a, g.nbatch, z), ob = g.offB + batch_offset(g.batch_b, g.nbatch, z);
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * 64, n0 = static_cast<int64_t>(blockIdx.x) * 64;
  wmma::fragment<wmma::accumulator, 16, 16, KT, float> acc[2][2];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);
  constexpr int PER = 64 * KT / 128;  // elements of each tile per thread
  const bool af = a_rows_fast(g), bf = b_rows_fast(g);
  for (int64_t k0 = 0; k0 < g.K; k0 += KT) {
    float va[PER], vb[PER];  // every load issued before any store, walking each operand's contiguous side
#pragma unroll
    for (int r = 0; r < PER; ++r) {
      int m, k, k2, n;
      tile_pos<64, KT, 128>(threadIdx.x, r, af, m, k);
      tile_pos<KT, 64, 128>(threadIdx.x, r, bf, k2, n);
      va[r] = (m0 + m < g.M && k0 + k < g.K) ? ld(g.a, g.dta, oa + (m0 + m) * g.rsA + (k0 + k) * g.csA) : 0.f;
      vb[r] = (n0 + n < g.N && k0 + k2 < g.K) ? ld(g.b, g.dtb, ob + (k0 + k2) * g.rsB + (n0 + n) * g.csB) : 0.f;
    }
#pragma unroll
    for (int r = 0; r < PER; ++r) {
      int m, k, k2, n;
      tile_pos<64, KT, 128>(threadIdx.x, r, af, m, k);
      tile_pos<KT, 64, 128>(threadIdx.x, r, bf, k2, n);
      if constexpr (BF16) {
        sa[m][k] = __float2bfloat16_rn(va[r]);
        sb[k2][n] = __float2bfloat16_rn(vb[r]);
      } else {
        sa[m][k] = wmma::__float_to_tf32(va[r]);
        sb[k2][n] = wmma::__float_to_tf32(vb[r]);
      }
    }
    __syncthreads();
    wmma::fragment<wmma::matrix_a, 16, 16, KT, In, wmma::row_major> fa[2];
    wmma::fragment<wmma::matrix_b, 16, 16, KT, In, wmma::row_major> fb[2];
    for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], &sa[wm + i * 16][0], LDA);
    for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], &sb[0][wn + j * 16], 64 + 8);
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    __syncthreads();
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(&sc[warp][i * 16][j * 16], acc[i][j], 32 + 4, wmma::mem_row_major);
  __syncwarp();
  float* c = g.c + z * g.M * g.N;
  for (int e = threadIdx.x % 32; e < 32 * 32; e += 32) {
    const int64_t m = m0 + wm + e / 32, n = n0 + wn + e % 32;
    if (m < g.M && n < g.N) c[m * g.N + n] = sc[warp][e / 32][e % 32];
  }
#endif
}

// The large-problem tensor-core GEMM: a 128x128 block of C per 8 warps, each owning 32x64 (2x4 fragments), over
// k-steps of two fragments (32 for BF16, 16 for TF32). As matmul_simt128, two shared buffers: step t+1's loads go
// out to registers before step t's 16 MMAs per warp and land in the other buffer after them. Every fragment
// pointer is 32-byte aligned (rows of 40 bfloat16 / 20 floats in A, 136 / 132 in B). The finished tile leaves
// through a per-warp 16x64 staging area that reuses the buffers, with bounds checks, so any shape works.
template <bool BF16>
__global__ void __launch_bounds__(256, 1) matmul_wmma128(MmArgs g) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int KT = BF16 ? 16 : 8, BK = 2 * KT;
  using In = typename std::conditional<BF16, __nv_bfloat16, wmma::precision::tf32>::type;
  using Elem = typename std::conditional<BF16, __nv_bfloat16, float>::type;
  constexpr int LDA = BK + (BF16 ? 8 : 4), LDB = kBig + (BF16 ? 8 : 4), LDS = 64 + 4;
  constexpr int kABytes = 2 * kBig * LDA * sizeof(Elem), kBBytes = 2 * BK * LDB * sizeof(Elem);
  constexpr int kStageBytes = 8 * 16 * LDS * sizeof(float);
  constexpr int kBytes = kABytes + kBBytes > kStageBytes ? kABytes + kBBytes : kStageBytes;
  __shared__ __align__(128) unsigned char smem[kBytes];
  auto sa = reinterpret_cast<Elem(*)[kBig][LDA]>(smem);          // [2][m][k]
  auto sb = reinterpret_cast<Elem(*)[BK][LDB]>(smem + kABytes);  // [2][k][n]
  auto stage = reinterpret_cast<float(*)[16][LDS]>(smem);        // [warp][16][64], after the last step
  static_assert(kABytes % 128 == 0, "B's buffers must start 32-byte aligned");
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 64;
  const int64_t z = blockIdx.z;
  const int64_t oa = g.offA + batch_offset(g.batch_a, g.nbatch, z), ob = g.offB + batch_offset(g.batch_b, g.nbatch, z);
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kBig, n0 = static_cast<int64_t>(blockIdx.x) * kBig;
  const bool af = a_rows_fast(g), bf = b_rows_fast(g);
  constexpr int PER = kBig * BK / 256;  // elements of each tile per thread
  float va[PER], vb[PER];
  auto fetch = [&](int64_t k0) {
#pragma unroll
    for (int r = 0; r < PER; ++r) {
      int m, k, k2, n;
      tile_pos<kBig, BK, 256>(threadIdx.x, r, af, m, k);
      tile_pos<BK, kBig, 256>(threadIdx.x, r, bf, k2, n);
      va[r] = (m0 + m < g.M && k0 + k < g.K) ? ld(g.a, g.dta, oa + (m0 + m) * g.rsA + (k0 + k) * g.csA) : 0.f;
      vb[r] = (n0 + n < g.N && k0 + k2 < g.K) ? ld(g.b, g.dtb, ob + (k0 + k2) * g.rsB + (n0 + n) * g.csB) : 0.f;
    }
  };
  auto stash = [&](int buf) {
#pragma unroll
    for (int r = 0; r < PER; ++r) {
      int m, k, k2, n;
      tile_pos<kBig, BK, 256>(threadIdx.x, r, af, m, k);
      tile_pos<BK, kBig, 256>(threadIdx.x, r, bf, k2, n);
      if constexpr (BF16) {
        sa[buf][m][k] = __float2bfloat16_rn(va[r]);
        sb[buf][k2][n] = __float2bfloat16_rn(vb[r]);
      } else {
        sa[buf][m][k] = wmma::__float_to_tf32(va[r]);
        sb[buf][k2][n] = wmma::__float_to_tf32(vb[r]);
      }
    }
  };
  wmma::fragment<wmma::accumulator, 16, 16, KT, float> acc[2][4];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) wmma::fill_fragment(acc[i][j], 0.f);
  pipelined_k<BK>(g.K, fetch, stash, [&](int buf) {
#pragma unroll
    for (int kk = 0; kk < BK; kk += KT) {
      wmma::fragment<wmma::matrix_a, 16, 16, KT, In, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, KT, In, wmma::row_major> fb[4];
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], &sa[buf][wm + i * 16][kk], LDA);
      for (int j = 0; j < 4; ++j) wmma::load_matrix_sync(fb[j], &sb[buf][kk][wn + j * 16], LDB);
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 4; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
  });
  // the buffers are free (every warp passed the last barrier): each warp stages 16 rows of its 32 at a time
  float* c = g.c + z * g.M * g.N;
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 4; ++j) wmma::store_matrix_sync(&stage[warp][0][j * 16], acc[i][j], LDS, wmma::mem_row_major);
    __syncwarp();
    for (int e = lane; e < 16 * 64; e += 32) {
      const int64_t m = m0 + wm + i * 16 + e / 64, n = n0 + wn + e % 64;
      if (m < g.M && n < g.N) c[m * g.N + n] = stage[warp][e / 64][e % 64];
    }
    __syncwarp();
  }
#endif
}
#endif

/** Tensor cores: 128x128 tiles when there is one for every SM, else 64x64 tiles. */
template <bool BF16>
static void launch_wmma(const MmArgs& g, int64_t batch) {
  const dim3 big(static_cast<unsigned>((g.N + kBig - 1) / kBig), static_cast<unsigned>((g.M + kBig - 1) / kBig),
                 static_cast<unsigned>(batch));
  if (static_cast<int64_t>(big.x) * big.y * big.z >= sm_count()) {
    matmul_wmma128<BF16><<<big, 256, 0, stream()>>>(g);
  } else {
    const dim3 grid(static_cast<unsigned>((g.N + 63) / 64), static_cast<unsigned>((g.M + 63) / 64),
                    static_cast<unsigned>(batch));
    matmul_wmma<BF16><<<grid, 128, 0, stream()>>>(g);
  }
}

/** Whether float32 products run on TF32 tensor cores: only when KILN_CUDA_GEMM=tf32 (read once; see gemm_mode). */
static bool use_tf32() {
  static const bool tf32 = std::strcmp(gemm_mode(), "tf32") == 0;
  return tf32;
}

// c[i] = the splits' partial products added in split order
__global__ void sum_splits(const float* part, float* c, int64_t total, int32_t splits) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= total) return;
  float s = part[t];
  for (int32_t k = 1; k < splits; ++k) s += part[k * total + t];
  c[t] = s;
}

// Split-K for products with few 64x64 tiles and a long k (a training batch through a Linear): k in chunks of
// kSplitChunk, each chunk's partial product in scratch, then their sum in chunk order. The rule reads only the
// shape, so the bits do not depend on the GPU.
constexpr int64_t kSplitTiles = 64, kSplitChunk = 128;

/**
 * Exact float32: 128x128 tiles when there is one for every SM; else 64x64 tiles, split over k when there are
 * fewer than kSplitTiles of them and k spans several chunks. Without a split both kernels sum each output over k
 * in order, so they give the same bits.
 */
static Status launch_simt(MmArgs g, int64_t batch, const char* name) {
  // the split first: it changes the bits, so it must not depend on the SM count as the choice of tile size does
  const int64_t tiles = (g.N + 63) / 64 * ((g.M + 63) / 64) * batch;
  const int64_t splits = (g.K + kSplitChunk - 1) / kSplitChunk;
  const bool split = tiles < kSplitTiles && splits >= 2 && batch * splits <= 65535;
  const dim3 big(static_cast<unsigned>((g.N + kBig - 1) / kBig), static_cast<unsigned>((g.M + kBig - 1) / kBig),
                 static_cast<unsigned>(batch));
  if (!split && static_cast<int64_t>(big.x) * big.y * big.z >= sm_count()) {
    matmul_simt128<<<big, 256, 0, stream()>>>(g);
    return launched(name);
  }
  const dim3 grid(static_cast<unsigned>((g.N + 63) / 64), static_cast<unsigned>((g.M + 63) / 64),
                  static_cast<unsigned>(split ? batch * splits : batch));
  if (!split) {
    matmul_simt<<<grid, dim3(16, 16), 0, stream()>>>(g);
    return launched(name);
  }
  const int64_t total = batch * g.M * g.N;
  const uint64_t bytes = static_cast<uint64_t>(splits * total) * sizeof(float);
  void* part = nullptr;
  if (Status s = scratch(bytes, &part); !s.good()) return s;
  g.splits = static_cast<int32_t>(splits);
  g.kchunk = kSplitChunk;
  g.part = static_cast<float*>(part);
  matmul_simt<<<grid, dim3(16, 16), 0, stream()>>>(g);
  Status st = launched(name);
  if (st.good()) {
    sum_splits<<<blocks_for(total), kThreads, 0, stream()>>>(g.part, g.c, total, g.splits);
    st = launched(name);
  }
  release_scratch(part, bytes);
  return st;
}

/** dst[i] = src[i] rounded to bfloat16 (nearest even, as the cast kernel), over n values. */
__global__ void round_bf16(const float* src, __nv_bfloat16* dst, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = __float2bfloat16_rn(src[i]);
}

/**
 * Where matmul_into puts C: float32 at c; or, for a bfloat16 C at c_bf16 (c null), straight from cuBLASLt or the
 * Hopper kernel's epilogue when one takes the product, else as float32 into scratch (acc, taken only then), which
 * the caller rounds and releases.
 */
struct MmOut {
  float* c = nullptr;
  uint16_t* c_bf16 = nullptr;
  void* acc = nullptr;
  uint64_t acc_bytes = 0;
};
static Status matmul_into(const TensorView* in, const TensorView& out, const char* name, bool bf16, MmOut* o);

/**
 * C = A B over float32 (matmul) or bfloat16 operands (matmulBf16, which writes float32 or bfloat16). A bfloat16
 * C comes straight from cuBLASLt or the Hopper kernel's epilogue where one takes the product, else from a float32
 * product in scratch rounded by round_bf16: each float32 sum rounded to nearest even either way.
 */
static Status matmul(const TensorView* in, int nin, const TensorView& out, const char* name, bool bf16) {
  KILN_REQUIRE(nin == 2, ST_ARG, name, " takes 2 inputs");
  const int32_t want = bf16 ? DT_BFLOAT16 : DT_FLOAT32;
  const bool out_bf16 = bf16 && out.dtype == DT_BFLOAT16;
  KILN_REQUIRE(in[0].dtype == want && in[1].dtype == want && (out.dtype == DT_FLOAT32 || out_bf16), ST_DTYPE, name,
               ": takes ", kDTypeNames[want], " and writes float32", bf16 ? " or bfloat16" : "");
  MmOut o;
  if (out_bf16)
    o.c_bf16 = out.ptr<uint16_t>();
  else
    o.c = out.ptr<float>();
  Status st = matmul_into(in, out, name, bf16, &o);
  if (!o.acc) return st;
  if (st.good()) {
    const int64_t n = static_cast<int64_t>(o.acc_bytes / sizeof(float));
    round_bf16<<<blocks_for(n), kThreads, 0, stream()>>>(static_cast<const float*>(o.acc),
                                                         reinterpret_cast<__nv_bfloat16*>(o.c_bf16), n);
    st = launched(name);
  }
  release_scratch(o.acc, o.acc_bytes);
  return st;
}

/** The product into o (see MmOut); out gives C's shape, and its float32 data when o->c is set. */
static Status matmul_into(const TensorView* in, const TensorView& out, const char* name, bool bf16, MmOut* o) {
  const TensorView &a = in[0], &b = in[1];
  const int nd = a.ndim;
  KILN_REQUIRE(nd >= 2 && b.ndim == nd && out.ndim == nd, ST_SHAPE, name, ": operands must have the same rank >= 2");
  const int64_t M = a.shape[nd - 2], K = a.shape[nd - 1], N = b.shape[nd - 1];
  KILN_REQUIRE(b.shape[nd - 2] == K && out.shape[nd - 2] == M && out.shape[nd - 1] == N, ST_SHAPE, name, ": ",
               shape_str(a), " x ", shape_str(b), " does not give ", shape_str(out));
  MmArgs g{a.data,
           b.data,
           o->c,
           a.dtype,
           b.dtype,
           M,
           N,
           K,
           a.offset,
           a.strides[nd - 2],
           a.strides[nd - 1],
           b.offset,
           b.strides[nd - 2],
           b.strides[nd - 1],
           {},
           {},
           0};
  int64_t batch = 1;
  const TensorView* views[2] = {&a, &b};
  View merged[2];
  for (int d = 0; d < nd - 2; ++d) {
    KILN_REQUIRE(a.shape[d] == out.shape[d] && b.shape[d] == out.shape[d], ST_SHAPE, name,
                 ": batch dims arrive broadcast");
    batch *= out.shape[d];
  }
  if (batch * M * N == 0) return Status::ok();
  KILN_REQUIRE(merge_views(out.shape, nd - 2, views, 2, merged), ST_SHAPE, name, ": more than ", kViewDims,
               " batch dims");
  g.batch_a = merged[0];
  g.batch_b = merged[1];
  g.nbatch = merged[0].ndim;
  const bool one_batch = batch == 1 || g.nbatch == 1;  // one strided batch: cuBLASLt or wgmma may take it
  const int64_t bsA = one_batch && batch > 1 ? merged[0].strides[0] : 0;
  const int64_t bsB = one_batch && batch > 1 ? merged[1].strides[0] : 0;
  const size_t el = bf16 ? 2 : 4;
  LtGemm lg{static_cast<const char*>(a.data) + a.offset * el,
            static_cast<const char*>(b.data) + b.offset * el,
            g.c,
            {M, N, K, g.rsA, g.csA, g.rsB, g.csB, batch, bsA, bsB},
            bf16,
            use_tf32()};
  bool ran = false;
  if (one_batch && o->c_bf16) {  // bfloat16 straight from cuBLASLt or the Hopper kernel, when one takes it
    LtGemm direct = lg;
    direct.c_bf16 = o->c_bf16;
    if (Status s = cublaslt_gemm(direct, &ran); !s.good() || ran) return s;
    if (Status s = wgmma_gemm(direct, &ran); !s.good() || ran) return s;
  }
  if (!g.c) {  // the others write float32: into scratch, which the caller rounds
    o->acc_bytes = static_cast<uint64_t>(batch * M * N) * sizeof(float);
    if (Status s = scratch(o->acc_bytes, &o->acc); !s.good()) {
      o->acc = nullptr;
      return s;
    }
    g.c = lg.c = static_cast<float*>(o->acc);
  }
  if (one_batch) {
    if (Status s = cublaslt_gemm(lg, &ran); !s.good() || ran) return s;
    if (Status s = wgmma_gemm(lg, &ran); !s.good() || ran) return s;
  }
  KILN_REQUIRE(batch <= 65535, ST_SHAPE, name, ": ", batch, " batched products exceed the 65535-block grid");
  const dim3 grid(static_cast<unsigned>((N + 63) / 64), static_cast<unsigned>((M + 63) / 64),
                  static_cast<unsigned>(batch));
  KILN_REQUIRE((M + 63) / 64 <= 65535, ST_SHAPE, name, ": M = ", M, " is too large for one grid");
  if (bf16) {
    launch_wmma<true>(g, batch);
  } else if (use_tf32()) {
    launch_wmma<false>(g, batch);
  } else {
    return launch_simt(g, batch, name);
  }
  return launched(name);
}

static Status k_matmul(const TensorView* in, int nin, const TensorView& out, const double*) {
  return matmul(in, nin, out, "matmul", false);
}
static Status k_matmul_bf16(const TensorView* in, int nin, const TensorView& out, const double*) {
  return matmul(in, nin, out, "matmulBf16", true);
}

/** C = A B^T for contiguous A [M, K] and a row-major weight W [N, K] already in device memory (quant.cu). */
Status gemm_abt(const float* A, const float* W, float* C, int64_t M, int64_t N, int64_t K) {
  MmArgs g{A, W, C, DT_FLOAT32, DT_FLOAT32, M, N, K, 0, K, 1, 0, 1, K, {}, {}, 0};
  KILN_REQUIRE((M + 63) / 64 <= 65535, ST_SHAPE, "qlinearInt4: ", M, " rows exceed one grid (at most ", 65535 * 64,
               ")");
  if (M * N == 0) return Status::ok();
  bool ran = false;
  if (Status s = cublaslt_gemm({A, W, C, {M, N, K, K, 1, 1, K, 1, 0, 0}, false, false}, &ran); !s.good() || ran)
    return s;
  // exact float32 always: the int4 weights are dequantized exactly, so TF32 would be the only error
  return launch_simt(g, 1, "gemm");
}

// ---- fused attention: one warp per query row (forward, dq) or key row (dk, dv), lanes over the head dims, an
// online softmax over the keys, so nothing of size L x S is stored. The output row is the accumulator: each
// lane owns its columns. The backward recomputes P = exp(s - lse) and uses D_i = dO_i . O_i (FlashAttention-2).
constexpr int kAttWarps = 4;

__device__ inline float att_dot(const float* x, const float* y, int64_t n) {
  float s = 0.f;
  for (int64_t d = threadIdx.x & 31; d < n; d += 32) s += x[d] * y[d];
  return warp_sum_all(s);
}
__device__ inline float att_score(const AttArgs& a, int64_t b, int64_t i, int64_t j) {
  if (a.causal && j > i) return -INFINITY;
  float s = att_dot(a.q + (b * a.L + i) * a.D, a.k + (b * a.S + j) * a.D, a.D) * a.scale;
  if (a.mask) s += a.mask[b * a.mask_stride + i * a.S + j];
  return s;
}
__device__ inline int64_t att_row() { return static_cast<int64_t>(blockIdx.x) * kAttWarps + (threadIdx.x >> 5); }

__global__ void attention(AttArgs a, float* out) {
  const int64_t t = att_row();
  if (t >= a.B * a.L) return;
  const int64_t b = t / a.L, i = t % a.L, lane = threadIdx.x & 31;
  float* o = out + t * (a.Dv + 1);
  for (int64_t e = lane; e < a.Dv; e += 32) o[e] = 0.f;
  float m = -INFINITY, l = 0.f;
  for (int64_t j = 0; j < a.S; ++j) {
    const float s = att_score(a, b, i, j);
    if (s == -INFINITY) continue;
    const float mn = fmaxf(m, s);
    const float alpha = m == -INFINITY ? 0.f : expf(m - mn), p = expf(s - mn);
    l = l * alpha + p;
    m = mn;
    const float w = p * a.keep(b, i, j);
    const float* vj = a.v + (b * a.S + j) * a.Dv;
    for (int64_t e = lane; e < a.Dv; e += 32) o[e] = o[e] * alpha + w * vj[e];
  }
  if (m == -INFINITY) {  // every key masked: zeros (left above), log-sum-exp -inf, as PyTorch's SDPA since 2.5
    if (lane == 0) o[a.Dv] = -INFINITY;
    return;
  }
  for (int64_t e = lane; e < a.Dv; e += 32) o[e] /= l;
  if (lane == 0) o[a.Dv] = m + logf(l);
}

// D_i = dO_i . O_i per query row into di
__global__ void attention_backward_stats(AttArgs a, const float* fo, const float* go, float* di) {
  const int64_t t = att_row();
  if (t >= a.B * a.L) return;
  const float d = att_dot(go + t * a.Dv, fo + t * (a.Dv + 1), a.Dv);
  if ((threadIdx.x & 31) == 0) di[t] = d;
}

// dS of (b, i, j) (scaled) and P * keep
__device__ inline float att_ds(const AttArgs& a, const float* fo, const float* go, const float* di, int64_t b,
                               int64_t i, int64_t j, float* pk) {
  *pk = 0.f;
  const float s = att_score(a, b, i, j);
  if (s == -INFINITY) return 0.f;
  const int64_t r = b * a.L + i;
  const float p = expf(s - fo[r * (a.Dv + 1) + a.Dv]), kf = a.keep(b, i, j);
  const float dpd = att_dot(go + r * a.Dv, a.v + (b * a.S + j) * a.Dv, a.Dv);
  *pk = p * kf;
  return p * (dpd * kf - di[r]) * a.scale;
}

__global__ void attention_backward_q(AttArgs a, const float* fo, const float* go, const float* di, float* dq) {
  const int64_t t = att_row();
  if (t >= a.B * a.L) return;
  const int64_t b = t / a.L, i = t % a.L, lane = threadIdx.x & 31;
  float* g = dq + t * a.D;
  for (int64_t d = lane; d < a.D; d += 32) g[d] = 0.f;
  float pk;
  for (int64_t j = 0; j < a.S; ++j) {
    const float ds = att_ds(a, fo, go, di, b, i, j, &pk);
    if (ds == 0.f) continue;
    const float* kj = a.k + (b * a.S + j) * a.D;
    for (int64_t d = lane; d < a.D; d += 32) g[d] += ds * kj[d];
  }
}

__global__ void attention_backward_kv(AttArgs a, const float* fo, const float* go, const float* di, float* dk,
                                      float* dv) {
  const int64_t t = att_row();
  if (t >= a.B * a.S) return;
  const int64_t b = t / a.S, j = t % a.S, lane = threadIdx.x & 31;
  float* gk = dk + t * a.D;
  float* gv = dv + t * a.Dv;
  for (int64_t d = lane; d < a.D; d += 32) gk[d] = 0.f;
  for (int64_t e = lane; e < a.Dv; e += 32) gv[e] = 0.f;
  float pk;
  for (int64_t i = 0; i < a.L; ++i) {
    const float ds = att_ds(a, fo, go, di, b, i, j, &pk);
    const int64_t r = b * a.L + i;
    if (pk != 0.f)
      for (int64_t e = lane; e < a.Dv; e += 32) gv[e] += pk * go[r * a.Dv + e];
    if (ds != 0.f)
      for (int64_t d = lane; d < a.D; d += 32) gk[d] += ds * a.q[r * a.D + d];
  }
}

static unsigned att_blocks(int64_t rows) {
  const int64_t b = (rows + kAttWarps - 1) / kAttWarps;
  return static_cast<unsigned>(b < 1 ? 1 : b);
}

static Status k_attention(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  AttArgs a;
  if (Status st = att_check(in, nin, 3, "attention", attrs, a); !st.good()) return st;
  if (Status st = att_check_out(out, a, true); !st.good()) return st;
  KILN_REQUIRE(att_blocks(a.B * a.L) <= 2147483647u, ST_SHAPE, "attention: too many rows for one grid");
  if (a.B * a.L == 0) return Status::ok();
  attention<<<att_blocks(a.B * a.L), 32 * kAttWarps, 0, stream()>>>(a, out.ptr<float>());
  return launched("attention");
}

static Status k_attention_backward(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  AttArgs a;
  if (Status st = att_check(in, nin, 5, "attentionBackward", attrs, a); !st.good()) return st;
  const int64_t nq = a.B * a.L * a.D, nk = a.B * a.S * a.D, nv = a.B * a.S * a.Dv;
  if (Status st = att_check_out(out, a, false); !st.good()) return st;
  if (nq + nk + nv == 0) return Status::ok();
  const uint64_t bytes = static_cast<uint64_t>(a.B * a.L > 0 ? a.B * a.L : 1) * sizeof(float);
  void* di = nullptr;
  if (Status st = scratch(bytes, &di); !st.good()) return st;
  const float* fo = in[3].ptr<float>();
  const float* go = in[4].ptr<float>();
  float* dq = out.ptr<float>();
  float* D = static_cast<float*>(di);
  if (a.B * a.L > 0) {
    attention_backward_stats<<<att_blocks(a.B * a.L), 32 * kAttWarps, 0, stream()>>>(a, fo, go, D);
    attention_backward_q<<<att_blocks(a.B * a.L), 32 * kAttWarps, 0, stream()>>>(a, fo, go, D, dq);
  }
  if (a.B * a.S > 0)
    attention_backward_kv<<<att_blocks(a.B * a.S), 32 * kAttWarps, 0, stream()>>>(a, fo, go, D, dq + nq, dq + nq + nk);
  const Status st = launched("attentionBackward");
  release_scratch(di, bytes);
  return st;
}

void register_matmul(KernelTable& t) {
  t.fn[OP_MATMUL] = k_matmul;
  t.fn[OP_MATMUL_BF16] = k_matmul_bf16;
  t.fn[OP_ATTENTION] = k_attention;
  t.fn[OP_ATTENTION_BACKWARD] = k_attention_backward;
}

}  // namespace cuda
}  // namespace kiln
