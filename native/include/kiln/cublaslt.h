// cuBLASLt (and kiln's own sm_90a kernel) for kiln's CUDA GEMMs, opened at run time when KILN_CUDA_CUBLASLT asks for it
// (native/cuda/cublaslt.cc). Used by kernels/cuda/matmul.cu and quant.cu; host code only, no cuBLAS header needed to
// build.
#pragma once
#include <cstdlib>
#include <cstring>
#include <string>

#include "kiln/cuda_runtime.h"
#include "kiln/gemm_plan.h"

namespace kiln {
namespace cuda {
/** One product for cuBLASLt: data pointers at each operand's first element, C contiguous. */
struct LtGemm {
  const void* a;
  const void* b;
  float* c;
  GemmOperands operands;
  bool bf16;  // A and B are bfloat16 (else float32)
  bool tf32;  // float32 inputs may round to TF32 (KILN_CUDA_GEMM=tf32)
  // when set, C goes here as bfloat16 (the bits of each float32 sum rounded to nearest even) instead of to c:
  // cuBLASLt (a bfloat16 D) and the Hopper kernel (its epilogue) write it; matmul.cu's own kernels write float32
  uint16_t* c_bf16 = nullptr;
};

/**
 * Runs the product on cuBLASLt when it is in use and takes these operands (*ran = true); otherwise leaves it to
 * kiln's kernel (*ran = false). A product cuBLASLt refuses falls back too, and the refusal shows in the reason.
 */
Status cublaslt_gemm(const LtGemm& g, bool* ran);
/** "cuBLASLt 12.4.5 (libcublasLt.so.12)" when in use, else ""; and why not when KILN_CUDA_CUBLASLT asked for it. */
void cublaslt_info(std::string* in_use, std::string* reason);

/**
 * kiln's own Hopper path for bfloat16 products, and float32 ones when g.tf32 (kernels/cuda/matmul_sm90.cu: TMA,
 * mbarriers, wgmma), given the same description: runs the product when KILN_CUDA_WGMMA=1 and the device is sm_90
 * (*ran = true), else leaves it to kiln's other kernels (*ran = false).
 */
Status wgmma_gemm(const LtGemm& g, bool* ran);
/** Whether KILN_CUDA_WGMMA=1 asks for the Hopper kernel (it is opt-in). */
inline bool wgmma_asked() {
  const char* e = std::getenv("KILN_CUDA_WGMMA");
  return e && std::strcmp(e, "1") == 0;
}
/** Whether wgmma_gemm takes products on this device, and why not when KILN_CUDA_WGMMA=1 asked for it. */
void wgmma_info(bool* in_use, std::string* reason);
}  // namespace cuda
}  // namespace kiln
