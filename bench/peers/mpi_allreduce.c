/* The peer of kn.distributed's allreduce: the same MPI called from plain C, in place, on the same sizes and
   chunking as kiln (16 MiB pieces). Prints one JSON line per size from rank 0: median ms over the iterations
   (max over ranks). Built by bench/dist/distributed.bench.ts with mpicc; run under mpirun -np 2. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const long sizes[] = {4096, 4L << 20, 64L << 20};
  const long chunk = (16L << 20) / 4;
  for (int s = 0; s < 3; s++) {
    const long n = sizes[s] / 4;
    const int iters = sizes[s] >= (64L << 20) ? 8 : sizes[s] >= (4L << 20) ? 30 : 300;
    float* buf = malloc(sizeof(float) * n);
    for (long i = 0; i < n; i++) buf[i] = 1.0f;
    double* t = malloc(sizeof(double) * iters);
    for (int it = -2; it < iters; it++) {
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = MPI_Wtime();
      for (long off = 0; off < n; off += chunk) {
        long m = n - off < chunk ? n - off : chunk;
        MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)m, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      }
      if (it >= 0) t[it] = (MPI_Wtime() - t0) * 1e3;
    }
    qsort(t, iters, sizeof(double), cmp);
    double med = t[iters / 2], worst;
    MPI_Reduce(&med, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0) printf("{\"bytes\":%ld,\"ms\":%.6f}\n", sizes[s], worst);
    free(buf);
    free(t);
  }
  MPI_Finalize();
  return 0;
}
