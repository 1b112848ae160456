// cuBLASLt on the CPU emulation: the C entry points native/cuda/cublaslt.cc opens, with the semantics NVIDIA's
// cuBLASLt documentation gives them, over the emulation's device memory (host memory). test/emulate.ts builds it
// as a shared library beside the emulated kiln_cuda.so, and test/cuda-emu.test.ts opens it as cuBLASLt
// (KILN_CUDA_CUBLASLT=<its path>), so kiln's use of cuBLASLt runs the suites against the float64 reference: the
// column-major reading of each row-major product, transposes, leading dimensions, strided batches, the
// attributes' codes, types and sizes, the plan cache, alpha and beta, and float32 or bfloat16 in and out.
//
// It is as strict as the documentation: a call with an attribute or size it does not define, a type combination
// cuBLASLt does not list, dimensions that do not chain, or a leading dimension shorter than a column is refused
// (CUBLAS_STATUS_INVALID_VALUE or _NOT_SUPPORTED), and so is a cublasLtMatmul whose algorithm the heuristic gave
// for another problem, alignment or workspace, or whose pointers lack the alignment the preference promised. A
// refusal is not an error for kiln (its own kernel takes the product), so each is written, with what it was, to
// the file KILN_EMU_CUBLASLT_LOG names, at exit, with the number of products run (and of those with bfloat16
// inputs, a bfloat16 D, and more than one batch).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "emu_log.h"
#include "kiln/tensor_view.h"

namespace {
constexpr int kOk = 0, kInvalid = 7, kNotSupported = 15;
constexpr int kR32F = 0, kR16BF = 14;                  // cudaDataType_t
constexpr int kCompute32F = 68, kCompute32FTF32 = 77;  // cublasComputeType_t

struct Desc {
  int compute, scale;
  int32_t trans_a = 0, trans_b = 0;  // CUBLAS_OP_N
};
struct Layout {
  int type;
  uint64_t rows, cols;
  int64_t ld;
  int32_t batch = 1;
  int64_t batch_stride = 0;
};
struct Pref {
  uint64_t workspace = 0;
  uint32_t align[4] = {256, 256, 256, 256};  // A, B, C, D: cuBLASLt's default is 256 bytes
};
// what the heuristic's algorithm carries: the problem it was chosen for, and what it needs
struct Algo {
  uint64_t problem;
  uint64_t workspace;
  uint32_t align[4];
  uint32_t magic;
};
constexpr uint32_t kMagic = 0x6b696c6e;
static_assert(sizeof(Algo) <= 64, "cublasLtMatmulAlgo_t is 64 bytes");

// calls run: all, bfloat16 A and B, bfloat16 D, more than one batch, A transposed, B transposed, inputs read as TF32
EmuLog state("KILN_EMU_CUBLASLT_LOG", {"products", "bf16-inputs", "bf16-d", "batched", "trans-a", "trans-b", "tf32"});
int refuse(int code, const std::string& what) { return state.refuse(code, what); }

uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * 0x100000001b3ull + 0x9e3779b97f4a7c15ull; }
uint64_t fingerprint(const Desc& d, const Layout* l[4]) {
  uint64_t h = mix(mix(mix(0, d.compute), d.trans_a), d.trans_b);
  for (int i = 0; i < 4; ++i)
    for (uint64_t v : {uint64_t(l[i]->type), l[i]->rows, l[i]->cols, uint64_t(l[i]->ld), uint64_t(l[i]->batch),
                       uint64_t(l[i]->batch_stride)})
      h = mix(h, v);
  return h;
}

/** The problem's checks, common to the heuristic and the product: "" when cuBLASLt takes it, else why not. */
std::string check(const Desc& d, const Layout* l[4], uint64_t* m, uint64_t* n, uint64_t* k) {
  const Layout &a = *l[0], &b = *l[1], &c = *l[2], &o = *l[3];
  if (d.scale != kR32F) return "scale type " + std::to_string(d.scale) + " with compute type 32F";
  const bool bf16 = a.type == kR16BF;
  if (a.type != b.type || (a.type != kR32F && !bf16))
    return "A and B types " + std::to_string(a.type) + ", " + std::to_string(b.type);
  if (c.type != o.type) return "C type differs from D type";
  if (!bf16 && o.type != kR32F) return "float32 A and B with a D that is not float32";
  if (bf16 && o.type != kR32F && o.type != kR16BF) return "bfloat16 A and B with D type " + std::to_string(o.type);
  if (bf16 && d.compute != kCompute32F) return "bfloat16 inputs with compute type " + std::to_string(d.compute);
  *m = o.rows;
  *n = o.cols;
  *k = d.trans_a ? a.rows : a.cols;
  const uint64_t am = d.trans_a ? a.cols : a.rows, bk = d.trans_b ? b.cols : b.rows, bn = d.trans_b ? b.rows : b.cols;
  if (am != *m || bk != *k || bn != *n || c.rows != o.rows || c.cols != o.cols)
    return "dimensions that do not chain: op(A) " + std::to_string(am) + "x" + std::to_string(*k) + ", op(B) " +
           std::to_string(bk) + "x" + std::to_string(bn) + ", D " + std::to_string(*m) + "x" + std::to_string(*n);
  for (int i = 0; i < 4; ++i) {
    if (l[i]->ld < static_cast<int64_t>(std::max<uint64_t>(1, l[i]->rows)))
      return "a leading dimension " + std::to_string(l[i]->ld) + " under " + std::to_string(l[i]->rows) + " rows";
    if (l[i]->batch != o.batch) return "batch counts that differ";
  }
  if (o.batch > 1 && (o.batch_stride < static_cast<int64_t>(o.rows * o.cols) && o.cols > 0))
    return "a D batch stride under one matrix, so products overwrite each other";
  return "";
}

float tf32(float v) {  // cuBLAS's FAST_TF32 rounds inputs to 10 mantissa bits
  uint32_t b = kiln::f32_bits(v);
  if ((b & 0x7f800000u) != 0x7f800000u) b = (b + 0x1000u) & ~0x1fffu;
  return kiln::bits_f32(b);
}
float load(const Layout& l, const void* p, int64_t at) {
  return l.type == kR16BF ? kiln::bf16_to_float(static_cast<const uint16_t*>(p)[at]) : static_cast<const float*>(p)[at];
}
bool aligned(const void* p, uint32_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }
}  // namespace

extern "C" {
int cublasLtCreate(void** handle) {
  *handle = new int(1);
  return kOk;
}
size_t cublasLtGetVersion() { return 130100; }

int cublasLtMatmulDescCreate(void** desc, int compute, int scale) {
  if (compute != kCompute32F && compute != kCompute32FTF32)
    return refuse(kNotSupported, "compute type " + std::to_string(compute));
  *desc = new Desc{compute, scale};
  return kOk;
}
int cublasLtMatmulDescDestroy(void* desc) {
  delete static_cast<Desc*>(desc);
  return kOk;
}
int cublasLtMatmulDescSetAttribute(void* desc, int attr, const void* buf, size_t size) {
  auto* d = static_cast<Desc*>(desc);
  if ((attr != 3 && attr != 4) || size != sizeof(int32_t))  // CUBLASLT_MATMUL_DESC_TRANSA, _TRANSB: int32_t
    return refuse(kInvalid, "matmul desc attribute " + std::to_string(attr) + " of " + std::to_string(size) + " bytes");
  int32_t v;
  std::memcpy(&v, buf, sizeof v);
  if (v != 0 && v != 1) return refuse(kInvalid, "cublasOperation_t " + std::to_string(v));
  (attr == 3 ? d->trans_a : d->trans_b) = v;
  return kOk;
}

int cublasLtMatrixLayoutCreate(void** layout, int type, uint64_t rows, uint64_t cols, int64_t ld) {
  *layout = new Layout{type, rows, cols, ld};
  return kOk;
}
int cublasLtMatrixLayoutDestroy(void* layout) {
  delete static_cast<Layout*>(layout);
  return kOk;
}
int cublasLtMatrixLayoutSetAttribute(void* layout, int attr, const void* buf, size_t size) {
  auto* l = static_cast<Layout*>(layout);
  if (attr == 5 && size == sizeof(int32_t)) {  // CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: int32_t
    std::memcpy(&l->batch, buf, size);
    return l->batch >= 1 ? kOk : refuse(kInvalid, "batch count " + std::to_string(l->batch));
  }
  if (attr == 6 && size == sizeof(int64_t)) {  // CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: int64_t
    std::memcpy(&l->batch_stride, buf, size);
    return kOk;
  }
  return refuse(kInvalid, "layout attribute " + std::to_string(attr) + " of " + std::to_string(size) + " bytes");
}

int cublasLtMatmulPreferenceCreate(void** pref) {
  *pref = new Pref();
  return kOk;
}
int cublasLtMatmulPreferenceDestroy(void* pref) {
  delete static_cast<Pref*>(pref);
  return kOk;
}
int cublasLtMatmulPreferenceSetAttribute(void* pref, int attr, const void* buf, size_t size) {
  auto* p = static_cast<Pref*>(pref);
  if (attr == 1 && size == sizeof(uint64_t)) {  // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: uint64_t
    std::memcpy(&p->workspace, buf, size);
    return kOk;
  }
  if (attr >= 5 && attr <= 8 && size == sizeof(uint32_t)) {  // _MIN_ALIGNMENT_A/B/C/D_BYTES: uint32_t
    std::memcpy(&p->align[attr - 5], buf, size);
    const uint32_t a = p->align[attr - 5];
    return a != 0 && (a & (a - 1)) == 0 ? kOk : refuse(kInvalid, "alignment " + std::to_string(a));
  }
  return refuse(kInvalid, "preference attribute " + std::to_string(attr) + " of " + std::to_string(size) + " bytes");
}

int cublasLtMatmulAlgoGetHeuristic(void* handle, void* desc, void* A, void* B, void* C, void* D, void* pref,
                                   int requested, void* results, int* returned) {
  *returned = 0;
  if (!handle || requested < 1) return refuse(kInvalid, "heuristic without a handle or a result to fill");
  const Desc& d = *static_cast<Desc*>(desc);
  const Layout* l[4] = {static_cast<Layout*>(A), static_cast<Layout*>(B), static_cast<Layout*>(C),
                        static_cast<Layout*>(D)};
  uint64_t m, n, k;
  if (std::string why = check(d, l, &m, &n, &k); !why.empty()) return refuse(kNotSupported, "heuristic: " + why);
  const Pref& p = *static_cast<Pref*>(pref);
  // cublasLtMatmulHeuristicResult_t: the 64-byte algorithm, workspaceSize, state, wavesCount, reserved[4]
  Algo algo{fingerprint(d, l), p.workspace >= (1u << 20) ? 1u << 20 : 0, {}, kMagic};
  std::memcpy(algo.align, p.align, sizeof algo.align);
  char* r = static_cast<char*>(results);
  std::memset(r, 0, 96);
  std::memcpy(r, &algo, sizeof algo);
  const size_t ws = algo.workspace;
  std::memcpy(r + 64, &ws, sizeof ws);
  const float waves = 1.f;
  std::memcpy(r + 76, &waves, sizeof waves);
  *returned = 1;
  return kOk;
}

int cublasLtMatmul(void* handle, void* desc, const void* alpha, const void* A, void* Adesc, const void* B, void* Bdesc,
                   const void* beta, const void* C, void* Cdesc, void* Dp, void* Ddesc, const void* algo_p,
                   void* workspace, size_t workspace_bytes, void* /*stream: the emulation runs each call at once*/) {
  if (!handle || !algo_p) return refuse(kInvalid, "matmul without a handle or an algorithm");
  const Desc& d = *static_cast<Desc*>(desc);
  const Layout* l[4] = {static_cast<Layout*>(Adesc), static_cast<Layout*>(Bdesc), static_cast<Layout*>(Cdesc),
                        static_cast<Layout*>(Ddesc)};
  uint64_t m, n, k;
  if (std::string why = check(d, l, &m, &n, &k); !why.empty()) return refuse(kInvalid, "matmul: " + why);
  Algo algo;
  std::memcpy(&algo, algo_p, sizeof algo);
  if (algo.magic != kMagic || algo.problem != fingerprint(d, l))
    return refuse(kInvalid, "matmul with an algorithm the heuristic gave for another problem");
  if (workspace_bytes < algo.workspace || (algo.workspace && !workspace))
    return refuse(kInvalid, "matmul with less workspace than its algorithm needs");
  const void* ptr[4] = {A, B, C, Dp};
  for (int i = 0; i < 4; ++i)
    if (!aligned(ptr[i], algo.align[i]))
      return refuse(kInvalid, std::string("matmul: operand ") + "ABCD"[i] + " is not aligned to the " +
                                  std::to_string(algo.align[i]) + " bytes its algorithm was chosen for");
  float al, be;
  std::memcpy(&al, alpha, sizeof al);  // CUBLASLT_POINTER_MODE_HOST: scalars in host memory, of the scale type
  std::memcpy(&be, beta, sizeof be);
  const Layout &a = *l[0], &b = *l[1], &c = *l[2], &o = *l[3];
  const bool round_tf32 = d.compute == kCompute32FTF32;
  for (int32_t z = 0; z < o.batch; ++z)
    for (uint64_t j = 0; j < n; ++j)
      for (uint64_t i = 0; i < m; ++i) {
        float s = 0.f;
        for (uint64_t p = 0; p < k; ++p) {  // column-major: element (r, q) of X at r + q ld
          const int64_t ia = z * a.batch_stride + (d.trans_a ? p + i * a.ld : i + p * a.ld);
          const int64_t ib = z * b.batch_stride + (d.trans_b ? j + p * b.ld : p + j * b.ld);
          float x = load(a, A, ia), y = load(b, B, ib);
          if (round_tf32) x = tf32(x), y = tf32(y);
          s = std::fma(x, y, s);
        }
        float v = al * s;
        const int64_t ic = z * c.batch_stride + i + j * c.ld, id = z * o.batch_stride + i + j * o.ld;
        if (be != 0.f) v += be * load(c, C, ic);  // beta = 0: C is not read (it may hold NaN)
        if (o.type == kR16BF)
          static_cast<uint16_t*>(Dp)[id] = kiln::float_to_bf16(v);
        else
          static_cast<float*>(Dp)[id] = v;
      }
  state.count({true, a.type == kR16BF, o.type == kR16BF, o.batch > 1, d.trans_a != 0, d.trans_b != 0, round_tf32});
  return kOk;
}
}  // extern "C"
