// How kiln's strided row-major product C[b] = A[b] B[b] maps onto one column-major BLAS call (cuBLASLt's
// strided-batch matmul), or that it does not; and, at the end, how kiln's Hopper kernel reads the operands
// K-major (plan_k_major) and in what order its persistent blocks walk the output tiles (grouped_tile). Pure C++
// with no CUDA types: kiln_cuda.so plans its cuBLASLt calls and Hopper launches with it (native/cuda/cublaslt.cc,
// kernels/cuda/matmul_sm90.cu), and test/native/gemm_plan_check.cc runs the plans it makes on the cpu against the
// row-major definition, so the mapping is tested on machines without a GPU.
//
// Column-major BLAS computes D (m x n, leading dimension ldd) = op(X) (m x k) * op(Y) (k x n). kiln's C [M, N] is
// row-major and contiguous, which read column-major is C^T [N, M]. So the call is C^T = B^T A^T: BLAS's first
// operand comes from kiln's B, its second from kiln's A, with m = N, n = M, k = K.
#pragma once
#include <cstdint>

namespace kiln {

/** kiln's side: strides in elements; C is contiguous [batch, M, N]. */
struct GemmOperands {
  int64_t M, N, K;
  int64_t rsA, csA;  // A [M, K]: row and column strides
  int64_t rsB, csB;  // B [K, N]
  int64_t batch;     // number of products
  int64_t bsA, bsB;  // how far apart consecutive products' A and B start (0: one matrix shared by all)
};

/** One BLAS operand: a column-major rows x cols matrix with leading dimension ld, used transposed or not. */
struct BlasMatrix {
  int64_t rows, cols, ld;
  bool trans;
  int64_t batch_stride;
};

/** The BLAS call: first = op(first) is m x k (from kiln's B), second = op(second) is k x n (from kiln's A). */
struct BlasGemm {
  int64_t m, n, k, batch;
  BlasMatrix first, second, d;
};

/**
 * Y (p x q, column-major) as a BLAS operand, where Y(i, j) is the element at j * rs + i * cs: either stored as
 * Y itself (cs = 1, ld = rs) or as Y^T used transposed (rs = 1, ld = cs). False when neither stride is 1 or the
 * other stride would overlap columns (BLAS needs ld >= rows).
 */
inline bool blas_operand(int64_t p, int64_t q, int64_t rs, int64_t cs, int64_t batch_stride, BlasMatrix* o) {
  // a dimension of size 1 never steps, so its stride does not matter
  if ((cs == 1 || p == 1) && (q == 1 || rs >= p)) {
    *o = {p, q, q == 1 ? p : rs, false, batch_stride};
    return true;
  }
  if ((rs == 1 || q == 1) && (p == 1 || cs >= q)) {
    *o = {q, p, p == 1 ? q : cs, true, batch_stride};
    return true;
  }
  return false;
}

/** The plan for exactly these operands (no folding of the batch). */
inline bool plan_gemm_as_is(const GemmOperands& g, BlasGemm* out) {
  if (g.M <= 0 || g.N <= 0 || g.K <= 0 || g.batch <= 0 || g.batch > 2147483647) return false;
  // strided batches must not share a matrix: a stride of 0 is left to kiln's own kernel
  if (g.batch > 1 && (g.bsA <= 0 || g.bsB <= 0)) return false;
  BlasGemm p{};
  p.m = g.N;
  p.n = g.M;
  p.k = g.K;
  p.batch = g.batch;
  // first: op = B^T (N x K); B^T(i, k) = B[k][i] at k * rsB + i * csB
  if (!blas_operand(g.N, g.K, g.rsB, g.csB, g.bsB, &p.first)) return false;
  // second: op = A^T (K x M); A^T(k, j) = A[j][k] at j * rsA + k * csA
  if (!blas_operand(g.K, g.M, g.rsA, g.csA, g.bsA, &p.second)) return false;
  p.d = {g.N, g.M, g.N, false, g.M * g.N};
  *out = p;
  return true;
}

/**
 * A B shared by every product (x[b] W, a Linear over a batch of sequences) as one taller product, when A's
 * products follow each other row after row: true when *g was folded (C, contiguous, is the same either way).
 */
inline bool fold_shared_b(GemmOperands* g) {
  const int64_t rs = g->M == 1 ? g->bsA : g->rsA;  // one row per product: the products' rows are bsA apart
  if (g->batch <= 1 || g->bsB != 0 || g->bsA != g->M * rs) return false;
  g->M *= g->batch;
  g->rsA = rs;
  g->batch = 1;
  return true;
}

/**
 * The plan for kiln's product, or false (kiln's own kernel runs it). A shared B folds into one taller product
 * (fold_shared_b), which BLAS runs faster than a batch and which works where a stride of 0 would not.
 */
inline bool plan_gemm(const GemmOperands& g, BlasGemm* out) {
  GemmOperands tall = g;
  if (fold_shared_b(&tall) && plan_gemm_as_is(tall, out)) return true;
  return plan_gemm_as_is(g, out);
}

/**
 * One operand as kiln's Hopper GEMM (kernels/cuda/matmul_sm90.cu) reads it through a tensor map: K-major rows,
 * element (r, k) of product z at z * bs + r * ld + k for k < K, and zero past K (TMA's fill). In place, that is
 * the operand itself; otherwise its copy, packed to [batch][rows][K] with K padded to 16 bytes, from the source
 * view (element (r, k) of product z at z * src_bs + r * src_rs + k * src_cs). An operand read in place with its
 * rows contiguous instead (mn_major: bfloat16 only, which wgmma can take transposed) has element (r, k) of product
 * z at z * bs + k * ld + r, zero past K and past the rows.
 */
struct KMajor {
  int64_t rows, K, ld, bs;
  bool in_place, mn_major;
  int64_t src_rs, src_cs, src_bs;
};
/** The product C[z] = A[z] B[z]^T over A [M][K] and B [N][K] (after folding a shared B), each read as KMajor says. */
struct KMajorPlan {
  int64_t M, N, K, batch;
  KMajor a, b;
};

/**
 * How the Hopper GEMM reads kiln's operands: `align` elements make 16 bytes (the tensor map's alignment of the
 * base and of every stride); a_aligned / b_aligned say whether each operand's first element is 16-byte aligned.
 * An operand is read in place K-major when k is contiguous, its rows (at least K apart) and products (not
 * overlapping) keep the alignment; else, when mn_ok (bfloat16), in place MN-major when its rows are contiguous
 * and its k-steps (at least the rows apart) and products keep the alignment; any other is packed.
 */
inline KMajorPlan plan_k_major(const GemmOperands& g0, int64_t align, bool a_aligned, bool b_aligned,
                               bool mn_ok = false) {
  GemmOperands g = g0;
  fold_shared_b(&g);
  const auto one = [&](int64_t rows, int64_t rs, int64_t cs, int64_t bs, bool aligned) {
    const auto al = [&](int64_t v) { return v % align == 0; };
    KMajor o{rows, g.K, rs, bs, false, false, rs, cs, bs};
    o.in_place =
        aligned && (cs == 1 || g.K == 1) && rs >= g.K && al(rs) && (g.batch == 1 || (bs >= rows * rs && al(bs)));
    if (!o.in_place && mn_ok && aligned && (rs == 1 || rows == 1) && cs >= rows && al(cs) &&
        (g.batch == 1 || (bs >= g.K * cs && al(bs)))) {
      o.in_place = o.mn_major = true;
      o.ld = cs;
      if (g.batch == 1) o.bs = g.K * cs;  // a lone product never steps: a nominal stride the tensor map accepts
    } else if (!o.in_place) {
      o.K = (g.K + align - 1) / align * align;
      o.ld = o.K;
      o.bs = rows * o.K;
    } else if (g.batch == 1) {
      o.bs = rows * rs;  // a lone product never steps: a nominal stride the tensor map accepts
    }
    return o;
  };
  // B's element (n, k) sits at k * rsB + n * csB
  return {g.M, g.N, g.K, g.batch, one(g.M, g.rsA, g.csA, g.bsA, a_aligned), one(g.N, g.csB, g.rsB, g.bsB, b_aligned)};
}

#if defined(__CUDACC__)
#define KILN_HOST_DEVICE __host__ __device__
#else
#define KILN_HOST_DEVICE
#endif

/** One output tile: product z, tile row m (of M), tile column n (of N). */
struct GemmTile {
  int64_t z, m, n;
};

/**
 * The t-th of batch * tiles_m * tiles_n output tiles in the order a persistent GEMM walks them: per product,
 * bands of `group` tile rows, each band column by column, down its rows first. The tiles running at once then
 * share a few bands of A and columns of B, which stay in L2, instead of sweeping all of B for every row of A.
 */
KILN_HOST_DEVICE inline GemmTile grouped_tile(int64_t t, int64_t tiles_m, int64_t tiles_n, int64_t group) {
  const int64_t per_product = tiles_m * tiles_n, z = t / per_product, u = t % per_product;
  const int64_t band = u / (group * tiles_n), first = band * group;
  const int64_t rows = tiles_m - first < group ? tiles_m - first : group;  // the last band may be shorter
  const int64_t v = u - first * tiles_n;
  return {z, first + v % rows, v / rows};
}
#undef KILN_HOST_DEVICE
}  // namespace kiln
