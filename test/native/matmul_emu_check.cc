// The CUDA matmul ops end to end on the CPU emulation: kernels/cuda/matmul.cu's host path (k_matmul and
// k_matmul_bf16: validation, batch merging, the cuBLASLt and Hopper attempts, the bfloat16 C straight from the
// Hopper epilogue or from float32 scratch through round_bf16, the SIMT kernels' tile sizes and split-K, the WMMA
// kernels) with every kernel it launches, and matmul_sm90.cu's wgmma_gemm and run_gemm, all copied verbatim by
// test/native.test.ts into matmul_emu_kernels.inc. cuBLASLt is not in use (as when KILN_CUDA_CUBLASLT is unset);
// whether the Hopper kernel may run (a 9.0 device with KILN_CUDA_WGMMA=1) is the check's to set, case by case;
// float32 is exact (KILN_CUDA_GEMM unset; the TF32 kernels run in cuda_emu_check.cc and wgmma_emu_check.cc).
// The inputs are multiples of 1/4 in [-2, 2], so every sum is exact in float32 whatever the order (split-K, tensor
// cores) and each element is compared exactly. Prints one line per check and "matmul host path: N checks, 0
// failures".
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "sm90_emu.h"
#include "kiln/cpu_common.h"
#include "kiln/cublaslt.h"

#define __CUDA_ARCH__ 900  // the tensor-core kernels' bodies are compiled for sm_80 and newer

namespace kiln {
namespace cuda {
using namespace nvcuda;
struct Readiness;
const Readiness& readiness();
const char* gemm_mode();
#include "matmul_emu_kernels.inc"

// what the device and the environment would decide: the check sets them
inline Readiness emu_readiness;
const Readiness& readiness() { return emu_readiness; }
const char* gemm_mode() { return "fp32"; }
Status cublaslt_gemm(const LtGemm&, bool* ran) {  // not in use: kiln's kernels take every product
  *ran = false;
  return Status::ok();
}
}  // namespace cuda
}  // namespace kiln
using namespace kiln;
using namespace kiln::cuda;

/** A strided operand over its own buffer (float32 or bfloat16 values), filled with exact quarter steps. */
struct Operand {
  std::vector<float> f;
  std::vector<uint16_t> h;
  TensorView v;
  float at(const int64_t* idx) const {
    int64_t e = v.offset;
    for (int d = 0; d < v.ndim; ++d) e += idx[d] * v.strides[d];
    return v.dtype == DT_FLOAT32 ? f[e] : bf16_to_float(h[e]);
  }
};
static Operand operand(int32_t dtype, std::vector<int64_t> shape, std::vector<int64_t> strides, int64_t offset,
                       std::mt19937& rng) {
  Operand o;
  o.v.dtype = dtype;
  o.v.ndim = static_cast<int32_t>(shape.size());
  o.v.offset = offset;
  int64_t extent = offset + 1;
  for (int d = 0; d < o.v.ndim; ++d) {
    o.v.shape[d] = shape[d];
    o.v.strides[d] = strides[d];
    extent += (shape[d] - 1) * strides[d];
  }
  o.f.resize(extent);
  for (float& x : o.f) x = float(int(rng() % 17) - 8) / 4;
  if (dtype == DT_BFLOAT16) {
    for (float x : o.f) o.h.push_back(float_to_bf16(x));
    o.v.data = o.h.data();
  } else {
    o.v.data = o.f.data();
  }
  return o;
}
static std::vector<int64_t> contiguous(const std::vector<int64_t>& shape) {
  std::vector<int64_t> s(shape.size(), 1);
  for (int d = int(shape.size()) - 2; d >= 0; --d) s[d] = s[d + 1] * shape[d + 1];
  return s;
}

struct Case {
  const char* what;
  bool bf16;      // matmulBf16 (else matmul)
  bool bf16_out;  // C as bfloat16 (matmulBf16 only)
  std::vector<int64_t> a_shape, a_strides, b_shape, b_strides;
  int64_t a_offset;
  int sms;               // the device's SM count: the tile sizes and the persistent grid follow it
  bool hopper;           // wgmma may run (readiness().ok)
  int scratch_takes;     // scratch buffers the op must take (split-K parts, packing, float32 C)
  const char* launches;  // the kernels it must launch, in order
};

static void check(const Case& cs) {
  std::mt19937 rng(29);
  const int32_t in_dt = cs.bf16 ? DT_BFLOAT16 : DT_FLOAT32;
  Operand a = operand(in_dt, cs.a_shape, cs.a_strides, cs.a_offset, rng);
  Operand b = operand(in_dt, cs.b_shape, cs.b_strides, 0, rng);
  const int nd = int(cs.a_shape.size());
  std::vector<int64_t> c_shape = cs.a_shape;
  c_shape[nd - 1] = cs.b_shape[nd - 1];
  TensorView c;
  c.dtype = cs.bf16_out ? DT_BFLOAT16 : DT_FLOAT32;
  c.ndim = nd;
  int64_t n = 1;
  for (int d = 0; d < nd; ++d) n *= (c.shape[d] = c_shape[d]);
  const std::vector<int64_t> cst = contiguous(c_shape);
  for (int d = 0; d < nd; ++d) c.strides[d] = cst[d];
  std::vector<float> cf(cs.bf16_out ? 0 : n, NAN);  // NaNs until written
  std::vector<uint16_t> ch(cs.bf16_out ? n : 0, 0xFFFF);
  c.data = cs.bf16_out ? static_cast<void*>(ch.data()) : static_cast<void*>(cf.data());

  emu_readiness.ok = cs.hopper;
  emu_sm_count = cs.sms;
  emu_faults = 0;
  emu_abort = false;
  emu_tma_late = false;
  emu_scratch_taken = 0;
  emu_launched.clear();
  const int64_t live = emu_scratch_live;
  const TensorView in[2] = {a.v, b.v};
  const Status st = (cs.bf16 ? k_matmul_bf16 : k_matmul)(in, 2, c, nullptr);

  const int64_t M = cs.a_shape[nd - 2], K = cs.a_shape[nd - 1], N = cs.b_shape[nd - 1];
  int64_t wrong = 0, first = -1;
  std::vector<int64_t> idx(nd, 0), ia(nd), ib(nd);
  for (int64_t e = 0; e < n; ++e) {
    for (int64_t r = e, d = nd - 1; d >= 0; --d) idx[d] = r % c_shape[d], r /= c_shape[d];
    double s = 0;
    ia = idx, ib = idx;
    for (int64_t k = 0; k < K; ++k) {
      ia[nd - 1] = k, ib[nd - 2] = k;
      s += double(a.at(ia.data())) * b.at(ib.data());
    }
    const bool right = cs.bf16_out ? ch[e] == float_to_bf16(float(s)) : cf[e] == float(s);
    if (!right && wrong++ == 0) first = e;
  }
  std::string detail = std::string(cs.bf16 ? "matmulBf16" : "matmul") + (cs.bf16_out ? " to bfloat16" : "") + ", " +
                       cs.what + " [" + std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) + ", " +
                       std::to_string(cs.sms) + " SMs" + (cs.hopper ? ", Hopper" : "") + "]";
  if (!st.good()) detail += ": failed: " + st.message;
  if (wrong) detail += ": " + std::to_string(wrong) + " wrong elements, the first at " + std::to_string(first);
  if (emu_scratch_live != live) detail += ": scratch memory not released";
  if (emu_scratch_taken != cs.scratch_takes)
    detail += ": took scratch " + std::to_string(emu_scratch_taken) + " times, not " + std::to_string(cs.scratch_takes);
  std::string launched;
  for (const std::string& k : emu_launched) launched += (launched.empty() ? "" : " ") + k;
  if (launched != cs.launches) detail += ": launched \"" + launched + "\", not \"" + cs.launches + "\"";
  if (emu_faults) detail += ": " + std::to_string(emu_faults.load()) + " faults, the first: " + emu_first_fault;
  expect(st.good() && wrong == 0 && emu_scratch_live == live && emu_scratch_taken == cs.scratch_takes &&
             launched == cs.launches && emu_faults == 0,
         detail);
}

/** A call the op must refuse, with the status code and a message that names what was wrong. */
static void refuses(const char* what, KernelFn fn, const TensorView* in, const TensorView& out, StatusCode code,
                    const std::string& words) {
  emu_scratch_taken = 0;
  emu_launched.clear();
  const Status st = fn(in, 2, out, nullptr);
  expect(
      st.code == code && st.message.find(words) != std::string::npos && emu_scratch_taken == 0 && emu_launched.empty(),
      std::string("refuses ") + what + ": " + st.message);
}

int main() {
  const bool F = false, T = true;
  // clang-format off
  // launches as the source names its kernels ("kernel": run_gemm's gemm_sm90 instance; "pack_kmajor<T>": its
  // packing of an operand it cannot read in place)
  const Case cases[] = {
      // exact float32: SIMT tiles by the SM count, split-K by the shape alone
      {"plain, 64x64 tiles split over k (6 tiles, k in 3 chunks)", F, F,
       {70, 300}, {300, 1}, {300, 130}, {130, 1}, 0, 132, F, 1, "matmul_simt sum_splits"},
      {"plain, 64x64 tiles, k in one chunk", F, F, {70, 120}, {120, 1}, {120, 130}, {130, 1}, 0, 132, F, 0,
       "matmul_simt"},
      {"plain, 128x128 tiles (as many as SMs; k in one chunk)", F, F,
       {130, 100}, {100, 1}, {100, 140}, {140, 1}, 0, 4, F, 0, "matmul_simt128"},
      {"A^T and B^T views, 3 products with one B (batch strides 0)", F, F,
       {3, 40, 50}, {2000, 1, 40}, {3, 50, 30}, {0, 1, 50}, 5, 132, F, 0, "matmul_simt"},
      {"batch dims [2, 3] that do not merge (A's batch transposed)", F, F,
       {2, 3, 20, 24}, {480, 960, 24, 1}, {2, 3, 24, 36}, {2592, 864, 36, 1}, 0, 132, F, 0, "matmul_simt"},
      {"float32 on a Hopper device (wgmma declines exact float32)", F, F,
       {70, 300}, {300, 1}, {300, 130}, {130, 1}, 0, 132, T, 1, "matmul_simt sum_splits"},
      // bfloat16 on WMMA (not a Hopper device)
      {"plain, 64x64 WMMA tiles", T, F, {70, 96}, {96, 1}, {96, 130}, {130, 1}, 0, 132, F, 0,
       "matmul_wmma<BF16>"},
      {"plain, 128x128 WMMA tiles (as many as SMs)", T, F, {130, 96}, {96, 1}, {96, 140}, {140, 1}, 0, 4, F, 0,
       "matmul_wmma128<BF16>"},
      {"plain: the float32 product in scratch, rounded by round_bf16", T, T,
       {70, 96}, {96, 1}, {96, 130}, {130, 1}, 0, 132, F, 1, "matmul_wmma<BF16> round_bf16"},
      // bfloat16 on a Hopper device
      {"plain A and B read in place (K-major, MN-major): C straight from the epilogue, no scratch", T, T,
       {2, 136, 96}, {136 * 96, 96, 1}, {2, 96, 264}, {96 * 264, 264, 1}, 0, 3, T, 0, "kernel"},
      {"B^T in place, A packed (unaligned): C from the epilogue", T, T,
       {150, 264}, {264, 1}, {264, 300}, {1, 264}, 1, 2, T, 1, "pack_kmajor<T> kernel"},
      {"C as float32 from the epilogue", T, F, {2, 136, 96}, {136 * 96, 96, 1}, {2, 96, 264}, {96 * 264, 264, 1},
       0, 3, T, 0, "kernel"},
      {"batch dims that do not merge: WMMA into scratch, then round_bf16", T, T,
       {2, 3, 20, 32}, {640, 1280, 32, 1}, {2, 3, 32, 40}, {3840, 1280, 40, 1}, 0, 132, T, 1,
       "matmul_wmma<BF16> round_bf16"},
  };
  // clang-format on
  for (const Case& cs : cases) check(cs);

  std::mt19937 rng(3);
  Operand a = operand(DT_FLOAT32, {4, 5}, {5, 1}, 0, rng), b = operand(DT_FLOAT32, {5, 6}, {6, 1}, 0, rng);
  Operand ah = operand(DT_BFLOAT16, {4, 5}, {5, 1}, 0, rng), bh = operand(DT_BFLOAT16, {5, 6}, {6, 1}, 0, rng);
  std::vector<float> cbuf(4 * 7, 0.f);
  TensorView c;
  c.data = cbuf.data();
  c.ndim = 2;
  c.shape[0] = 4, c.shape[1] = 6, c.strides[0] = 6, c.strides[1] = 1;
  const TensorView ab[2] = {a.v, b.v}, hh[2] = {ah.v, bh.v}, ahb[2] = {ah.v, b.v};
  TensorView c_int = c, c_wide = c;
  c_int.dtype = DT_INT32;
  c_wide.shape[1] = 7;
  emu_readiness.ok = true;
  refuses(
      "float32 into a bfloat16 C", k_matmul, ab,
      [&] {
        TensorView t = c;
        t.dtype = DT_BFLOAT16;
        return t;
      }(),
      ST_DTYPE, "takes float32 and writes float32");
  refuses("mixed operand dtypes", k_matmul_bf16, ahb, c, ST_DTYPE, "takes bfloat16 and writes float32 or bfloat16");
  refuses("an int32 C", k_matmul_bf16, hh, c_int, ST_DTYPE, "writes float32 or bfloat16");
  refuses("a C of the wrong shape", k_matmul, ab, c_wide, ST_SHAPE, "[4, 5] x [5, 6] does not give [4, 7]");
  TensorView a3 = a.v;
  a3.ndim = 3, a3.shape[2] = 1, a3.strides[2] = 1;
  const TensorView ranks[2] = {a3, b.v};
  refuses("operands of different ranks", k_matmul, ranks, c, ST_SHAPE, "same rank >= 2");
  std::printf("matmul host path: %d checks, %d failures\n", emu_checks, emu_failures);
  return emu_failures ? 1 : 0;
}
