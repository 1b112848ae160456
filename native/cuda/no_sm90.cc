// The Hopper GEMM's entry points for an nvcc older than 12.5 (kernels/cuda/matmul_sm90.cu needs sm_90a code and
// cudaGetDriverEntryPointByVersion): bfloat16 products stay on the WMMA kernel.
#include <string>

#include "kiln/cublaslt.h"

namespace kiln {
namespace cuda {
Status wgmma_gemm(const LtGemm&, bool* ran) {
  *ran = false;
  return Status::ok();
}
void wgmma_info(bool* in_use, std::string* reason) {
  *in_use = false;
  *reason =
      wgmma_asked()
          ? "KILN_CUDA_WGMMA=1 but this kiln_cuda.so was built by an nvcc older than 12.5, without the sm_90a kernel"
          : "";
}
}  // namespace cuda
}  // namespace kiln
