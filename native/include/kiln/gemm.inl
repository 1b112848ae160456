// Declared inside each ISA pass: the float32 GEMM that matmul and conv share.
// C[M,N] (row stride ldc) = (accumulate ? C : 0) + A[M,K] * B[K,N]; A and B take any element strides.
struct GemmArgs {
  int64_t M, N, K;
  const float* A;
  int64_t rsA, csA;
  const float* B;
  int64_t rsB, csB;
  float* C;
  int64_t ldc;
  bool accumulate;
  bool parallel;
  // B given by a packer instead of B/rsB/csB: pack_b(ctx, k0, kc, j0, nc, dst) writes B[k0:k0+kc, j0:j0+nc] as
  // sgemm packs it (NR-wide panels, zero past N: panel p, row k -> dst[(p*kc + k)*NR + jj]). The int4 linear
  // dequantizes its weights straight into the panels this way. Always takes the packed path.
  void (*pack_b)(const void* ctx, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) = nullptr;
  const void* pack_b_ctx = nullptr;
  // B packed ahead by sgemm_pack_b_all (sgemm_packed_b_floats(N, K) floats): nothing is packed per call
  const float* packed_b = nullptr;
};
void sgemm(const GemmArgs& g);
// All of B (g.B, g.rsB, g.csB, g.N, g.K) in the panels sgemm packs per call, every K block of every N block, so
// a weight used again and again (inference) is packed once (kiln/pack_cache.h). Only for M > kGemmSmallM.
int64_t sgemm_packed_b_floats(int64_t N, int64_t K);
void sgemm_pack_b_all(const GemmArgs& g, float* dst);

// The micro-kernel's tile (rows of A x columns of B per register block) and the row count up to which sgemm
// skips packing: callers that can choose an orientation pick the one that wastes less of the tile.
static constexpr int kGemmNR = 2 * kVL;
static constexpr int kGemmMR = kVL == 16 ? 12 : 6;
static constexpr int64_t kGemmSmallM = 8;

// How many chunks of B panels the work of each M block is cut into, so the (M block, chunk) tasks fill the
// threads: at least two tasks per thread where there are panels enough, and a task count that parallel_for's
// contiguous runs split evenly (11 tasks on 2 threads ran as 6 and 5, one thread idle for a twelfth of the
// product). The count c returned satisfies c == ceil(npanels / ceil(npanels / c)): chunks of
// ceil(npanels / c) panels number exactly c.
static inline int64_t gemm_chunks(int64_t mblocks, int64_t npanels, int threads) {
  if (threads <= 1 || mblocks <= 0 || npanels <= 0) return 1;
  int64_t best = 1;
  double best_eff = -1.0;
  for (int64_t c = 1; c <= npanels && c <= 8 * threads; ++c) {
    const int64_t ppc = (npanels + c - 1) / c;
    if ((npanels + ppc - 1) / ppc != c) continue;
    const int64_t tasks = mblocks * c;
    if (tasks < 2 * threads && c < npanels) continue;
    const int64_t per = (tasks + threads - 1) / threads;
    const double eff = static_cast<double>(tasks) / static_cast<double>(per * threads);
    if (eff >= 0.95) return c;
    if (eff > best_eff) {
      best_eff = eff;
      best = c;
    }
  }
  return best;
}

// One kGemmNR-wide panel of B packed from w <= kGemmNR columns that are each contiguous in k (column jj starts at
// src + jj * ld): dst[k * kGemmNR + jj] for k < kc, zero for jj >= w. kVL x kVL blocks are transposed in registers
// (a strided gather per element took a quarter of x W^T); the k tail goes element by element.
static inline void pack_cols_panel(const float* src, int64_t ld, int64_t w, int64_t kc, float* dst) {
  int64_t k = 0;
  for (; k + kVL <= kc; k += kVL)
    for (int v = 0; v < kGemmNR / kVL; ++v) {
      vfloat t[kVL];
#pragma GCC unroll 16
      for (int r = 0; r < kVL; ++r) t[r] = v * kVL + r < w ? vload(src + k + (v * kVL + r) * ld) : vfloat{};
      vtranspose(t);
#pragma GCC unroll 16
      for (int r = 0; r < kVL; ++r) vstore(dst + (k + r) * kGemmNR + v * kVL, t[r]);
    }
  for (; k < kc; ++k)
    for (int64_t jj = 0; jj < kGemmNR; ++jj) dst[k * kGemmNR + jj] = jj < w ? src[k + jj * ld] : 0.f;
}
