// Built when no CUDA compiler was found (or KILN_CUDA=OFF): the cuda backend reports why it is missing.
#include "kiln/cpu_dispatch.h"

namespace kiln {
CudaInfo cuda_info() {
  CudaInfo info;
  info.compiled = false;
  info.available = false;
  info.reason = "kiln was built without CUDA (no CUDA compiler found at build time, or KILN_CUDA=OFF)";
  return info;
}
}  // namespace kiln
