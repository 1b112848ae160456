// Expands the kernel body of the including file (KILN_ISA_FILE) once per instruction set, each in its own
// namespace and compiled for that target, so one binary carries AVX-512, AVX2 and baseline kernels and picks
// one at run time (or as forced by KILN_CPU_ISA). Templates from std headers are defined outside these regions
// and keep the baseline target, so no AVX code can leak into shared (COMDAT) functions.
#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,prefer-vector-width=512")
#define KILN_ISA avx512
#define KILN_VEC_BYTES 64
namespace kiln {
namespace avx512 {
#include KILN_ISA_FILE
}
}  // namespace kiln
#undef KILN_ISA
#undef KILN_VEC_BYTES
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#define KILN_ISA avx2
#define KILN_VEC_BYTES 32
namespace kiln {
namespace avx2 {
#include KILN_ISA_FILE
}
}  // namespace kiln
#undef KILN_ISA
#undef KILN_VEC_BYTES
#pragma GCC pop_options
#endif

#define KILN_ISA scalar
#define KILN_VEC_BYTES 16
namespace kiln {
namespace scalar {
#include KILN_ISA_FILE
}
}  // namespace kiln
#undef KILN_ISA
#undef KILN_VEC_BYTES
