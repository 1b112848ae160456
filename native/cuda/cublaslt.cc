// cuBLASLt for the float32 and bfloat16 GEMMs, opened at run time when KILN_CUDA_CUBLASLT asks for it: "1" (or
// "on") looks for libcublasLt.so.13, .12 and .11 on the library path, anything else is the library's path. kiln
// neither links nor needs cuBLAS to build; where it is in use, every product kiln/gemm_plan.h can map onto one
// strided-batch call runs there, the rest on kiln's own kernels (kernels/cuda/matmul.cu). The few entry points
// used are declared below from cuBLASLt's stable C ABI (cublasLt.h, 11.0 and newer) rather than taken from a
// header at build time. Exact float32 runs with CUBLAS_COMPUTE_32F (no TF32, like kiln's default); KILN_CUDA_GEMM=
// tf32 selects CUBLAS_COMPUTE_32F_FAST_TF32; bfloat16 inputs accumulate in float32 and write float32, or bfloat16
// (each sum rounded to nearest even) where kiln's output is bfloat16.
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "kiln/cublaslt.h"
#include "kiln/gemm_plan.h"

namespace kiln {
namespace cuda {
namespace {

// cublasLt.h / library_types.h: handles are opaque pointers, enums are int, the algorithm is 64 opaque bytes
using LtHandle = void*;
using LtDesc = void*;
using LtLayout = void*;
using LtPref = void*;
struct LtAlgo {
  uint64_t data[8];
};
struct LtHeuristic {
  LtAlgo algo;
  size_t workspace_size;
  int state;
  float waves_count;
  int reserved[4];
};
enum : int { kOpN = 0, kOpT = 1 };
enum : int { kR32F = 0, kR16BF = 14 };
enum : int { kCompute32F = 68, kCompute32FFastTF32 = 77 };
enum : int { kDescTransA = 3, kDescTransB = 4 };
enum : int { kLayoutBatchCount = 5, kLayoutBatchOffset = 6 };
enum : int { kPrefMaxWorkspace = 1, kPrefAlignA = 5, kPrefAlignB = 6, kPrefAlignC = 7, kPrefAlignD = 8 };
constexpr uint64_t kWorkspaceBytes = 32ull << 20;  // what NVIDIA suggests for Hopper
constexpr size_t kMaxPlans = 512;                  // cached descriptors; the cache restarts when full

struct Plan {
  bool usable = false;
  LtDesc desc = nullptr;
  LtLayout first = nullptr, second = nullptr, d = nullptr;
  LtAlgo algo{};
};

struct Lt {
  std::mutex mu;
  void* lib = nullptr;
  std::string in_use;  // "cuBLASLt 12.4.5 (path)" once loaded
  std::string reason;  // why not, when asked for
  int (*Create)(LtHandle*) = nullptr;
  size_t (*GetVersion)() = nullptr;
  int (*DescCreate)(LtDesc*, int, int) = nullptr;
  int (*DescDestroy)(LtDesc) = nullptr;
  int (*DescSet)(LtDesc, int, const void*, size_t) = nullptr;
  int (*LayoutCreate)(LtLayout*, int, uint64_t, uint64_t, int64_t) = nullptr;
  int (*LayoutDestroy)(LtLayout) = nullptr;
  int (*LayoutSet)(LtLayout, int, const void*, size_t) = nullptr;
  int (*PrefCreate)(LtPref*) = nullptr;
  int (*PrefDestroy)(LtPref) = nullptr;
  int (*PrefSet)(LtPref, int, const void*, size_t) = nullptr;
  int (*Heuristic)(LtHandle, LtDesc, LtLayout, LtLayout, LtLayout, LtLayout, LtPref, int, LtHeuristic*, int*) = nullptr;
  int (*Matmul)(LtHandle, LtDesc, const void*, const void*, LtLayout, const void*, LtLayout, const void*, const void*,
                LtLayout, void*, LtLayout, const LtAlgo*, void*, size_t, cudaStream_t) = nullptr;
  LtHandle handle = nullptr;  // made at the first product, on the device
  bool handle_tried = false;
  void* workspace = nullptr;
  uint64_t workspace_bytes = 0;
  std::map<std::vector<int64_t>, Plan> plans;
};

template <typename F>
bool bind(void* lib, const char* name, F* f) {
  *f = reinterpret_cast<F>(dlsym(lib, name));
  return *f != nullptr;
}

/** Opens the library KILN_CUDA_CUBLASLT names and binds the entry points; sets in_use or reason. */
void open_library(Lt* x) {
  const char* env = std::getenv("KILN_CUDA_CUBLASLT");
  const std::string want = env ? env : "";
  if (want.empty() || want == "0" || want == "off") return;
  std::vector<std::string> names;
  if (want == "1" || want == "on")
    names = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11"};
  else
    names = {want};
  std::string errors;
  std::string path;
  for (const std::string& n : names) {
    x->lib = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (x->lib) {
      path = n;
      break;
    }
    const char* e = dlerror();
    errors += (errors.empty() ? "" : "; ") + std::string(e ? e : n + ": dlopen failed");
  }
  if (!x->lib) {
    x->reason = "KILN_CUDA_CUBLASLT=" + want + " but cuBLASLt could not be opened: " + errors;
    return;
  }
  const bool all = bind(x->lib, "cublasLtCreate", &x->Create) && bind(x->lib, "cublasLtGetVersion", &x->GetVersion) &&
                   bind(x->lib, "cublasLtMatmulDescCreate", &x->DescCreate) &&
                   bind(x->lib, "cublasLtMatmulDescDestroy", &x->DescDestroy) &&
                   bind(x->lib, "cublasLtMatmulDescSetAttribute", &x->DescSet) &&
                   bind(x->lib, "cublasLtMatrixLayoutCreate", &x->LayoutCreate) &&
                   bind(x->lib, "cublasLtMatrixLayoutDestroy", &x->LayoutDestroy) &&
                   bind(x->lib, "cublasLtMatrixLayoutSetAttribute", &x->LayoutSet) &&
                   bind(x->lib, "cublasLtMatmulPreferenceCreate", &x->PrefCreate) &&
                   bind(x->lib, "cublasLtMatmulPreferenceDestroy", &x->PrefDestroy) &&
                   bind(x->lib, "cublasLtMatmulPreferenceSetAttribute", &x->PrefSet) &&
                   bind(x->lib, "cublasLtMatmulAlgoGetHeuristic", &x->Heuristic) &&
                   bind(x->lib, "cublasLtMatmul", &x->Matmul);
  if (!all) {
    x->reason = path + " is not cuBLASLt (it lacks cublasLtMatmul or another entry point kiln uses)";
    x->lib = nullptr;
    return;
  }
  const size_t v = x->GetVersion();
  const std::string version =
      std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
  if (v < 110000) {
    x->reason = path + " is cuBLASLt " + version + ": kiln needs 11.0 or newer";
    x->lib = nullptr;
    return;
  }
  x->in_use = "cuBLASLt " + version + " (" + path + ")";
}

Lt& lt() {
  static Lt* l = [] {
    auto* x = new Lt();
    open_library(x);
    return x;
  }();
  return *l;
}

/** The largest power of two up to 256 that divides the address: cuBLASLt picks kernels by it. */
uint32_t alignment(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 1 && a % al != 0) al /= 2;
  return al;
}

void destroy(Lt& l, Plan* p) {
  if (p->desc) l.DescDestroy(p->desc);
  for (LtLayout y : {p->first, p->second, p->d})
    if (y) l.LayoutDestroy(y);
  *p = Plan();
}

bool layout(Lt& l, const BlasMatrix& m, int type, int64_t batch, LtLayout* out) {
  if (l.LayoutCreate(out, type, static_cast<uint64_t>(m.rows), static_cast<uint64_t>(m.cols), m.ld) != 0) return false;
  if (batch == 1) return true;
  const int32_t count = static_cast<int32_t>(batch);
  const int64_t stride = m.batch_stride;
  return l.LayoutSet(*out, kLayoutBatchCount, &count, sizeof count) == 0 &&
         l.LayoutSet(*out, kLayoutBatchOffset, &stride, sizeof stride) == 0;
}

/** Descriptors and the heuristic's first algorithm for one plan; usable = false when cuBLASLt offers none. */
Plan make_plan(Lt& l, const BlasGemm& p, int in_type, int out_type, bool tf32, const uint32_t align[4]) {
  Plan r;
  const int compute = in_type == kR32F && tf32 ? kCompute32FFastTF32 : kCompute32F;
  const int32_t ta = p.first.trans ? kOpT : kOpN, tb = p.second.trans ? kOpT : kOpN;
  if (l.DescCreate(&r.desc, compute, kR32F) != 0 || l.DescSet(r.desc, kDescTransA, &ta, sizeof ta) != 0 ||
      l.DescSet(r.desc, kDescTransB, &tb, sizeof tb) != 0 || !layout(l, p.first, in_type, p.batch, &r.first) ||
      !layout(l, p.second, in_type, p.batch, &r.second) || !layout(l, p.d, out_type, p.batch, &r.d)) {
    destroy(l, &r);
    return r;
  }
  LtPref pref = nullptr;
  if (l.PrefCreate(&pref) != 0) {
    destroy(l, &r);
    return r;
  }
  const uint64_t ws = l.workspace_bytes;
  bool set = l.PrefSet(pref, kPrefMaxWorkspace, &ws, sizeof ws) == 0;
  const int which[4] = {kPrefAlignA, kPrefAlignB, kPrefAlignC, kPrefAlignD};
  for (int i = 0; i < 4; ++i) set = set && l.PrefSet(pref, which[i], &align[i], sizeof align[i]) == 0;
  LtHeuristic h{};
  int found = 0;
  if (set && l.Heuristic(l.handle, r.desc, r.first, r.second, r.d, r.d, pref, 1, &h, &found) == 0 && found > 0 &&
      h.state == 0) {
    r.algo = h.algo;
    r.usable = true;
  }
  l.PrefDestroy(pref);
  if (!r.usable) destroy(l, &r);
  return r;
}
}  // namespace

void cublaslt_info(std::string* in_use, std::string* reason) {
  Lt& l = lt();
  std::lock_guard<std::mutex> lock(l.mu);
  *in_use = l.in_use;
  *reason = l.reason;
}

Status cublaslt_gemm(const LtGemm& g, bool* ran) {
  *ran = false;
  Lt& l = lt();
  if (!l.lib || !ready()) return Status::ok();
  BlasGemm p{};
  if (!plan_gemm(g.operands, &p)) return Status::ok();
  std::lock_guard<std::mutex> lock(l.mu);
  if (!l.handle_tried) {
    l.handle_tried = true;
    const int rc = l.Create(&l.handle);
    if (rc != 0) {
      l.handle = nullptr;
      l.reason = "cublasLtCreate failed (status " + std::to_string(rc) + ")";
      l.in_use.clear();
    } else if (alloc(kWorkspaceBytes, &l.workspace).good()) {
      l.workspace_bytes = kWorkspaceBytes;
    } else {
      l.workspace = nullptr;  // no workspace: cuBLASLt picks among the algorithms that need none
    }
  }
  if (!l.handle) return Status::ok();
  const int in_type = g.bf16 ? kR16BF : kR32F, out_type = g.c_bf16 ? kR16BF : kR32F;
  void* d = g.c_bf16 ? static_cast<void*>(g.c_bf16) : static_cast<void*>(g.c);
  // the second BLAS operand is kiln's A, the first kiln's B (see kiln/gemm_plan.h)
  const uint32_t align[4] = {alignment(g.b), alignment(g.a), alignment(d), alignment(d)};
  std::vector<int64_t> key = {in_type,
                              out_type,
                              g.tf32,
                              p.m,
                              p.n,
                              p.k,
                              p.batch,
                              p.first.rows,
                              p.first.cols,
                              p.first.ld,
                              p.first.trans,
                              p.first.batch_stride,
                              p.second.rows,
                              p.second.cols,
                              p.second.ld,
                              p.second.trans,
                              p.second.batch_stride,
                              align[0],
                              align[1],
                              align[2]};
  auto it = l.plans.find(key);
  if (it == l.plans.end()) {
    if (l.plans.size() >= kMaxPlans) {
      for (auto& kv : l.plans) destroy(l, &kv.second);
      l.plans.clear();
    }
    it = l.plans.emplace(key, make_plan(l, p, in_type, out_type, g.tf32, align)).first;
  }
  const Plan& plan = it->second;
  if (!plan.usable) return Status::ok();
  const float one = 1.f, zero = 0.f;
  const int rc = l.Matmul(l.handle, plan.desc, &one, g.b, plan.first, g.a, plan.second, &zero, d, plan.d, d, plan.d,
                          &plan.algo, l.workspace, l.workspace_bytes, static_cast<cudaStream_t>(stream_handle()));
  if (rc != 0) {  // kiln's kernel takes this shape from now on; the reason says what happened
    destroy(l, &it->second);
    l.reason = "cublasLtMatmul returned status " + std::to_string(rc) + " for a " + std::to_string(p.m) + "x" +
               std::to_string(p.n) + "x" + std::to_string(p.k) + " product; kiln's kernel runs that shape";
    return Status::ok();
  }
  *ran = true;
  return Status::ok();
}
}  // namespace cuda
}  // namespace kiln
