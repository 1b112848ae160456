// Movement family on CUDA: concat (each strided input placed into its slab of the output), gather and scatterAdd
// along an axis (indices checked on the device; scatterAdd sorts the positions by row, then sums each output
// element in position order, so sums are deterministic and race-free). copy is elementwise.cu's map.
#include <cub/device/device_radix_sort.cuh>

#include "common.cuh"

namespace kiln {
namespace cuda {

__global__ void place(const void* src, View v, void* dst, int64_t n, int64_t base, int64_t row_stride, int64_t row_len,
                      int size) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= n) return;
  copy_elem(src, view_index(v, e), dst, base + (e / row_len) * row_stride + e % row_len, size);
}

static Status k_copy(const TensorView* in, int nin, const TensorView& out, const double*) {
  KILN_REQUIRE(nin == 1 && in[0].dtype == out.dtype, ST_DTYPE, "copy keeps the dtype");
  return run_map(MAP_COPY, in, 1, out, 0, 0, false, "copy");  // the strided map kernel of elementwise.cu
}

static Status k_concat(const TensorView* in, int nin, const TensorView& out, const double* at) {
  const int axis = static_cast<int>(at[ATTR_CONCAT_AXIS]);
  KILN_REQUIRE(axis >= 0 && axis < out.ndim, ST_ARG, "concat: axis ", axis, " out of range");
  int64_t inner = 1;
  for (int d = axis + 1; d < out.ndim; ++d) inner *= out.shape[d];
  const int64_t total = out.shape[axis];
  int64_t start = 0;
  for (int k = 0; k < nin; ++k) {
    const TensorView& v = in[k];
    KILN_REQUIRE(v.dtype == out.dtype && v.ndim == out.ndim, ST_DTYPE, "concat: input ", k, " must be ",
                 kDTypeNames[out.dtype], " of rank ", out.ndim);
    for (int d = 0; d < out.ndim; ++d)
      KILN_REQUIRE(d == axis || v.shape[d] == out.shape[d], ST_SHAPE, "concat: input ", k, " is ", shape_str(v),
                   ", output ", shape_str(out));
    start += v.shape[axis];
  }
  KILN_REQUIRE(start == total, ST_SHAPE, "concat: inputs cover ", start, " of ", total, " along axis ", axis);
  start = 0;
  for (int k = 0; k < nin; ++k) {
    const TensorView& v = in[k];
    const int64_t n = v.numel(), len = v.shape[axis];
    if (n > 0) {
      const TensorView* views[1] = {&v};
      View m;
      KILN_REQUIRE(merge_views(v.shape, v.ndim, views, 1, &m), ST_SHAPE, "concat: input views of more than ", kViewDims,
                   " dims");
      place<<<blocks_for(n), kThreads, 0, stream()>>>(v.data, m,
                                                      static_cast<char*>(out.data) + out.offset * dt_size(out.dtype), n,
                                                      start * inner, total * inner, len * inner, dt_size(out.dtype));
      if (Status s = launched("concat"); !s.good()) return s;
    }
    start += len;
  }
  return Status::ok();
}

__global__ void gather(const char* x, const int32_t* idx, char* y, int64_t pre, int64_t D, int64_t post, int64_t k,
                       int size, int axis, DeviceFlags* f) {
  const int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (o >= pre * k * post) return;
  const int64_t q = o % post, j = (o / post) % k, p = o / (post * k);
  const int32_t i = idx[j];
  if (i < 0 || i >= D) {
    report(f, FLAG_GATHER_INDEX, j, i, D, axis);
    for (int b = 0; b < size; ++b) y[o * size + b] = 0;
    return;
  }
  copy_elem(x, (p * D + i) * post + q, y, o, size);
}

static Status k_gather(const TensorView* in, int nin, const TensorView& out, const double* at) {
  KILN_REQUIRE(nin == 2 && in[0].contiguous() && in[1].contiguous() && in[1].dtype == DT_INT32, ST_ARG,
               "gather takes contiguous (x, int32 indices)");
  const TensorView &x = in[0], &idx = in[1];
  const int axis = static_cast<int>(at[ATTR_GATHER_AXIS]);
  KILN_REQUIRE(axis >= 0 && axis < x.ndim && out.dtype == x.dtype, ST_ARG, "gather: axis ", axis, " out of range");
  int64_t pre = 1, post = 1;
  for (int d = 0; d < axis; ++d) pre *= x.shape[d];
  for (int d = axis + 1; d < x.ndim; ++d) post *= x.shape[d];
  const int64_t D = x.shape[axis], k = idx.numel();
  KILN_REQUIRE(out.numel() == pre * k * post, ST_SHAPE, "gather writes ", pre * k * post, " values");
  if (out.numel() == 0) return Status::ok();
  const int size = dt_size(x.dtype);
  gather<<<blocks_for(out.numel()), kThreads, 0, stream()>>>(
      static_cast<const char*>(x.data) + x.offset * size, idx.ptr<int32_t>(),
      static_cast<char*>(out.data) + out.offset * size, pre, D, post, k, size, axis, device_flags());
  return launched("gather");
}

// ---- scatterAdd: y [pre, D, post] = the sum over j of g[p, j, q] into row idx[j]. The positions j are sorted by
// row with CUB's radix sort, which is stable, so each row's positions stay in increasing j; each output element
// then gets a thread that adds its row's values in that order, cpu's order: sums are deterministic, never race,
// and carry cpu's bits.

// keys[j] = idx[j] when it is a row of the output, else D (reported; sorted past every row); vals[j] = j
__global__ void scatter_keys(const int32_t* idx, uint32_t* keys, uint32_t* vals, int64_t k, int64_t D, DeviceFlags* f) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < k; j += step) {
    const int32_t i = idx[j];
    const bool ok = i >= 0 && i < D;
    if (!ok) report(f, FLAG_SCATTER_INDEX, j, i, D);
    keys[j] = ok ? static_cast<uint32_t>(i) : static_cast<uint32_t>(D);
    vals[j] = static_cast<uint32_t>(j);
  }
}

// starts[d] = the first sorted position whose row is >= d, for d in [0, D]: row d's positions are
// order[starts[d] .. starts[d + 1])
__global__ void scatter_starts(const uint32_t* sorted, int64_t k, int64_t D, uint32_t* starts) {
  const int64_t d = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (d > D) return;
  int64_t lo = 0, hi = k;
  while (lo < hi) {
    const int64_t mid = (lo + hi) >> 1;
    if (static_cast<int64_t>(sorted[mid]) < d)
      lo = mid + 1;
    else
      hi = mid;
  }
  starts[d] = static_cast<uint32_t>(lo);
}

template <class T>
__global__ void scatter_sum(const T* g, const uint32_t* order, const uint32_t* starts, T* y, int64_t pre, int64_t D,
                            int64_t post, int64_t k) {
  const int64_t n = pre * D * post, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < n; o += step) {
    const int64_t q = o % post, d = (o / post) % D, p = o / (post * D);
    const T* gp = g + p * k * post + q;
    const uint32_t s1 = starts[d + 1];
    if constexpr (std::is_same<T, int32_t>::value) {  // wraps like cpu (unsigned arithmetic: no signed overflow)
      uint32_t acc = 0;
      for (uint32_t s = starts[d]; s < s1; ++s) acc += static_cast<uint32_t>(gp[static_cast<int64_t>(order[s]) * post]);
      y[o] = static_cast<int32_t>(acc);
    } else {
      T acc = 0;
      for (uint32_t s = starts[d]; s < s1; ++s) acc += gp[static_cast<int64_t>(order[s]) * post];
      y[o] = acc;
    }
  }
}

static Status k_scatter_add(const TensorView* in, int nin, const TensorView& out, const double* at) {
  KILN_REQUIRE(nin == 2 && in[0].contiguous() && in[1].contiguous() && in[1].dtype == DT_INT32, ST_ARG,
               "scatterAdd takes contiguous (g, int32 indices)");
  const TensorView &g = in[0], &idx = in[1];
  const int axis = static_cast<int>(at[ATTR_SCATTER_ADD_AXIS]);
  const int64_t D = static_cast<int64_t>(at[ATTR_SCATTER_ADD_SIZE]);
  KILN_REQUIRE(axis >= 0 && axis < out.ndim && out.shape[axis] == D && out.dtype == g.dtype &&
                   (g.dtype == DT_FLOAT32 || g.dtype == DT_INT32),
               ST_ARG, "scatterAdd: bad axis/size or dtype");
  int64_t pre = 1, post = 1;
  for (int d = 0; d < axis; ++d) pre *= out.shape[d];
  for (int d = axis + 1; d < out.ndim; ++d) post *= out.shape[d];
  const int64_t k = idx.numel();
  KILN_REQUIRE(g.numel() == pre * k * post, ST_SHAPE, "scatterAdd: the gradient must have ", pre * k * post, " values");
  KILN_REQUIRE(out.contiguous(), ST_ARG, "scatterAdd writes a contiguous output");
  KILN_REQUIRE(k <= 2147483647LL && D <= 2147483647LL, ST_SHAPE,
               "scatterAdd on cuda takes up to 2^31 - 1 indices and rows, got ", k, " and ", D);
  if (out.numel() == 0) return Status::ok();
  const size_t bytes_out = static_cast<size_t>(out.numel()) * dt_size(out.dtype);
  if (k == 0) return check(cudaMemsetAsync(out.bytes(), 0, bytes_out, stream()), "scatterAdd zero fill");
  int bits = 1;  // the keys are at most D
  while (bits < 32 && (int64_t{1} << bits) <= D) ++bits;
  const int nk = static_cast<int>(k);
  size_t sort_bytes = 0;
  if (Status s =
          check(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, static_cast<const uint32_t*>(nullptr),
                                                static_cast<uint32_t*>(nullptr), static_cast<const uint32_t*>(nullptr),
                                                static_cast<uint32_t*>(nullptr), nk, 0, bits, stream()),
                "scatterAdd sort size");
      !s.good())
    return s;
  // one scratch block: keys, sorted keys, positions, sorted positions (k words each), starts (D + 1), sort space
  const auto round = [](uint64_t b) { return (b + 255) & ~uint64_t{255}; };
  const uint64_t words_k = round(static_cast<uint64_t>(k) * 4), words_d = round(static_cast<uint64_t>(D + 1) * 4);
  const uint64_t bytes = 4 * words_k + words_d + round(sort_bytes);
  void* work = nullptr;
  if (Status s = scratch(bytes, &work); !s.good()) return s;
  char* w = static_cast<char*>(work);
  uint32_t *keys = reinterpret_cast<uint32_t*>(w), *sorted = reinterpret_cast<uint32_t*>(w + words_k),
           *vals = reinterpret_cast<uint32_t*>(w + 2 * words_k), *order = reinterpret_cast<uint32_t*>(w + 3 * words_k),
           *starts = reinterpret_cast<uint32_t*>(w + 4 * words_k);
  void* sort_space = w + 4 * words_k + words_d;
  Status st = Status::ok();
  scatter_keys<<<blocks_for(k), kThreads, 0, stream()>>>(idx.ptr<int32_t>(), keys, vals, k, D, device_flags());
  st = launched("scatterAdd");
  if (st.good())
    st =
        check(cub::DeviceRadixSort::SortPairs(sort_space, sort_bytes, keys, sorted, vals, order, nk, 0, bits, stream()),
              "scatterAdd sort");
  if (st.good()) {
    scatter_starts<<<blocks_for(D + 1), kThreads, 0, stream()>>>(sorted, k, D, starts);
    st = launched("scatterAdd");
  }
  if (st.good()) {
    if (g.dtype == DT_INT32)
      scatter_sum<int32_t><<<blocks_for(out.numel()), kThreads, 0, stream()>>>(g.ptr<int32_t>(), order, starts,
                                                                               out.ptr<int32_t>(), pre, D, post, k);
    else
      scatter_sum<float><<<blocks_for(out.numel()), kThreads, 0, stream()>>>(g.ptr<float>(), order, starts,
                                                                             out.ptr<float>(), pre, D, post, k);
    st = launched("scatterAdd");
  }
  release_scratch(work, bytes);
  return st;
}

void register_movement(KernelTable& t) {
  t.fn[OP_COPY] = k_copy;
  t.fn[OP_CONCAT] = k_concat;
  t.fn[OP_GATHER] = k_gather;
  t.fn[OP_SCATTER_ADD] = k_scatter_add;
}

}  // namespace cuda
}  // namespace kiln
