// KILN_HD marks functions that run on the host and, when nvcc compiles the header, on the device too.
#pragma once

#ifdef __CUDACC__
#define KILN_HD __host__ __device__
#else
#define KILN_HD
#endif
