// kiln's CUDA kernels on the CPU emulation of cuda_emu.h, against plain references: the implicit-GEMM
// convolutions (forward, input and weight gradients, the last over chunks of positions), NaN-ignoring column
// statistics and quantiles, and scatterAdd's passes (CUB's stable radix sort stands in as std::stable_sort).
// Prints one line per check and "cuda emulation: N checks, 0 failures".
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <utility>

#include "cuda_emu.h"
#include "kiln/attention.h"
#include "kiln/conv_geom.h"
#include "kiln/cuda_runtime.h"
#include "kiln/int4_layout.h"
#include "kiln/layer_norm.h"
#include "kiln/tables.h"

#define __CUDA_ARCH__ 900  // the tensor-core kernels' bodies are compiled for sm_80 and newer

namespace kiln {
namespace cuda {
using namespace nvcuda;
constexpr int kThreads = 256;
using Geo = ConvGeom;
#include "cuda_emu_kernels.inc"
}  // namespace cuda
}  // namespace kiln
using namespace kiln;
using namespace kiln::cuda;

static int checks = 0, failures = 0;
static void expect(bool ok, const char* what, double err) {
  ++checks;
  std::printf("%s %s (max error %.3g)\n", ok ? "ok  " : "FAIL", what, err);
  if (!ok) ++failures;
}
static std::vector<float> normal(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}
static double rel(double got, double want) { return std::fabs(got - want) / (1 + std::fabs(want)); }
// the largest rel error; NaN where the reference has none counts as 1e9, NaN in both as none
static double max_err(const std::vector<float>& got, const std::vector<double>& want) {
  double err = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i]) && std::isnan(got[i])) continue;
    err = std::max(err, std::isnan(got[i]) || std::isnan(want[i]) ? 1e9 : rel(got[i], want[i]));
  }
  return err;
}

static Geo geometry(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh, int64_t kw, int64_t s, int64_t p,
                    int64_t d, int64_t groups) {
  Geo q;
  q.N = N, q.C = C, q.H = H, q.W = W, q.O = O, q.kh = kh, q.kw = kw, q.groups = groups;
  q.sh = s, q.sw = 1, q.ph = p, q.pw = 1, q.dh = 1, q.dw = d;
  q.OH = conv_out_size(H, kh, q.sh, q.ph, q.dh);
  q.OW = conv_out_size(W, kw, q.sw, q.pw, q.dw);
  return q;
}

// y = conv(x, w), dx = conv^T(gy, w) and dw = x (*) gy in double, for every (n, o, oh, ow, c, i, j) that connects
static void reference(const Geo& q, const std::vector<float>& x, const std::vector<float>& w,
                      const std::vector<float>& gy, std::vector<double>& y, std::vector<double>& dx,
                      std::vector<double>& dw) {
  const int64_t Cg = q.C / q.groups, Og = q.O / q.groups;
  y.assign(q.N * q.O * q.OH * q.OW, 0);
  dx.assign(q.N * q.C * q.H * q.W, 0);
  dw.assign(q.O * Cg * q.kh * q.kw, 0);
  for (int64_t n = 0; n < q.N; ++n)
    for (int64_t o = 0; o < q.O; ++o)
      for (int64_t oh = 0; oh < q.OH; ++oh)
        for (int64_t ow = 0; ow < q.OW; ++ow)
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t i = 0; i < q.kh; ++i)
              for (int64_t j = 0; j < q.kw; ++j) {
                int64_t ih, iw;
                if (!q.tap_in(oh, ow, i, j, ih, iw)) continue;
                const int64_t xi = ((n * q.C + (o / Og) * Cg + c) * q.H + ih) * q.W + iw;
                const int64_t wi = ((o * Cg + c) * q.kh + i) * q.kw + j, yi = ((n * q.O + o) * q.OH + oh) * q.OW + ow;
                y[yi] += double(x[xi]) * w[wi];
                dx[xi] += double(gy[yi]) * w[wi];
                dw[wi] += double(x[xi]) * gy[yi];
              }
}

static void check_conv(const char* name, const Geo& q, unsigned seed) {
  const int64_t Cg = q.C / q.groups, Og = q.O / q.groups;
  const auto x = normal(q.N * q.C * q.H * q.W, seed), w = normal(q.O * Cg * q.kh * q.kw, seed + 1),
             gy = normal(q.N * q.O * q.OH * q.OW, seed + 2);
  std::vector<double> ry, rdx, rdw;
  reference(q, x, w, gy, ry, rdx, rdw);
  char what[200];
  // launch_conv_gemm's grid: (column tiles, row tiles, groups)
  std::vector<float> y(ry.size(), NAN), dx(rdx.size(), NAN), dw(rdw.size(), NAN);
  const int64_t P = q.N * q.OH * q.OW, PI = q.N * q.H * q.W;
  emu_launch({unsigned((P + 63) / 64), unsigned((Og + 63) / 64), unsigned(q.groups)}, {256, 1, 1},
             [&] { conv_gemm<false>(x.data(), w.data(), y.data(), q); });
  emu_launch({unsigned((PI + 63) / 64), unsigned((Cg + 63) / 64), unsigned(q.groups)}, {256, 1, 1},
             [&] { conv_gemm<true>(gy.data(), w.data(), dx.data(), q); });
  // k_conv2d_backward_weight: chunks of positions, then their partial sums added in chunk order (sum_splits)
  const int64_t taps = Cg * q.kh * q.kw, gx = (taps + 63) / 64, gyt = (Og + 63) / 64;
  int64_t len = 0;
  const int64_t chunks = conv_wgrad_chunks(gx * gyt * q.groups, P, &len);
  std::vector<float> part(chunks * dw.size(), NAN);
  emu_launch({unsigned(gx), unsigned(gyt), unsigned(q.groups * chunks)}, {256, 1, 1}, [&] {
    conv2d_backward_weight(x.data(), gy.data(), chunks > 1 ? part.data() : dw.data(), q, int32_t(chunks), int32_t(len));
  });
  if (chunks > 1)
    for (size_t t = 0; t < dw.size(); ++t) {
      float s = part[t];
      for (int64_t k = 1; k < chunks; ++k) s += part[k * dw.size() + t];
      dw[t] = s;
    }
  for (auto [got, want, part_name] : {std::tuple{&y, &ry, "conv2d"}, std::tuple{&dx, &rdx, "input gradient"},
                                      std::tuple{&dw, &rdw, "weight gradient"}}) {
    const double err = max_err(*got, *want);
    std::snprintf(what, sizeof what, "%s %s (%ld positions, %ld weight-gradient chunks)", name, part_name, long(P),
                  long(chunks));
    expect(err < 1e-4, what, err);
  }
}

static float quantile_ref(std::vector<float> col, double q) {  // native/cpu/reduce.cc's rule
  col.erase(std::remove_if(col.begin(), col.end(), [](float v) { return std::isnan(v); }), col.end());
  if (col.empty()) return NAN;
  const double pos = q * double(col.size() - 1);
  const size_t k = size_t(pos);
  std::sort(col.begin(), col.end());
  const double frac = pos - double(k);
  return frac == 0 ? col[k] : float(col[k] + (double(col[std::min(k + 1, col.size() - 1)]) - col[k]) * frac);
}

static void check_columns() {
  const int64_t n = 1003, f = 6;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(0, 1);
  std::vector<float> x(n * f);
  for (int64_t i = 0; i < n; ++i) {
    const float r = u(rng);
    const float cols[6] = {std::floor(r * 5) - 2,  // long runs of ties
                           r < 0.5f ? -0.f : 0.f,
                           r < 0.3f    ? NAN
                           : r < 0.35f ? INFINITY
                           : r < 0.4f  ? -INFINITY
                                       : u(rng),
                           NAN,                  // no values
                           i == 17 ? 4.f : NAN,  // one value
                           (r - 0.5f) * std::exp(40 * (u(rng) - 0.5f))};
    for (int j = 0; j < f; ++j) x[i * f + j] = cols[j];
  }
  double qerr = 0;
  bool qok = true;
  for (double q : {0.0, 0.1, 1.0 / 3, 0.5, 0.77, 0.9995, 1.0}) {
    std::vector<float> o(f, -1.f);
    emu_launch({unsigned(f), 1, 1}, {256, 1, 1}, [&] { nan_quantile(x.data(), o.data(), n, f, q); });
    for (int64_t j = 0; j < f; ++j) {
      std::vector<float> col(n);
      for (int64_t i = 0; i < n; ++i) col[i] = x[i * f + j];
      const float want = quantile_ref(col, q), got = o[j];
      const bool same = (std::isnan(want) && std::isnan(got)) || want == got;  // bit for bit but the zero's sign
      if (!same) std::printf("     nanQuantile q=%g column %ld: %.9g, want %.9g\n", q, long(j), got, want);
      qok = qok && same;
      if (!same) qerr = std::max(qerr, rel(got, want));
    }
  }
  expect(qok, "nanQuantile: 7 q's over ties, signed zeros, infinities, NaN, one value, none", qerr);
  std::vector<float> st(5 * f, -1.f);
  emu_launch({unsigned(f), 1, 1}, {256, 1, 1}, [&] { nan_column_stats(x.data(), st.data(), n, f); });
  double serr = 0;
  for (int64_t j = 0; j < f; ++j) {
    double cnt = 0, sum = 0, lo = INFINITY, hi = -INFINITY, ss = 0;
    for (int64_t i = 0; i < n; ++i)
      if (!std::isnan(x[i * f + j]))
        cnt++, sum += x[i * f + j], lo = std::min<double>(lo, x[i * f + j]), hi = std::max<double>(hi, x[i * f + j]);
    for (int64_t i = 0; i < n; ++i)
      if (!std::isnan(x[i * f + j])) ss += (x[i * f + j] - sum / cnt) * (x[i * f + j] - sum / cnt);
    const double want[5] = {cnt, cnt ? sum / cnt : NAN, cnt ? ss / cnt : NAN, cnt ? lo : NAN, cnt ? hi : NAN};
    for (int s = 0; s < 5; ++s) {
      const double got = st[s * f + j];
      const bool both_nan = std::isnan(got) && std::isnan(want[s]);
      if (!both_nan && got != want[s]) serr = std::max(serr, std::isnan(got) ? 1e9 : rel(got, want[s]));
    }
  }
  expect(serr < 1e-6, "nanColumnStats over the same columns", serr);
}

static void check_scatter() {
  const int64_t pre = 2, D = 300, post = 3, k = 700;
  std::mt19937 rng(9);
  std::vector<int32_t> idx(k);
  for (auto& i : idx) i = int32_t(rng() % D);
  idx[600] = idx[5];
  idx[650] = -4;  // reported, and left out of every row
  std::vector<float> g = normal(pre * k * post, 11);
  for (size_t i = 0; i < g.size(); ++i) g[i] *= std::exp(float(i % 7) * 3);
  std::vector<uint32_t> keys(k), vals(k), sorted(k), order(k), starts(D + 1);
  DeviceFlags flags{};
  emu_launch({3, 1, 1}, {256, 1, 1}, [&] { scatter_keys(idx.data(), keys.data(), vals.data(), k, D, &flags); });
  std::vector<std::pair<uint32_t, uint32_t>> kv(k);
  for (int64_t j = 0; j < k; ++j) kv[j] = {keys[j], vals[j]};
  std::stable_sort(kv.begin(), kv.end(), [](auto a, auto b) { return a.first < b.first; });  // CUB's sort
  for (int64_t j = 0; j < k; ++j) sorted[j] = kv[j].first, order[j] = kv[j].second;
  emu_launch({unsigned((D + 1 + 255) / 256), 1, 1}, {256, 1, 1},
             [&] { scatter_starts(sorted.data(), k, D, starts.data()); });
  std::vector<float> y(pre * D * post, NAN);
  emu_launch({unsigned((y.size() + 255) / 256), 1, 1}, {256, 1, 1},
             [&] { scatter_sum<float>(g.data(), order.data(), starts.data(), y.data(), pre, D, post, k); });
  std::vector<float> want(y.size(), 0.f);  // cpu's loop: positions in order
  for (int64_t p = 0; p < pre; ++p)
    for (int64_t j = 0; j < k; ++j)
      if (idx[j] >= 0)
        for (int64_t c = 0; c < post; ++c) want[(p * D + idx[j]) * post + c] += g[(p * k + j) * post + c];
  size_t differ = 0;
  for (size_t i = 0; i < y.size(); ++i) differ += std::memcmp(&y[i], &want[i], 4) != 0;
  expect(differ == 0, "scatterAdd: 700 positions into 300 rows, the sums in cpu's order and bits", double(differ));
  const bool reported = flags.set[FLAG_SCATTER_INDEX] == 1 && flags.pos[FLAG_SCATTER_INDEX] == 650 &&
                        flags.value[FLAG_SCATTER_INDEX] == -4 && flags.bound[FLAG_SCATTER_INDEX] == 300;
  expect(reported, "scatterAdd: the out-of-range index is reported with its position, value and bound", 0);
}

// C[b] = A[b] B[b] with A [batch][M][K] (or its transpose in memory) at an offset and B [K][N] (or transposed)
// shared by every product: the 64x64 SIMT kernel, the same split over k into chunks of 128 (sum_splits after), and
// the 128x128 double-buffered kernel, against double; unsplit, the two kernels must agree bit for bit
static void check_matmul(int64_t M, int64_t N, int64_t K, bool ta, bool tb, int64_t batch) {
  const int64_t off = 3;
  const auto a = normal(off + batch * M * K, 21), b = normal(K * N, 22);
  MmArgs g{};
  g.a = a.data(), g.b = b.data(), g.dta = g.dtb = DT_FLOAT32, g.M = M, g.N = N, g.K = K;
  g.offA = off, g.rsA = ta ? 1 : K, g.csA = ta ? M : 1;
  g.offB = 0, g.rsB = tb ? 1 : N, g.csB = tb ? K : 1;
  g.nbatch = 1;
  g.batch_a.ndim = g.batch_b.ndim = 1;
  g.batch_a.shape[0] = g.batch_b.shape[0] = batch;
  g.batch_a.strides[0] = M * K, g.batch_b.strides[0] = 0;
  std::vector<double> want(batch * M * N, 0);
  for (int64_t z = 0; z < batch; ++z)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k)
          want[(z * M + m) * N + n] += double(a[off + z * M * K + m * g.rsA + k * g.csA]) * b[k * g.rsB + n * g.csB];
  std::vector<float> small(want.size(), NAN), split(want.size(), NAN), big(want.size(), NAN);
  g.c = small.data();
  emu_launch({unsigned((N + 63) / 64), unsigned((M + 63) / 64), unsigned(batch)}, {16, 16, 1}, [&] { matmul_simt(g); });
  MmArgs s = g;
  s.splits = int32_t((K + 127) / 128), s.kchunk = 128;
  std::vector<float> part(s.splits * want.size(), NAN);
  s.c = split.data(), s.part = part.data();
  emu_launch({unsigned((N + 63) / 64), unsigned((M + 63) / 64), unsigned(batch * s.splits)}, {16, 16, 1},
             [&] { matmul_simt(s); });
  if (s.splits > 1)
    emu_launch({unsigned((want.size() + 255) / 256), 1, 1}, {256, 1, 1},
               [&] { sum_splits(part.data(), split.data(), int64_t(want.size()), s.splits); });
  g.c = big.data();
  emu_launch({unsigned((N + 127) / 128), unsigned((M + 127) / 128), unsigned(batch)}, {256, 1, 1},
             [&] { matmul_simt128(g); });
  char what[200];
  for (auto [got, kind] : {std::pair{&small, "64x64"}, std::pair{&split, "64x64 split over k"},
                           std::pair{&big, "128x128 double-buffered"}}) {
    const double err = max_err(*got, want);
    std::snprintf(what, sizeof what, "matmul %s: %ld x %ld x %ld%s%s, %ld products over one B", kind, long(M), long(N),
                  long(K), ta ? ", A transposed" : "", tb ? ", B transposed" : "", long(batch));
    expect(err < 1e-4, what, err);
  }
  expect(std::memcmp(small.data(), big.data(), small.size() * 4) == 0, "matmul: both tile sizes give the same bits", 0);
}

// sum and max of rows by block_all (a block a row, and a row cut into chunks whose results a second pass
// combines), softmax and logSoftmax with a warp per row, a row with NaN
static void check_rows() {
  const int64_t rows = 5, r = 5000;
  auto x = normal(rows * r, 31);
  x[3 * r + 4321] = NAN;
  std::vector<double> sum(rows, 0), mx(rows, -INFINITY);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t k = 0; k < r; ++k) {
      sum[i] += x[i * r + k];
      mx[i] = std::isnan(x[i * r + k]) || std::isnan(mx[i]) ? NAN : std::max<double>(mx[i], x[i * r + k]);
    }
  std::vector<float> s(rows), m(rows), part(rows * 3), s2(rows);
  emu_launch({unsigned(rows), 1, 1}, {256, 1, 1}, [&] { reduce_rows<float>(x.data(), s.data(), R_SUM, r, 1, r); });
  emu_launch({unsigned(rows), 1, 1}, {256, 1, 1}, [&] { reduce_rows<float>(x.data(), m.data(), R_MAX, r, 1, r); });
  emu_launch({unsigned(rows * 3), 1, 1}, {256, 1, 1},
             [&] { reduce_rows<float>(x.data(), part.data(), R_SUM, r, 3, 2048); });
  emu_launch({unsigned(rows), 1, 1}, {256, 1, 1}, [&] { reduce_rows<float>(part.data(), s2.data(), R_SUM, 3, 1, 3); });
  expect(max_err(s, sum) < 1e-5, "sum of 5 rows of 5000 (block_all), one with NaN", max_err(s, sum));
  expect(max_err(m, mx) == 0, "max of the same rows (NaN wins)", max_err(m, mx));
  expect(max_err(s2, sum) < 1e-5, "the same sums over 3 chunks a row, then the chunks in order", max_err(s2, sum));
  const int64_t outer = 11, n = 70;
  const auto y = normal(outer * n, 32);
  std::vector<float> sm(outer * n), lsm(outer * n);
  emu_launch({unsigned((outer * 32 + 255) / 256), 1, 1}, {256, 1, 1},
             [&] { softmax<true>(y.data(), sm.data(), false, outer, n, 1); });
  emu_launch({unsigned((outer * 32 + 255) / 256), 1, 1}, {256, 1, 1},
             [&] { softmax<true>(y.data(), lsm.data(), true, outer, n, 1); });
  std::vector<double> wsm(outer * n), wlsm(outer * n);
  for (int64_t i = 0; i < outer; ++i) {
    double mxv = -INFINITY, z = 0;
    for (int64_t k = 0; k < n; ++k) mxv = std::max<double>(mxv, y[i * n + k]);
    for (int64_t k = 0; k < n; ++k) z += std::exp(y[i * n + k] - mxv);
    for (int64_t k = 0; k < n; ++k) {
      wsm[i * n + k] = std::exp(y[i * n + k] - mxv) / z;
      wlsm[i * n + k] = y[i * n + k] - mxv - std::log(z);
    }
  }
  expect(max_err(sm, wsm) < 1e-6, "softmax of 11 rows of 70, a warp a row", max_err(sm, wsm));
  expect(max_err(lsm, wlsm) < 1e-6, "logSoftmax of the same rows", max_err(lsm, wlsm));
}

// fused cross-entropy forward and backward, a warp a row: class weights, label smoothing, 70 classes, a label
// out of range (reported; its row's outputs are 0), against the formula in double
static void check_cross_entropy() {
  const int64_t n = 9, c = 70;
  const float smooth = 0.1f;
  const auto x = normal(n * c, 41), g = normal(n, 42);
  std::vector<float> w(c);
  for (int64_t k = 0; k < c; ++k) w[k] = 0.5f + float(k % 5) / 4;
  std::vector<int32_t> y(n);
  for (int64_t i = 0; i < n; ++i) y[i] = int32_t((i * 37) % c);
  y[6] = int32_t(c);  // out of range
  DeviceFlags flags{};
  std::vector<float> loss(n, NAN), dx(n * c, NAN);
  CeArgs a{x.data(), y.data(), g.data(), w.data(), loss.data(), n, c, smooth, &flags};
  const unsigned blocks = unsigned((n * 32 + 255) / 256);
  emu_launch({blocks, 1, 1}, {256, 1, 1}, [&] { softmax_cross_entropy(a, false); });
  a.out = dx.data();
  emu_launch({blocks, 1, 1}, {256, 1, 1}, [&] { softmax_cross_entropy(a, true); });
  std::vector<double> wl(n, 0), wdx(n * c, 0);
  double W = 0;
  for (float v : w) W += v;
  for (int64_t i = 0; i < n; ++i) {
    if (y[i] >= c) continue;
    double mxv = -INFINITY, z = 0, acc = 0;
    for (int64_t k = 0; k < c; ++k) mxv = std::max<double>(mxv, x[i * c + k]);
    for (int64_t k = 0; k < c; ++k) z += std::exp(x[i * c + k] - mxv);
    const double lse = mxv + std::log(z), hard = (1 - double(smooth)) * w[y[i]];
    for (int64_t k = 0; k < c; ++k) acc += w[k] * (x[i * c + k] - lse);
    wl[i] = -hard * (x[i * c + y[i]] - lse) - double(smooth) / c * acc;
    for (int64_t k = 0; k < c; ++k) {
      const double p = std::exp(x[i * c + k] - lse);
      wdx[i * c + k] = g[i] * (hard * p + double(smooth) / c * (p * W - w[k])) - (k == y[i] ? g[i] * hard : 0);
    }
  }
  expect(max_err(loss, wl) < 1e-5, "crossEntropy over 70 weighted classes, smoothing 0.1, a warp a row",
         max_err(loss, wl));
  expect(max_err(dx, wdx) < 1e-5, "its backward", max_err(dx, wdx));
  expect(flags.set[FLAG_LABEL] == 1 && flags.pos[FLAG_LABEL] == 6 && flags.value[FLAG_LABEL] == int(c),
         "crossEntropy: the label out of range is reported with its row and value", 0);
}

// layer normalisation (weight and bias), its input gradient and the weight/bias gradients, against double
static void check_layer_norm() {
  const int64_t R = 1100, C = 77;  // dweight and dbias over 3 chunks of rows (512, 512, 76), then added in order
  const auto x = normal(R * C, 51), wt = normal(C, 52), bs = normal(C, 53), gy = normal(R * C, 54);
  const float eps = 1e-5f;
  std::vector<float> y(R * C), dx(R * C), stats(2 * R), dw(C), db(C);
  LnArgs f{R, C, x.data(), wt.data(), bs.data(), eps};
  emu_launch({unsigned((R + kLnWarps - 1) / kLnWarps), 1, 1}, {32 * kLnWarps, 1, 1}, [&] { layer_norm(f, y.data()); });
  LnArgs b{R, C, x.data(), gy.data(), wt.data(), eps};
  emu_launch({unsigned((R + kLnWarps - 1) / kLnWarps), 1, 1}, {32 * kLnWarps, 1, 1},
             [&] { layer_norm_backward(b, dx.data(), stats.data()); });
  int64_t chunk = 0;
  const int64_t chunks = ln_param_chunks(R, C, &chunk);
  std::vector<float> part(chunks * 2 * C, NAN), dwb(2 * C, NAN);
  emu_launch({1, unsigned(chunks), 1}, {256, 1, 1},
             [&] { layer_norm_backward_params(b, stats.data(), part.data(), chunk); });
  emu_launch({1, 1, 1}, {256, 1, 1}, [&] { sum_splits(part.data(), dwb.data(), 2 * C, int32_t(chunks)); });
  dw.assign(dwb.begin(), dwb.begin() + C), db.assign(dwb.begin() + C, dwb.end());
  std::vector<double> wy(R * C), wdx(R * C), wdw(C, 0), wdb(C, 0);
  for (int64_t r = 0; r < R; ++r) {
    double mu = 0, var = 0, m1 = 0, m2 = 0;
    for (int64_t c = 0; c < C; ++c) mu += x[r * C + c];
    mu /= C;
    for (int64_t c = 0; c < C; ++c) var += (x[r * C + c] - mu) * (x[r * C + c] - mu);
    const double is = 1 / std::sqrt(var / C + eps);
    for (int64_t c = 0; c < C; ++c) {
      const double h = (x[r * C + c] - mu) * is, d = double(gy[r * C + c]) * wt[c];
      wy[r * C + c] = h * wt[c] + bs[c];
      m1 += d / C, m2 += d * h / C;
      wdw[c] += gy[r * C + c] * h, wdb[c] += gy[r * C + c];
    }
    for (int64_t c = 0; c < C; ++c)
      wdx[r * C + c] = is * (double(gy[r * C + c]) * wt[c] - m1 - (x[r * C + c] - mu) * is * m2);
  }
  expect(max_err(y, wy) < 1e-5, "layerNorm of 1100 rows of 77, a warp a row", max_err(y, wy));
  expect(max_err(dx, wdx) < 1e-4, "its input gradient", max_err(dx, wdx));
  expect(chunks == 3 && max_err(dw, wdw) < 5e-5 && max_err(db, wdb) < 5e-5,  // 1100 float terms a sum
         "its weight and bias gradients, over 3 chunks of rows", std::max(max_err(dw, wdw), max_err(db, wdb)));
}

// fused attention, a warp per query row (forward, dq) or key row (dk, dv) with an online softmax: a shared mask,
// causal or not, dropout by the shared hash rule; 40 and 33 head dims (lanes stride past 32). Against double.
static void check_attention(bool causal, uint32_t thr) {
  const int64_t B = 2, L = 5, S = 7, D = 40, Dv = 33;
  const auto q = normal(B * L * D, 61), k = normal(B * S * D, 62), v = normal(B * S * Dv, 63), mask = normal(L * S, 64),
             go = normal(B * L * Dv, 65);
  AttArgs a{};
  a.B = B, a.L = L, a.S = S, a.D = D, a.Dv = Dv, a.q = q.data(), a.k = k.data(), a.v = v.data();
  a.mask = mask.data(), a.mask_stride = 0, a.scale = 0.3f, a.causal = causal;
  a.thr = thr, a.seed_hash = att_hash(12345), a.keep_scale = thr ? 1.f / (1.f - float(thr) / 4294967296.f) : 1.f;
  std::vector<float> fo(B * L * (Dv + 1), NAN), di(B * L, NAN), dq(B * L * D, NAN), dk(B * S * D, NAN),
      dv(B * S * Dv, NAN);
  const auto rows = [](int64_t n) { return EmuDim{unsigned((n + kAttWarps - 1) / kAttWarps), 1, 1}; };
  const EmuDim warps{32 * kAttWarps, 1, 1};
  emu_launch(rows(B * L), warps, [&] { attention(a, fo.data()); });
  emu_launch(rows(B * L), warps, [&] { attention_backward_stats(a, fo.data(), go.data(), di.data()); });
  emu_launch(rows(B * L), warps, [&] { attention_backward_q(a, fo.data(), go.data(), di.data(), dq.data()); });
  emu_launch(rows(B * S), warps,
             [&] { attention_backward_kv(a, fo.data(), go.data(), di.data(), dk.data(), dv.data()); });
  std::vector<double> wo(fo.size()), wdq(dq.size(), 0), wdk(dk.size(), 0), wdv(dv.size(), 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < L; ++i) {
      const int64_t r = b * L + i;
      std::vector<double> sc(S, -INFINITY), p(S, 0), dp(S, 0);
      double m = -INFINITY, l = 0, Di = 0;
      for (int64_t j = 0; j < S; ++j) {
        if (causal && j > i) continue;
        double dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += double(q[r * D + d]) * k[(b * S + j) * D + d];
        sc[j] = dot * a.scale + mask[i * S + j];
        m = std::max(m, sc[j]);
      }
      for (int64_t j = 0; j < S; ++j) l += std::exp(sc[j] - m);
      for (int64_t j = 0; j < S; ++j) p[j] = std::exp(sc[j] - m) / l;
      for (int64_t e = 0; e < Dv; ++e) {
        double o = 0;
        for (int64_t j = 0; j < S; ++j) o += p[j] * a.keep(b, i, j) * v[(b * S + j) * Dv + e];
        wo[r * (Dv + 1) + e] = o;
        Di += o * go[r * Dv + e];
      }
      wo[r * (Dv + 1) + Dv] = m + std::log(l);
      for (int64_t j = 0; j < S; ++j) {
        for (int64_t e = 0; e < Dv; ++e) dp[j] += double(go[r * Dv + e]) * v[(b * S + j) * Dv + e];
        const double kf = a.keep(b, i, j), ds = p[j] * (dp[j] * kf - Di) * a.scale;
        for (int64_t d = 0; d < D; ++d) {
          wdq[r * D + d] += ds * k[(b * S + j) * D + d];
          wdk[(b * S + j) * D + d] += ds * q[r * D + d];
        }
        for (int64_t e = 0; e < Dv; ++e) wdv[(b * S + j) * Dv + e] += p[j] * kf * go[r * Dv + e];
      }
    }
  char what[160];
  std::snprintf(what, sizeof what, "attention%s%s: output and log-sum-exp", causal ? ", causal" : "",
                thr ? ", dropout" : "");
  expect(max_err(fo, wo) < 1e-5, what, max_err(fo, wo));
  const double err = std::max({max_err(dq, wdq), max_err(dk, wdk), max_err(dv, wdv)});
  std::snprintf(what, sizeof what, "attention%s%s: dq, dk and dv", causal ? ", causal" : "", thr ? ", dropout" : "");
  expect(err < 1e-5, what, err);
}

// the tensor-core GEMMs (WMMA emulated: each product added in k order): 64x64 tiles of 4 warps and the
// double-buffered 128x128 tiles of 8 warps, BF16 and TF32, K not a multiple of a k-step, A plain or transposed,
// two products over one B. Against double sums of the inputs as the tensor cores see them (bfloat16, or rounded
// to TF32), so only the float32 accumulation differs.
template <bool BF16>
static void check_wmma(int64_t M, int64_t N, int64_t K, bool ta) {
  const int64_t batch = 2;
  auto af = normal(batch * M * K, 111), bf = normal(K * N, 112);
  std::vector<__nv_bfloat16> ah(af.size()), bh(bf.size());
  for (size_t i = 0; i < af.size(); ++i) ah[i] = __float2bfloat16_rn(af[i]), af[i] = __bfloat162float(ah[i]);
  for (size_t i = 0; i < bf.size(); ++i) bh[i] = __float2bfloat16_rn(bf[i]), bf[i] = __bfloat162float(bh[i]);
  MmArgs g{};
  g.a = BF16 ? static_cast<const void*>(ah.data()) : af.data(),
  g.b = BF16 ? static_cast<const void*>(bh.data()) : bf.data();
  g.dta = g.dtb = BF16 ? DT_BFLOAT16 : DT_FLOAT32, g.M = M, g.N = N, g.K = K;
  g.rsA = ta ? 1 : K, g.csA = ta ? M : 1, g.rsB = N, g.csB = 1, g.nbatch = 1;
  g.batch_a.ndim = g.batch_b.ndim = 1;
  g.batch_a.shape[0] = g.batch_b.shape[0] = batch;
  g.batch_a.strides[0] = M * K, g.batch_b.strides[0] = 0;
  const auto seen = [](float v) { return BF16 ? v : wmma::__float_to_tf32(v); };
  std::vector<double> want(batch * M * N, 0);
  for (int64_t z = 0; z < batch; ++z)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k)
          want[(z * M + m) * N + n] += double(seen(af[z * M * K + m * g.rsA + k * g.csA])) * seen(bf[k * N + n]);
  std::vector<float> small(want.size(), NAN), big(want.size(), NAN);
  g.c = small.data();
  emu_launch({unsigned((N + 63) / 64), unsigned((M + 63) / 64), unsigned(batch)}, {128, 1, 1},
             [&] { matmul_wmma<BF16>(g); });
  g.c = big.data();
  emu_launch({unsigned((N + 127) / 128), unsigned((M + 127) / 128), unsigned(batch)}, {256, 1, 1},
             [&] { matmul_wmma128<BF16>(g); });
  char what[160];
  for (auto [got, kind] : {std::pair{&small, "64x64"}, std::pair{&big, "128x128 double-buffered"}}) {
    std::snprintf(what, sizeof what, "matmul %s %s tensor cores: %ld x %ld x %ld%s, 2 products over one B",
                  BF16 ? "BF16" : "TF32", kind, long(M), long(N), long(K), ta ? ", A transposed" : "");
    expect(max_err(*got, want) < 1e-5, what, max_err(*got, want));
  }
}

// The wgmma GEMM's operand packing (matmul_sm90.cu): an operand to [batch][rows][Kp], K-major, zero past K (Kp:
// 16 bytes). A plain B (its rows, n, are the contiguous side: the shared-tile transpose) and a padded A (k
// contiguous, rows 20 apart), two products each, the first with a gap between products, in bfloat16 and float32.
// Copies, so every bit must match.
template <class T>
static uint32_t bits_of(T v) {
  if constexpr (std::is_same<T, float>::value) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    return u;
  } else {
    return v.bits;
  }
}
template <class T>
static void check_pack_kmajor() {
  struct Case {
    const char* what;
    int64_t rows, K, rs, cs, bs;
  } cases[] = {{"a plain B [70, 45] (a transpose)", 45, 70, 1, 45, 70 * 45 + 6},
               {"A [37, 13] with rows 20 apart", 37, 13, 20, 1, 37 * 20}};
  for (const Case& c : cases) {
    constexpr int64_t align = 16 / sizeof(T);
    const int64_t Kp = (c.K + align - 1) / align * align, batch = 2;
    const auto f = normal(c.bs * batch, 131);
    const auto to = [](float x) {
      if constexpr (std::is_same<T, float>::value)
        return x;
      else
        return __float2bfloat16_rn(x);
    };
    std::vector<T> src(f.size()), dst(batch * c.rows * Kp, to(NAN));
    for (size_t i = 0; i < f.size(); ++i) src[i] = to(f[i]);
    emu_launch(
        {unsigned((Kp + kPackTile - 1) / kPackTile), unsigned((c.rows + kPackTile - 1) / kPackTile), unsigned(batch)},
        {kPackTile, 8, 1}, [&] { pack_kmajor(src.data(), dst.data(), c.rows, c.K, Kp, c.rs, c.cs, c.bs); });
    int64_t wrong = 0;
    for (int64_t z = 0; z < batch; ++z)
      for (int64_t r = 0; r < c.rows; ++r)
        for (int64_t k = 0; k < Kp; ++k) {
          const uint32_t want = k < c.K ? bits_of(src[z * c.bs + r * c.rs + k * c.cs]) : 0;
          wrong += bits_of(dst[(z * c.rows + r) * Kp + k]) != want;
        }
    char what[120];
    std::snprintf(what, sizeof what, "wgmma operand packing, %s: %s, K %ld padded to %ld",
                  sizeof(T) == 4 ? "float32" : "bfloat16", c.what, long(c.K), long(Kp));
    expect(wrong == 0, what, double(wrong));
  }
}

// matmulBf16's bfloat16 output from a float32 product: round_bf16 over a grid-stride loop must give every value the
// bits of kiln's host rounding (nearest even; the ties and a NaN included), which the cast kernel gives
static void check_round_bf16() {
  std::vector<float> x = normal(3001, 77);
  for (size_t i = 0; i < 64; ++i) x[i] = kiln::bits_f32(0x3F808000u + (uint32_t(i) << 16));  // exact ties
  x[100] = NAN;
  x[101] = INFINITY;
  std::vector<__nv_bfloat16> y(x.size(), __nv_bfloat16{0xFFFF});
  emu_launch({3, 1, 1}, {256, 1, 1}, [&] { round_bf16(x.data(), y.data(), int64_t(x.size())); });
  int64_t wrong = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const uint16_t want = float_to_bf16(x[i]);
    wrong += std::isnan(x[i]) ? !std::isnan(__bfloat162float(y[i])) : y[i].bits != want;
  }
  expect(wrong == 0, "round_bf16: float32 to bfloat16 over a grid-stride loop (3 blocks, 3001 values)", double(wrong));
}

static std::vector<int8_t> int8s(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<int8_t> v(n);
  for (auto& x : v) x = int8_t(int(rng() % 256) - 128);
  return v;
}

// int8 linear: x rows quantized on the device (range per row), then exact int32 dot products with dp4a,
// dequantized: a warp per output for a few rows, 64x64 tiles for more; weights read as words (K % 4 == 0) or
// bytes. The dequantized sums must carry the bits of the same formula over exact integer dots of the codes.
static void check_qlinear_int8(int64_t M, int64_t K) {
  const int64_t N = 70, Kp = (K + 3) / 4 * 4;
  const auto x = normal(M * K, 71), ws = normal(N, 72), bias = normal(N, 73);
  const auto w = int8s(N * K, 74);
  std::vector<uint8_t> q(M * Kp);
  std::vector<float> scale(M), y(M * N, NAN);
  std::vector<int32_t> zero(M), wsum(N);
  DeviceFlags flags{};
  emu_launch({1, 1, 1}, {256, 1, 1},
             [&] { quantize_rows(x.data(), q.data(), scale.data(), zero.data(), M, K, Kp, 0.f, 0, &flags); });
  const bool w4 = K % 4 == 0;
  if (M <= kInt8FewRows) {
    emu_launch({unsigned((N * 32 + 255) / 256), 1, 1}, {256, 1, 1}, [&] {
      qlinear_int8_rows(q.data(), scale.data(), zero.data(), w.data(), ws.data(), bias.data(), y.data(), M, N, K, Kp,
                        w4);
    });
  } else {
    emu_launch({unsigned((N * 32 + 255) / 256), 1, 1}, {256, 1, 1},
               [&] { weight_sums(w.data(), wsum.data(), N, K, w4); });
    emu_launch({unsigned((N + 63) / 64), unsigned((M + 63) / 64), 1}, {256, 1, 1}, [&] {
      qlinear_int8(q.data(), scale.data(), zero.data(), w.data(), wsum.data(), ws.data(), bias.data(), y.data(), M, N,
                   K, Kp, w4);
    });
  }
  double qerr = 0;  // each code stands for its value within half a step
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k)
      qerr = std::max(qerr, std::fabs((q[i * Kp + k] - zero[i]) * double(scale[i]) - x[i * K + k]) / scale[i]);
  size_t differ = 0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      int32_t dot = 0, s = 0;
      for (int64_t k = 0; k < K; ++k) dot += int32_t(q[i * Kp + k]) * w[j * K + k], s += w[j * K + k];
      const float want = static_cast<float>(dot - zero[i] * s) * (scale[i] * ws[j]) + bias[j];
      differ += std::memcmp(&want, &y[i * N + j], 4) != 0;
    }
  char what[160];
  std::snprintf(what, sizeof what, "qlinearInt8 %ld x %ld x 70 (%s, weights as %s): quantized within half a step",
                long(M), long(K), M <= kInt8FewRows ? "a warp an output" : "64x64 tiles", w4 ? "words" : "bytes");
  expect(qerr <= 0.5 + 1e-4, what, qerr);
  std::snprintf(what, sizeof what, "qlinearInt8 %ld x %ld x 70: the exact dot products' bits", long(M), long(K));
  expect(differ == 0, what, double(differ));
}

// int8 convolution: each image quantized as a row, the implicit GEMM over codes (exact int32), ReLU, then a 2x2
// max pool; against the same formula over integer sums of the codes, bit for bit
static void check_qconv() {
  ConvGeom g;
  g.N = 3, g.C = 3, g.H = 9, g.W = 8, g.O = 70, g.kh = 3, g.kw = 3, g.ph = 1, g.pw = 1;
  g.OH = conv_out_size(g.H, g.kh, 1, 1, 1), g.OW = conv_out_size(g.W, g.kw, 1, 1, 1);
  const int64_t K = g.C * g.H * g.W, taps = g.C * g.kh * g.kw, P = g.N * g.OH * g.OW;
  const auto x = normal(g.N * K, 81), ws = normal(g.O, 82), bias = normal(g.O, 83);
  const auto w = int8s(g.O * taps, 84);
  std::vector<uint8_t> q(g.N * K);
  std::vector<float> scale(g.N), map(g.N * g.O * g.OH * g.OW, NAN), pooled(g.N * g.O * (g.OH / 2) * (g.OW / 2), NAN);
  std::vector<int32_t> zero(g.N);
  DeviceFlags flags{};
  emu_launch({1, 1, 1}, {256, 1, 1},
             [&] { quantize_rows(x.data(), q.data(), scale.data(), zero.data(), g.N, K, K, 0.f, 0, &flags); });
  emu_launch({unsigned((P + 63) / 64), unsigned((g.O + 63) / 64), 1}, {256, 1, 1}, [&] {
    qconv_gemm(q.data(), scale.data(), zero.data(), w.data(), ws.data(), bias.data(), map.data(), g, true);
  });
  emu_launch({unsigned((pooled.size() + 255) / 256), 1, 1}, {256, 1, 1},
             [&] { qconv_pool(map.data(), pooled.data(), g, 2); });
  size_t differ = 0, pdiffer = 0;
  std::vector<float> want(map.size());
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t o = 0; o < g.O; ++o)
      for (int64_t oh = 0; oh < g.OH; ++oh)
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          int32_t acc = 0;
          for (int64_t c = 0; c < g.C; ++c)
            for (int64_t i = 0; i < g.kh; ++i)
              for (int64_t j = 0; j < g.kw; ++j) {
                int64_t ih, iw;
                if (g.tap_in(oh, ow, i, j, ih, iw))
                  acc += w[o * taps + (c * g.kh + i) * g.kw + j] * (q[n * K + (c * g.H + ih) * g.W + iw] - zero[n]);
              }
          float v = static_cast<float>(acc) * (scale[n] * ws[o]) + bias[o];
          if (v < 0.f) v = 0.f;
          const int64_t t = ((n * g.O + o) * g.OH + oh) * g.OW + ow;
          want[t] = v;
          differ += std::memcmp(&v, &map[t], 4) != 0;
        }
  for (int64_t pl = 0; pl < g.N * g.O; ++pl)
    for (int64_t pr = 0; pr < g.OH / 2; ++pr)
      for (int64_t pc = 0; pc < g.OW / 2; ++pc) {
        float m = 0.f;
        for (int64_t i = 0; i < 2; ++i)
          for (int64_t j = 0; j < 2; ++j) m = std::max(m, want[(pl * g.OH + 2 * pr + i) * g.OW + 2 * pc + j]);
        pdiffer += m != pooled[(pl * (g.OH / 2) + pr) * (g.OW / 2) + pc];
      }
  expect(differ == 0, "qconv2dInt8 3x3 pad 1, 70 channels, ReLU: the exact sums' bits", double(differ));
  expect(pdiffer == 0, "qconv2dInt8's 2x2 max pool", double(pdiffer));
}

// int4 weight-only linear: the weight dequantized into scratch, and a warp an output dequantizing in registers
static void check_int4() {
  const int64_t M = 3, N = 20, K = 100, g = 32, G = (K + g - 1) / g;
  const auto x = normal(M * K, 91), s = normal(N * G, 92), bias = normal(N, 93);
  std::mt19937 rng(94);
  std::vector<uint8_t> w(N * G * g / 2);
  for (auto& b : w) b = uint8_t(rng());
  std::vector<float> W(N * K, NAN), y(M * N, NAN);
  emu_launch({unsigned((N * K + 255) / 256), 1, 1}, {256, 1, 1},
             [&] { dequant_int4(w.data(), s.data(), W.data(), N, K, G, g); });
  emu_launch({unsigned((N * 32 + 255) / 256), 1, 1}, {256, 1, 1},
             [&] { qlinear_int4(x.data(), w.data(), s.data(), bias.data(), y.data(), M, N, K, G, g); });
  std::vector<double> wW(N * K), wy(M * N);
  for (int64_t j = 0; j < N; ++j)
    for (int64_t k = 0; k < K; ++k) {
      const uint8_t b = w[j * (G * g / 2) + k / 2];
      wW[j * K + k] = static_cast<float>((k % 2 ? b >> 4 : b & 15) - kInt4Offset) * s[j * G + k / g];  // in float
    }
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = bias[j];
      for (int64_t k = 0; k < K; ++k) acc += x[i * K + k] * wW[j * K + k];
      wy[i * N + j] = acc;
    }
  expect(max_err(W, wW) == 0, "int4 weights dequantized (nibble - 8) * scale, groups of 32 over K = 100",
         max_err(W, wW));
  expect(max_err(y, wy) < 1e-5, "qlinearInt4, a warp an output dequantizing in registers", max_err(y, wy));
}

// Adam (AMSGrad and decoupled weight decay too) and SGD (momentum, dampening, Nesterov) against the cpu
// backend's own loops (native/cpu/optim.cc, copied the same way), from the same float operands: the bits must
// agree, a NaN second moment kept by AMSGrad's max included (only FMA contraction on a GPU may differ by an ulp)
static void check_optim() {
  const int64_t n = 1000;
  const auto p0 = normal(n, 101), g = normal(n, 102), m0 = normal(n, 103);
  std::vector<float> v0(n), vmax0(n);
  for (int64_t i = 0; i < n; ++i) v0[i] = std::fabs(m0[(i * 7) % n]), vmax0[i] = i % 3 ? v0[i] * 2 : 0.f;
  v0[17] = NAN;
  for (bool ams : {false, true})
    for (float shrink : {1.f, 0.9997f}) {
      const float b1 = 0.9f, b2 = 0.999f, c1 = 0.1f, c2 = 0.001f, l2 = shrink == 1.f ? 0.01f : 0.f;
      const float step = float(3e-4 / (1 - 0.9 * 0.9 * 0.9)), isb = float(1 / std::sqrt(1 - 0.999 * 0.999 * 0.999));
      auto p = p0, m = m0, v = v0, vm = vmax0, cp = p0, cm = m0, cv = v0, cvm = vmax0;
      AdamArgs a{p.data(), g.data(), m.data(), v.data(), ams ? vm.data() : nullptr, n, b1, b2, c1, c2, l2,
                 shrink,   step,     isb,      1e-8f};
      emu_launch({unsigned((n + 255) / 256), 1, 1}, {256, 1, 1}, [&] { adam_step(a); });
      if (ams)
        adam_range<true>(cp.data(), g.data(), cm.data(), cv.data(), cvm.data(), n, b1, b2, c1, c2, l2, shrink, step,
                         isb, 1e-8f);
      else
        adam_range<false>(cp.data(), g.data(), cm.data(), cv.data(), nullptr, n, b1, b2, c1, c2, l2, shrink, step, isb,
                          1e-8f);
      const bool same = std::memcmp(p.data(), cp.data(), n * 4) == 0 && std::memcmp(m.data(), cm.data(), n * 4) == 0 &&
                        std::memcmp(v.data(), cv.data(), n * 4) == 0 &&
                        (!ams || std::memcmp(vm.data(), cvm.data(), n * 4) == 0);
      char what[120];
      std::snprintf(what, sizeof what, "adamStep%s%s: cpu's bits for p, m, v%s", ams ? " (AMSGrad)" : "",
                    shrink != 1.f ? " (decoupled decay)" : " (L2)", ams ? " and vmax" : "");
      expect(same, what, 0);
    }
  for (int mode = 0; mode < 3; ++mode) {  // plain, momentum with dampening, Nesterov on a first step
    auto p = p0, b = m0, cp = p0, cb = m0;
    const bool mom = mode > 0, nesterov = mode == 2, first = mode == 2;
    SgdArgs a{p.data(), g.data(), mom ? b.data() : nullptr, n, 0.01f, 0.9f, 0.75f, 1e-4f, nesterov, first};
    emu_launch({unsigned((n + 255) / 256), 1, 1}, {256, 1, 1}, [&] { sgd_step(a); });
    sgd_range(cp.data(), g.data(), mom ? cb.data() : nullptr, n, 0.01f, 0.9f, 0.75f, 1e-4f, nesterov, first);
    const bool same = std::memcmp(p.data(), cp.data(), n * 4) == 0 && std::memcmp(b.data(), cb.data(), n * 4) == 0;
    expect(same,
           mode == 0   ? "sgdStep: cpu's bits"
           : mode == 1 ? "sgdStep, momentum and dampening: cpu's bits"
                       : "sgdStep, Nesterov's first step: cpu's bits",
           0);
  }
  // the multi-tensor launches: 4 parameters (one empty, one a block and a bit) in one grid, each parameter's
  // blocks found from the running count; every parameter must get the single-parameter loop's bits
  const int64_t sizes[4] = {1000, 0, 300, 257};
  std::vector<std::vector<float>> P, M, V, CP, CM, CV;
  MultiArgs<AdamArgs> am{};
  MultiArgs<SgdArgs> sm{};
  am.count = sm.count = 4;
  for (int k = 0; k < 4; ++k) {
    P.push_back(std::vector<float>(p0.begin(), p0.begin() + sizes[k]));
    M.push_back(std::vector<float>(m0.begin(), m0.begin() + sizes[k]));
    V.push_back(std::vector<float>(v0.begin(), v0.begin() + sizes[k]));
  }
  for (int pass = 0; pass < 2; ++pass) {  // Adam, then SGD with Nesterov momentum (P, M as the buffers)
    CP = P, CM = M, CV = V;
    const float b1 = 0.9f, b2 = 0.999f, step = float(3e-4 / (1 - 0.9 * 0.9)), isb = float(1 / std::sqrt(1 - 0.998));
    for (int k = 0; k < 4; ++k) {
      am.t[k] = AdamArgs{P[k].data(), g.data(), M[k].data(), V[k].data(), nullptr, sizes[k], b1,   b2,
                         0.1f,        0.001f,   0.f,         0.9999f,     step,    isb,      1e-8f};
      sm.t[k] = SgdArgs{P[k].data(), g.data(), M[k].data(), sizes[k], 0.01f, 0.9f, 1.f, 1e-4f, true, false};
    }
    const int64_t total = pass == 0 ? multi_blocks(am) : multi_blocks(sm);
    if (pass == 0)
      emu_launch({unsigned(total), 1, 1}, {256, 1, 1}, [&] { step_multi<AdamArgs, adam_elem>(am); });
    else
      emu_launch({unsigned(total), 1, 1}, {256, 1, 1}, [&] { step_multi<SgdArgs, sgd_elem>(sm); });
    bool same = total == 4 + 0 + 2 + 2;
    for (int k = 0; k < 4; ++k) {
      const int64_t nk = sizes[k];
      if (pass == 0)
        adam_range<false>(CP[k].data(), g.data(), CM[k].data(), CV[k].data(), nullptr, nk, b1, b2, 0.1f, 0.001f, 0.f,
                          0.9999f, step, isb, 1e-8f);
      else
        sgd_range(CP[k].data(), g.data(), CM[k].data(), nk, 0.01f, 0.9f, 1.0f, 1e-4f, true, false);
      for (const auto* pair : {&P, &M, &V}) {
        const auto& want = pair == &P ? CP : pair == &M ? CM : CV;
        same = same && std::memcmp((*pair)[k].data(), want[k].data(), nk * 4) == 0;  // NaNs compared as bits
      }
    }
    expect(same,
           pass == 0 ? "adamStepMulti, 4 parameters in one grid: each gets adamStep's bits"
                     : "sgdStepMulti, 4 parameters in one grid: each gets sgdStep's bits",
           0);
  }
}

// writes `words` 32-bit words to <dir>/<name>.bin, for native.test.ts to read; false if that fails
static bool write_words(const char* dir, const std::string& name, const void* data, size_t words) {
  FILE* f = std::fopen((std::string(dir) + "/" + name + ".bin").c_str(), "wb");
  const bool ok = f && std::fwrite(data, 4, words, f) == words;
  return f && std::fclose(f) == 0 && ok;
}

// the Philox random kernel: uniform, normal and int draws for a fixed key and counter, written to <dir> as raw
// float32/int32 for native.test.ts to compare with the cpu backend's draws for the same key and counter
static void write_random(const char* dir) {
  const struct {
    int kind;
    const char* file;
    int64_t n;
    double a, b;
  } draws[3] = {{0, "uniform", 1001, -2, 3}, {1, "normal", 1003, 0.5, 2}, {2, "int", 999, -5, 1000}};
  bool ok = true;
  for (const auto& d : draws) {
    std::vector<uint32_t> out(d.n, 0xdeadbeefu);
    RngArgs g{0x12345678u, 0x9abcdef0u, 5u | (uint64_t{7} << 32), d.n, d.a, d.b, d.kind, DT_INT32};
    emu_launch({unsigned((d.n + 4 * 256 - 1) / (4 * 256)), 1, 1}, {256, 1, 1}, [&] { random(g, out.data()); });
    ok = write_words(dir, std::string("random_") + d.file, out.data(), out.size()) && ok;
    for (uint32_t w : out) ok = ok && w != 0xdeadbeefu;
  }
  expect(ok, "random: uniform, normal and int draws written for every element", 0);
}

// the elementwise map kernels over x [40, 25] and a row y [25] broadcast down it (values i/128 and j/256 steps, so
// every input is exact in float32): map_dense (float4 runs, and one element a thread), the strided map over a
// transposed view and a broadcast, comparisons, clamp, where, and casts to every narrower dtype and back. Each
// result is written to <dir>/map_<name>.bin as float32 for native.test.ts to compare with the cpu backend's.
static float map_x(int64_t i) { return float(((i * 7919) % 2001) - 1000) / 128.f; }
static float map_y(int64_t j) { return float(((j * 104729) % 1999) - 999) / 256.f; }

static void write_map(const char* dir) {
  const int64_t R = 40, C = 25, n = R * C;
  std::vector<float> x(n), y(C), z(n);
  for (int64_t i = 0; i < n; ++i) x[i] = map_x(i), z[i] = map_x(i) * 37.f;
  for (int64_t j = 0; j < C; ++j) y[j] = map_y(j);
  std::vector<uint8_t> cond(n);
  for (int64_t i = 0; i < n; ++i) cond[i] = i % 3 == 0;
  const auto dense = [](int64_t len) {  // one contiguous run
    View v{};
    v.ndim = 1, v.shape[0] = len, v.strides[0] = 1;
    return v;
  };
  View rows{}, trans{};  // y down the rows of [40, 25]; x read as its transpose [25, 40]
  rows.ndim = 2, rows.shape[0] = R, rows.shape[1] = C, rows.strides[0] = 0, rows.strides[1] = 1;
  trans.ndim = 2, trans.shape[0] = C, trans.shape[1] = R, trans.strides[0] = 1, trans.strides[1] = C;
  bool ok = true;
  const auto save = [&](const std::string& name, const std::vector<float>& out) {
    ok = write_words(dir, "map_" + name, out.data(), out.size()) && ok;
  };
  const auto run = [&](MapArgs m, bool dense_kernel, bool vec4) {
    const unsigned blocks = unsigned(((vec4 ? (m.n + 3) / 4 : m.n) + 255) / 256);
    emu_launch({blocks, 1, 1}, {256, 1, 1}, [&] {
      if (dense_kernel)
        map_dense(m, vec4);
      else
        map(m);
    });
  };
  const auto args = [&](int32_t op, int nin, void* out, int32_t dto) {
    MapArgs m{};
    m.op = op, m.nin = nin, m.dto = dto, m.out = out, m.n = n;
    m.dt[0] = m.dt[1] = m.dt[2] = DT_FLOAT32;
    return m;
  };
  const struct {
    const char* name;
    int32_t op;
  } unary[] = {{"neg", MAP_NEG},         {"abs", MAP_ABS},   {"sign", MAP_SIGN}, {"relu", MAP_RELU},
               {"exp", MAP_EXP},         {"log", MAP_LOG},   {"sqrt", MAP_SQRT}, {"tanh", MAP_TANH},
               {"sigmoid", MAP_SIGMOID}, {"gelu", MAP_GELU}, {"silu", MAP_SILU}};
  for (const auto& u : unary) {
    std::vector<float> out(n, NAN);
    MapArgs m = args(u.op, 1, out.data(), DT_FLOAT32);
    m.in[0] = x.data(), m.v[0] = dense(n);
    run(m, true, std::string(u.name) != "tanh");  // tanh: one element a thread
    save(u.name, out);
  }
  {
    std::vector<float> out(n, NAN);  // exp of the transpose: the strided kernel
    MapArgs m = args(MAP_EXP, 1, out.data(), DT_FLOAT32);
    m.in[0] = x.data(), m.v[0] = trans;
    run(m, false, false);
    save("exp_transposed", out);
  }
  const struct {
    const char* name;
    int32_t op;
  } binary[] = {{"add", MAP_ADD}, {"sub", MAP_SUB},         {"mul", MAP_MUL},        {"div", MAP_DIV},
                {"pow", MAP_POW}, {"maximum", MAP_MAXIMUM}, {"minimum", MAP_MINIMUM}};
  for (const auto& b : binary) {
    std::vector<float> out(n, NAN);
    MapArgs m = args(b.op, 2, out.data(), DT_FLOAT32);
    m.in[0] = x.data(), m.v[0] = dense(n), m.in[1] = y.data(), m.v[1] = rows;
    run(m, false, false);
    save(b.name, out);
  }
  const struct {
    const char* name;
    int32_t op;
  } cmp[] = {{"lt", MAP_LT}, {"eq", MAP_EQ}, {"ge", MAP_GE}};
  for (const auto& c : cmp) {
    std::vector<uint8_t> out(n, 7);
    MapArgs m = args(c.op, 2, out.data(), DT_BOOL);
    m.in[0] = x.data(), m.v[0] = dense(n), m.in[1] = y.data(), m.v[1] = rows;
    run(m, false, false);
    save(c.name, std::vector<float>(out.begin(), out.end()));
  }
  {
    std::vector<float> out(n, NAN);
    MapArgs m = args(MAP_CLAMP, 1, out.data(), DT_FLOAT32);
    m.in[0] = x.data(), m.v[0] = dense(n), m.a = -1.5, m.b = 2.25;
    run(m, true, true);
    save("clamp", out);
    MapArgs w = args(MAP_WHERE, 3, out.data(), DT_FLOAT32);
    w.dt[0] = DT_BOOL, w.in[0] = cond.data(), w.v[0] = dense(n);
    w.in[1] = x.data(), w.v[1] = dense(n), w.in[2] = y.data(), w.v[2] = rows;
    run(w, false, false);
    save("where", out);
  }
  for (const auto& [name, dt] :
       {std::pair{"float16", DT_FLOAT16}, std::pair{"bfloat16", DT_BFLOAT16}, std::pair{"int8", DT_INT8},
        std::pair{"uint8", DT_UINT8}, std::pair{"bool", DT_BOOL}, std::pair{"int32", DT_INT32}}) {
    std::vector<uint32_t> mid(n, 0xdeadbeefu);  // room for any dtype
    std::vector<float> back(n, NAN);
    MapArgs to = args(MAP_CAST, 1, mid.data(), dt);
    to.in[0] = z.data(), to.v[0] = dense(n);
    run(to, false, false);
    MapArgs from = args(MAP_CAST, 1, back.data(), DT_FLOAT32);
    from.dt[0] = dt, from.in[0] = mid.data(), from.v[0] = dense(n);
    run(from, false, false);
    save(std::string("cast_") + name, back);
  }
  expect(ok, "map: 30 elementwise results written", 0);
}

// the remaining simple kernels, written to <dir>/misc_<name>.bin (float32, or int32 where the op gives ints) for
// native.test.ts to compare with the cpu backend: column sums (one pass, and over 3 chunks of rows then the
// chunks in order), argmax down the columns (a thread a column, arg_cols's tiles, and arg_rows's block a row, with
// ties and NaNs), softmax down the columns (a thread a column, and softmax_cols's
// tiles), row hashes, max/avg pooling and their
// gradients, gather, concat's place, and the int4 linear's bias add
static void write_misc(const char* dir) {
  const int64_t R = 40, C = 25, n = R * C, T = 1100;
  std::vector<float> x(n), y(C), tall(T * 3), gy(2 * 2 * 5 * 13);
  for (int64_t i = 0; i < n; ++i) x[i] = map_x(i);
  for (int64_t j = 0; j < C; ++j) y[j] = map_y(j);
  for (int64_t i = 0; i < T * 3; ++i) tall[i] = map_x(i + 5);
  for (size_t i = 0; i < gy.size(); ++i) gy[i] = map_y(int64_t(i));
  bool ok = true;
  const auto save = [&](const std::string& name, const void* data, size_t words) {
    ok = write_words(dir, "misc_" + name, data, words) && ok;
  };
  const auto blocks = [](int64_t threads) { return EmuDim{unsigned((threads + 255) / 256), 1, 1}; };
  const EmuDim block{256, 1, 1};
  {
    std::vector<float> s(C), part(3 * 3), s3(3);
    emu_launch(blocks(C), block, [&] { reduce_cols<float>(x.data(), s.data(), R_SUM, 1, R, C, R); });
    save("sum0", s.data(), C);
    emu_launch({1, 3, 1}, block, [&] { reduce_cols<float>(tall.data(), part.data(), R_SUM, 1, T, 3, 512); });
    emu_launch(blocks(3), block, [&] { reduce_cols<float>(part.data(), s3.data(), R_SUM, 1, 3, 3, 3); });
    save("sum0_chunks", s3.data(), 3);
    std::vector<int32_t> am(C);
    emu_launch(blocks(C), block, [&] { arg_reduce<float>(x.data(), am.data(), true, 1, R, C); });
    save("argmax0", am.data(), C);
    // the 3300 tall values (2001 distinct, so many ties): argmax over axis 1 of [3, 1100] by arg_rows (a block a
    // row) and argmin over axis 0 of [1100, 3] by arg_cols (32-output tiles). NaNs where the smaller index is
    // combined second: row 1 k = 250 (warp 7) and 260 (warp 0), column 2 k = 7 (group 7) and 8 (group 0); row 2's
    // maximum alone at k = 230 (warp 7)
    std::vector<float> tn = tall;
    tn[1350] = tn[1360] = tn[23] = tn[26] = NAN;
    tn[2430] = 1e9f;
    std::vector<int32_t> ar(3, -1), ac(3, -1), ar_min(3, -1), ac_max(3, -1);
    emu_launch({3, 1, 1}, block, [&] { arg_rows<float>(tn.data(), ar.data(), true, T); });
    emu_launch({3, 1, 1}, block, [&] { arg_rows<float>(tall.data(), ar_min.data(), false, T); });
    emu_launch({1, 1, 1}, block, [&] { arg_cols<float>(tn.data(), ac.data(), false, T, 3, 1); });
    emu_launch({1, 1, 1}, block, [&] { arg_cols<float>(tall.data(), ac_max.data(), true, T, 3, 1); });
    save("argmax_rows", ar.data(), 3);
    save("argmin_rows", ar_min.data(), 3);
    save("argmin_cols", ac.data(), 3);
    save("argmax_cols", ac_max.data(), 3);
    std::vector<float> sm(n);
    emu_launch(blocks(C), block, [&] { softmax<false>(x.data(), sm.data(), false, 1, R, C); });
    save("softmax0", sm.data(), n);
    // softmax_cols: [40, 25] down its 40 rows (one tile, 25 of 32 lanes live), and logSoftmax over axis 1 of
    // [2, 5, 100] (four tiles a slice, 5 rows for 8 phases)
    emu_launch({1, 1, 1}, block, [&] { softmax_cols(x.data(), sm.data(), false, R, C, 1); });
    save("softmax0_cols", sm.data(), n);
    emu_launch({2 * 4, 1, 1}, block, [&] { softmax_cols(x.data(), sm.data(), true, 5, 100, 4); });
    save("logsoftmax1_cols", sm.data(), n);
    std::vector<int32_t> h(2 * R);
    emu_launch(blocks(R), block, [&] { row_hash(reinterpret_cast<const uint32_t*>(x.data()), h.data(), R, C); });
    save("rowhash", h.data(), 2 * R);
  }
  {
    Geo q;  // x as [2, 2, 10, 25]: 4 planes; 3x3 windows, stride 2, padding 1 -> 5 x 13
    q.N = 4, q.H = 10, q.W = 25, q.kh = q.kw = 3, q.sh = q.sw = 2, q.ph = q.pw = 1, q.OH = 5, q.OW = 13;
    std::vector<float> mx(4 * 5 * 13), av(mx.size()), dmx(n), dav(n);
    std::vector<int64_t> arg(mx.size());  // max pooling's backward reads each window's argmax
    emu_launch(blocks(int64_t(mx.size())), block, [&] { pool2d(x.data(), mx.data(), q, true); });
    emu_launch(blocks(int64_t(mx.size())), block, [&] { pool2d_argmax(x.data(), arg.data(), q); });
    emu_launch(blocks(n), block, [&] { pool2d_backward(arg.data(), gy.data(), dmx.data(), q, true); });
    q.include_pad = false;
    emu_launch(blocks(int64_t(av.size())), block, [&] { pool2d(x.data(), av.data(), q, false); });
    emu_launch(blocks(n), block, [&] { pool2d_backward(nullptr, gy.data(), dav.data(), q, false); });
    save("maxpool", mx.data(), mx.size());
    save("maxpool_grad", dmx.data(), n);
    save("avgpool", av.data(), av.size());
    save("avgpool_grad", dav.data(), n);
  }
  {
    const std::vector<int32_t> idx = {3, 0, 39, 3, 12, 5, 20};
    std::vector<float> g(7 * C);
    DeviceFlags flags{};
    emu_launch(blocks(7 * C), block, [&] {
      gather(reinterpret_cast<const char*>(x.data()), idx.data(), reinterpret_cast<char*>(g.data()), 1, R, C, 7, 4, 0,
             &flags);
    });
    save("gather0", g.data(), g.size());
    std::vector<float> cat(C * (R + 1));  // concat([x^T, y as a column], 1) -> [25, 41]
    View vt{}, vy{};
    vt.ndim = 2, vt.shape[0] = C, vt.shape[1] = R, vt.strides[0] = 1, vt.strides[1] = C;
    vy.ndim = 1, vy.shape[0] = C, vy.strides[0] = 1;
    emu_launch(blocks(n), block, [&] { place(x.data(), vt, cat.data(), n, 0, R + 1, R, 4); });
    emu_launch(blocks(C), block, [&] { place(y.data(), vy, cat.data(), C, R, R + 1, 1, 4); });
    save("concat", cat.data(), cat.size());
    std::vector<float> b = x;
    emu_launch(blocks(n), block, [&] { add_bias(b.data(), y.data(), R, C); });
    save("add_bias", b.data(), n);
  }
  expect(ok, "column sums, argmax, softmax down columns, row hashes, pooling, gather, concat and bias written", 0);
}

int main(int argc, char** argv) {
  check_conv("3x3 pad 1, 2 groups", geometry(12, 4, 15, 13, 6, 3, 3, 1, 2, 2, 2), 1);
  check_conv("70 output channels (2 row tiles), stride 2", geometry(2, 3, 9, 7, 70, 2, 3, 2, 0, 1, 1), 4);
  check_conv("144 taps (3 column tiles), 1200 positions", geometry(3, 16, 20, 20, 32, 3, 3, 1, 1, 1, 1), 7);
  check_conv("5760 positions", geometry(40, 2, 12, 12, 3, 3, 3, 1, 1, 1, 1), 10);
  check_matmul(70, 130, 300, false, false, 2);
  check_matmul(129, 67, 200, true, true, 1);
  check_rows();
  check_cross_entropy();
  check_layer_norm();
  check_attention(false, 0);
  check_attention(true, 1u << 30);
  check_qlinear_int8(5, 37);
  check_qlinear_int8(70, 40);
  check_qlinear_int8(70, 37);
  check_qconv();
  check_int4();
  check_optim();
  if (argc > 1) write_random(argv[1]);
  if (argc > 1) write_map(argv[1]);
  if (argc > 1) write_misc(argv[1]);
  check_wmma<true>(130, 150, 100, false);
  check_wmma<false>(130, 70, 60, true);
  check_pack_kmajor<__nv_bfloat16>();
  check_pack_kmajor<float>();
  check_round_bf16();
  check_columns();
  check_scatter();
  std::printf("cuda emulation: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
