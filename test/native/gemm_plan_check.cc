// Checks kiln/gemm_plan.h on the cpu (test/native.test.ts compiles and runs it): for random strided products
// (row-major, transposed, padded rows, shared and strided batches, views no BLAS call can take), every plan
// the header makes is run with column-major BLAS semantics on the same buffers and must give exactly the row-major
// product kiln defines; the layouts BLAS can take must get a plan, and the others must not.
#include <cstdint>
#include <cstdio>
#include <utility>
#include <vector>

#include "kiln/gemm_plan.h"

namespace {
uint64_t state = 0x9E3779B97F4A7C15ull;
int64_t rnd(int64_t n) {  // 0 .. n-1
  state = state * 6364136223846793005ull + 1442695040888963407ull;
  return static_cast<int64_t>((state >> 33) % static_cast<uint64_t>(n));
}

// one operand X [R, C] repeated over `batch` products: strides for a layout, and the buffer it needs
struct Layout {
  int64_t rs, cs, bs, size;
};
enum Kind { kRowMajor, kTransposed, kPadded, kPaddedTransposed, kShared, kNoUnitStride, kKinds };
Layout layout(Kind kind, int64_t R, int64_t C, int64_t batch) {
  Layout l{};
  switch (kind) {
    case kRowMajor: l = {C, 1, R * C, 0}; break;
    case kTransposed: l = {1, R, R * C, 0}; break;
    case kPadded: l = {C + 3, 1, R * (C + 3) + 5, 0}; break;
    case kPaddedTransposed: l = {1, R + 2, C * (R + 2) + 1, 0}; break;
    case kShared: l = {C, 1, 0, 0}; break;
    default: l = {2 * C, 2, 2 * R * C, 0}; break;  // every element two apart: no BLAS layout
  }
  l.size = (batch - 1) * l.bs + (R - 1) * l.rs + (C - 1) * l.cs + 1;
  return l;
}

// BLAS semantics: D (m x n, ldd) = op(first) op(second), element (i, j) of op(X) at trans ? (j + i ld) : (i + j ld)
double blas_at(const kiln::BlasMatrix& x, const std::vector<double>& v, int64_t b, int64_t i, int64_t j) {
  return v[b * x.batch_stride + (x.trans ? j + i * x.ld : i + j * x.ld)];
}
}  // namespace

// the Hopper GEMM's plan (kiln::plan_k_major), run as its kernels read memory: each operand packed (K-major, zero
// past K) or read in place through its tensor map (zero past the map's K), products C[z] = A[z] B[z]^T over
// whole 64-k steps; `.at` catches any read outside the operand's buffer
int k_major_runs = 0, k_major_in_place = 0, mn_major_in_place = 0;
bool k_major_matches(const kiln::GemmOperands& g, const std::vector<double>& A, const std::vector<double>& B,
                     const std::vector<double>& want, int ka, int kb) {
  const int64_t align = int64_t{1} << rnd(4);  // 1, 2, 4 or 8 elements per 16 bytes
  const bool a_aligned = rnd(4) != 0, b_aligned = rnd(4) != 0;
  const bool mn_ok = rnd(2) != 0;  // bfloat16: operands may be read MN-major
  const kiln::KMajorPlan p = kiln::plan_k_major(g, align, a_aligned, b_aligned, mn_ok);
  ++k_major_runs;
  const auto read = [&](const kiln::KMajor& o, const std::vector<double>& src, int64_t z, int64_t r, int64_t k) {
    if (k >= o.K) return 0.0;
    if (o.mn_major) return src.at(z * o.bs + k * o.ld + r);
    if (o.in_place) return src.at(z * o.bs + r * o.ld + k);
    return k < p.K ? src.at(z * o.src_bs + r * o.src_rs + k * o.src_cs) : 0.0;
  };
  bool ok = p.M * p.N * p.batch == g.M * g.N * g.batch && p.K == g.K;
  for (const auto& [o, base_aligned] : {std::pair{&p.a, a_aligned}, std::pair{&p.b, b_aligned}}) {
    k_major_in_place += o->in_place && !o->mn_major;
    mn_major_in_place += o->mn_major;
    // what the tensor map needs: an aligned base when read in place, the K extent padded when packed, strides on
    // the alignment, rows (or k-steps, MN-major) not overlapping; MN-major only where asked and in place
    ok = ok && (o->in_place ? base_aligned : o->K % align == 0) && o->ld % align == 0 && o->bs % align == 0 &&
         o->ld >= (o->mn_major ? o->rows : o->K) && (!o->mn_major || (mn_ok && o->in_place && o->K == p.K));
  }
  const int64_t steps = (p.K + 63) / 64 * 64;
  for (int64_t z = 0; z < p.batch && ok; ++z)
    for (int64_t m = 0; m < p.M && ok; ++m)
      for (int64_t n = 0; n < p.N && ok; ++n) {
        double s = 0;
        for (int64_t k = 0; k < steps; ++k) s += read(p.a, A, z, m, k) * read(p.b, B, z, n, k);
        ok = s == want[(z * p.M + m) * p.N + n];
      }
  if (!ok)
    std::printf("FAIL: the K-major plan for A kind %d, B kind %d, M %lld N %lld K %lld batch %lld, align %lld\n", ka,
                kb, static_cast<long long>(g.M), static_cast<long long>(g.N), static_cast<long long>(g.K),
                static_cast<long long>(g.batch), static_cast<long long>(align));
  return ok;
}

// the persistent walk's order (kiln::grouped_tile): every tile of every product exactly once, in range, and the
// band structure: within a product, tile t + 1 is the next row of the same column or the first row of the next
int grouped_walks() {
  int walks = 0;
  for (int64_t tm = 1; tm <= 37; tm += 3)
    for (int64_t tn = 1; tn <= 19; tn += 2)
      for (int64_t batch = 1; batch <= 3; ++batch)
        for (int64_t group : {1, 4, 16}) {
          std::vector<int> seen(batch * tm * tn, 0);
          bool ok = true;
          kiln::GemmTile prev{-1, 0, 0};
          for (int64_t t = 0; t < batch * tm * tn && ok; ++t) {
            const kiln::GemmTile at = kiln::grouped_tile(t, tm, tn, group);
            ok = at.z >= 0 && at.z < batch && at.m >= 0 && at.m < tm && at.n >= 0 && at.n < tn &&
                 ++seen[(at.z * tm + at.m) * tn + at.n] == 1;
            if (ok && prev.z == at.z)
              ok = (at.n == prev.n && at.m == prev.m + 1) ||
                   (at.n == prev.n + 1 && at.m <= prev.m && at.m % group == 0) ||
                   (at.n == 0 && prev.n == tn - 1 && at.m == prev.m + 1 && at.m % group == 0);
            prev = at;
          }
          if (!ok) {
            std::printf("FAIL: grouped_tile over %lld x %lld tiles, %lld products, bands of %lld\n",
                        static_cast<long long>(tm), static_cast<long long>(tn), static_cast<long long>(batch),
                        static_cast<long long>(group));
            return -1;
          }
          ++walks;
        }
  return walks;
}

int main() {
  int cases = 0, planned = 0, folded = 0, failures = 0;
  const int walks = grouped_walks();
  std::printf("grouped tile walks: %d, every tile once\n", walks);
  if (walks < 0) ++failures;
  for (int t = 0; t < 4000; ++t) {
    const int64_t M = 1 + rnd(5), N = 1 + rnd(5), K = 1 + rnd(5), batch = 1 + rnd(3);
    const Kind ka = static_cast<Kind>(rnd(kKinds)), kb = static_cast<Kind>(rnd(kKinds));
    const Layout la = layout(ka, M, K, batch), lb = layout(kb, K, N, batch);
    std::vector<double> A(la.size), B(lb.size);
    for (auto& x : A) x = static_cast<double>(rnd(19) - 9);
    for (auto& x : B) x = static_cast<double>(rnd(19) - 9);
    std::vector<double> want(batch * M * N, 0.0);
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          double s = 0;
          for (int64_t k = 0; k < K; ++k)
            s += A[b * la.bs + m * la.rs + k * la.cs] * B[b * lb.bs + k * lb.rs + n * lb.cs];
          want[(b * M + m) * N + n] = s;
        }
    const kiln::GemmOperands g{M, N, K, la.rs, la.cs, lb.rs, lb.cs, batch, la.bs, lb.bs};
    if (!k_major_matches(g, A, B, want, ka, kb)) ++failures;
    kiln::BlasGemm p{};
    const bool ok = kiln::plan_gemm(g, &p);
    ++cases;
    // what must plan: a unit stride in each operand, and no shared matrix but a B over products whose rows stack
    // (row-major A, or one row with unit steps per product); what must not: a view with no unit stride, a shared A
    const bool stacks =
        ka == kRowMajor || (M == 1 && (ka != kPaddedTransposed || K == 1)) || (ka == kTransposed && K == 1);
    const bool must = ka != kNoUnitStride && kb != kNoUnitStride &&
                      (batch == 1 || (ka != kShared && kb != kShared) || (kb == kShared && ka != kShared && stacks));
    const bool must_not = (ka == kNoUnitStride && M > 1 && K > 1) || (kb == kNoUnitStride && K > 1 && N > 1) ||
                          (batch > 1 && ka == kShared);
    if (must != ok && (must || must_not)) {
      std::printf("FAIL: %s for A kind %d, B kind %d, M %lld N %lld K %lld batch %lld\n", ok ? "a plan" : "no plan", ka,
                  kb, static_cast<long long>(M), static_cast<long long>(N), static_cast<long long>(K),
                  static_cast<long long>(batch));
      ++failures;
    }
    if (!ok) continue;
    ++planned;
    if (p.batch == 1 && batch > 1) ++folded;
    // BLAS's own rules: ld covers the stored rows, the shapes chain
    const bool legal = p.first.ld >= p.first.rows && p.second.ld >= p.second.rows && p.d.ld >= p.m &&
                       (p.first.trans ? p.first.cols : p.first.rows) == p.m &&
                       (p.first.trans ? p.first.rows : p.first.cols) == p.k &&
                       (p.second.trans ? p.second.cols : p.second.rows) == p.k &&
                       (p.second.trans ? p.second.rows : p.second.cols) == p.n && p.m * p.n * p.batch == batch * M * N;
    if (!legal) {
      std::printf("FAIL: an illegal plan for A kind %d, B kind %d\n", ka, kb);
      ++failures;
      continue;
    }
    std::vector<double> D(batch * M * N, -1.0);
    for (int64_t b = 0; b < p.batch; ++b)
      for (int64_t i = 0; i < p.m; ++i)
        for (int64_t j = 0; j < p.n; ++j) {
          double s = 0;
          for (int64_t k = 0; k < p.k; ++k) s += blas_at(p.first, B, b, i, k) * blas_at(p.second, A, b, k, j);
          D[b * p.d.batch_stride + i + j * p.d.ld] = s;
        }
    for (size_t e = 0; e < D.size(); ++e)
      if (D[e] != want[e]) {
        std::printf("FAIL: A kind %d, B kind %d, M %lld N %lld K %lld batch %lld: element %zu is %g, want %g\n", ka, kb,
                    static_cast<long long>(M), static_cast<long long>(N), static_cast<long long>(K),
                    static_cast<long long>(batch), e, D[e], want[e]);
        ++failures;
        break;
      }
  }
  std::printf("gemm plans: %d cases, %d planned, %d folded into one product, %d failures\n", cases, planned, folded,
              failures);
  std::printf("k-major plans: %d run, %d operands read in place K-major, %d MN-major\n", k_major_runs, k_major_in_place,
              mn_major_in_place);
  return failures == 0 && planned > cases / 4 && folded > 0 && k_major_in_place > k_major_runs / 5 &&
                 mn_major_in_place > k_major_runs / 16
             ? 0
             : 1;
}
