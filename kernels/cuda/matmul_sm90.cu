// bfloat16 GEMM (and float32 as TF32, when KILN_CUDA_GEMM=tf32 allows it) on Hopper's tensor cores (sm_90a), for
// kernels/cuda/matmul.cu: TMA copies each k-step's A and B tiles into 128-byte-swizzled shared memory through a
// ring of kStages buffers, each guarded by two mbarriers ("full": the copy has landed; "empty": both consumers are
// done with it), and wgmma.mma_async multiplies them straight from shared memory into float32 accumulators in
// registers. A block of 384 threads computes 128x256 tiles of C (256 columns: 43 multiply-adds per byte brought
// in, against 32 for a square 128 tile), one after another (a persistent block per SM, tiles in bands for L2):
// warpgroup 0 is the producer (one thread issues the copies), warpgroups 1 and 2 each compute 64 rows with
// m64n256k16 (bfloat16) or m64n256k8 (TF32) instructions, four per k-step of 128 bytes, one step's group of MMAs
// in flight while the next is awaited. 160 registers, no spills (ptxas, sm_90a; 168 is the most 384 threads
// allow).
//
// An operand laid out K-major (A as [M][K], B as [N][K], rows 16-byte aligned) is read in place through its
// tensor map; a bfloat16 one with its rows contiguous instead (B of a plain A @ B, a transposed A) is read in place
// MN-major, through wgmma's transpose immediates; any other (odd strides, K not a multiple of 16 bytes for K-major
// reads, and TF32, which wgmma takes K-major only) is first packed by pack_kmajor into scratch, zero-padded to 16
// bytes along K. TMA fills what lies past the matrix (the last partial tiles along M, N and K) with zeros, so any
// shape works, and the epilogue writes C with bounds checks.
//
// Compiled for sm_90a only (CMakeLists.txt): wgmma and the tensor-map copies exist on no other architecture, and a
// kernel built for nothing else cannot be picked by mistake on another GPU. Opt-in with KILN_CUDA_WGMMA=1 until a
// device run has checked it (bench/gpu/check.sh runs the suites' products on it). Without a GPU, run_gemm and the
// kernel run verbatim on a CPU emulation of TMA, mbarriers and wgmma (test/native/sm90_emu.h), which stands in
// for the small functions holding the inline PTX.
#include <cuda.h>
#include <cudaTypedefs.h>

#include <string>
#include <type_traits>

#include "common.cuh"
#include "kiln/cublaslt.h"
#include "kiln/gemm_plan.h"

namespace kiln {
namespace cuda {

// pack_kmajor's tile: 32 rows x 32 k of one product per block of 32x8 threads
constexpr int kPackTile = 32;

/**
 * dst[z][r][k] = src at z * bs + r * rs + k * cs for k < K, 0 for K <= k < Kp: one operand, K-major and
 * contiguous ([batch][rows][Kp]). Reads walk whichever of the source's sides is contiguous, through a shared tile,
 * so both the reads and the writes are coalesced (a row-major B is a transpose).
 */
template <class T>
__global__ void pack_kmajor(const T* src, T* dst, int64_t rows, int64_t K, int64_t Kp, int64_t rs, int64_t cs,
                            int64_t bs) {
  __shared__ T tile[kPackTile][kPackTile + 2];
  const int64_t z = blockIdx.z, r0 = static_cast<int64_t>(blockIdx.y) * kPackTile,
                k0 = static_cast<int64_t>(blockIdx.x) * kPackTile;
  const int tx = threadIdx.x, ty = threadIdx.y;
  const T* s = src + z * bs;
  const bool k_fast = cs == 1 || rs != 1;  // read along k unless the rows are the contiguous side
  for (int i = ty; i < kPackTile; i += 8) {
    const int tr = k_fast ? i : tx, tk = k_fast ? tx : i;
    const int64_t r = r0 + tr, k = k0 + tk;
    tile[tr][tk] = r < rows && k < K ? s[r * rs + k * cs] : T{};
  }
  __syncthreads();
  T* d = dst + z * rows * Kp;
  for (int i = ty; i < kPackTile; i += 8) {
    const int64_t r = r0 + i, k = k0 + tx;
    if (r < rows && k < Kp) d[r * Kp + k] = tile[i][tx];
  }
}

// a k-step is one 128-byte row of each operand's tile: 64 bfloat16 or 32 float32 (TF32) values
constexpr int kWgBM = 128, kWgBN = 256, kRowBytes = 128, kStages = 4;
constexpr int64_t kTileGroup = 16;  // tile rows per band of the persistent walk (grouped_tile)
constexpr int kAcc = kWgBN / 2;     // float32 accumulators per consumer thread: a 64 x 256 tile over 128 threads
template <class T>
constexpr int kWgBK = kRowBytes / static_cast<int>(sizeof(T));
constexpr uint32_t kTileABytes = kWgBM * kRowBytes, kTileBBytes = kWgBN * kRowBytes;  // 16 and 32 KiB per stage
constexpr uint32_t kStageBytes = kTileABytes + kTileBBytes;                           // what one stage's copies bring
constexpr size_t kWgSmem = kStages * kStageBytes + 2 * kStages * 8 + 1024;            // + barriers + alignment slack

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ inline uint32_t smem_u32(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

/**
 * A wgmma shared-memory descriptor for a tile with the 128-byte swizzle: start address / 16 (bits 0-13), leading
 * byte offset / 16 (bits 16-29), stride byte offset / 16 (bits 32-45), swizzle mode 1 = 128 B (bits 62-63).
 * K-major (rows of 128 bytes of k): the stride is 1024 B between groups of 8 rows, the leading offset unused (16);
 * the next 16 k (32 bytes) start 32 bytes along. MN-major (kMn: rows of 128 bytes = 64 bfloat16 of m or n, one
 * per k, in boxes of 64 k-rows): the stride is 1024 B between groups of 8 k-rows, the leading offset 8 KiB between
 * boxes of 64 m or n; the next 16 k start 16 rows (2048 bytes) along.
 */
template <bool kMn>
__device__ inline uint64_t smem_desc(const void* p) {
  const uint64_t a = smem_u32(p), lead = kMn ? 64 * kRowBytes : 16;
  return ((a & 0x3FFFF) >> 4) | ((lead >> 4) << 16) | (uint64_t{1024 >> 4} << 32) | (uint64_t{1} << 62);
}

__device__ inline void mbar_init(uint64_t* b, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(b)), "r"(count) : "memory");
}
__device__ inline void mbar_expect_tx(uint64_t* b, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(b)), "r"(bytes) : "memory");
}
__device__ inline void mbar_arrive(uint64_t* b) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(b)) : "memory");
}
/** Whether the barrier's phase of this parity has completed (the hardware may wait a little before saying no). */
__device__ inline bool mbar_try_wait(uint64_t* b, uint32_t parity) {
  uint32_t done;
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
      "selp.u32 %0, 1, 0, p;\n"
      "}\n"
      : "=r"(done)
      : "r"(smem_u32(b)), "r"(parity)
      : "memory");
  return done != 0;
}
/**
 * Waits until the barrier's phase of this parity has completed. A copy or an arrival that never comes would hang
 * the GPU: after 2^34 cycles (about 10 s) the kernel traps instead, and the next sync reports a launch failure.
 */
__device__ inline void mbar_wait(uint64_t* b, uint32_t parity) {
  const long long t0 = clock64();
  while (!mbar_try_wait(b, parity))
    if (clock64() - t0 > (1ll << 34)) __trap();
}

/** One box of a 3-D tensor map (k, row, product) into shared memory, counted against the barrier's bytes. */
__device__ inline void tma_load(void* dst, const CUtensorMap* map, uint64_t* bar, int32_t k, int32_t row, int32_t z) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], "
      "[%5];" ::"r"(smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(k), "r"(row), "r"(z), "r"(smem_u32(bar))
      : "memory");
}

// the 128 accumulators of one warpgroup's m64n256 tile as read-write operands of an asm statement, and the
// instruction's destination list (%0 .. %127)
#define KILN_WGMMA_D                                                                                                  \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),         \
      "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),          \
      "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),         \
      "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]),         \
      "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),         \
      "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),         \
      "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),         \
      "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]),         \
      "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]),         \
      "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]),         \
      "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]),         \
      "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]),         \
      "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]),    \
      "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), \
      "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), \
      "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
#define KILN_WGMMA_DREGS                                                                                         \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, "                       \
  "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, "    \
  "%40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, "    \
  "%61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, "    \
  "%82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, " \
  "%103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, " \
  "%121, %122, %123, %124, %125, %126, %127}"

/**
 * d (64 x 256, this warpgroup's accumulators) += A (64 x k) B (k x 256), both read from shared memory, for 32
 * bytes of k: 16 bfloat16 (m64n256k16; kAMn / kBMn: A / B MN-major, the transpose immediates), or 8 float32 read
 * as TF32 (m64n256k8, which takes K-major operands only, so it has no transpose immediates).
 */
template <class T, bool kAMn, bool kBMn>
__device__ inline void wgmma_step(float (&d)[kAcc], uint64_t da, uint64_t db) {
  static_assert(std::is_same<T, __nv_bfloat16>::value || (!kAMn && !kBMn), "TF32 wgmma reads K-major operands only");
  if constexpr (std::is_same<T, float>::value) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k8.f32.tf32.tf32 " KILN_WGMMA_DREGS ", %128, %129, p, 1, 1;\n}\n"
        : KILN_WGMMA_D
        : "l"(da), "l"(db), "r"(1));
  } else {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 " KILN_WGMMA_DREGS
        ", %128, %129, p, 1, 1, %131, %132;\n}\n"
        : KILN_WGMMA_D
        : "l"(da), "l"(db), "r"(1), "n"(kAMn ? 1 : 0), "n"(kBMn ? 1 : 0));
  }
}

/** Keeps the compiler from moving reads or writes of the accumulators across a wgmma wait. */
__device__ inline void fence_accumulators(float (&d)[kAcc]) { asm volatile("" : KILN_WGMMA_D : : "memory"); }
#undef KILN_WGMMA_D
#undef KILN_WGMMA_DREGS

// the kernel's other PTX, one function each (test/native's emulation of the kernel gives its own)
/** After thread 0 has set up the mbarriers: makes them visible to the other threads and to the TMA unit. */
__device__ inline void mbar_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}
/** Orders this thread's accesses to the accumulators before the wgmma that follow. */
__device__ inline void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
/** Closes a group of the wgmma issued since the last one. */
__device__ inline void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
/** Waits until at most N groups of this thread's wgmma are still running. */
template <int N>
__device__ inline void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
/** The block's dynamic shared memory. */
__device__ inline unsigned char* dynamic_smem() {
  extern __shared__ unsigned char wg_smem[];
  return wg_smem;
}
#endif

/**
 * C[z] (M x N, contiguous: float32 in c, or when cb is set bfloat16 in cb (c unused), each sum rounded to nearest even)
 * = A[z] B[z]^T from the tensor maps of A and B, T = __nv_bfloat16 or float (TF32). Each operand's map is K-major ((k,
 * row, product): one box of a k-step's 128 bytes by 128 rows of A or 256 of B per stage) or, for bfloat16 when kAMn /
 * kBMn, MN-major ((row, k, product): boxes of 64 rows by the k-step's 64 k, two for A and four for B per stage, each 8
 * KiB; read through the transpose immediates). Persistent: each block walks the output tiles blockIdx.x, blockIdx.x +
 * gridDim.x, ... in grouped_tile's order (bands of kTileGroup tile rows, for L2). The ring's stage and phase run on
 * across tiles, so the producer fetches the next tile's first k-steps while the consumers finish and write out the
 * current one.
 */
template <class T, bool kAMn, bool kBMn>
__global__ void __launch_bounds__(384, 1)
    gemm_sm90(const __grid_constant__ CUtensorMap ta, const __grid_constant__ CUtensorMap tb, float* c,
              __nv_bfloat16* cb, int64_t M, int64_t N, int64_t K, int64_t batch) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  unsigned char* const wg_smem = dynamic_smem();
  // the 128-byte swizzle repeats every 1024 bytes: every tile must start on a multiple of 1024
  unsigned char* base = wg_smem + ((1024 - (smem_u32(wg_smem) & 1023)) & 1023);
  constexpr int BK = kWgBK<T>;                                                       // k per step
  constexpr int kTileA = kTileABytes / sizeof(T), kTileB = kTileBBytes / sizeof(T);  // elements per tile
  constexpr int kBox = 64 * BK;           // elements of an MN-major box: 64 rows (128 bytes) by BK k-rows, 8 KiB
  auto* sa = reinterpret_cast<T*>(base);  // [kStages][128 rows][BK], or MN-major [kStages][2 boxes][BK][64 rows]
  T* sb = sa + kStages * kTileA;          // [kStages][256 rows][BK], or MN-major [kStages][4 boxes][BK][64 rows]
  auto* full = reinterpret_cast<uint64_t*>(sb + kStages * kTileB);
  uint64_t* empty = full + kStages;
  const int wg = threadIdx.x / 128, t = threadIdx.x % 128;
  const int64_t tiles_m = (M + kWgBM - 1) / kWgBM, tiles_n = (N + kWgBN - 1) / kWgBN;
  const int64_t tiles = batch * tiles_m * tiles_n;
  const int32_t ktiles = static_cast<int32_t>((K + BK - 1) / BK);
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], 256);  // every consumer thread arrives once it has waited for its MMAs
    }
    mbar_init_fence();
  }
  __syncthreads();
  // `it` counts this block's k-steps over all its tiles: step it uses stage it % kStages in round it / kStages
  if (wg == 0) {  // the producer: one thread keeps the ring full
    if (t == 0) {
      uint32_t it = 0;
      for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const GemmTile at = grouped_tile(tile, tiles_m, tiles_n, kTileGroup);
        const int32_t z = static_cast<int32_t>(at.z), m0 = static_cast<int32_t>(at.m * kWgBM),
                      n0 = static_cast<int32_t>(at.n * kWgBN);
        for (int32_t kt = 0; kt < ktiles; ++kt, ++it) {
          const uint32_t s = it % kStages;
          if (it >= kStages) mbar_wait(&empty[s], (it / kStages - 1) & 1);
          mbar_expect_tx(&full[s], kStageBytes);  // whole boxes land, the part past the matrix as zeros
          if constexpr (kAMn) {
            for (int q = 0; q < kWgBM / 64; ++q)
              tma_load(sa + s * kTileA + q * kBox, &ta, &full[s], m0 + 64 * q, kt * BK, z);
          } else {
            tma_load(sa + s * kTileA, &ta, &full[s], kt * BK, m0, z);
          }
          if constexpr (kBMn) {
            for (int q = 0; q < kWgBN / 64; ++q)
              tma_load(sb + s * kTileB + q * kBox, &tb, &full[s], n0 + 64 * q, kt * BK, z);
          } else {
            tma_load(sb + s * kTileB, &tb, &full[s], kt * BK, n0, z);
          }
        }
      }
    }
    return;
  }
  const int cw = wg - 1;  // this consumer's 64 rows of each tile
  const int warp = t / 32, lane = t % 32;
  uint32_t it = 0;
  float d[kAcc];
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const GemmTile at = grouped_tile(tile, tiles_m, tiles_n, kTileGroup);
#pragma unroll
    for (int i = 0; i < kAcc; ++i) d[i] = 0.f;
    for (int32_t kt = 0; kt < ktiles; ++kt, ++it) {
      const uint32_t s = it % kStages;
      mbar_wait(&full[s], (it / kStages) & 1);
      const T* a = sa + s * kTileA + cw * 64 * BK;  // K-major: 64 rows along; MN-major: box cw (64 rows)
      const T* b = sb + s * kTileB;
      fence_accumulators(d);
      wgmma_fence();
      // 32 bytes of k per MMA: along each K-major row, or down as many k-rows (of 64 elements) MN-major
#pragma unroll
      for (int kk = 0; kk < BK; kk += 32 / sizeof(T))
        wgmma_step<T, kAMn, kBMn>(d, smem_desc<kAMn>(a + (kAMn ? kk * 64 : kk)),
                                  smem_desc<kBMn>(b + (kBMn ? kk * 64 : kk)));
      wgmma_commit();
      // this step's MMAs stay in flight while the next stage is awaited; the previous step's are done, so its
      // buffer goes back to the producer
      wgmma_wait<1>();
      fence_accumulators(d);
      if (kt > 0) mbar_arrive(&empty[(it - 1) % kStages]);
    }
    wgmma_wait<0>();
    fence_accumulators(d);
    mbar_arrive(&empty[(it - 1) % kStages]);  // the tile's last stage goes back too
    // the accumulator layout of m64nNk16: warp w of the warpgroup holds rows 16w..16w+15; in each 8-column group
    // j, lane l holds rows l/4 and l/4 + 8, columns 2(l%4) and 2(l%4) + 1
    const int64_t row = at.m * kWgBM + cw * 64 + warp * 16 + lane / 4;
    const int64_t cz = at.z * M * N;  // product z's C (an offset: c is null when C is bfloat16)
#pragma unroll
    for (int j = 0; j < kWgBN / 8; ++j) {
      const int64_t col = at.n * kWgBN + j * 8 + 2 * (lane % 4);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t r = row + 8 * h;
        if (r >= M) continue;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          if (col + e >= N) continue;
          const float v = d[4 * j + 2 * h + e];
          if (cb)
            cb[cz + r * N + col + e] = __float2bfloat16_rn(v);
          else
            c[cz + r * N + col + e] = v;
        }
      }
    }
  }
#endif
}

namespace {
using EncodeTiled = PFN_cuTensorMapEncodeTiled_v12000;

/** The driver's cuTensorMapEncodeTiled, found once through the runtime (no link against libcuda). */
EncodeTiled encode_tiled() {
  static EncodeTiled fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return static_cast<EncodeTiled>(nullptr);
    }
    return reinterpret_cast<EncodeTiled>(p);
  }();
  return fn;
}

/** The kernel for T and the operands' layouts (MN-major ones are bfloat16 only). */
template <class T>
inline auto sm90_kernel(bool a_mn, bool b_mn) {
  if constexpr (std::is_same<T, float>::value) {
    return gemm_sm90<float, false, false>;
  } else {
    return a_mn ? (b_mn ? gemm_sm90<T, true, true> : gemm_sm90<T, true, false>)
                : (b_mn ? gemm_sm90<T, false, true> : gemm_sm90<T, false, false>);
  }
}

/** Why a kernel cannot run here ("" when it can): its sm_90a image must load and get its shared memory. */
template <class Kernel>
std::string kernel_problem(Kernel kernel) {
  cudaFuncAttributes attr{};
  cudaError_t e = cudaFuncGetAttributes(&attr, kernel);
  if (e == cudaSuccess)
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kWgSmem));
  cudaGetLastError();
  return e == cudaSuccess ? "" : std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")";
}
/** The first problem of the bfloat16 kernels (every layout), or "". */
std::string bf16_problem() {
  for (int v = 0; v < 4; ++v)
    if (std::string p = kernel_problem(sm90_kernel<__nv_bfloat16>(v & 1, v & 2)); !p.empty()) return p;
  return "";
}

/**
 * Whether products may run here, and why not when KILN_CUDA_WGMMA=1 asked: a device of compute capability 9.0,
 * both kernels' sm_90a images loadable on it with their shared memory, the driver's tensor-map encoder found.
 * Decided once (the first call comes from a backend that has its device, or from kn.info()).
 */
struct Readiness {
  bool ok = false;
  std::string why;
};
const Readiness& readiness() {
  static const Readiness r = [] {
    Readiness x;
    if (!wgmma_asked()) return x;
    const std::string asked = "KILN_CUDA_WGMMA=1 but ";
    if (!ready()) {
      x.why = asked + "there is no usable CUDA device";
      return x;
    }
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
      cudaGetLastError();
      x.why = asked + "the device's compute capability could not be read";
    } else if (major != 9 || minor != 0) {
      x.why = asked + "the device has compute capability " + std::to_string(major) + "." + std::to_string(minor) +
              "; the wgmma kernel runs on 9.0 (Hopper) only";
    } else if (std::string p = bf16_problem(); !p.empty()) {
      x.why = asked + "its sm_90a kernel does not load here: " + p;
    } else if (std::string q = kernel_problem(sm90_kernel<float>(false, false)); !q.empty()) {
      x.why = asked + "its sm_90a TF32 kernel does not load here: " + q;
    } else if (encode_tiled() == nullptr) {
      x.why = asked + "the driver has no cuTensorMapEncodeTiled (CUDA 12.0 or newer)";
    } else {
      x.ok = true;
    }
    return x;
  }();
  return r;
}

/**
 * A 3-D tensor map over an operand of T at base, laid out as op says, with the 128-byte swizzle. K-major: (k, row,
 * product), boxes of one 128-byte row of k by box_rows rows (128 of A, 256 of B). MN-major: (row, k, product),
 * boxes of 128 bytes of rows (64 bfloat16) by a k-step's k.
 */
template <class T>
bool operand_map(CUtensorMap* map, const void* base, const KMajor& op, int64_t batch, uint32_t box_rows) {
  const auto u64 = [](int64_t v) { return static_cast<cuuint64_t>(v); };
  const cuuint64_t dims[3] = {u64(op.mn_major ? op.rows : op.K), u64(op.mn_major ? op.K : op.rows), u64(batch)};
  // strides of dims 1 and 2 in bytes (plan_k_major gives a lone product a nominal bs, as it never steps)
  const cuuint64_t strides[2] = {u64(op.ld) * sizeof(T), u64(op.bs) * sizeof(T)};
  const cuuint32_t box[3] = {op.mn_major ? kRowBytes / static_cast<cuuint32_t>(sizeof(T)) : kWgBK<T>,
                             op.mn_major ? kWgBK<T> : box_rows, 1};
  const cuuint32_t elem[3] = {1, 1, 1};
  const CUtensorMapDataType type =
      std::is_same<T, float>::value ? CU_TENSOR_MAP_DATA_TYPE_FLOAT32 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  return encode_tiled()(map, type, 3, const_cast<void*>(base), dims, strides, box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE,
                        CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

/**
 * The product over elements T (bfloat16, or float32 as TF32), planned by plan_k_major (bfloat16 operands may be
 * read MN-major, so a plain or transposed contiguous one needs no packing); see wgmma_gemm.
 */
template <class T>
Status run_gemm(const LtGemm& g, bool* ran) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  constexpr bool mn_ok = std::is_same<T, __nv_bfloat16>::value;
  const KMajorPlan plan = plan_k_major(g.operands, 16 / sizeof(T), aligned(g.a), aligned(g.b), mn_ok);
  // tensor-map coordinates (k, row, product) are 32-bit
  if (plan.M > 2147483647 || plan.N > 2147483647 || plan.a.K > 2147483647 || plan.b.K > 2147483647 ||
      plan.batch > 2147483647)
    return Status::ok();
  const void* src[2] = {g.a, g.b};
  const KMajor* ops[2] = {&plan.a, &plan.b};
  // pack_kmajor's grid: y over 32-row tiles and z over products are 16-bit; beyond, the other kernels take it
  for (const KMajor* op : ops)
    if (!op->in_place && ((op->rows + kPackTile - 1) / kPackTile > 65535 || plan.batch > 65535)) return Status::ok();
  void* packed[2] = {nullptr, nullptr};
  uint64_t bytes[2] = {0, 0};
  Status st = Status::ok();
  CUtensorMap maps[2];
  for (int i = 0; i < 2 && st.good(); ++i) {
    const KMajor& op = *ops[i];
    const void* base = src[i];
    if (!op.in_place) {
      bytes[i] = static_cast<uint64_t>(plan.batch * op.rows * op.K) * sizeof(T);
      st = scratch(bytes[i], &packed[i]);
      if (!st.good()) break;
      const dim3 grid(static_cast<unsigned>((op.K + kPackTile - 1) / kPackTile),
                      static_cast<unsigned>((op.rows + kPackTile - 1) / kPackTile), static_cast<unsigned>(plan.batch));
      pack_kmajor<T><<<grid, dim3(kPackTile, 8), 0, stream()>>>(static_cast<const T*>(src[i]),
                                                                static_cast<T*>(packed[i]), op.rows, plan.K, op.K,
                                                                op.src_rs, op.src_cs, op.src_bs);
      st = launched("matmul (packing an operand for wgmma)");
      base = packed[i];
    }
    if (st.good() && !operand_map<T>(&maps[i], base, op, plan.batch, i == 0 ? kWgBM : kWgBN))
      st = fail(ST_BACKEND, "matmul: cuTensorMapEncodeTiled refused an operand's tensor map");
  }
  if (st.good()) {
    // persistent: a block per SM (its shared memory allows no second), or one per tile when there are fewer
    const int64_t tiles = plan.batch * ((plan.M + kWgBM - 1) / kWgBM) * ((plan.N + kWgBN - 1) / kWgBN);
    const unsigned blocks = static_cast<unsigned>(tiles < sm_count() ? tiles : sm_count());
    const auto kernel = sm90_kernel<T>(plan.a.mn_major, plan.b.mn_major);
    kernel<<<blocks, 384, kWgSmem, stream()>>>(maps[0], maps[1], g.c, reinterpret_cast<__nv_bfloat16*>(g.c_bf16),
                                               plan.M, plan.N, plan.K, plan.batch);
    st = launched("matmul (wgmma)");
    *ran = st.good();
  }
  for (int i = 0; i < 2; ++i)
    if (packed[i]) release_scratch(packed[i], bytes[i]);
  return st;
}
}  // namespace

Status wgmma_gemm(const LtGemm& g, bool* ran) {
  *ran = false;
  const GemmOperands& o = g.operands;
  // bfloat16, or float32 where KILN_CUDA_GEMM=tf32 allows TF32
  if ((!g.bf16 && !g.tf32) || o.M <= 0 || o.N <= 0 || o.K <= 0 || o.batch <= 0 || !readiness().ok) return Status::ok();
  return g.bf16 ? run_gemm<__nv_bfloat16>(g, ran) : run_gemm<float>(g, ran);
}

void wgmma_info(bool* in_use, std::string* reason) {
  const Readiness& r = readiness();
  *in_use = r.ok;
  *reason = r.why;
}
}  // namespace cuda
}  // namespace kiln
