// Built when CMake found a CUDA compiler: device discovery through the CUDA runtime (linked statically).
// Every runtime call's return code is checked; a machine without a GPU or driver is reported, never fatal.
#include <cuda_runtime_api.h>

#include <string>

#include "kiln/cpu_dispatch.h"

namespace kiln {
CudaInfo cuda_info() {
  CudaInfo info;
  info.compiled = true;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    info.reason = std::string("no CUDA device: ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
    cudaGetLastError();  // clear the sticky-free error state
    return info;
  }
  if (count == 0) {
    info.reason = "no CUDA device: the driver reports 0 devices";
    return info;
  }
  info.device_count = count;
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    info.reason = "no CUDA device: cudaGetDeviceProperties failed";
    return info;
  }
  info.name = prop.name;
  info.cc_major = prop.major;
  info.cc_minor = prop.minor;
  // The kernels arrive with the CUDA backend issue; until then the device is reported but not used.
  info.reason = "CUDA device found (" + info.name + ") but this build has no CUDA kernels yet";
  info.available = false;
  return info;
}
}  // namespace kiln
