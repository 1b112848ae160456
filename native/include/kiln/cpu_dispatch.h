#pragma once
#include <string>

#include "kiln/tensor_view.h"

namespace kiln {
int isa_index(const std::string& name);  // -1 if unknown
const char* isa_name(int idx);
int active_isa();
bool isa_supported(int idx);
bool set_isa(int idx);
const std::string& isa_error();
KernelFn kernel_for(int op);
KernelFn kernel_for_isa(int isa, int op);
// the active ISA's FMA loop (see KernelTable::fma_loop): flops done in `iters` rounds
double fma_loop(int64_t iters);
int num_threads();
void set_num_threads(int n);

// CUDA (native/cuda/device.cc when built with CUDA, native/cuda/no_cuda.cc otherwise)
struct CudaInfo {
  bool compiled = false;
  bool available = false;
  int device_count = 0;
  std::string reason;  // why it is unavailable
  std::string name;    // device 0
  int cc_major = 0, cc_minor = 0;
  std::string matmul;           // float32 GEMM mode: "fp32" (exact, default) or "tf32" (KILN_CUDA_GEMM=tf32)
  std::string cublaslt;         // "cuBLASLt 12.4.5 (libcublasLt.so.12)" when KILN_CUDA_CUBLASLT put it in use
  std::string cublaslt_reason;  // why not, when KILN_CUDA_CUBLASLT asked for it
  bool wgmma = false;           // bfloat16 (and opted-in TF32) products on the sm_90a wgmma kernel (KILN_CUDA_WGMMA=1)
  std::string wgmma_reason;     // why not, when KILN_CUDA_WGMMA=1 asked for it
};
CudaInfo cuda_info();
}  // namespace kiln
