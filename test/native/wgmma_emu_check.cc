// Runs kiln's Hopper GEMM (kernels/cuda/matmul_sm90.cu's run_gemm, with its plan, operand packing, tensor maps
// and the gemm_sm90 kernel, copied verbatim by test/native.test.ts) on the CPU emulation of sm90_emu.h, and
// compares every element of C with the exact product. The inputs are multiples of 1/4 in
// [-2, 2], exact in bfloat16 and TF32, and the sums stay exact in float32, so any misplaced row, column, k-slice,
// stage or tile shows as a wrong value whatever order the tensor cores add in.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "sm90_emu.h"
#include "kiln/cublaslt.h"

namespace kiln {
namespace cuda {
#include "sm90_emu_kernels.inc"
}  // namespace cuda
}  // namespace kiln
using namespace kiln;
using namespace kiln::cuda;

template <class T>
static T from_float(float x) {
  if constexpr (std::is_same<T, float>::value)
    return x;
  else
    return __float2bfloat16_rn(x);
}

struct Case {
  const char* what;
  bool tf32;  // float32 operands as TF32, else bfloat16
  GemmOperands g;
  unsigned sms;           // blocks of the persistent grid (the GPU's SM count): fewer than the tiles
  int64_t a_offset;       // elements A starts past its buffer's 16-byte-aligned start
  bool bf16_out = false;  // C as bfloat16 (LtGemm::c_bf16), each exact sum rounded to nearest even
};

/** The product through run_gemm (kernels/cuda/matmul_sm90.cu) on `sms` SMs, the TMA copies landing at once or late. */
template <class T>
static void check(const Case& cs, bool late) {
  const GemmOperands& o = cs.g;
  const char* type = std::is_same<T, float>::value ? "tf32" : "bf16";
  const std::string what = std::string("wgmma GEMM (emulated sm_90a), ") + type + ", " + cs.what +
                           (late ? ", copies landing late" : ", copies landing at once");
  std::mt19937 rng(17);
  const auto fill = [&](std::vector<T>& v) {
    for (T& x : v) x = from_float<T>(float(int(rng() % 17) - 8) / 4);
  };
  const auto extent = [&](int64_t rows, int64_t cols, int64_t rs, int64_t cs_, int64_t bs) {
    return (o.batch - 1) * bs + (rows - 1) * rs + (cols - 1) * cs_ + 1;
  };
  std::vector<T> abuf(cs.a_offset + extent(o.M, o.K, o.rsA, o.csA, o.bsA)), b(extent(o.K, o.N, o.rsB, o.csB, o.bsB));
  fill(abuf);
  fill(b);
  const T* a = abuf.data() + cs.a_offset;
  std::vector<float> c(o.batch * o.M * o.N, NAN);
  std::vector<uint16_t> cb(cs.bf16_out ? c.size() : 0, 0xFFFF);  // NaNs until written

  emu_faults = 0;
  emu_abort = false;
  emu_tma_late = late;
  emu_sm_count = static_cast<int>(cs.sms);
  emu_traces.clear();
  bool ran = false;
  // a bfloat16 C comes with no float32 c, as matmul.cu's matmul_into asks for it
  LtGemm g{a,
           b.data(),
           cs.bf16_out ? nullptr : c.data(),
           o,
           std::is_same<T, __nv_bfloat16>::value,
           std::is_same<T, float>::value};
  if (cs.bf16_out) g.c_bf16 = cb.data();
  const Status st = run_gemm<T>(g, &ran);

  // what run_gemm decided, for the report
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const KMajorPlan plan = plan_k_major(o, 16 / sizeof(T), aligned(a), aligned(b.data()), !cs.tf32);
  const int64_t tiles = plan.batch * ((plan.M + kWgBM - 1) / kWgBM) * ((plan.N + kWgBN - 1) / kWgBN);
  const size_t blocks = emu_traces.size() / 384;
  // warpgroup 0 issues no wgmma; each consumer warpgroup's 128 threads issue the same ones
  int64_t diverged = 0;
  for (size_t blk = 0; blk < blocks; ++blk)
    for (size_t t = 0; t < 384; ++t) {
      const uint64_t want = t < 128 ? 0 : emu_traces[blk * 384 + (t / 128) * 128];
      diverged += emu_traces[blk * 384 + t] != want || (t >= 128 && want == 0);
    }
  int64_t wrong = 0, first = -1;
  for (int64_t z = 0; z < o.batch; ++z)
    for (int64_t m = 0; m < o.M; ++m)
      for (int64_t n = 0; n < o.N; ++n) {
        double s = 0;
        for (int64_t k = 0; k < o.K; ++k)
          s += double(nvcuda::wmma::elem(a[z * o.bsA + m * o.rsA + k * o.csA])) *
               nvcuda::wmma::elem(b[z * o.bsB + k * o.rsB + n * o.csB]);
        const int64_t at = (z * o.M + m) * o.N + n;
        const bool right = cs.bf16_out ? cb[at] == float_to_bf16(static_cast<float>(s)) && std::isnan(c[at])
                                       : c[at] == static_cast<float>(s);
        if (!right && wrong++ == 0) first = at;
      }
  char shape[200];
  const auto how = [](const KMajor& op) { return op.mn_major ? "MN-major" : op.in_place ? "K-major" : "packed"; };
  std::snprintf(shape, sizeof shape, " [%ld products of %ldx%ldx%ld; A %s, B %s; %ld tiles on %zu blocks]",
                long(o.batch), long(o.M), long(o.N), long(o.K), how(plan.a), how(plan.b), long(tiles), blocks);
  std::string detail = what + shape;
  if (!st.good()) detail += ": run_gemm failed: " + st.message;
  if (!ran) detail += ": run_gemm did not run the kernel";
  if (emu_scratch_live != 0) detail += ": scratch memory not released";
  if (wrong) detail += ": " + std::to_string(wrong) + " wrong elements, the first at " + std::to_string(first);
  if (diverged) detail += ": " + std::to_string(diverged) + " threads issued other wgmma than their warpgroup";
  if (emu_faults) detail += ": " + std::to_string(emu_faults.load()) + " faults, the first: " + emu_first_fault;
  expect(st.good() && ran && emu_scratch_live == 0 && wrong == 0 && diverged == 0 && emu_faults == 0, detail);
}

int main() {
  // what, TF32 (else bf16), GemmOperands {M, N, K, rsA, csA, rsB, csB, batch, bsA, bsB}, SMs, A's offset
  // clang-format off
  const Case cases[] = {
      {"A [2, 150, 264] by B^T [300, 264], both in place; 5 k-steps over a 4-stage ring", false,
       {150, 300, 264, 264, 1, 1, 264, 2, 150 * 264, 300 * 264}, 3, 0},
      {"plain A [260, 100] @ B [100, 270], both packed (K 100 padded to 104)", false,
       {260, 270, 100, 100, 1, 270, 1, 1, 0, 0}, 2, 0},
      {"A [3, 70, 64] (unaligned: packed) @ a B [64, 40] shared by the 3 (folded into one product)", false,
       {70, 40, 64, 64, 1, 40, 1, 3, 70 * 64, 0}, 1, 1},
      {"A [2, 130, 68] in place @ plain B [2, 68, 260] packed", true,
       {130, 260, 68, 68, 1, 260, 1, 2, 130 * 68, 68 * 260}, 3, 0},
      {"A^T view [130, 33] packed (K padded to 36) by B^T [200, 33] in place with rows 36 apart", true,
       {130, 200, 33, 1, 130, 1, 36, 1, 0, 0}, 2, 0},
      {"plain A [2, 136, 96] (K-major) @ plain B [2, 96, 264] (MN-major), both in place", false,
       {136, 264, 96, 96, 1, 264, 1, 2, 136 * 96, 96 * 264}, 3, 0},
      {"A^T view [200, 72] (MN-major) by B^T [130, 72] (K-major), both in place", false,
       {200, 130, 72, 1, 200, 1, 72, 1, 0, 0}, 2, 0},
      {"A^T [2, 144, 300] @ plain B [2, 300, 96], both MN-major; 5 k-steps over a 4-stage ring", false,
       {144, 96, 300, 1, 144, 96, 1, 2, 300 * 144, 300 * 96}, 3, 0},
      {"plain A [2, 136, 96] @ plain B [2, 96, 264], C written as bfloat16", false,
       {136, 264, 96, 96, 1, 264, 1, 2, 136 * 96, 96 * 264}, 3, 0, true},
      {"A [150, 264] by B^T [300, 264] (K-major), C written as bfloat16", false,
       {150, 300, 264, 264, 1, 1, 264, 1, 0, 0}, 2, 0, true},
  };
  // clang-format on
  for (bool late : {false, true})
    for (const Case& cs : cases) cs.tf32 ? check<float>(cs, late) : check<__nv_bfloat16>(cs, late);
  std::printf("sm90 emulation: %d checks, %d failures\n", emu_checks, emu_failures);
  return emu_failures ? 1 : 0;
}
