// kiln's CUDA kernels on the CPU emulation of cuda_emu.h, against plain references: the implicit-GEMM
// convolutions (forward, input and weight gradients, the last over chunks of positions), NaN-ignoring column
// statistics and quantiles, and scatterAdd's passes (CUB's stable radix sort stands in as std::stable_sort).
// Prints one line per check and "cuda emulation: N checks, 0 failures".
#include <cstdio>
#include <random>
#include <utility>

#include "cuda_emu.h"
#include "kiln/conv_geom.h"
#include "kiln/cuda_runtime.h"
#include "kiln/tables.h"

namespace kiln {
namespace cuda {
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
  emu_launch({unsigned((P + 63) / 64), unsigned((Og + 63) / 64), unsigned(q.groups)}, 256,
             [&] { conv_gemm<false>(x.data(), w.data(), y.data(), q); });
  emu_launch({unsigned((PI + 63) / 64), unsigned((Cg + 63) / 64), unsigned(q.groups)}, 256,
             [&] { conv_gemm<true>(gy.data(), w.data(), dx.data(), q); });
  // k_conv2d_backward_weight: chunks of positions, then their partial sums added in chunk order (sum_splits)
  const int64_t taps = Cg * q.kh * q.kw, gx = (taps + 63) / 64, gyt = (Og + 63) / 64;
  int64_t len = 0;
  const int64_t chunks = conv_wgrad_chunks(gx * gyt * q.groups, P, &len);
  std::vector<float> part(chunks * dw.size(), NAN);
  emu_launch({unsigned(gx), unsigned(gyt), unsigned(q.groups * chunks)}, 256, [&] {
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
    double err = 0;
    for (size_t i = 0; i < got->size(); ++i)
      err = std::max(err, std::isnan((*got)[i]) ? 1e9 : rel((*got)[i], (*want)[i]));
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
    emu_launch({unsigned(f), 1, 1}, 256, [&] { nan_quantile(x.data(), o.data(), n, f, q); });
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
  emu_launch({unsigned(f), 1, 1}, 256, [&] { nan_column_stats(x.data(), st.data(), n, f); });
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
  emu_launch({3, 1, 1}, 256, [&] { scatter_keys(idx.data(), keys.data(), vals.data(), k, D, &flags); });
  std::vector<std::pair<uint32_t, uint32_t>> kv(k);
  for (int64_t j = 0; j < k; ++j) kv[j] = {keys[j], vals[j]};
  std::stable_sort(kv.begin(), kv.end(), [](auto a, auto b) { return a.first < b.first; });  // CUB's sort
  for (int64_t j = 0; j < k; ++j) sorted[j] = kv[j].first, order[j] = kv[j].second;
  emu_launch({unsigned((D + 1 + 255) / 256), 1, 1}, 256, [&] { scatter_starts(sorted.data(), k, D, starts.data()); });
  std::vector<float> y(pre * D * post, NAN);
  emu_launch({unsigned((y.size() + 255) / 256), 1, 1}, 256,
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

int main() {
  check_conv("3x3 pad 1, 2 groups", geometry(12, 4, 15, 13, 6, 3, 3, 1, 2, 2, 2), 1);
  check_conv("70 output channels (2 row tiles), stride 2", geometry(2, 3, 9, 7, 70, 2, 3, 2, 0, 1, 1), 4);
  check_conv("144 taps (3 column tiles), 1200 positions", geometry(3, 16, 20, 20, 32, 3, 3, 1, 1, 1, 1), 7);
  check_conv("5760 positions", geometry(40, 2, 12, 12, 3, 3, 3, 1, 1, 1, 1), 10);
  check_columns();
  check_scatter();
  std::printf("cuda emulation: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
