/* Bench helper (not part of the addon): times OpenBLAS cblas_sgemm and a peak-FMA loop, and prints one JSON
 * line per measurement. Built on demand by bench/peers/openblas.ts:  cc -O2 -mavx512f -mfma gemm_peer.c -lopenblas
 * Usage: gemm_peer sgemm N REPS | gemm_peer peak THREADS | gemm_peer peakvnni THREADS | gemm_peer peakbf16 THREADS
 * Thread count for sgemm comes from OPENBLAS_NUM_THREADS; run with OPENBLAS_CORETYPE=SkylakeX (Debian's
 * OpenBLAS 0.3.21 does not recognise this CPU and otherwise falls back to SSE3 kernels). */
#define _GNU_SOURCE
#include <cblas.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

/* 12 independent FMA chains of 16 floats: enough to cover FMA latency on two ports */
static void* fma_loop(void* arg) {
  long iters = *(long*)arg;
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(1.0f + i * 1e-3f);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (long k = 0; k < iters; ++k)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  float sink = 0;
  for (int i = 0; i < 12; ++i) sink += _mm512_reduce_add_ps(acc[i]);
  *(float*)arg = sink;
  return NULL;
}

/* 12 independent AVX512-VNNI chains (vpdpbusd: 64 u8 x s8 multiply-adds each): the int8 limit */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void* vnni_loop(void* arg) {
  long iters = *(long*)arg;
  __m512i acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_epi32(i);
  const __m512i a = _mm512_set1_epi32(0x01010101), b = _mm512_set1_epi32(0x02020202);
  for (long k = 0; k < iters; ++k)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
  int sink = 0;
  for (int i = 0; i < 12; ++i) sink += _mm512_reduce_add_epi32(acc[i]);
  *(int*)arg = sink;
  return NULL;
}

/* 12 independent AVX512-BF16 chains (vdpbf16ps: 32 bfloat16 multiply-adds each into float32) */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void* bf16_loop(void* arg) {
  long iters = *(long*)arg;
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps((float)i);
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x3c003c00);
  for (long k = 0; k < iters; ++k)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  float sink = 0;
  for (int i = 0; i < 12; ++i) sink += _mm512_reduce_add_ps(acc[i]);
  *(float*)arg = sink;
  return NULL;
}

int main(int argc, char** argv) {
  if (argc >= 3 && (strcmp(argv[1], "peak") == 0 || strcmp(argv[1], "peakvnni") == 0 || strcmp(argv[1], "peakbf16") == 0)) {
    const int vnni = strcmp(argv[1], "peakvnni") == 0, bf16 = strcmp(argv[1], "peakbf16") == 0;
    int threads = atoi(argv[2]);
    if (threads < 1 || threads > 64) return 2;
    long iters = 20000000;
    double best = 0;
    for (int rep = 0; rep < 5; ++rep) {
      pthread_t th[64];
      long args[64];
      double t0 = now();
      for (int i = 0; i < threads; ++i) { args[i] = iters; pthread_create(&th[i], NULL, vnni ? vnni_loop : bf16 ? bf16_loop : fma_loop, &args[i]); }
      for (int i = 0; i < threads; ++i) pthread_join(th[i], NULL);
      double gf = threads * (double)iters * 12 * 16 * 2 * (vnni ? 4 : bf16 ? 2 : 1) / (now() - t0) / 1e9;
      if (gf > best) best = gf;
    }
    printf("{\"kind\":\"%s\",\"threads\":%d,\"gflops\":%.2f}\n", argv[1], threads, best);
    return 0;
  }
  if (argc >= 4 && strcmp(argv[1], "sgemm") == 0) {
    int n = atoi(argv[2]), reps = atoi(argv[3]);
    if (n < 1 || n > 16384 || reps < 1 || reps > 1000) return 2;
    float* a = aligned_alloc(64, sizeof(float) * n * n);
    float* b = aligned_alloc(64, sizeof(float) * n * n);
    float* c = aligned_alloc(64, sizeof(float) * n * n);
    for (long i = 0; i < (long)n * n; ++i) { a[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f; b[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f; }
    for (int w = 0; w < 3; ++w) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double* ms = malloc(sizeof(double) * reps);
    for (int r = 0; r < reps; ++r) {
      double t0 = now();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
      ms[r] = (now() - t0) * 1e3;
    }
    qsort(ms, reps, sizeof(double), cmp);
    printf("{\"kind\":\"sgemm\",\"n\":%d,\"medianMs\":%.6f,\"minMs\":%.6f,\"maxMs\":%.6f,\"core\":\"%s\"}\n", n, ms[reps / 2], ms[0], ms[reps - 1],
           openblas_get_corename());
    return 0;
  }
  fprintf(stderr, "usage: gemm_peer sgemm N REPS | gemm_peer peak THREADS | gemm_peer peakvnni THREADS\n");
  return 2;
}
