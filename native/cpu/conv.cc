// conv2d (NCHW, groups, stride, padding, dilation) and its input/weight gradients, each by a direct kernel
// (stride 1) or im2col + GEMM (col2im for the input gradient), picked per call; and max/avg pooling with
// backward.
#ifndef KILN_ISA
#if defined(__x86_64__)
#include <immintrin.h>  // masked row copies in the AVX-512 and AVX2 passes
#endif
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "kiln/conv_geom.h"
#include "kiln/cpu_common.h"

namespace kiln {
// KILN_CONV_ALGO=im2col|direct forces one method for the stride-1 convolutions both handle (the tests run
// every conv case under each); unset or auto, the measured rule in use_direct() picks.
enum class ConvAlgo { Auto, Im2col, Direct };
static ConvAlgo conv_algo() {
  static const ConvAlgo a = [] {
    const char* e = std::getenv("KILN_CONV_ALGO");
    if (e && std::strcmp(e, "im2col") == 0) return ConvAlgo::Im2col;
    if (e && std::strcmp(e, "direct") == 0) return ConvAlgo::Direct;
    return ConvAlgo::Auto;
  }();
  return a;
}
}  // namespace kiln

#define KILN_ISA_FILE "cpu/conv.cc"
#include "kiln/isa_passes.h"
#else
#include "kiln/isa_helpers.inl"
#include "kiln/gemm.inl"
#include "kiln/pool2x2.inl"
#include "kiln/row_copy.inl"
#include "kiln/scratch.inl"

namespace cv {

// Reads the conv attributes and the weight's geometry (O, C = C/groups * groups, kH, kW).
static Status geom_from(const TensorView& w4, const double* attrs, ConvGeom& g) {
  if (Status s = read_conv_attrs(attrs, g, "conv2d"); !s.good()) return s;
  KILN_REQUIRE(w4.ndim == 4, ST_SHAPE, "conv2d weight must be [O, C/groups, kH, kW], got ", shape_str(w4));
  g.O = w4.shape[0];
  g.kh = w4.shape[2];
  g.kw = w4.shape[3];
  KILN_REQUIRE(g.O % g.groups == 0, ST_SHAPE, "conv2d out channels ", g.O, " not divisible by groups ", g.groups);
  g.C = w4.shape[1] * g.groups;
  return Status::ok();
}

// Output rows per tile: im2col, the GEMM and col2im work on tiles of whole output rows whose column buffer
// (ckk x rows*OW floats) stays near 128 KiB, so it is written and read back in L2 rather than streamed through
// memory (a 16-channel 3x3 conv on 28x28 images has a 450 KiB column matrix per image).
static int64_t tile_rows(const ConvGeom& g) {
  constexpr int64_t kTileFloats = 32768;
  return std::max<int64_t>(1, std::min(g.OH, kTileFloats / std::max<int64_t>(1, g.ckk() * g.OW)));
}

// Calls fn(oh0, oh1, pt) for each tile of output rows [oh0, oh1) (pt = positions in the tile).
template <class F>
static void for_each_tile(const ConvGeom& g, F&& fn) {
  const int64_t rows = tile_rows(g);
  for (int64_t oh0 = 0; oh0 < g.OH; oh0 += rows) {
    const int64_t oh1 = std::min(g.OH, oh0 + rows);
    fn(oh0, oh1, (oh1 - oh0) * g.OW);
  }
}

static void im2col(const float* x, const ConvGeom& g, float* col, int64_t oh0, int64_t oh1) {
  // col[(c*kh + i)*kw + j][(oh - oh0)*OW + ow] for the Cg channels starting at x and output rows [oh0, oh1)
  const int64_t pt = (oh1 - oh0) * g.OW;
  for (int64_t c = 0; c < g.Cg(); ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        float* dst = col + ((c * g.kh + i) * g.kw + j) * pt;
        const float* src = x + c * g.H * g.W;
        for (int64_t oh = oh0; oh < oh1; ++oh) {
          const int64_t ih = oh * g.sh - g.ph + i * g.dh;
          float* d = dst + (oh - oh0) * g.OW;
          if (ih < 0 || ih >= g.H) {
            for (int64_t ow = 0; ow < g.OW; ++ow) d[ow] = 0.f;
            continue;
          }
          const float* srow = src + ih * g.W;
          if (g.sw == 1) {
            // iw = ow + off: zeros left of the row, one copy of the part inside, zeros right of it
            const int64_t off = j * g.dw - g.pw;
            const int64_t lo = std::min(g.OW, std::max<int64_t>(0, -off));
            const int64_t hi = std::max(lo, std::min(g.OW, g.W - off));
            for (int64_t ow = 0; ow < lo; ++ow) d[ow] = 0.f;
            if (hi > lo) std::memcpy(d + lo, srow + lo + off, static_cast<size_t>(hi - lo) * sizeof(float));
            for (int64_t ow = hi; ow < g.OW; ++ow) d[ow] = 0.f;
            continue;
          }
          for (int64_t ow = 0; ow < g.OW; ++ow) {
            const int64_t iw = ow * g.sw - g.pw + j * g.dw;
            d[ow] = (iw >= 0 && iw < g.W) ? srow[iw] : 0.f;
          }
        }
      }
}

// Adds a tile of columns (output rows [oh0, oh1), laid out as im2col writes them) back into the image x.
static void col2im(const float* col, const ConvGeom& g, float* x, int64_t oh0, int64_t oh1) {
  const int64_t pt = (oh1 - oh0) * g.OW;
  for (int64_t c = 0; c < g.Cg(); ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        const float* srcc = col + ((c * g.kh + i) * g.kw + j) * pt;
        float* dst = x + c * g.H * g.W;
        for (int64_t oh = oh0; oh < oh1; ++oh) {
          const int64_t ih = oh * g.sh - g.ph + i * g.dh;
          if (ih < 0 || ih >= g.H) continue;
          float* drow = dst + ih * g.W;
          const float* s = srcc + (oh - oh0) * g.OW;
          if (g.sw == 1) {
            // iw = ow + off over the columns that land inside the row: one branch-free loop
            const int64_t off = j * g.dw - g.pw;
            const int64_t lo = std::min(g.OW, std::max<int64_t>(0, -off));
            const int64_t hi = std::max(lo, std::min(g.OW, g.W - off));
            float* d = drow + off;
            for (int64_t ow = lo; ow < hi; ++ow) d[ow] += s[ow];
            continue;
          }
          for (int64_t ow = 0; ow < g.OW; ++ow) {
            const int64_t iw = ow * g.sw - g.pw + j * g.dw;
            if (iw >= 0 && iw < g.W) drow[iw] += s[ow];
          }
        }
      }
}

static bool pointwise(const ConvGeom& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
}

// ---- direct convolution for stride 1: no column matrix ----
// One image (and group) is copied once into a zero-padded buffer xp [C][Hp][Wp] (Hp = H + 2ph rows of stride
// Wp = max(W + pw, OW)). Image row h starts at xp[(h + ph)*Wp + pw]; the Wp - W >= pw zeros after it serve as
// both its right padding and the next row's left padding, so a row carries pw fewer spare columns than a
// W + 2pw layout (28 x 28 at padding 1: 812 positions instead of 840). Number the output positions
// q = oh*Wp + ow, so positions OW..Wp-1 of each row are spare ones whose values are dropped. Then tap
// k = (c, i, j) of the kernel reads xp[koff[k] + q] with koff[k] = c*Hp*Wp + i*dh*Wp + j*dw: the column
// ow - pw + j*dw is left of the image exactly when ow + j*dw < pw (this row's leading zeros), and right of it
// when it lands in the gap after the row, which runs into the next row's leading zeros. For every tap the inputs
// of all positions form one contiguous run, and
//   forward          out[o, q] = sum_k W[o, k] xp[koff[k] + q]      (a GEMM whose B rows are read in place)
//   weight gradient  dW[o, k]  = sum_q gy'[o, q] xp[koff[k] + q]    (gy' = gy with zeros at the spare positions)
//   input gradient   the forward of gy, padded by dilation*(k-1) - padding, with the kernel flipped and its
//                    channel axes swapped.
// The forward keeps an MR x NV-vector tile of outputs in registers as sgemm's micro-kernel does, broadcasting
// weights and loading the input runs unaligned; the weight gradient keeps MO x KB dot products as vectors over q
// and adds them across images before one horizontal sum. This skips im2col's copy of every input kh*kw times
// (and col2im's read-back in the input gradient), which cost as much as the GEMM on small channel counts.

struct Direct {  // src [C][H][W], padded by (ph, pw), convolved at stride 1 -> [O][OH][OW]
  int64_t C, H, W, O, kh, kw, ph, pw, dh, dw;
  int64_t Hp() const { return H + 2 * ph; }
  int64_t OH() const { return Hp() - dh * (kh - 1); }
  int64_t OW() const { return W + 2 * pw - dw * (kw - 1); }
  int64_t Wp() const { return std::max(W + pw, OW()); }  // row stride of the padded image
  int64_t K() const { return C * kh * kw; }
  int64_t Q() const { return OH() * Wp(); }
};

static constexpr int kDirMR = kVL == 16 ? 8 : 4;  // forward tile: output channels x kDirNV vectors of positions
static constexpr int kDirNV = 3;
static constexpr int64_t kDirQT = kDirNV * kVL;
static constexpr int kDirMO = kVL == 16 ? 4 : 2;  // weight-gradient tile: output channels x taps
static constexpr int kDirKB = kVL == 16 ? 6 : 4;

static int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }
static int64_t dir_qpad(const Direct& d) { return round_up(d.Q(), kDirQT); }
// xp's size: the image, plus the zeros read past it by the last taps of the last (padded) tile of positions, or
// the last row's left padding of a next channel (dir_pad writes it), whichever reaches further, plus a vector of
// room for the spill of the last row's whole-vector stores
static int64_t dir_xp_size(const Direct& d) {
  return d.C * d.Hp() * d.Wp() + std::max(d.pw, d.dw * (d.kw - 1)) + dir_qpad(d) - d.Q() + kVL;
}

static void dir_offsets(const Direct& d, int64_t* koff) {
  for (int64_t c = 0, k = 0; c < d.C; ++c)
    for (int64_t i = 0; i < d.kh; ++i)
      for (int64_t j = 0; j < d.kw; ++j) koff[k++] = (c * d.Hp() + i * d.dh) * d.Wp() + j * d.dw;
}

// xp = src zero-padded, and zeros after it
static void dir_pad(const float* src, const Direct& d, float* xp) {
  const int64_t Hp = d.Hp(), Wp = d.Wp(), size = dir_xp_size(d);
  float* at = xp;  // everything before `at` is written
  for (int64_t c = 0; c < d.C; ++c) {
    const float* sc = src + c * d.H * d.W;
    float* row = xp + (c * Hp + d.ph) * Wp + d.pw;
    if (row > at) zero_row(at, row - at);  // top padding rows and the first row's left padding
    // the row, its right padding and the next row's left padding; the zeros spilled past them land on later
    // rows, written after
    for (int64_t h = 0; h < d.H; ++h, row += Wp) copy_row_spill(row, sc + h * d.W, d.W, Wp);
    at = row;
  }
  if (xp + size > at) zero_row(at, xp + size - at);
}

static bool all_finite(const float* p, int64_t n) {
  vfloat z = vfloat{};
  int64_t i = 0;
  for (; i + kVL <= n; i += kVL) z += vload(p + i) * 0.f;
  float s = 0.f;
  for (; i < n; ++i) s += p[i] * 0.f;
  for (int l = 0; l < kVL; ++l) s += z[l];
  return s == 0.f;
}

// Packs the forward weights as MR-row panels: wpk[(ob*K + k)*MR + ii] = val(ob*MR + ii, k), zero past O.
template <class F>
static void dir_pack(const Direct& d, float* wpk, F&& val) {
  const int64_t K = d.K(), nb = (d.O + kDirMR - 1) / kDirMR;
  for (int64_t ob = 0; ob < nb; ++ob)
    for (int64_t k = 0; k < K; ++k)
      for (int ii = 0; ii < kDirMR; ++ii) {
        const int64_t o = ob * kDirMR + ii;
        wpk[(ob * K + k) * kDirMR + ii] = o < d.O ? val(o, k) : 0.f;
      }
}

// acc[ii][v] = sum_k w[k][ii] * xq[koff[k] + v*kVL + 0 .. kVL), handed to store(ii, v, acc[ii][v]) for ii < mr
template <class Store>
static inline void dir_tile(int64_t K, const float* __restrict w, const int64_t* __restrict koff,
                            const float* __restrict xq, int64_t mr, Store&& store) {
  vfloat acc[kDirMR][kDirNV];
#pragma GCC unroll 8
  for (int i = 0; i < kDirMR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < kDirNV; ++v) acc[i][v] = vfloat{};
  for (int64_t k = 0; k < K; ++k) {
    const float* b = xq + koff[k];
    vfloat bv[kDirNV];
#pragma GCC unroll 4
    for (int v = 0; v < kDirNV; ++v) bv[v] = vload(b + v * kVL);
#pragma GCC unroll 8
    for (int i = 0; i < kDirMR; ++i) {
      const float a = w[k * kDirMR + i];
#pragma GCC unroll 4
      for (int v = 0; v < kDirNV; ++v) acc[i][v] += a * bv[v];
    }
  }
  // unrolled with a test per row rather than a loop to mr, which made GCC keep acc on the stack (24 extra stores
  // and loads a tile)
#pragma GCC unroll 8
  for (int i = 0; i < kDirMR; ++i)
    if (i < mr)
#pragma GCC unroll 4
      for (int v = 0; v < kDirNV; ++v) store(i, v, acc[i][v]);
}

// Where each vector of positions of the forward's tiles goes in a dst plane [OH][OW] (AVX-512): keep marks its
// lanes that are outputs (not spare positions), which a compress packs to the front and put stores as one run
// at `at` (consecutive in dst: a row's spare positions sit between its last output and the next row's first).
// The same for every image and channel, so computed once a call.
struct DirLanes {
  uint32_t keep, put;
  int64_t at;
};
static std::vector<DirLanes> dir_lanes(const Direct& d) {
  const int64_t tiles = dir_qpad(d) / kDirQT, Q = d.Q(), Wp = d.Wp(), OW = d.OW();
  std::vector<DirLanes> lanes(static_cast<size_t>(tiles * kDirNV));
  int64_t q = 0, oh = 0, ow = 0;  // q = oh*Wp + ow
  for (auto& ln : lanes) {
    ln = DirLanes{0, 0, -1};
    for (int l = 0; l < kVL; ++l, ++q) {
      if (q < Q && ow < OW) {
        ln.keep |= 1u << l;
        if (ln.at < 0) ln.at = oh * OW + ow;
      }
      if (++ow == Wp) ow = 0, ++oh;
    }
    ln.put = (1u << __builtin_popcount(ln.keep)) - 1u;
  }
  return lanes;
}

// dst [O][OH][OW] from the padded image xp. With AVX-512 each vector of positions goes straight to dst as
// `lanes` says; other ISAs store the tiles into tmp [O][qpad] and copy its rows out, a second pass over the
// output that cost ~35% of the forward on 2 threads (both writing their images' outputs at once).
static void dir_forward_image(const float* xp, const Direct& d, const float* wpk, const int64_t* koff,
                              const DirLanes* lanes, float* tmp, float* dst, bool par) {
  const int64_t qp = dir_qpad(d), tiles = qp / kDirQT, K = d.K(), nb = (d.O + kDirMR - 1) / kDirMR;
  const int64_t OH = d.OH(), OW = d.OW(), Wp = d.Wp();
  auto run = [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t ob = 0; ob < nb; ++ob) {
        const int64_t mr = std::min<int64_t>(kDirMR, d.O - ob * kDirMR);
#if KILN_VEC_BYTES == 64
        const DirLanes* ln = lanes + t * kDirNV;
        float* base = dst + ob * kDirMR * OH * OW;
        dir_tile(K, wpk + ob * K * kDirMR, koff, xp + t * kDirQT, mr, [&](int64_t i, int v, vfloat a) {
          const __mmask16 keep = static_cast<__mmask16>(ln[v].keep);
          if (keep)
            _mm512_mask_storeu_ps(base + i * OH * OW + ln[v].at, static_cast<__mmask16>(ln[v].put),
                                  _mm512_maskz_compress_ps(keep, reinterpret_cast<__m512>(a)));
        });
#else
        float* out = tmp + ob * kDirMR * qp + t * kDirQT;
        dir_tile(K, wpk + ob * K * kDirMR, koff, xp + t * kDirQT, mr,
                 [&](int64_t i, int v, vfloat a) { vstore(out + i * qp + v * kVL, a); });
#endif
      }
  };
  if (par && num_threads() > 1)
    parallel_for(tiles, 1, run);
  else
    run(0, tiles);
#if KILN_VEC_BYTES != 64
  (void)lanes;
  for (int64_t o = 0; o < d.O; ++o)
    for (int64_t oh = 0; oh < OH; ++oh) copy_row(dst + (o * OH + oh) * OW, tmp + o * qp + oh * Wp, OW);
#else
  (void)tmp;
  (void)Wp;
#endif
}

// Runs a direct convolution of N sources (image n, group gi at src(n, gi)) into dst(n, gi), the weights packed
// once per group by pack(gi, wpk). Images in parallel when there are at least as many as threads, else the
// tiles of each image.
template <class Src, class Dst, class Pack>
static void dir_run(const Direct& d, int64_t N, int64_t groups, Src&& src, Dst&& dst, Pack&& pack) {
  const int64_t K = d.K(), nb = (d.O + kDirMR - 1) / kDirMR;
  std::vector<int64_t> koff(static_cast<size_t>(K));
  dir_offsets(d, koff.data());
  std::vector<float> wpk(static_cast<size_t>(groups * nb * kDirMR * K));
  for (int64_t gi = 0; gi < groups; ++gi) pack(gi, wpk.data() + gi * nb * kDirMR * K);
  const std::vector<DirLanes> lanes = KILN_VEC_BYTES == 64 ? dir_lanes(d) : std::vector<DirLanes>();
  auto image = [&](int64_t n, bool par, ThreadBuffer<0>& xb, ThreadBuffer<1>& tb) {
    float* xp = xb.get(dir_xp_size(d));
    float* tmp = KILN_VEC_BYTES == 64 ? nullptr : tb.get(d.O * dir_qpad(d));  // see dir_forward_image
    for (int64_t gi = 0; gi < groups; ++gi) {
      dir_pad(src(n, gi), d, xp);
      dir_forward_image(xp, d, wpk.data() + gi * nb * kDirMR * K, koff.data(), lanes.data(), tmp, dst(n, gi), par);
    }
  };
  if (N >= num_threads() && num_threads() > 1) {
    parallel_for(N, 1, [&](int64_t lo, int64_t hi) {
      ThreadBuffer<0> xb;
      ThreadBuffer<1> tb;
      for (int64_t n = lo; n < hi; ++n) image(n, false, xb, tb);
    });
  } else {
    ThreadBuffer<0> xb;
    ThreadBuffer<1> tb;
    for (int64_t n = 0; n < N; ++n) image(n, true, xb, tb);
  }
}

// The weight gradient's accumulators a tile, and the vectors their sums take (kDirWS * kVL floats a tile)
static constexpr int kDirWA = kDirMO * kDirKB;
static constexpr int kDirWS = (kDirWA + kVL - 1) / kVL;

// The weight gradient's tile over one image: sums[oi*KB + kk] += sum over q in [0, qv) of
// gy'[o0 + oi][q] * xp[koff[kk] + q]. The dot products run as vectors over positions from zero and their lane
// sums are taken together at the end (vsum_lanes), so nothing waits on memory when a tile starts: keeping the
// vectors in memory between images cost a load and a store of 24 vectors from L2 a tile (~300 KB an image).
static inline void dirw_tile(int64_t qv, const float* __restrict g, int64_t ldg, const float* __restrict xp,
                             const int64_t* __restrict koff, float* __restrict sums) {
  vfloat acc[kDirWS * kVL];
#pragma GCC unroll 32
  for (int a = 0; a < kDirWS * kVL; ++a) acc[a] = vfloat{};
  const float* xr[kDirKB];
#pragma GCC unroll 8
  for (int kk = 0; kk < kDirKB; ++kk) xr[kk] = xp + koff[kk];
  for (int64_t q = 0; q < qv; q += kVL) {
    vfloat gv[kDirMO];
#pragma GCC unroll 8
    for (int oi = 0; oi < kDirMO; ++oi) gv[oi] = vload(g + oi * ldg + q);
#pragma GCC unroll 8
    for (int kk = 0; kk < kDirKB; ++kk) {
      const vfloat xv = vload(xr[kk] + q);
#pragma GCC unroll 8
      for (int oi = 0; oi < kDirMO; ++oi) acc[oi * kDirKB + kk] += gv[oi] * xv;
    }
  }
#pragma GCC unroll 4
  for (int s = 0; s < kDirWS; ++s) vstore(sums + s * kVL, vload(sums + s * kVL) + vsum_lanes<kVL>(acc + s * kVL));
}

// The weight gradient of images [lo, hi) by the direct method, added into dw [groups][Og = d.O][K]. Needs
// finite inputs: a spare position's zero gradient times an infinite input would make a NaN that im2col does
// not. Tiles of one image run in parallel with `par`.
template <class Src, class Gy>
static void dirw_images(const Direct& d, int64_t groups, int64_t lo, int64_t hi, Src&& src, Gy&& gy, float* dw,
                        bool par) {
  const int64_t K = d.K(), Og = d.O, Op = round_up(Og, kDirMO), Kp = round_up(K, kDirKB);
  const int64_t OH = d.OH(), OW = d.OW(), Wp = d.Wp(), Q = d.Q(), qv = round_up(Q, kVL);
  const int64_t nkb = Kp / kDirKB, tiles = (Op / kDirMO) * nkb, per_group = tiles * kDirWS * kVL;
  std::vector<int64_t> koff(static_cast<size_t>(Kp));
  dir_offsets(d, koff.data());
  for (int64_t k = K; k < Kp; ++k) koff[static_cast<size_t>(k)] = koff[0];  // spare taps, dropped below
  ThreadBuffer<0> xb;
  ThreadBuffer<1> gb;
  ThreadBuffer<2> ab;
  float* xp = xb.get(dir_xp_size(d));
  float* g = gb.get(Op * qv + kVL);          // room for the last row's spill (copy_row_spill)
  float* sums = ab.get(groups * per_group);  // per tile, summed over images
  std::memset(sums, 0, static_cast<size_t>(groups * per_group) * sizeof(float));
  for (int64_t n = lo; n < hi; ++n)
    for (int64_t gi = 0; gi < groups; ++gi) {
      dir_pad(src(n, gi), d, xp);
      const float* gyg = gy(n, gi);
      for (int64_t o = 0; o < Op; ++o) {
        float* row = g + o * qv;
        if (o >= Og) {
          zero_row(row, qv);
          continue;
        }
        // rows in order: each one's spilled zeros land on the next, written after (the last one's on [Q, qv),
        // zeroed next, or on the next channel's row)
        for (int64_t oh = 0; oh < OH; ++oh) copy_row_spill(row + oh * Wp, gyg + (o * OH + oh) * OW, OW, Wp);
        zero_row(row + Q, qv - Q);
      }
      float* gsums = sums + gi * per_group;
      auto run = [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t ob = t / nkb, kb = t % nkb;
          dirw_tile(qv, g + ob * kDirMO * qv, qv, xp, koff.data() + kb * kDirKB, gsums + t * kDirWS * kVL);
        }
      };
      if (par && num_threads() > 1)
        parallel_for(tiles, 1, run);
      else
        run(0, tiles);
    }
  for (int64_t gi = 0; gi < groups; ++gi)
    for (int64_t o = 0; o < Og; ++o)
      for (int64_t k = 0; k < K; ++k) {
        const int64_t t = (o / kDirMO) * nkb + k / kDirKB;
        dw[(gi * Og + o) * K + k] += sums[gi * per_group + t * kDirWS * kVL + (o % kDirMO) * kDirKB + k % kDirKB];
      }
}

// Which kernel the direct method would run for: the forward, the input gradient or the weight gradient.
enum class ConvPass { Forward, Input, Weight };

// The direct geometry of each pass (the input gradient is a forward over gy with the flipped kernel).
static Direct dir_geom(const ConvGeom& g, ConvPass pass) {
  if (pass == ConvPass::Input)
    return Direct{g.Og(), g.OH, g.OW, g.Cg(), g.kh, g.kw, g.dh * (g.kh - 1) - g.ph, g.dw * (g.kw - 1) - g.pw,
                  g.dh,   g.dw};
  return Direct{g.Cg(), g.H, g.W, g.Og(), g.kh, g.kw, g.ph, g.pw, g.dh, g.dw};
}

// Whether the direct kernels take this convolution. They need stride 1 (a 1x1 kernel at stride 1 is a plain
// GEMM already) and, for the input gradient, padding <= dilation*(k-1). The rest of the rule comes from timing
// both methods per kernel on CNN layer shapes (bench/RESULTS.md, issue 18):
// - forward: direct unless most of the tile's rows are spare (fewer output channels than half a tile);
// - input gradient: direct unless the tile is mostly spare rows or spare positions, or the padded gradient is
//   mostly padding (a 5x5 kernel over a 5x5 gradient: the direct kernel multiplies the zeros, col2im does not);
// - weight gradient: direct unless most of its vectors of positions are spare (an output of a few positions
//   padded to a whole vector); measured faster than im2col on every layer shape of the bench, 1.1-2.5x.
static bool use_direct(const ConvGeom& g, ConvPass pass) {
  if (g.sh != 1 || g.sw != 1 || pointwise(g)) return false;
  if (pass == ConvPass::Input && (g.ph > g.dh * (g.kh - 1) || g.pw > g.dw * (g.kw - 1))) return false;
  const Direct d = dir_geom(g, pass);
  // the padded copy must stay near the image's size: a huge padding with a dilated kernel (1x1 input, padding
  // 2^19, dilation 2^20) would ask for terabytes, which im2col's few columns do not
  if (static_cast<double>(dir_xp_size(d)) > 4.0 * d.C * d.H * d.W + 65536.0) return false;
  if (conv_algo() != ConvAlgo::Auto) return conv_algo() == ConvAlgo::Direct;
  const double rows = static_cast<double>(d.O) / round_up(d.O, kDirMR);
  switch (pass) {
    case ConvPass::Forward: return rows >= 0.5;
    case ConvPass::Input: return rows * d.OW() / d.Wp() >= 0.55 && static_cast<double>(g.OH * g.OW) / d.Q() >= 0.3;
    default: return static_cast<double>(d.OH() * d.OW()) / round_up(d.Q(), kVL) >= 0.3;
  }
}

static Status check_f32(const TensorView* in, int nin, const TensorView& out, const char* op) {
  for (int i = 0; i < nin; ++i) {
    KILN_REQUIRE(in[i].dtype == DT_FLOAT32, ST_DTYPE, op, " takes float32, got ", kDTypeNames[in[i].dtype]);
    KILN_REQUIRE(in[i].contiguous(), ST_ARG, op, " needs contiguous inputs");
  }
  KILN_REQUIRE(out.dtype == DT_FLOAT32, ST_DTYPE, op, " writes float32");
  return Status::ok();
}

static void conv_forward(const float* px, const float* pw, float* po, const ConvGeom& g);

static Status k_conv2d(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  if (Status s = check_f32(in, nin, out, "conv2d"); !s.good()) return s;
  const TensorView& x = in[0];
  const TensorView& w = in[1];
  KILN_REQUIRE(x.ndim == 4, ST_SHAPE, "conv2d input must be [N, C, H, W], got ", shape_str(x));
  ConvGeom g{};
  if (Status s = geom_from(w, attrs, g); !s.good()) return s;
  g.N = x.shape[0];
  g.H = x.shape[2];
  g.W = x.shape[3];
  KILN_REQUIRE(x.shape[1] == g.C, ST_SHAPE, "conv2d input has ", x.shape[1], " channels but the weight ", shape_str(w),
               " with groups ", g.groups, " expects ", g.C);
  g.OH = conv_out_size(g.H, g.kh, g.sh, g.ph, g.dh);
  g.OW = conv_out_size(g.W, g.kw, g.sw, g.pw, g.dw);
  KILN_REQUIRE(
      out.ndim == 4 && out.shape[0] == g.N && out.shape[1] == g.O && out.shape[2] == g.OH && out.shape[3] == g.OW,
      ST_SHAPE, "conv2d output ", shape_str(out), " does not match the expected [", g.N, ", ", g.O, ", ", g.OH, ", ",
      g.OW, "]");
  if (out.numel() == 0) return Status::ok();
  conv_forward(x.ptr<float>(), w.ptr<float>(), out.ptr<float>(), g);
  return Status::ok();
}

// The forward convolution on validated geometry: per image (and group) im2col, then one GEMM; images in
// parallel when there are at least as many as threads, else each GEMM uses the threads.
static void conv_forward(const float* px, const float* pw, float* po, const ConvGeom& g) {
  if (use_direct(g, ConvPass::Forward)) {
    const Direct d = dir_geom(g, ConvPass::Forward);
    dir_run(
        d, g.N, g.groups, [&](int64_t n, int64_t gi) { return px + (n * g.C + gi * g.Cg()) * g.H * g.W; },
        [&](int64_t n, int64_t gi) { return po + (n * g.O + gi * g.Og()) * g.P(); },
        [&](int64_t gi, float* wpk) {
          const float* wg = pw + gi * g.Og() * g.ckk();
          dir_pack(d, wpk, [&](int64_t o, int64_t k) { return wg[o * g.ckk() + k]; });
        });
    return;
  }
  const bool pw1 = pointwise(g);
  auto image = [&](int64_t n, bool par, ThreadBuffer<0>& col) {
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      const float* xg = px + (n * g.C + gi * g.Cg()) * g.H * g.W;
      float* og = po + (n * g.O + gi * g.Og()) * g.P();
      const float* wg = pw + gi * g.Og() * g.ckk();
      if (pw1) {
        GemmArgs a{g.Og(), g.P(), g.ckk(), wg, g.ckk(), 1, xg, g.P(), 1, og, g.P(), false, par};
        sgemm(a);
        continue;
      }
      float* c = col.get(g.ckk() * tile_rows(g) * g.OW);
      for_each_tile(g, [&](int64_t oh0, int64_t oh1, int64_t pt) {
        im2col(xg, g, c, oh0, oh1);
        GemmArgs a{g.Og(), pt, g.ckk(), wg, g.ckk(), 1, c, pt, 1, og + oh0 * g.OW, g.P(), false, par};
        sgemm(a);
      });
    }
  };
  if (g.N >= num_threads() && num_threads() > 1) {
    parallel_for(g.N, 1, [&](int64_t lo, int64_t hi) {
      ThreadBuffer<0> col;
      for (int64_t n = lo; n < hi; ++n) image(n, false, col);
    });
  } else {
    ThreadBuffer<0> col;
    for (int64_t n = 0; n < g.N; ++n) image(n, true, col);
  }
}

// in: gy [N, O, OH, OW], w; attrs: conv attrs + inH, inW -> dx [N, C, H, W]
static Status k_conv2d_backward_input(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  if (Status s = check_f32(in, nin, out, "conv2dBackwardInput"); !s.good()) return s;
  const TensorView& gy = in[0];
  const TensorView& w = in[1];
  ConvGeom g{};
  if (Status s = geom_from(w, attrs, g); !s.good()) return s;
  KILN_REQUIRE(gy.ndim == 4 && gy.shape[1] == g.O, ST_SHAPE, "conv2dBackwardInput gradient ", shape_str(gy),
               " does not match weight ", shape_str(w));
  g.N = gy.shape[0];
  g.H = static_cast<int64_t>(attrs[ATTR_CONV2D_BACKWARD_INPUT_IN_H]);
  g.W = static_cast<int64_t>(attrs[ATTR_CONV2D_BACKWARD_INPUT_IN_W]);
  KILN_REQUIRE(g.H >= 0 && g.W >= 0 && g.H <= (int64_t{1} << 30) && g.W <= (int64_t{1} << 30), ST_ARG,
               "conv2dBackwardInput input size must be in [0, 2^30]");
  g.OH = conv_out_size(g.H, g.kh, g.sh, g.ph, g.dh);
  g.OW = conv_out_size(g.W, g.kw, g.sw, g.pw, g.dw);
  KILN_REQUIRE(gy.shape[2] == g.OH && gy.shape[3] == g.OW, ST_SHAPE, "conv2dBackwardInput gradient ", shape_str(gy),
               " does not match input size ", g.H, "x", g.W);
  KILN_REQUIRE(
      out.ndim == 4 && out.shape[0] == g.N && out.shape[1] == g.C && out.shape[2] == g.H && out.shape[3] == g.W,
      ST_SHAPE, "conv2dBackwardInput output ", shape_str(out), " has the wrong shape");
  float* pdx = out.ptr<float>();
  const int64_t total = out.numel();
  const float* pgy = gy.ptr<float>();
  const float* pw = w.ptr<float>();
  if (total > 0 && gy.numel() > 0 && use_direct(g, ConvPass::Input)) {
    // the forward of gy padded by dilation*(k-1) - padding, with tap (o, i, j) of output c weighing
    // w[o, c, kh-1-i, kw-1-j]
    const Direct d = dir_geom(g, ConvPass::Input);
    const int64_t kk = g.kh * g.kw;
    dir_run(
        d, g.N, g.groups, [&](int64_t n, int64_t gi) { return pgy + (n * g.O + gi * g.Og()) * g.P(); },
        [&](int64_t n, int64_t gi) { return pdx + (n * g.C + gi * g.Cg()) * g.H * g.W; },
        [&](int64_t gi, float* wpk) {
          const float* wg = pw + gi * g.Og() * g.ckk();
          dir_pack(d, wpk, [&](int64_t c, int64_t k) {
            const int64_t o = k / kk, r = k % kk;
            return wg[(o * g.Cg() + c) * kk + (g.kh - 1 - r / g.kw) * g.kw + (g.kw - 1 - r % g.kw)];
          });
        });
    return Status::ok();
  }
  for (int64_t i = 0; i < total; ++i) pdx[i] = 0.f;
  if (gy.numel() == 0) return Status::ok();
  auto image = [&](int64_t n, bool par, ThreadBuffer<0>& col) {
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      float* dxg = pdx + (n * g.C + gi * g.Cg()) * g.H * g.W;
      const float* wg = pw + gi * g.Og() * g.ckk();
      const float* gyg = pgy + (n * g.O + gi * g.Og()) * g.P();
      if (pointwise(g)) {  // dx = W^T gy directly
        GemmArgs a{g.ckk(), g.P(), g.Og(), wg, 1, g.ckk(), gyg, g.P(), 1, dxg, g.P(), true, par};
        sgemm(a);
        continue;
      }
      // per tile of output rows: columns = W^T gy[:, tile], added back into dx at once
      float* c = col.get(g.ckk() * tile_rows(g) * g.OW);
      for_each_tile(g, [&](int64_t oh0, int64_t oh1, int64_t pt) {
        GemmArgs a{g.ckk(), pt, g.Og(), wg, 1, g.ckk(), gyg + oh0 * g.OW, g.P(), 1, c, pt, false, par};
        sgemm(a);
        col2im(c, g, dxg, oh0, oh1);
      });
    }
  };
  if (g.N >= num_threads() && num_threads() > 1) {
    parallel_for(g.N, 1, [&](int64_t lo, int64_t hi) {
      ThreadBuffer<0> col;
      for (int64_t n = lo; n < hi; ++n) image(n, false, col);
    });
  } else {
    ThreadBuffer<0> col;
    for (int64_t n = 0; n < g.N; ++n) image(n, true, col);
  }
  return Status::ok();
}

// in: x [N, C, H, W], gy [N, O, OH, OW]; attrs: conv attrs + kH, kW -> dw [O, C/groups, kH, kW]
static Status k_conv2d_backward_weight(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  if (Status s = check_f32(in, nin, out, "conv2dBackwardWeight"); !s.good()) return s;
  const TensorView& x = in[0];
  const TensorView& gy = in[1];
  ConvGeom g{};
  if (Status s = read_conv_attrs(attrs, g, "conv2d"); !s.good()) return s;
  KILN_REQUIRE(x.ndim == 4 && gy.ndim == 4 && out.ndim == 4, ST_SHAPE, "conv2dBackwardWeight needs 4-d tensors, got ",
               shape_str(x), ", ", shape_str(gy), " -> ", shape_str(out));
  g.N = x.shape[0];
  g.C = x.shape[1];
  g.H = x.shape[2];
  g.W = x.shape[3];
  g.O = gy.shape[1];
  g.kh = static_cast<int64_t>(attrs[ATTR_CONV2D_BACKWARD_WEIGHT_KERNEL_H]);
  g.kw = static_cast<int64_t>(attrs[ATTR_CONV2D_BACKWARD_WEIGHT_KERNEL_W]);
  KILN_REQUIRE(g.kh >= 1 && g.kw >= 1 && g.kh <= (int64_t{1} << 30) && g.kw <= (int64_t{1} << 30), ST_ARG,
               "conv2dBackwardWeight kernel size must be in [1, 2^30]");
  KILN_REQUIRE(g.C % g.groups == 0 && g.O % g.groups == 0, ST_SHAPE, "channels ", g.C, "/", g.O,
               " not divisible by groups ", g.groups);
  g.OH = conv_out_size(g.H, g.kh, g.sh, g.ph, g.dh);
  g.OW = conv_out_size(g.W, g.kw, g.sw, g.pw, g.dw);
  KILN_REQUIRE(gy.shape[0] == g.N && gy.shape[2] == g.OH && gy.shape[3] == g.OW, ST_SHAPE,
               "conv2dBackwardWeight gradient ", shape_str(gy), " does not match input ", shape_str(x));
  KILN_REQUIRE(out.shape[0] == g.O && out.shape[1] == g.Cg() && out.shape[2] == g.kh && out.shape[3] == g.kw, ST_SHAPE,
               "conv2dBackwardWeight output ", shape_str(out), " has the wrong shape");
  float* pdw = out.ptr<float>();
  const int64_t total = out.numel();
  for (int64_t i = 0; i < total; ++i) pdw[i] = 0.f;
  if (x.numel() == 0 || gy.numel() == 0) return Status::ok();
  const float* px = x.ptr<float>();
  const float* pgy = gy.ptr<float>();
  // The images [lo, hi) add their dW into dw: dW_g [Og, ckk] += gy_g [Og, P] * col^T [P, ckk], or transposed,
  // dW_g^T [ckk, Og] += col * gy_g^T, into a buffer added into dw at the end. Transposed, the GEMM packs the Og
  // rows of gy instead of the ckk rows of the column matrix; it is chosen when Og is too many rows for the
  // unpacked small-M path and the transposed product wastes less of the micro-kernel's tile (padding M to MR
  // and N to NR): 32 output channels of 144 columns yes, 6 (LeNet's first layer) or 16 no.
  const auto padded = [](int64_t m, int64_t n) {
    return ((m + kGemmMR - 1) / kGemmMR * kGemmMR) * ((n + kGemmNR - 1) / kGemmNR * kGemmNR);
  };
  const bool transposed = g.Og() > kGemmSmallM && padded(g.ckk(), g.Og()) < padded(g.Og(), g.ckk());
  // im2col + GEMM over images [lo, hi), into dw (transposed: into dW^T, added into dw at the end)
  auto images_gemm = [&](int64_t lo, int64_t hi, float* dw, bool par) {
    ThreadBuffer<0> col;
    const int64_t per = g.ckk() * g.Og();
    std::vector<float> dwt(transposed ? static_cast<size_t>(g.groups * per) : 0, 0.f);
    // dst (dW_g [Og, ckk] or dW_g^T [ckk, Og]) += gy_g [Og, pt] (row stride P) times cols [ckk, pt] (row stride ldc)
    const auto product = [&](const float* gyg, const float* cols, int64_t pt, int64_t ldc, float* dst) {
      GemmArgs a = transposed ? GemmArgs{g.ckk(), g.Og(), pt, cols, ldc, 1, gyg, 1, g.P(), dst, g.Og(), true, par}
                              : GemmArgs{g.Og(), g.ckk(), pt, gyg, g.P(), 1, cols, 1, ldc, dst, g.ckk(), true, par};
      sgemm(a);
    };
    for (int64_t n = lo; n < hi; ++n)
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        const float* xg = px + (n * g.C + gi * g.Cg()) * g.H * g.W;
        const float* gyg = pgy + (n * g.O + gi * g.Og()) * g.P();
        float* dst = transposed ? dwt.data() + gi * per : dw + gi * per;
        if (pointwise(g)) {
          product(gyg, xg, g.P(), g.P(), dst);
          continue;
        }
        float* c = col.get(g.ckk() * tile_rows(g) * g.OW);
        for_each_tile(g, [&](int64_t oh0, int64_t oh1, int64_t pt) {
          im2col(xg, g, c, oh0, oh1);
          product(gyg + oh0 * g.OW, c, pt, pt, dst);
        });
      }
    if (transposed)
      for (int64_t gi = 0; gi < g.groups; ++gi)
        for (int64_t o = 0; o < g.Og(); ++o)
          for (int64_t k = 0; k < g.ckk(); ++k)
            dw[gi * per + o * g.ckk() + k] += dwt[static_cast<size_t>(gi * per + k * g.Og() + o)];
  };
  const bool direct = use_direct(g, ConvPass::Weight) && all_finite(px, x.numel());
  const Direct d = dir_geom(g, ConvPass::Weight);
  const auto images = [&](int64_t lo, int64_t hi, float* dw, bool par) {
    if (direct)
      dirw_images(
          d, g.groups, lo, hi, [&](int64_t n, int64_t gi) { return px + (n * g.C + gi * g.Cg()) * g.H * g.W; },
          [&](int64_t n, int64_t gi) { return pgy + (n * g.O + gi * g.Og()) * g.P(); }, dw, par);
    else
      images_gemm(lo, hi, dw, par);
  };
  if (g.N >= num_threads() && num_threads() > 1) {
    // each chunk of images sums into its own copy of dW (small: O * Cg * kh * kw), added up in chunk order so
    // the result does not depend on which thread finished first
    const int threads = num_threads();
    const int64_t per = (g.N + threads - 1) / threads;
    std::vector<std::vector<float>> part(static_cast<size_t>(threads));
    parallel_for(threads, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t c = lo; c < hi; ++c) {
        auto& d = part[static_cast<size_t>(c)];
        d.assign(static_cast<size_t>(total), 0.f);
        images(std::min(g.N, c * per), std::min(g.N, (c + 1) * per), d.data(), false);
      }
    });
    for (const auto& d : part)
      for (int64_t i = 0; i < total; ++i) pdw[i] += d[static_cast<size_t>(i)];
  } else
    images(0, g.N, pdw, true);
  return Status::ok();
}

static Status pool_geom(const TensorView& x, const double* attrs, ConvGeom& p, const char* op, int64_t H = -1,
                        int64_t W = -1) {
  if (Status s = read_pool_attrs(attrs, p, op); !s.good()) return s;
  KILN_REQUIRE(x.ndim == 4, ST_SHAPE, op, " input must be [N, C, H, W], got ", shape_str(x));
  p.N = x.shape[0];
  p.C = x.shape[1];
  p.H = H >= 0 ? H : x.shape[2];
  p.W = W >= 0 ? W : x.shape[3];
  p.OH = conv_out_size(p.H, p.kh, p.sh, p.ph, 1);
  p.OW = conv_out_size(p.W, p.kw, p.sw, p.pw, 1);
  return Status::ok();
}

static bool pool_2x2(const ConvGeom& p) {
  return p.kh == 2 && p.kw == 2 && p.sh == 2 && p.sw == 2 && p.ph == 0 && p.pw == 0;
}

// m, best = v, at when take, by masks rather than a branch (GCC turns `take ? v : m` back into one here)
static inline void pool_take(float v, int64_t at, bool take, float& m, int64_t& best) {
  const int64_t k = -static_cast<int64_t>(take);
  best = (at & k) | (best & ~k);
  const uint32_t k32 = static_cast<uint32_t>(k);
  m = __builtin_bit_cast(float, (__builtin_bit_cast(uint32_t, v) & k32) | (__builtin_bit_cast(uint32_t, m) & ~k32));
}

static Status k_max_pool2d(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  if (Status s = check_f32(in, nin, out, "maxPool2d"); !s.good()) return s;
  ConvGeom p{};
  if (Status s = pool_geom(in[0], attrs, p, "maxPool2d"); !s.good()) return s;
  KILN_REQUIRE(
      out.ndim == 4 && out.shape[0] == p.N && out.shape[1] == p.C && out.shape[2] == p.OH && out.shape[3] == p.OW,
      ST_SHAPE, "maxPool2d output ", shape_str(out), " has the wrong shape");
  const float* x = in[0].ptr<float>();
  float* o = out.ptr<float>();
  const bool two = pool_2x2(p);
  parallel_for(p.N * p.C, 4, [&](int64_t lo, int64_t hi) {
    for (int64_t nc = lo; nc < hi; ++nc) {
      const float* xp = x + nc * p.H * p.W;
      float* op = o + nc * p.OH * p.OW;
      for (int64_t oh = 0; oh < p.OH; ++oh) {
        if (two) {
          pool2x2_row(xp + 2 * oh * p.W, xp + (2 * oh + 1) * p.W, op + oh * p.OW, p.OW);
          continue;
        }
        for (int64_t ow = 0; ow < p.OW; ++ow) {
          float m = -__builtin_inff();
          bool nan = false;
          for (int64_t i = 0; i < p.kh; ++i) {
            const int64_t ih = oh * p.sh - p.ph + i;
            if (ih < 0 || ih >= p.H) continue;
            for (int64_t j = 0; j < p.kw; ++j) {
              const int64_t iw = ow * p.sw - p.pw + j;
              if (iw < 0 || iw >= p.W) continue;
              const float v = xp[ih * p.W + iw];
              nan |= v != v;
              m = v > m ? v : m;
            }
          }
          op[oh * p.OW + ow] = nan ? __builtin_nanf("") : m;
        }
      }
    }
  });
  return Status::ok();
}

// in: x, gy -> dx; the gradient goes to the first maximum of each window (as the forward picked it)
static Status k_max_pool2d_backward(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  if (Status s = check_f32(in, nin, out, "maxPool2dBackward"); !s.good()) return s;
  ConvGeom p{};
  if (Status s = pool_geom(in[0], attrs, p, "maxPool2dBackward"); !s.good()) return s;
  KILN_REQUIRE(same_shape(in[0], out), ST_SHAPE, "maxPool2dBackward output must match the input shape");
  const TensorView& gy = in[1];
  KILN_REQUIRE(gy.ndim == 4 && gy.shape[0] == p.N && gy.shape[1] == p.C && gy.shape[2] == p.OH && gy.shape[3] == p.OW,
               ST_SHAPE, "maxPool2dBackward gradient ", shape_str(gy), " does not match the pooled shape");
  const float* x = in[0].ptr<float>();
  const float* g = gy.ptr<float>();
  float* o = out.ptr<float>();
  if (p.sh == p.kh && p.sw == p.kw && p.ph == 0 && p.pw == 0) {
    // windows that tile the input without overlap (2x2 stride 2, the common case): each window writes all its
    // taps once (the gradient at its first maximum, 0 elsewhere), so no separate zeroing pass and no +=
    const bool two = pool_2x2(p);
    parallel_for(p.N * p.C, 4, [&](int64_t lo, int64_t hi) {
      for (int64_t nc = lo; nc < hi; ++nc) {
        const float* xp = x + nc * p.H * p.W;
        const float* gp = g + nc * p.OH * p.OW;
        float* op = o + nc * p.H * p.W;
        int64_t rest = 0;
        for (int64_t oh = 0; oh < p.OH && two; ++oh) {
          rest = pool_row_blocks(p.OW, [&](auto L, int64_t ow) {
            const int64_t a0 = 2 * oh * p.W + 2 * ow, a1 = a0 + p.W;
            Pool2x2<L>::backward(xp + a0, xp + a1, gp + oh * p.OW + ow, op + a0, op + a1);
          });
#if KILN_VEC_BYTES == 64
          if (rest < p.OW) {
            const int64_t a0 = 2 * oh * p.W + 2 * rest, a1 = a0 + p.W;
            PoolTail::backward(xp + a0, xp + a1, gp + oh * p.OW + rest, op + a0, op + a1, p.OW - rest);
            rest = p.OW;
          }
#endif
        }
        for (int64_t oh = 0; oh < p.OH; ++oh)
          for (int64_t ow = rest; ow < p.OW; ++ow) {
            const int64_t h0 = oh * p.kh, w0 = ow * p.kw;
            float m = -__builtin_inff();
            int64_t best = -1;
            for (int64_t i = 0; i < p.kh; ++i)
              for (int64_t j = 0; j < p.kw; ++j) {
                const int64_t at = (h0 + i) * p.W + w0 + j;
                op[at] = 0.f;
                // branch-free: which tap is the maximum is data, and a mispredicted branch per tap cost more
                // than the rest of the kernel
                const float v = xp[at];
                pool_take(v, at, max_pool_takes(v, m, best < 0), m, best);
              }
            op[best] = gp[oh * p.OW + ow];
          }
        // rows and columns past the last whole window get no gradient
        for (int64_t h = 0; h < p.H; ++h)
          for (int64_t w = (h < p.OH * p.kh ? p.OW * p.kw : 0); w < p.W; ++w) op[h * p.W + w] = 0.f;
      }
    });
    return Status::ok();
  }
  parallel_for(p.N * p.C, 4, [&](int64_t lo, int64_t hi) {
    for (int64_t nc = lo; nc < hi; ++nc) {
      const float* xp = x + nc * p.H * p.W;
      const float* gp = g + nc * p.OH * p.OW;
      float* op = o + nc * p.H * p.W;
      for (int64_t i = 0; i < p.H * p.W; ++i) op[i] = 0.f;
      for (int64_t oh = 0; oh < p.OH; ++oh)
        for (int64_t ow = 0; ow < p.OW; ++ow) {
          float m = -__builtin_inff();
          int64_t best = -1;
          for (int64_t i = 0; i < p.kh; ++i) {
            const int64_t ih = oh * p.sh - p.ph + i;
            if (ih < 0 || ih >= p.H) continue;
            for (int64_t j = 0; j < p.kw; ++j) {
              const int64_t iw = ow * p.sw - p.pw + j;
              if (iw < 0 || iw >= p.W) continue;
              const float v = xp[ih * p.W + iw];
              pool_take(v, ih * p.W + iw, max_pool_takes(v, m, best < 0), m, best);
            }
          }
          if (best >= 0) op[best] += gp[oh * p.OW + ow];
        }
    }
  });
  return Status::ok();
}

static Status k_avg_pool2d(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  if (Status s = check_f32(in, nin, out, "avgPool2d"); !s.good()) return s;
  ConvGeom p{};
  if (Status s = pool_geom(in[0], attrs, p, "avgPool2d"); !s.good()) return s;
  const bool include_pad = attrs[ATTR_AVG_POOL2D_COUNT_INCLUDE_PAD] != 0;
  KILN_REQUIRE(
      out.ndim == 4 && out.shape[0] == p.N && out.shape[1] == p.C && out.shape[2] == p.OH && out.shape[3] == p.OW,
      ST_SHAPE, "avgPool2d output ", shape_str(out), " has the wrong shape");
  const float* x = in[0].ptr<float>();
  float* o = out.ptr<float>();
  parallel_for(p.N * p.C, 4, [&](int64_t lo, int64_t hi) {
    for (int64_t nc = lo; nc < hi; ++nc) {
      const float* xp = x + nc * p.H * p.W;
      float* op = o + nc * p.OH * p.OW;
      for (int64_t oh = 0; oh < p.OH; ++oh)
        for (int64_t ow = 0; ow < p.OW; ++ow) {
          float s = 0.f;
          int64_t cnt = 0;
          for (int64_t i = 0; i < p.kh; ++i) {
            const int64_t ih = oh * p.sh - p.ph + i;
            if (ih < 0 || ih >= p.H) continue;
            for (int64_t j = 0; j < p.kw; ++j) {
              const int64_t iw = ow * p.sw - p.pw + j;
              if (iw < 0 || iw >= p.W) continue;
              s += xp[ih * p.W + iw];
              ++cnt;
            }
          }
          const int64_t div = include_pad ? p.kh * p.kw : cnt;
          op[oh * p.OW + ow] = div > 0 ? s / static_cast<float>(div) : 0.f;
        }
    }
  });
  return Status::ok();
}

// in: gy; attrs: pool attrs + countIncludePad + inH, inW -> dx
static Status k_avg_pool2d_backward(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  if (Status s = check_f32(in, nin, out, "avgPool2dBackward"); !s.good()) return s;
  ConvGeom p{};
  const int64_t H = static_cast<int64_t>(attrs[ATTR_AVG_POOL2D_BACKWARD_IN_H]),
                W = static_cast<int64_t>(attrs[ATTR_AVG_POOL2D_BACKWARD_IN_W]);
  KILN_REQUIRE(H >= 0 && W >= 0 && H <= (int64_t{1} << 30) && W <= (int64_t{1} << 30), ST_ARG,
               "avgPool2dBackward input size must be in [0, 2^30]");
  if (Status s = pool_geom(in[0], attrs, p, "avgPool2dBackward", H, W); !s.good()) return s;
  const bool include_pad = attrs[ATTR_AVG_POOL2D_BACKWARD_COUNT_INCLUDE_PAD] != 0;
  const TensorView& gy = in[0];
  KILN_REQUIRE(gy.shape[2] == p.OH && gy.shape[3] == p.OW, ST_SHAPE, "avgPool2dBackward gradient ", shape_str(gy),
               " does not match the input size ", H, "x", W);
  KILN_REQUIRE(out.ndim == 4 && out.shape[0] == p.N && out.shape[1] == p.C && out.shape[2] == H && out.shape[3] == W,
               ST_SHAPE, "avgPool2dBackward output ", shape_str(out), " has the wrong shape");
  const float* g = gy.ptr<float>();
  float* o = out.ptr<float>();
  parallel_for(p.N * p.C, 4, [&](int64_t lo, int64_t hi) {
    for (int64_t nc = lo; nc < hi; ++nc) {
      const float* gp = g + nc * p.OH * p.OW;
      float* op = o + nc * p.H * p.W;
      for (int64_t i = 0; i < p.H * p.W; ++i) op[i] = 0.f;
      for (int64_t oh = 0; oh < p.OH; ++oh)
        for (int64_t ow = 0; ow < p.OW; ++ow) {
          int64_t cnt = 0;
          for (int64_t i = 0; i < p.kh; ++i) {
            const int64_t ih = oh * p.sh - p.ph + i;
            if (ih < 0 || ih >= p.H) continue;
            for (int64_t j = 0; j < p.kw; ++j) {
              const int64_t iw = ow * p.sw - p.pw + j;
              if (iw >= 0 && iw < p.W) ++cnt;
            }
          }
          const int64_t div = include_pad ? p.kh * p.kw : cnt;
          if (div == 0) continue;
          const float v = gp[oh * p.OW + ow] / static_cast<float>(div);
          for (int64_t i = 0; i < p.kh; ++i) {
            const int64_t ih = oh * p.sh - p.ph + i;
            if (ih < 0 || ih >= p.H) continue;
            for (int64_t j = 0; j < p.kw; ++j) {
              const int64_t iw = ow * p.sw - p.pw + j;
              if (iw >= 0 && iw < p.W) op[ih * p.W + iw] += v;
            }
          }
        }
    }
  });
  return Status::ok();
}

}  // namespace cv

void register_conv(KernelTable& t) {
  t.fn[OP_CONV2D] = cv::k_conv2d;
  t.fn[OP_CONV2D_BACKWARD_INPUT] = cv::k_conv2d_backward_input;
  t.fn[OP_CONV2D_BACKWARD_WEIGHT] = cv::k_conv2d_backward_weight;
  t.fn[OP_MAX_POOL2D] = cv::k_max_pool2d;
  t.fn[OP_MAX_POOL2D_BACKWARD] = cv::k_max_pool2d_backward;
  t.fn[OP_AVG_POOL2D] = cv::k_avg_pool2d;
  t.fn[OP_AVG_POOL2D_BACKWARD] = cv::k_avg_pool2d_backward;
}

#endif
