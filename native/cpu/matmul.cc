// float32 GEMM: packed A/B panels (or, for small products, A and B read in place), an MR x NR register-blocked
// micro-kernel (vector extensions, so each ISA pass gets its own width: 12x32 on AVX-512, 6x16 on AVX2, 6x8 baseline),
// K/M/N cache blocking, and the thread pool over (M block, N chunk) tiles. Batched matmul loops over broadcast batch
// strides.
#ifndef KILN_ISA
#if defined(__x86_64__)
#include <immintrin.h>  // the AVX-512 BF16 / VNNI paths; other CPUs run the portable vector-extension passes
#endif

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>

#include "kiln/attention.h"
#include "kiln/cpu_common.h"
#include "kiln/pack_cache.h"
#define KILN_ISA_FILE "cpu/matmul.cc"
#include "kiln/isa_passes.h"
#else
#include "kiln/isa_helpers.inl"
#include "kiln/gemm.inl"
#include "kiln/scratch.inl"

namespace mm {

static constexpr int NV = 2;  // vectors per micro-tile row
static constexpr int NR = kGemmNR;
static_assert(NR == NV * kVL, "the micro-kernel holds NV vectors per row");
static constexpr int MR = kGemmMR;
static constexpr int kMR3 = MR / 3;  // the narrower strips' rows: MR/3 and 2*MR/3
static_assert(kMR3 * 3 == MR, "MR splits in thirds");
// k-values per block (BLIS takes 480 on Zen 4): at 256, C was read and written back twice as often, which cost
// 2 threads 3-8% at N >= 512 on the 2-core EPYC host
static constexpr int64_t KC = 512;
static constexpr int64_t MC_MAX = MR * (kVL == 16 ? 8 : 16);  // rows per block at most
static constexpr int64_t NC = 4096;
static constexpr int64_t kPackSlack = kVL;  // floats past a packed A block that pack_a's full-width stores may touch

// packs B[k0:k0+kc, j0:j0+nc] into NR-wide panels, zero-padded: panel p, row k -> dst[(p*kc + k)*NR + jj]
static void pack_b(const GemmArgs& g, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  const int64_t panels = (nc + NR - 1) / NR;
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t jb = j0 + p * NR;
    const int64_t w = std::min<int64_t>(NR, g.N - jb);
    float* d = dst + p * kc * NR;
    if (g.rsB == 1 && g.csB != 1) {
      // B column-contiguous (x W^T with W [N, K] row-major, the Linear forward)
      pack_cols_panel(g.B + k0 + jb * g.csB, g.csB, w, kc, d);
      continue;
    }
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = g.B + (k0 + k) * g.rsB + jb * g.csB;
      float* dk = d + k * NR;
      if (g.csB == 1 && w == NR) {
        for (int jj = 0; jj < NR; ++jj) dk[jj] = src[jj];
      } else {
        int64_t jj = 0;
        for (; jj < w; ++jj) dk[jj] = src[jj * g.csB];
        for (; jj < NR; ++jj) dk[jj] = 0.f;
      }
    }
  }
}

// packs A[i0:i0+mc, k0:k0+kc] into MR-tall panels: panel p, col k -> dst[(p*kc + k)*MR + ii]
static void pack_a(const GemmArgs& g, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* dst) {
  const int64_t panels = (mc + MR - 1) / MR;
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t ib = i0 + p * MR;
    const int64_t h = std::min<int64_t>(MR, g.M - ib);
    float* d = dst + p * kc * MR;
    if (g.rsA == 1) {
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = g.A + ib + (k0 + k) * g.csA;
        int64_t ii = 0;
        for (; ii < h; ++ii) d[k * MR + ii] = src[ii];
        for (; ii < MR; ++ii) d[k * MR + ii] = 0.f;
      }
    } else {
      int64_t k = 0;
      if constexpr (MR <= kVL) {
        if (g.csA == 1) {
          // row-major A (every forward and input-gradient product): kVL columns of each row are one load; a
          // kVL x kVL transpose (rows past h and MR are zero) turns them into kVL packed columns. Each store
          // writes kVL - MR lanes past its column; the next column's store overwrites them, and past the last
          // column they land in the next panel (packed after this one) or the kPackSlack floats past the buffer.
          for (; k + kVL <= kc; k += kVL) {
            vfloat t[kVL];
#pragma GCC unroll 16
            for (int r = 0; r < kVL; ++r) t[r] = r < h ? vload(g.A + (ib + r) * g.rsA + k0 + k) : vfloat{};
            vtranspose(t);
#pragma GCC unroll 16
            for (int r = 0; r < kVL; ++r) vstore(d + (k + r) * MR, t[r]);
          }
        }
      }
      for (int64_t ii = 0; ii < MR; ++ii) {
        if (ii < h) {
          const float* src = g.A + (ib + ii) * g.rsA + k0 * g.csA;
          for (int64_t kk = k; kk < kc; ++kk) d[kk * MR + ii] = src[kk * g.csA];
        } else {
          for (int64_t kk = k; kk < kc; ++kk) d[kk * MR + ii] = 0.f;
        }
      }
    }
  }
}

// C[0, mr) x [0, nr) (row stride ldc) = or += R <= MR rows of A times B's NR columns over kc values (mr <= R:
// a strip's last rows run on fewer registers rather than as a full strip). A is a packed strip (kc x MR, its
// rows past mr zero) unless RowsA: then its rows in place, row stride lda, rows past mr reading row mr-1 (never
// stored). B is NR floats per k, ldb apart (a packed panel: ldb = NR). Whatever R, whether A or B was packed,
// each element of C gets the same multiply-adds in the same order, so the bits do not depend on the path.
template <bool RowsA, int R = MR>
static inline void micro(int64_t kc, const float* __restrict a, int64_t lda, const float* __restrict b, int64_t ldb,
                         float* c, int64_t ldc, int64_t mr, int64_t nr, bool acc_c) {
  vfloat acc[R][NV];
  const float* ar[R];
  if constexpr (RowsA) {
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) ar[i] = a + std::min<int64_t>(i, mr - 1) * lda;
  }
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = vfloat{};
  // C's tile is read or written only after the k loop: ask for its lines now, so they arrive during the loop.
  // Large C rows (8 KiB apart at N = 2048) miss every cache level by then; one thread ran 2048^3 in 81.6-81.9
  // against 83.6 ms (1024^3 and below: within the noise)
  if (mr == R && nr == NR) {
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      __builtin_prefetch(c + i * ldc, 1, 3);
      __builtin_prefetch(c + i * ldc + NR - 1, 1, 3);
    }
  }
  for (int64_t k = 0; k < kc; ++k) {
    vfloat bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = vload(b + k * ldb + v * kVL);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const float av = RowsA ? ar[i][k] : a[k * MR + i];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] += av * bv[v];
    }
  }
  if (mr == R && nr == NR) {
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        float* p = c + i * ldc + v * kVL;
        vstore(p, acc_c ? vload(p) + acc[i][v] : acc[i][v]);
      }
  } else {
    float tile[R * NR];
    for (int i = 0; i < R; ++i)
      for (int v = 0; v < NV; ++v) vstore(tile + i * NR + v * kVL, acc[i][v]);
    for (int64_t i = 0; i < mr; ++i)
      for (int64_t j = 0; j < nr; ++j) {
        float* p = c + i * ldc + j;
        *p = acc_c ? *p + tile[i * NR + j] : tile[i * NR + j];
      }
  }
}

// micro() on the fewest rows that hold the strip's mr: a last strip of up to 2/3 or 1/3 of MR rows (M = 128
// leaves 8 of 12) runs on that many rows' registers instead of a full strip's multiply-adds
template <bool RowsA>
static inline void micro_strip(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                               int64_t ldc, int64_t mr, int64_t nr, bool acc_c) {
  if (mr <= kMR3)
    micro<RowsA, kMR3>(kc, a, lda, b, ldb, c, ldc, mr, nr, acc_c);
  else if (mr <= 2 * kMR3)
    micro<RowsA, 2 * kMR3>(kc, a, lda, b, ldb, c, ldc, mr, nr, acc_c);
  else
    micro<RowsA>(kc, a, lda, b, ldb, c, ldc, mr, nr, acc_c);
}

// ---- few rows (M <= kSmallM): no packing. Packing B costs K*N copies, as much as the product itself when M
// is 1-2 (a served request, a Linear layer on one example), so these kernels stream B once instead.

static constexpr int64_t kSmallM = kGemmSmallM;

// B column-contiguous (rsB == 1, as for x W^T with W [N, K] row-major) and A row-contiguous: C[i, j] is a dot
// product of two contiguous rows. MM rows x JB columns of accumulators per step.
template <int MM, int JB>
static void small_m_dot(const GemmArgs& g, int64_t j0, int64_t j1) {
  const int64_t K = g.K, kv = K / kVL * kVL;
  int64_t j = j0;
  for (; j < j1; j += JB) {
    const int jb = static_cast<int>(std::min<int64_t>(JB, j1 - j));
    const float* b[JB];
    for (int c = 0; c < JB; ++c) b[c] = g.B + (j + (c < jb ? c : 0)) * g.csB;
    vfloat acc[MM][JB];
#pragma GCC unroll 8
    for (int i = 0; i < MM; ++i)
#pragma GCC unroll 4
      for (int c = 0; c < JB; ++c) acc[i][c] = vfloat{};
    for (int64_t k = 0; k < kv; k += kVL) {
      vfloat bv[JB];
#pragma GCC unroll 4
      for (int c = 0; c < JB; ++c) bv[c] = vload(b[c] + k);
#pragma GCC unroll 8
      for (int i = 0; i < MM; ++i) {
        const vfloat av = vload(g.A + i * g.rsA + k);
#pragma GCC unroll 4
        for (int c = 0; c < JB; ++c) acc[i][c] += av * bv[c];
      }
    }
    for (int i = 0; i < MM; ++i)
      for (int c = 0; c < jb; ++c) {
        float s = vhsum(acc[i][c]);
        for (int64_t k = kv; k < K; ++k) s += g.A[i * g.rsA + k] * b[c][k];
        float* p = g.C + i * g.ldc + j + c;
        *p = g.accumulate ? *p + s : s;
      }
  }
}

// B row-contiguous (csB == 1): each C row is a sum of scaled B rows; NV vectors of columns per step.
template <int MM>
static void small_m_axpy(const GemmArgs& g, int64_t j0, int64_t j1) {
  constexpr int W = NV * kVL;
  int64_t j = j0;
  for (; j + W <= j1; j += W) {
    vfloat acc[MM][NV];
#pragma GCC unroll 8
    for (int i = 0; i < MM; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = vfloat{};
    for (int64_t k = 0; k < g.K; ++k) {
      const float* br = g.B + k * g.rsB + j;
      vfloat bv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) bv[v] = vload(br + v * kVL);
#pragma GCC unroll 8
      for (int i = 0; i < MM; ++i) {
        const float a = g.A[i * g.rsA + k * g.csA];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] += a * bv[v];
      }
    }
    for (int i = 0; i < MM; ++i)
      for (int v = 0; v < NV; ++v) {
        float* p = g.C + i * g.ldc + j + v * kVL;
        vstore(p, g.accumulate ? vload(p) + acc[i][v] : acc[i][v]);
      }
  }
  for (; j < j1; ++j)
    for (int i = 0; i < MM; ++i) {
      float s = 0.f;
      for (int64_t k = 0; k < g.K; ++k) s += g.A[i * g.rsA + k * g.csA] * g.B[k * g.rsB + j];
      float* p = g.C + i * g.ldc + j;
      *p = g.accumulate ? *p + s : s;
    }
}

template <int MM>
static void small_m_rows(const GemmArgs& g, int64_t j0, int64_t j1) {
  if (g.rsB == 1 && g.csA == 1)
    small_m_dot<MM, (MM <= 2 ? 4 : 2)>(g, j0, j1);
  else
    small_m_axpy<MM>(g, j0, j1);
}

static void small_m(const GemmArgs& g) {
  const double flops = 2.0 * static_cast<double>(g.M) * g.N * g.K;
  const int64_t step = 4 * NR;  // column chunk per task (a multiple of every block width above)
  const int64_t chunks = (g.N + step - 1) / step;
  const int threads = g.parallel ? num_threads() : 1;
  const int64_t grain = (threads > 1 && flops > 4e5) ? std::max<int64_t>(1, chunks / (2 * threads)) : chunks;
  parallel_for(chunks, grain, [&](int64_t lo, int64_t hi) {
    const int64_t j0 = lo * step, j1 = std::min(g.N, hi * step);
    for (int64_t i0 = 0; i0 < g.M; i0 += 4) {
      GemmArgs r = g;
      r.A = g.A + i0 * g.rsA;
      r.C = g.C + i0 * g.ldc;
      switch (std::min<int64_t>(4, g.M - i0)) {
        case 1: small_m_rows<1>(r, j0, j1); break;
        case 2: small_m_rows<2>(r, j0, j1); break;
        case 3: small_m_rows<3>(r, j0, j1); break;
        default: small_m_rows<4>(r, j0, j1); break;
      }
    }
  });
}

// K blocks of even depth, a multiple of kVL (K = 784 ran 256+256+256+16: a 16-deep block paid a full C
// read-modify-write and packing pass for 2% of the products)
static int64_t k_step(int64_t K) {
  const int64_t kblocks = (K + KC - 1) / KC;
  return ((K + kblocks - 1) / kblocks + kVL - 1) / kVL * kVL;
}
// where block (j0, k0) of B starts in sgemm_pack_b_all's layout: N blocks in order, each its K blocks in order
static int64_t packed_offset(int64_t j0, int64_t npanels, int64_t K, int64_t k0) { return j0 * K + npanels * NR * k0; }

// B's rows [k0, k0+kc) of columns [j0, j0+nc) into NR-wide panels at dst, the panels split among the threads
static void pack_b_block(const GemmArgs& g, int64_t j0, int64_t nc, int64_t k0, int64_t kc, float* dst) {
  const int64_t npanels = (nc + NR - 1) / NR;
  const int threads = g.parallel ? num_threads() : 1;
  parallel_for(npanels, threads > 1 ? std::max<int64_t>(1, npanels / threads) : npanels, [&](int64_t lo, int64_t hi) {
    const int64_t jl = j0 + lo * NR, nl = std::min(nc - lo * NR, (hi - lo) * NR);
    if (g.pack_b)
      g.pack_b(g.pack_b_ctx, k0, kc, jl, nl, dst + lo * kc * NR);
    else
      pack_b(g, k0, kc, jl, nl, dst + lo * kc * NR);
  });
}

// C[i0, i0+mc) x columns [jb, jb + panels*NR) (clipped at N) += or = A's rows [i0, i0+mc) times `panels` B
// panels. A: a packed block (MR-row strips of depth kc), or with rows_a A's own rows from `a` (row i0, the block's
// first column), lda apart (0 for a broadcast row). B: panel p at bp + p * pstride, its rows ldb apart (packed:
// kc * NR and NR; B's own rows: NR and B's row stride, full-width panels only, as a partial one would read past
// the row).
static void block_panels(const GemmArgs& g, int64_t kc, const float* a, bool rows_a, int64_t lda, int64_t i0,
                         int64_t mc, const float* bp, int64_t pstride, int64_t ldb, int64_t jb, int64_t panels,
                         bool acc_c) {
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t j = jb + p * NR, nr = std::min<int64_t>(NR, g.N - j);
    for (int64_t ip = 0; ip * MR < mc; ++ip) {
      float* const c = g.C + (i0 + ip * MR) * g.ldc + j;
      const int64_t mr = std::min<int64_t>(MR, mc - ip * MR);
      const float* const b = bp + p * pstride;
      if (rows_a)
        micro_strip<true>(kc, a + ip * MR * lda, lda, b, ldb, c, g.ldc, mr, nr, acc_c);
      else
        micro_strip<false>(kc, a + ip * kc * MR, 0, b, ldb, c, g.ldc, mr, nr, acc_c);
    }
  }
}

// B small enough to stay in L2 (floats): a part reads row-major A and B where they are instead of packing them,
// as OpenBLAS's small-matrix kernels do. One thread on the 2-core EPYC: 128^3 25.8-26.1 -> 23.5-24.2 us, 256^3
// 168-174 -> 155-159 us (B alone: 24.9-25.1, 163-164); at 256K floats (512^3) the gain was lost in the noise.
static constexpr int64_t kDirectB = 128 * 1024;

// C rows [r0, r1) x B panels [p0, p1) (panel p = columns [p*NR, p*NR + NR)) on the calling thread alone, with its
// own packed copies of the A rows and B columns it needs (or, for a small row-major B, B's full panels and a
// row-major A's rows read in place: kDirectB), in the same K blocks, N blocks and row blocks as the shared path
// below (so every element of C is summed in the same order whichever path or thread count ran it).
static void gemm_part(const GemmArgs& g, int64_t r0, int64_t r1, int64_t p0, int64_t p1) {
  const int64_t kstep = k_step(g.K);
  const int64_t strips = (r1 - r0 + MR - 1) / MR, mblocks = (r1 - r0 + MC_MAX - 1) / MC_MAX;
  const auto block_row = [&](int64_t b) { return std::min(r1, r0 + b * strips / mblocks * MR); };
  float* const apack = thread_scratch<float, 1>(((MC_MAX + MR - 1) / MR) * MR * kstep + kPackSlack);
  float* const own = g.packed_b ? nullptr : thread_scratch<float, 0>(std::min(p1 - p0, NC / NR) * kstep * NR);
  const bool direct = !g.packed_b && !g.pack_b && g.csB == 1 && g.K * g.N <= kDirectB;
  const bool rows_a = direct && g.csA == 1;
  for (int64_t j0 = 0; j0 < g.N; j0 += NC) {
    const int64_t nc = std::min(NC, g.N - j0), npanels = (nc + NR - 1) / NR, b0 = j0 / NR;
    const int64_t q0 = std::max(p0, b0) - b0, q1 = std::min(p1, b0 + npanels) - b0;  // this block's panels
    if (q0 >= q1) continue;
    const int64_t jb = j0 + q0 * NR, nb = std::min(nc - q0 * NR, (q1 - q0) * NR);
    // direct: the full panels from B's rows, a partial last one (N not a multiple of NR) packed into `own`
    const int64_t full = direct ? std::min(q1 - q0, (g.N - jb) / NR) : q1 - q0;
    for (int64_t k0 = 0; k0 < g.K; k0 += kstep) {
      const int64_t kc = std::min(kstep, g.K - k0);
      const float* bp = own;  // panel p at bp + p * pstride, its rows ldb apart
      int64_t pstride = kc * NR, ldb = NR;
      if (direct) {
        if (full < q1 - q0) pack_b(g, k0, kc, jb + full * NR, nb - full * NR, own);
        bp = g.B + k0 * g.rsB + jb;
        pstride = NR;
        ldb = g.rsB;
      } else if (g.packed_b) {
        bp = g.packed_b + packed_offset(j0, npanels, g.K, k0) + q0 * kc * NR;
      } else if (g.pack_b) {
        g.pack_b(g.pack_b_ctx, k0, kc, jb, nb, own);
      } else {
        pack_b(g, k0, kc, jb, nb, own);
      }
      const bool acc_c = g.accumulate || k0 > 0;
      for (int64_t mb = 0; mb < mblocks; ++mb) {
        const int64_t i0 = block_row(mb), mc = block_row(mb + 1) - i0;
        const float* const a = rows_a ? g.A + i0 * g.rsA + k0 : apack;
        if (!rows_a) pack_a(g, i0, mc, k0, kc, apack);
        block_panels(g, kc, a, rows_a, g.rsA, i0, mc, bp, pstride, ldb, jb, full, acc_c);
        if (full < q1 - q0) block_panels(g, kc, a, rows_a, g.rsA, i0, mc, own, kc * NR, NR, jb + full * NR, 1, acc_c);
      }
    }
  }
}

// How a product is cut among `threads` threads into tr x tc independent parts (gemm_part): the grid whose parts
// pack the fewest floats (rows x K of A plus K x columns of B each). tr = tc = 1 runs it on one thread; tr = 0
// leaves it to the shared path, where the threads pack B together and take (row block, panel chunk) tasks: the
// parts repack A tc times and B tr times, which costs more than it saves when the product is small for the
// threads (many threads on a small product) -- measured only on 2 threads, where the parts always won.
static void gemm_grid(int64_t M, int64_t N, int64_t K, int threads, int64_t& tr, int64_t& tc) {
  tr = tc = 1;
  if (threads <= 1 || 2.0 * M * N * K <= 2e5) return;
  const int64_t strips = (M + MR - 1) / MR, npanels = (N + NR - 1) / NR;
  double best = -1.0;
  for (int t = threads; t >= 2 && best < 0; --t)
    for (int64_t r = 1; r <= t; ++r) {
      const int64_t c = t / r;
      if (r * c != t || r > strips || c > npanels) continue;
      const double cost =
          static_cast<double>((strips + r - 1) / r * MR) * K + static_cast<double>(K) * ((npanels + c - 1) / c * NR);
      if (best < 0 || cost < best) {
        best = cost;
        tr = r;
        tc = c;
      }
    }
  if (best < 0) return;  // one strip and one panel: nothing to cut
  // the shared path packs (M K + K N) / threads floats per thread; take the parts while they pack at most twice
  // that, or while their packing is small next to their multiply-adds
  const double shared = (static_cast<double>(M) * K + static_cast<double>(K) * N) / threads;
  const double fmas = static_cast<double>(M) / tr * (static_cast<double>(N) / tc) * K;
  if (best > 2.0 * shared && fmas < 64.0 * best) tr = tc = 0;
}

// Runs part(r0, r1, p0, p1) for rows [r0, r1) x panels [p0, p1) of every cell of gemm_grid's grid, a thread
// each, and returns true; false when the grid leaves the product to the shared path.
template <class Part>
static bool run_parts(int64_t M, int64_t N, int64_t K, int threads, Part&& part) {
  int64_t tr, tc;
  gemm_grid(M, N, K, threads, tr, tc);
  if (tr == 0) return false;
  const int64_t strips = (M + MR - 1) / MR, npanels = (N + NR - 1) / NR;
  const auto cell = [&](int64_t t) {
    const int64_t r = t / tc, c = t % tc;
    part(std::min(M, r * strips / tr * MR), std::min(M, (r + 1) * strips / tr * MR), c * npanels / tc,
         (c + 1) * npanels / tc);
  };
  if (tr * tc == 1)
    cell(0);
  else
    parallel_for(tr * tc, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t t = lo; t < hi; ++t) cell(t);
    });
  return true;
}

}  // namespace mm

int64_t sgemm_packed_b_floats(int64_t N, int64_t K) { return (N + mm::NR - 1) / mm::NR * mm::NR * K; }

void sgemm_pack_b_all(const GemmArgs& g, float* dst) {
  using namespace mm;
  const int64_t kstep = k_step(g.K);
  for (int64_t j0 = 0; j0 < g.N; j0 += NC) {
    const int64_t nc = std::min(NC, g.N - j0), npanels = (nc + NR - 1) / NR;
    for (int64_t k0 = 0; k0 < g.K; k0 += kstep) {
      const int64_t kc = std::min(kstep, g.K - k0);
      pack_b_block(g, j0, nc, k0, kc, dst + packed_offset(j0, npanels, g.K, k0));
    }
  }
}

void sgemm(const GemmArgs& g) {
  using namespace mm;
  if (g.M <= 0 || g.N <= 0) return;
  if (g.K <= 0) {
    if (!g.accumulate)
      for (int64_t i = 0; i < g.M; ++i)
        for (int64_t j = 0; j < g.N; ++j) g.C[i * g.ldc + j] = 0.f;
    return;
  }
  if (g.M <= kSmallM && !g.pack_b && !g.packed_b && ((g.rsB == 1 && g.csA == 1) || g.csB == 1)) {
    small_m(g);
    return;
  }
  const int threads = g.parallel ? num_threads() : 1;
  // Independent parts, one per thread: 2 threads ran 128-2048 squares 2-50% faster this way than with B packed
  // together and two fork/joins per K block, each thread then reading the panels the other wrote (2-core EPYC,
  // bench/RESULTS.md)
  if (run_parts(g.M, g.N, g.K, threads,
                [&](int64_t r0, int64_t r1, int64_t p0, int64_t p1) { gemm_part(g, r0, r1, p0, p1); }))
    return;
  // packing buffers live per thread and only grow (kiln/scratch.inl): a fresh 256 KiB std::vector per call went to
  // mmap (glibc's threshold) and paid its page faults on every call, which cost 256x256 products ~40% of their time
  for (int64_t j0 = 0; j0 < g.N; j0 += NC) {
    const int64_t nc = std::min(NC, g.N - j0);
    const int64_t npanels = (nc + NR - 1) / NR;
    const int64_t kstep = k_step(g.K);
    for (int64_t k0 = 0; k0 < g.K; k0 += kstep) {
      const int64_t kc = std::min(kstep, g.K - k0);
      const float* bp = g.packed_b ? g.packed_b + packed_offset(j0, npanels, g.K, k0) : nullptr;
      if (!bp) {
        float* const own = thread_scratch<float, 0>(npanels * kc * NR);
        pack_b_block(g, j0, nc, k0, kc, own);
        bp = own;
      }
      const bool acc_c = g.accumulate || k0 > 0;
      // row blocks of at most MC_MAX rows, as even as MR-row strips allow: 128 rows as 96 + 32 read all of B
      // for 32 rows and left one of 2 threads idle at the end (60 + 68 ran the MLP's GEMMs 20-27% faster)
      const int64_t strips = (g.M + MR - 1) / MR, mblocks = (g.M + MC_MAX - 1) / MC_MAX;
      const auto block_row = [&](int64_t b) { return std::min(g.M, b * strips / mblocks * MR); };
      const int64_t nchunks = gemm_chunks(mblocks, npanels, threads);
      const int64_t panels_per_chunk = (npanels + nchunks - 1) / nchunks;
      const int64_t tasks = mblocks * nchunks;
      const double flops = 2.0 * static_cast<double>(g.M) * nc * kc;
      const int64_t grain = (threads > 1 && flops > 2e5) ? 1 : tasks;
      parallel_for(tasks, grain, [&](int64_t lo, int64_t hi) {
        float* const apack = thread_scratch<float, 1>(((MC_MAX + MR - 1) / MR) * MR * kc + kPackSlack);
        int64_t packed_block = -1;
        for (int64_t t = lo; t < hi; ++t) {
          const int64_t mb = t / nchunks, ch = t % nchunks;
          const int64_t i0 = block_row(mb), mc = block_row(mb + 1) - i0;
          if (packed_block != mb) {
            pack_a(g, i0, mc, k0, kc, apack);
            packed_block = mb;
          }
          const int64_t p0 = ch * panels_per_chunk, p1 = std::min(npanels, p0 + panels_per_chunk);
          if (p0 < p1)
            block_panels(g, kc, apack, false, 0, i0, mc, bp + p0 * kc * NR, kc * NR, NR, j0 + p0 * NR, p1 - p0, acc_c);
        }
      });
    }
  }
}

// ---- bfloat16 GEMM with float32 accumulation (the mixed-precision path): operands packed two k-values per
// 32-bit lane, the layout AVX512-BF16's vdpbf16ps multiplies (32 products per instruction, 2x the float32 FMA
// rate); elsewhere the same layout is widened to float32 and multiplied with FMAs.
namespace bf {

static constexpr int NV = 2;
static constexpr int NR = NV * kVL;
static constexpr int MR = kVL == 16 ? 12 : 6;
static constexpr int64_t MC = MR * 16;
static constexpr int64_t KC = 512;  // k-values per block (even)

struct Args {
  int64_t M, N, K;
  const uint16_t* A;
  int64_t rsA, csA;
  const uint16_t* B;
  int64_t rsB, csB;
  float* C;
};

// B[k0:k0+kc, j0:j0+NR] -> [kc/2][NR][2], zero padded (k past K, j past N)
static void pack_b(const Args& g, int64_t k0, int64_t kc, int64_t p, uint16_t* dst) {
  const int64_t k2n = (kc + 1) / 2;
  for (int64_t k2 = 0; k2 < k2n; ++k2)
    for (int c = 0; c < NR; ++c) {
      const int64_t j = p * NR + c;
      for (int q = 0; q < 2; ++q) {
        const int64_t k = k0 + 2 * k2 + q;
        dst[(k2 * NR + c) * 2 + q] = (j < g.N && k < k0 + kc) ? g.B[k * g.rsB + j * g.csB] : 0;
      }
    }
}
static void pack_a(const Args& g, int64_t i0, int64_t k0, int64_t kc, uint16_t* dst) {
  const int64_t k2n = (kc + 1) / 2;
  for (int r = 0; r < MR; ++r) {
    const int64_t i = i0 + r;
    for (int64_t k2 = 0; k2 < k2n; ++k2)
      for (int q = 0; q < 2; ++q) {
        const int64_t k = k0 + 2 * k2 + q;
        dst[(k2 * MR + r) * 2 + q] = (i < g.M && k < k0 + kc) ? g.A[i * g.rsA + k * g.csA] : 0;
      }
  }
}

static void micro_generic(int64_t k2n, const uint16_t* a, const uint16_t* b, vfloat acc[MR][NV]) {
  for (int64_t k2 = 0; k2 < k2n; ++k2) {
    vfloat blo[NV], bhi[NV];
    for (int v = 0; v < NV; ++v) {
      vint bv;
      __builtin_memcpy(&bv, b + (k2 * NR + v * kVL) * 2, sizeof bv);
      blo[v] = vbits(bv << 16);
      bhi[v] = vbits(bv & vsplati(static_cast<int32_t>(0xffff0000u)));
    }
    for (int r = 0; r < MR; ++r) {
      const float alo = bf16_to_float(a[(k2 * MR + r) * 2]), ahi = bf16_to_float(a[(k2 * MR + r) * 2 + 1]);
      for (int v = 0; v < NV; ++v) acc[r][v] += alo * blo[v] + ahi * bhi[v];
    }
  }
}

#if KILN_VEC_BYTES == 64
static bool has_bf16() {
  static const bool v = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") != 0;
  }();
  return v;
}
__attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl"))) static void micro_bf16(int64_t k2n, const uint16_t* a,
                                                                                       const uint16_t* b,
                                                                                       vfloat acc[MR][NV]) {
  __m512 c[MR][NV];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    c[r][0] = _mm512_setzero_ps();
    c[r][1] = _mm512_setzero_ps();
  }
  for (int64_t k2 = 0; k2 < k2n; ++k2) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + (k2 * NR) * 2);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + (k2 * NR + 16) * 2);
    const uint16_t* ak = a + k2 * MR * 2;
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(*reinterpret_cast<const int32_t*>(ak + r * 2));
      c[r][0] = _mm512_dpbf16_ps(c[r][0], av, b0);
      c[r][1] = _mm512_dpbf16_ps(c[r][1], av, b1);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    _mm512_storeu_ps(reinterpret_cast<float*>(&acc[r][0]), c[r][0]);
    _mm512_storeu_ps(reinterpret_cast<float*>(&acc[r][1]), c[r][1]);
  }
}
// vdpbf16ps runs at half the FMA rate on some CPUs (measured here: 86 vs 172 GFLOP/s per core), where widening
// to float32 and using the float32 GEMM is faster. A ~1 ms race of the two instruction streams decides, once.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl"))) static double rate_bf16() {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x3c003c00);
  const auto t0 = std::chrono::steady_clock::now();
  for (int it = 0; it < 20000; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  float sink = 0;
  for (int i = 0; i < 12; ++i) sink += _mm512_reduce_add_ps(acc[i]);
  return (sink == 1234.5f ? 1.0001 : 1.0) * 20000.0 * 12 * 64 / s;
}
#pragma GCC diagnostic pop
static double rate_fma() {
  vfloat acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = vsplat(static_cast<float>(i));
  const vfloat a = vsplat(0.999999f), b = vsplat(1e-7f);
  const auto t0 = std::chrono::steady_clock::now();
  for (int it = 0; it < 20000; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = acc[i] * a + b;
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  float sink = 0;
  for (int i = 0; i < 12; ++i) sink += acc[i][0];
  return (sink == 1234.5f ? 1.0001 : 1.0) * 20000.0 * 12 * 32 / s;
}
#endif

// true: the packed bf16 kernel (vdpbf16ps where the CPU has it, the widening micro-kernel elsewhere);
// false: widen the operands to float32 and run the float32 GEMM. KILN_BF16_GEMM=packed|widen forces one.
static bool packed_mode() {
  static const bool v = [] {
    const char* e = std::getenv("KILN_BF16_GEMM");
    if (e && std::string(e) == "packed") return true;
    if (e && std::string(e) == "widen") return false;
#if KILN_VEC_BYTES == 64
    return has_bf16() && rate_bf16() > 1.1 * rate_fma();
#else
    return false;
#endif
  }();
  return v;
}

// C rows [i0, i0 + mc) x panels [p0, p1) of K block k0 (depth kc): apack holds those rows' packed A strips, bp
// panel p0's packed B (the next panels after it)
static void block(const Args& g, int64_t k0, int64_t kc, int64_t i0, int64_t mc, const uint16_t* apack,
                  const uint16_t* bp, int64_t p0, int64_t p1) {
  const int64_t k2n = (kc + 1) / 2, apanels = (mc + MR - 1) / MR;
  for (int64_t p = p0; p < p1; ++p) {
    const uint16_t* const bpp = bp + (p - p0) * k2n * NR * 2;
    for (int64_t ap = 0; ap < apanels; ++ap) {
      vfloat acc[MR][NV];
      for (int r = 0; r < MR; ++r)
        for (int v = 0; v < NV; ++v) acc[r][v] = vfloat{};
#if KILN_VEC_BYTES == 64
      if (has_bf16())
        micro_bf16(k2n, apack + ap * k2n * MR * 2, bpp, acc);
      else
#endif
        micro_generic(k2n, apack + ap * k2n * MR * 2, bpp, acc);
      for (int r = 0; r < MR; ++r) {
        const int64_t i = i0 + ap * MR + r;
        if (i >= i0 + mc) break;
        for (int v = 0; v < NV; ++v) {
          const int64_t j0 = p * NR + v * kVL;
          float* dst = g.C + i * g.N + j0;
          if (j0 + kVL <= g.N) {
            vstore(dst, k0 ? vload(dst) + acc[r][v] : acc[r][v]);
          } else {
            for (int l = 0; l < kVL && j0 + l < g.N; ++l) dst[l] = k0 ? dst[l] + acc[r][v][l] : acc[r][v][l];
          }
        }
      }
    }
  }
}

// C rows [r0, r1) x panels [p0, p1) on the calling thread alone, with its own packed A and B (as sgemm's parts)
static void gemm_part(const Args& g, int64_t r0, int64_t r1, int64_t p0, int64_t p1) {
  const int64_t pairs = (std::min(KC, g.K) + 1) / 2;  // k pairs in the longest K block
  uint16_t* const own = thread_scratch<uint16_t, 0>((p1 - p0) * pairs * NR * 2);
  uint16_t* const apack = thread_scratch<uint16_t, 1>(((MC + MR - 1) / MR) * pairs * MR * 2);
  for (int64_t k0 = 0; k0 < g.K; k0 += KC) {
    const int64_t kc = std::min(KC, g.K - k0), k2n = (kc + 1) / 2;
    for (int64_t p = p0; p < p1; ++p) pack_b(g, k0, kc, p, own + (p - p0) * k2n * NR * 2);
    for (int64_t i0 = r0; i0 < r1; i0 += MC) {
      const int64_t mc = std::min(MC, r1 - i0);
      for (int64_t ap = 0; ap * MR < mc; ++ap) pack_a(g, i0 + ap * MR, k0, kc, apack + ap * k2n * MR * 2);
      block(g, k0, kc, i0, mc, apack, own, p0, p1);
    }
  }
}

static_assert(MR == mm::MR && NR == mm::NR, "the bf16 GEMM cuts its parts on the float32 GEMM's strips and panels");
static void gemm(const Args& g) {
  const int64_t npanels = (g.N + NR - 1) / NR, mblocks = (g.M + MC - 1) / MC;
  const int threads = num_threads();
  if (mm::run_parts(g.M, g.N, g.K, threads,
                    [&](int64_t r0, int64_t r1, int64_t p0, int64_t p1) { gemm_part(g, r0, r1, p0, p1); }))
    return;
  for (int64_t k0 = 0; k0 < g.K; k0 += KC) {
    const int64_t kc = std::min(KC, g.K - k0), k2n = (kc + 1) / 2;
    uint16_t* const bp = thread_scratch<uint16_t, 0>(npanels * k2n * NR * 2);  // grow-only, per thread (see sgemm)
    parallel_for(npanels, std::max<int64_t>(1, npanels / std::max(1, threads)), [&](int64_t lo, int64_t hi) {
      for (int64_t p = lo; p < hi; ++p) pack_b(g, k0, kc, p, bp + p * k2n * NR * 2);
    });
    const int64_t nchunks = gemm_chunks(mblocks, npanels, threads);
    const int64_t ppc = (npanels + nchunks - 1) / nchunks;
    parallel_for(mblocks * nchunks, 1, [&](int64_t lo, int64_t hi) {
      uint16_t* const apack = thread_scratch<uint16_t, 1>(((MC + MR - 1) / MR) * k2n * MR * 2);
      int64_t packed = -1;
      for (int64_t t = lo; t < hi; ++t) {
        const int64_t mb = t / nchunks, ch = t % nchunks;
        const int64_t i0 = mb * MC, mc = std::min(MC, g.M - i0);
        if (packed != mb) {
          for (int64_t ap = 0; ap * MR < mc; ++ap) pack_a(g, i0 + ap * MR, k0, kc, apack + ap * k2n * MR * 2);
          packed = mb;
        }
        const int64_t p0 = ch * ppc, p1 = std::min(npanels, (ch + 1) * ppc);
        if (p0 < p1) block(g, k0, kc, i0, mc, apack, bp + p0 * k2n * NR * 2, p0, p1);
      }
    });
  }
}

}  // namespace bf

namespace mm {

static Status k_matmul_bf16(const TensorView* in, int, const TensorView& out, const double*) {
  const TensorView& a = in[0];
  const TensorView& b = in[1];
  KILN_REQUIRE(
      a.dtype == DT_BFLOAT16 && b.dtype == DT_BFLOAT16 && (out.dtype == DT_FLOAT32 || out.dtype == DT_BFLOAT16),
      ST_DTYPE, "matmulBf16 takes bfloat16 operands and writes float32 or bfloat16, got ", kDTypeNames[a.dtype], ", ",
      kDTypeNames[b.dtype], " -> ", kDTypeNames[out.dtype]);
  KILN_REQUIRE(a.ndim >= 2 && a.ndim == b.ndim && a.ndim == out.ndim, ST_SHAPE,
               "matmulBf16 needs equal-rank operands of rank >= 2, got ", shape_str(a), " and ", shape_str(b));
  const int nd = a.ndim;
  for (int i = 0; i < nd - 2; ++i)
    KILN_REQUIRE(a.shape[i] == out.shape[i] && b.shape[i] == out.shape[i], ST_SHAPE,
                 "matmulBf16 batch dims must be broadcast first: ", shape_str(a), " x ", shape_str(b), " -> ",
                 shape_str(out));
  const int64_t M = a.shape[nd - 2], K = a.shape[nd - 1], N = b.shape[nd - 1];
  KILN_REQUIRE(b.shape[nd - 2] == K && out.shape[nd - 2] == M && out.shape[nd - 1] == N, ST_SHAPE, "matmulBf16 shapes ",
               shape_str(a), " x ", shape_str(b), " -> ", shape_str(out), " do not fit");
  KILN_REQUIRE(out.contiguous(), ST_SHAPE, "matmulBf16 writes a contiguous output");
  int64_t batch = 1;
  for (int i = 0; i < nd - 2; ++i) batch *= out.shape[i];
  if (batch == 0 || M == 0 || N == 0) return Status::ok();
  // a bfloat16 output: each product in float32 first, rounded to bfloat16 as a cast would (round to nearest even)
  const bool to_bf16 = out.dtype == DT_BFLOAT16;
  std::vector<float> acc(to_bf16 ? static_cast<size_t>(M * N) : 0);
  for (int64_t bi = 0; bi < batch; ++bi) {
    int64_t oa = 0, ob = 0, rem = bi;
    for (int d = nd - 3; d >= 0; --d) {
      const int64_t idx = rem % out.shape[d];
      rem /= out.shape[d];
      oa += idx * a.strides[d];
      ob += idx * b.strides[d];
    }
    float* c = to_bf16 ? acc.data() : out.ptr<float>() + bi * M * N;
    const auto round_out = [&] {
      if (!to_bf16) return;
      uint16_t* o = out.ptr<uint16_t>() + bi * M * N;
      parallel_for(M * N, 16384, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) o[i] = float_to_bf16(c[i]);
      });
    };
    if (K == 0) {
      for (int64_t i = 0; i < M * N; ++i) c[i] = 0.f;
      round_out();
      continue;
    }
    bf::Args g{M,
               N,
               K,
               a.ptr<uint16_t>() + oa,
               a.strides[nd - 2],
               a.strides[nd - 1],
               b.ptr<uint16_t>() + ob,
               b.strides[nd - 2],
               b.strides[nd - 1],
               c};
    if (bf::packed_mode()) {
      bf::gemm(g);
      round_out();
      continue;
    }
    // widen both operands to float32 (O(MK + KN) work) and run the float32 GEMM (O(MNK)): the float32 FMA path
    // is faster than vdpbf16ps where the latter runs at half rate, and there is no bf16 instruction elsewhere
    std::vector<float> fa(static_cast<size_t>(M * K)), fb(static_cast<size_t>(K * N));
    parallel_for(M, std::max<int64_t>(1, 16384 / K), [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i)
        for (int64_t k = 0; k < K; ++k) fa[i * K + k] = bf16_to_float(g.A[i * g.rsA + k * g.csA]);
    });
    parallel_for(K, std::max<int64_t>(1, 16384 / N), [&](int64_t lo, int64_t hi) {
      for (int64_t k = lo; k < hi; ++k)
        for (int64_t j = 0; j < N; ++j) fb[k * N + j] = bf16_to_float(g.B[k * g.rsB + j * g.csB]);
    });
    sgemm(GemmArgs{M, N, K, fa.data(), K, 1, fb.data(), N, 1, c, N, false, true});
    round_out();
  }
  return Status::ok();
}

static Status k_matmul(const TensorView* in, int, const TensorView& out, const double*) {
  const TensorView& a = in[0];
  const TensorView& b = in[1];
  KILN_REQUIRE(a.dtype == DT_FLOAT32 && b.dtype == DT_FLOAT32 && out.dtype == DT_FLOAT32, ST_DTYPE,
               "matmul takes float32, got ", kDTypeNames[a.dtype], " and ", kDTypeNames[b.dtype]);
  KILN_REQUIRE(a.ndim >= 2 && a.ndim == b.ndim && a.ndim == out.ndim, ST_SHAPE,
               "matmul kernel needs equal-rank operands of rank >= 2, got ", shape_str(a), " and ", shape_str(b));
  const int nd = a.ndim;
  for (int i = 0; i < nd - 2; ++i)
    KILN_REQUIRE(a.shape[i] == out.shape[i] && b.shape[i] == out.shape[i], ST_SHAPE,
                 "matmul batch dims must be broadcast first: ", shape_str(a), " x ", shape_str(b), " -> ",
                 shape_str(out));
  const int64_t M = a.shape[nd - 2], K = a.shape[nd - 1], N = b.shape[nd - 1];
  KILN_REQUIRE(b.shape[nd - 2] == K, ST_SHAPE, "matmul inner dims differ: ", shape_str(a), " x ", shape_str(b));
  KILN_REQUIRE(out.shape[nd - 2] == M && out.shape[nd - 1] == N, ST_SHAPE, "matmul output shape ", shape_str(out),
               " does not match ", shape_str(a), " x ", shape_str(b));
  int64_t batch = 1;
  for (int i = 0; i < nd - 2; ++i) batch *= out.shape[i];
  if (batch == 0 || M == 0 || N == 0) return Status::ok();
  const float* pa = a.ptr<float>();
  const float* pb = b.ptr<float>();
  float* pc = out.ptr<float>();
  auto batch_offsets = [&](int64_t bi, int64_t& oa, int64_t& ob) {
    oa = 0;
    ob = 0;
    for (int d = nd - 3; d >= 0; --d) {
      const int64_t idx = bi % out.shape[d];
      bi /= out.shape[d];
      oa += idx * a.strides[d];
      ob += idx * b.strides[d];
    }
  };
  auto one = [&](int64_t bi, bool par) {
    int64_t oa, ob;
    batch_offsets(bi, oa, ob);
    GemmArgs g{M,
               N,
               K,
               pa + oa,
               a.strides[nd - 2],
               a.strides[nd - 1],
               pb + ob,
               b.strides[nd - 2],
               b.strides[nd - 1],
               pc + bi * M * N,
               N,
               false,
               par};
    if (batch == 1 && M > kGemmSmallM && K > 0) {
      // a weight multiplied again unchanged (inference, gradient accumulation) is packed once, on its second use
      const auto fill = [&](void* dst) { sgemm_pack_b_all(g, static_cast<float*>(dst)); };
      const int64_t floats = sgemm_packed_b_floats(N, K);
      g.packed_b = static_cast<const float*>(
          packed_input(b, pack_tag({0x73676d62, kVL, mm::NR, mm::KC, mm::NC, N, K, g.rsB, g.csB}),
                       floats * sizeof(float), fill, true));
    }
    sgemm(g);
  };
  const double flops = 2.0 * M * N * static_cast<double>(K);
  if (batch > 1 && flops < 2.0 * 128 * 128 * 128) {
    parallel_for(batch, std::max<int64_t>(1, static_cast<int64_t>(2e5 / std::max(flops, 1.0))),
                 [&](int64_t lo, int64_t hi) {
                   for (int64_t bi = lo; bi < hi; ++bi) one(bi, false);
                 });
  } else {
    for (int64_t bi = 0; bi < batch; ++bi) one(bi, true);
  }
  return Status::ok();
}

// ---- fused attention (flash-attention style): blocks of Br query rows against blocks of Bc keys, an online
// softmax (running max m and sum l per row), so the working set is O(Br * (Bc + Dv)) whatever the sequence
// length. Scores and products go through sgemm on the blocks. The backward recomputes the probabilities of each
// block from the saved log-sum-exp (P = exp(s - lse)) and uses D_i = dO_i . O_i, as FlashAttention-2 does.
static constexpr int64_t kAttBr = 64, kAttBc = 64;

// scores of rows [i0, i0+br) against keys [j0, j0+bc) of batch b into s (row stride kAttBc): scale, mask, causal
static void att_scores(const AttArgs& a, int64_t b, int64_t i0, int64_t br, int64_t j0, int64_t bc, float* s) {
  sgemm(GemmArgs{br, bc, a.D, a.q + (b * a.L + i0) * a.D, a.D, 1, a.k + (b * a.S + j0) * a.D, 1, a.D, s, kAttBc, false,
                 false});
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t r = 0; r < br; ++r) {
    float* sr = s + r * kAttBc;
    const float* mr = a.mask ? a.mask + b * a.mask_stride + (i0 + r) * a.S + j0 : nullptr;
    for (int64_t c = 0; c < bc; ++c) sr[c] = sr[c] * a.scale + (mr ? mr[c] : 0.f);
    if (a.causal)
      for (int64_t c = std::max<int64_t>(0, i0 + r - j0 + 1); c < bc; ++c) sr[c] = -inf;
  }
}

static Status k_attention(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  AttArgs a;
  if (Status st = att_check(in, nin, 3, "attention", attrs, a); !st.good()) return st;
  if (Status st = att_check_out(out, a, true); !st.good()) return st;
  float* po = out.ptr<float>();
  const int64_t qblocks = (a.L + kAttBr - 1) / kAttBr;
  const float inf = std::numeric_limits<float>::infinity();
  parallel_for(a.B * qblocks, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> s(kAttBr * kAttBc), acc(kAttBr * a.Dv), m(kAttBr), l(kAttBr);
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t b = t / qblocks, i0 = (t % qblocks) * kAttBr, br = std::min(kAttBr, a.L - i0);
      std::fill(acc.begin(), acc.end(), 0.f);
      std::fill(m.begin(), m.end(), -inf);
      std::fill(l.begin(), l.end(), 0.f);
      const int64_t jend = a.causal ? std::min(a.S, i0 + br) : a.S;  // keys past the block's last row are masked
      for (int64_t j0 = 0; j0 < jend; j0 += kAttBc) {
        const int64_t bc = std::min(kAttBc, jend - j0);
        att_scores(a, b, i0, br, j0, bc, s.data());
        for (int64_t r = 0; r < br; ++r) {
          float* sr = s.data() + r * kAttBc;
          float mx = m[r];
          for (int64_t c = 0; c < bc; ++c) mx = std::max(mx, sr[c]);
          if (mx == -inf) {  // nothing to attend to yet in this row
            for (int64_t c = 0; c < bc; ++c) sr[c] = 0.f;
            continue;
          }
          const float alpha = m[r] == -inf ? 0.f : fexp(m[r] - mx);
          int64_t c = 0;
          vfloat vs = vsplat(0.f);
          for (; c + kVL <= bc; c += kVL) {
            const vfloat p = vexp(vload(sr + c) - mx);
            vs += p;
            vstore(sr + c, p);
          }
          float sum = 0.f;
          for (int i = 0; i < kVL; ++i) sum += vs[i];
          for (; c < bc; ++c) sum += (sr[c] = fexp(sr[c] - mx));
          l[r] = l[r] * alpha + sum;
          m[r] = mx;
          float* ar = acc.data() + r * a.Dv;
          if (alpha != 1.f)
            for (int64_t e = 0; e < a.Dv; ++e) ar[e] *= alpha;
          if (a.thr)
            for (int64_t cc = 0; cc < bc; ++cc) sr[cc] *= a.keep(b, i0 + r, j0 + cc);
        }
        sgemm(GemmArgs{br, a.Dv, bc, s.data(), kAttBc, 1, a.v + (b * a.S + j0) * a.Dv, a.Dv, 1, acc.data(), a.Dv, true,
                       false});
      }
      for (int64_t r = 0; r < br; ++r) {
        float* orow = po + (b * a.L + i0 + r) * (a.Dv + 1);
        const float* ar = acc.data() + r * a.Dv;
        if (m[r] == -inf) {  // every key masked: zeros and log-sum-exp -inf, as PyTorch's SDPA since 2.5
          std::fill(orow, orow + a.Dv, 0.f);
          orow[a.Dv] = -inf;
          continue;
        }
        const float inv = 1.f / l[r];
        for (int64_t e = 0; e < a.Dv; ++e) orow[e] = ar[e] * inv;
        orow[a.Dv] = m[r] + std::log(l[r]);
      }
    }
  });
  return Status::ok();
}

static Status k_attention_backward(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  AttArgs a;
  if (Status st = att_check(in, nin, 5, "attentionBackward", attrs, a); !st.good()) return st;
  const int64_t nq = a.B * a.L * a.D, nk = a.B * a.S * a.D;
  if (Status st = att_check_out(out, a, false); !st.good()) return st;
  const float* fo = in[3].ptr<float>();
  const float* go = in[4].ptr<float>();
  float* dq = out.ptr<float>();
  float* dk = dq + nq;
  float* dv = dk + nk;
  const float inf = std::numeric_limits<float>::infinity();
  parallel_for(a.B, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> p(kAttBr * kAttBc), pd(kAttBr * kAttBc), t(kAttBr * kAttBc), Di(a.L);
    for (int64_t b = lo; b < hi; ++b) {
      std::fill(dq + b * a.L * a.D, dq + (b + 1) * a.L * a.D, 0.f);
      std::fill(dk + b * a.S * a.D, dk + (b + 1) * a.S * a.D, 0.f);
      std::fill(dv + b * a.S * a.Dv, dv + (b + 1) * a.S * a.Dv, 0.f);
      for (int64_t i = 0; i < a.L; ++i) {
        const float* g = go + (b * a.L + i) * a.Dv;
        const float* o = fo + (b * a.L + i) * (a.Dv + 1);
        float d = 0.f;
        for (int64_t e = 0; e < a.Dv; ++e) d += g[e] * o[e];
        Di[i] = d;
      }
      for (int64_t j0 = 0; j0 < a.S; j0 += kAttBc) {
        const int64_t bc = std::min(kAttBc, a.S - j0);
        const int64_t istart = a.causal ? (std::min(j0, a.L) / kAttBr) * kAttBr : 0;  // rows before j0 see none
        for (int64_t i0 = istart; i0 < a.L; i0 += kAttBr) {
          const int64_t br = std::min(kAttBr, a.L - i0);
          att_scores(a, b, i0, br, j0, bc, p.data());
          for (int64_t r = 0; r < br; ++r) {
            const float lse = fo[(b * a.L + i0 + r) * (a.Dv + 1) + a.Dv];
            float* pr = p.data() + r * kAttBc;
            float* pdr = pd.data() + r * kAttBc;
            int64_t c = 0;
            if (lse == -inf) {  // every key of the row masked: no weights, so no gradient (exp(-inf + inf) is NaN)
              std::fill(pr, pr + bc, 0.f);
              std::fill(pdr, pdr + bc, 0.f);
              continue;
            }
            for (; c + kVL <= bc; c += kVL) vstore(pr + c, vexp(vload(pr + c) - lse));
            for (; c < bc; ++c) pr[c] = fexp(pr[c] - lse);
            for (c = 0; c < bc; ++c) pdr[c] = pr[c] * a.keep(b, i0 + r, j0 + c);
          }
          const float* gi = go + (b * a.L + i0) * a.Dv;
          // dV_j += Pd^T dO_i
          sgemm(
              GemmArgs{bc, a.Dv, br, pd.data(), 1, kAttBc, gi, a.Dv, 1, dv + (b * a.S + j0) * a.Dv, a.Dv, true, false});
          // dPd = dO_i V_j^T
          sgemm(GemmArgs{br, bc, a.Dv, gi, a.Dv, 1, a.v + (b * a.S + j0) * a.Dv, 1, a.Dv, t.data(), kAttBc, false,
                         false});
          // dS = P (dPd * keep - D_i) * scale
          for (int64_t r = 0; r < br; ++r) {
            const float* pr = p.data() + r * kAttBc;
            float* tr = t.data() + r * kAttBc;
            const float di = Di[i0 + r];
            for (int64_t cc = 0; cc < bc; ++cc)
              tr[cc] = pr[cc] == 0.f ? 0.f : pr[cc] * (tr[cc] * a.keep(b, i0 + r, j0 + cc) - di) * a.scale;
          }
          // dQ_i += dS K_j ; dK_j += dS^T Q_i
          sgemm(GemmArgs{br, a.D, bc, t.data(), kAttBc, 1, a.k + (b * a.S + j0) * a.D, a.D, 1,
                         dq + (b * a.L + i0) * a.D, a.D, true, false});
          sgemm(GemmArgs{bc, a.D, br, t.data(), 1, kAttBc, a.q + (b * a.L + i0) * a.D, a.D, 1,
                         dk + (b * a.S + j0) * a.D, a.D, true, false});
        }
      }
    }
  });
  return Status::ok();
}

// The peak: 12 independent multiply-add chains per round (enough to cover FMA latency on both pipes), in the
// widest vectors of this pass. The volatile sink keeps the chains live.
static double fma_loop(int64_t iters) {
  vfloat acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = vsplat(static_cast<float>(i));
  const vfloat a = vsplat(0.999999f), b = vsplat(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = acc[i] * a + b;
  }
  static volatile float sink;
  float s = 0;
  for (int i = 0; i < 12; ++i) s += acc[i][0];
  sink = s;
  return static_cast<double>(iters) * 12 * kVL * 2 + 0.0 * sink;
}

}  // namespace mm

void register_matmul(KernelTable& t) {
  t.fn[OP_MATMUL] = mm::k_matmul;
  t.fn[OP_MATMUL_BF16] = mm::k_matmul_bf16;
  t.fn[OP_ATTENTION] = mm::k_attention;
  t.fn[OP_ATTENTION_BACKWARD] = mm::k_attention_backward;
  t.fma_loop = mm::fma_loop;
}

#endif
