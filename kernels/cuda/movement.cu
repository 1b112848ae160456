// Movement family on CUDA: concat (each strided input placed into its slab of the output), gather and scatterAdd
// along an axis (indices checked on the device; scatterAdd owns one output column per thread, so sums are
// deterministic and race-free). copy is elementwise.cu's map.
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

template <class T>
__global__ void scatter_add(const T* g, const int32_t* idx, T* y, int64_t pre, int64_t D, int64_t post, int64_t k,
                            DeviceFlags* f) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= pre * post) return;
  const int64_t q = c % post, p = c / post;
  for (int64_t j = 0; j < k; ++j) {
    const int32_t i = idx[j];
    if (i < 0 || i >= D) {
      report(f, FLAG_SCATTER_INDEX, j, i, D);
      continue;
    }
    T& dst = y[(p * D + i) * post + q];
    if constexpr (std::is_same<T, int32_t>::value)
      dst = static_cast<int32_t>(static_cast<uint32_t>(dst) + static_cast<uint32_t>(g[(p * k + j) * post + q]));
    else
      dst += g[(p * k + j) * post + q];
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
  if (out.numel() == 0) return Status::ok();
  // zeros first, by the whole device: the kernel has a thread per output column (pre * post of them, 2 blocks for
  // an embedding's [vocab, 512] gradient), which zeroing vocab * 512 values from took most of the call
  if (Status s = check(cudaMemsetAsync(out.bytes(), 0, static_cast<size_t>(out.numel()) * dt_size(out.dtype), stream()),
                       "scatterAdd zero fill");
      !s.good())
    return s;
  if (g.dtype == DT_INT32)
    scatter_add<int32_t><<<blocks_for(pre * post), kThreads, 0, stream()>>>(
        g.ptr<int32_t>(), idx.ptr<int32_t>(), out.ptr<int32_t>(), pre, D, post, k, device_flags());
  else
    scatter_add<float><<<blocks_for(pre * post), kThreads, 0, stream()>>>(
        g.ptr<float>(), idx.ptr<int32_t>(), out.ptr<float>(), pre, D, post, k, device_flags());
  return launched("scatterAdd");
}

void register_movement(KernelTable& t) {
  t.fn[OP_COPY] = k_copy;
  t.fn[OP_CONCAT] = k_concat;
  t.fn[OP_GATHER] = k_gather;
  t.fn[OP_SCATTER_ADD] = k_scatter_add;
}

}  // namespace cuda
}  // namespace kiln
