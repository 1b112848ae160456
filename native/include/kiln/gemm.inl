// Declared inside each ISA pass: the float32 GEMM that matmul and conv share.
// C[M,N] (row stride ldc) = (accumulate ? C : 0) + A[M,K] * B[K,N]; A and B take any element strides.
struct GemmArgs {
  int64_t M, N, K;
  const float* A;
  int64_t rsA, csA;
  const float* B;
  int64_t rsB, csB;
  float* C;
  int64_t ldc;
  bool accumulate;
  bool parallel;
};
void sgemm(const GemmArgs& g);

// The micro-kernel's tile (rows of A x columns of B per register block) and the row count up to which sgemm
// skips packing: callers that can choose an orientation pick the one that wastes less of the tile.
static constexpr int kGemmNR = 2 * kVL;
static constexpr int kGemmMR = kVL == 16 ? 12 : 6;
static constexpr int64_t kGemmSmallM = 8;
