// The fused attention kernels' arguments, shared by the cpu kernels (native/cpu/matmul.cc) and the CUDA launchers
// (kernels/cuda/matmul.cu): one validation of the inputs and attributes, and one dropout rule (a hash of the
// seed and each weight's index against a threshold, also in the js and WGSL kernels), so the backends accept
// the same calls and drop the same weights.
#pragma once
#include <cmath>
#include <cstdint>

#include "kiln/cpu_common.h"
#include "kiln/hd.h"
#include "kiln/op_ids.h"

namespace kiln {

/** lowbias32 (Chris Wellons): the integer hash attention dropout uses on every backend. */
KILN_HD inline uint32_t att_hash(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

struct AttArgs {
  int64_t B, L, S, D, Dv;
  const float *q, *k, *v, *mask;
  int64_t mask_stride;  // per batch (0 = one shared [L, S] mask)
  float scale;
  bool causal;
  uint32_t thr, seed_hash;
  float keep_scale;
  // the dropout factor of weight (b, i, j): 0 when dropped, 1/(1-p) when kept
  KILN_HD float keep(int64_t b, int64_t i, int64_t j) const {
    if (thr == 0) return 1.f;
    const uint32_t idx = static_cast<uint32_t>((b * L + i) * S + j);
    return att_hash(idx ^ seed_hash) >= thr ? keep_scale : 0.f;
  }
};

/** Checks the inputs and attributes of `attention` (want 3) or `attentionBackward` (want 5) into `a`. */
inline Status att_check(const TensorView* in, int nin, int want, const char* op, const double* attrs, AttArgs& a) {
  KILN_REQUIRE(nin == want || nin == want + 1, ST_ARG, op, " takes ", want, " inputs and an optional mask, got ", nin);
  for (int i = 0; i < nin; ++i)
    KILN_REQUIRE(in[i].dtype == DT_FLOAT32 && in[i].contiguous() && in[i].ndim == 3, ST_SHAPE, op,
                 ": every input must be a contiguous 3-D float32 tensor, input ", i, " is ", kDTypeNames[in[i].dtype],
                 " ", shape_str(in[i]));
  const TensorView &q = in[0], &k = in[1], &v = in[2];
  a.B = q.shape[0];
  a.L = q.shape[1];
  a.D = q.shape[2];
  a.S = k.shape[1];
  a.Dv = v.shape[2];
  KILN_REQUIRE(k.shape[0] == a.B && v.shape[0] == a.B && k.shape[2] == a.D && v.shape[1] == a.S, ST_SHAPE, op, ": q ",
               shape_str(q), ", k ", shape_str(k), " and v ", shape_str(v), " disagree");
  if (want == 5) {
    KILN_REQUIRE(in[3].shape[0] == a.B && in[3].shape[1] == a.L && in[3].shape[2] == a.Dv + 1, ST_SHAPE, op,
                 ": the forward output must be [", a.B, ", ", a.L, ", ", a.Dv + 1, "], got ", shape_str(in[3]));
    KILN_REQUIRE(in[4].shape[0] == a.B && in[4].shape[1] == a.L && in[4].shape[2] == a.Dv, ST_SHAPE, op,
                 ": the output gradient must be [", a.B, ", ", a.L, ", ", a.Dv, "], got ", shape_str(in[4]));
  }
  a.mask = nullptr;
  a.mask_stride = 0;
  if (nin == want + 1) {
    const TensorView& m = in[want];
    KILN_REQUIRE((m.shape[0] == 1 || m.shape[0] == a.B) && m.shape[1] == a.L && m.shape[2] == a.S, ST_SHAPE, op,
                 ": the mask must be [1 or ", a.B, ", ", a.L, ", ", a.S, "], got ", shape_str(m));
    a.mask = m.ptr<float>();
    a.mask_stride = m.shape[0] == 1 ? 0 : a.L * a.S;
  }
  const double scale = attrs[ATTR_ATTENTION_SCALE], causal = attrs[ATTR_ATTENTION_CAUSAL];
  const double thr = attrs[ATTR_ATTENTION_DROPOUT_THRESHOLD], seed = attrs[ATTR_ATTENTION_SEED];
  KILN_REQUIRE(std::isfinite(scale), ST_ARG, op, ": scale must be finite, got ", scale);
  KILN_REQUIRE(causal == 0 || causal == 1, ST_ARG, op, ": causal must be 0 or 1, got ", causal);
  KILN_REQUIRE(thr >= 0 && thr <= 4294967295.0 && thr == std::floor(thr), ST_ARG, op,
               ": dropoutThreshold must be an integer in [0, 2^32), got ", thr);
  KILN_REQUIRE(seed >= 0 && seed <= 4294967295.0 && seed == std::floor(seed), ST_ARG, op,
               ": seed must be an integer in [0, 2^32), got ", seed);
  a.q = q.ptr<float>();
  a.k = k.ptr<float>();
  a.v = v.ptr<float>();
  a.scale = static_cast<float>(scale);
  a.causal = causal == 1;
  a.thr = static_cast<uint32_t>(thr);
  a.seed_hash = att_hash(static_cast<uint32_t>(seed));
  a.keep_scale = static_cast<float>(1.0 / (1.0 - thr / 4294967296.0));
  return Status::ok();
}

/** Checks the output of `attention` (forward: [B, L, Dv + 1]) or `attentionBackward` (dq, dk, dv flat). */
inline Status att_check_out(const TensorView& out, const AttArgs& a, bool forward) {
  if (forward) {
    KILN_REQUIRE(out.dtype == DT_FLOAT32 && out.ndim == 3 && out.shape[0] == a.B && out.shape[1] == a.L &&
                     out.shape[2] == a.Dv + 1,
                 ST_SHAPE, "attention writes [", a.B, ", ", a.L, ", ", a.Dv + 1, "], got ", shape_str(out));
    return Status::ok();
  }
  const int64_t n = a.B * a.L * a.D + a.B * a.S * (a.D + a.Dv);
  KILN_REQUIRE(out.dtype == DT_FLOAT32 && out.numel() == n, ST_SHAPE, "attentionBackward writes ", n,
               " values (dq, dk, dv), got ", shape_str(out));
  return Status::ok();
}

}  // namespace kiln
