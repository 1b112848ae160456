// Movement: strided copy (materialises views), concat, gather along an axis, and its adjoint scatterAdd.
#ifndef KILN_ISA
#include "kiln/cpu_common.h"
#define KILN_ISA_FILE "cpu/movement.cc"
#include "kiln/isa_passes.h"
#else
#include "kiln/isa_helpers.inl"

namespace mv {

template <class T>
static void copy_typed(const TensorView& src, const TensorView& dst) {
  const TensorView* ops[2] = {&dst, &src};
  const StridedIter it = make_iter(ops, 2);
  T* o = dst.ptr<T>();
  const T* a = src.ptr<T>();
  for_each_row(it, kGrain * 2, [&](const int64_t* off, int64_t n, const int64_t* st) {
    T* po = o + off[0];
    const T* pa = a + off[1];
    const int64_t so = st[0], sa = st[1];
    if (so == 1 && sa == 1) {
      __builtin_memcpy(po, pa, static_cast<size_t>(n) * sizeof(T));
    } else if (so == 1 && sa == 0) {  // a broadcast value (sum's gradient made contiguous): a vectorised fill
      const T v = *pa;
      for (int64_t i = 0; i < n; ++i) po[i] = v;
    } else {
      for (int64_t i = 0; i < n; ++i) po[i * so] = pa[i * sa];
    }
  });
}

static void copy_view(const TensorView& src, const TensorView& dst) {
  switch (kDTypeSize[src.dtype]) {
    case 4: copy_typed<uint32_t>(src, dst); break;
    case 2: copy_typed<uint16_t>(src, dst); break;
    default: copy_typed<uint8_t>(src, dst); break;
  }
}

static Status k_copy(const TensorView* in, int, const TensorView& out, const double*) {
  KILN_REQUIRE(same_shape(in[0], out), ST_SHAPE, "copy keeps the shape: ", shape_str(in[0]), " vs ", shape_str(out));
  KILN_REQUIRE(in[0].dtype == out.dtype, ST_DTYPE, "copy keeps the dtype (use cast)");
  if (out.numel() > 0) copy_view(in[0], out);
  return Status::ok();
}

static Status k_concat(const TensorView* in, int nin, const TensorView& out, const double* attrs) {
  const int64_t axis = static_cast<int64_t>(attrs[ATTR_CONCAT_AXIS]);
  KILN_REQUIRE(axis >= 0 && axis < out.ndim, ST_ARG, "concat axis ", axis, " out of range for ", shape_str(out));
  int64_t total = 0;
  for (int i = 0; i < nin; ++i) {
    KILN_REQUIRE(in[i].dtype == out.dtype, ST_DTYPE, "concat inputs must share a dtype; input ", i, " is ",
                 kDTypeNames[in[i].dtype], ", expected ", kDTypeNames[out.dtype]);
    KILN_REQUIRE(in[i].ndim == out.ndim, ST_SHAPE, "concat input ", i, " has shape ", shape_str(in[i]),
                 ", expected rank ", out.ndim);
    for (int d = 0; d < out.ndim; ++d)
      if (d != axis)
        KILN_REQUIRE(in[i].shape[d] == out.shape[d], ST_SHAPE, "concat input ", i, " has shape ", shape_str(in[i]),
                     " which differs from the output ", shape_str(out), " outside axis ", axis);
    total += in[i].shape[axis];
  }
  KILN_REQUIRE(total == out.shape[axis], ST_SHAPE, "concat output has ", out.shape[axis], " along axis ", axis,
               " but the inputs add up to ", total);
  int64_t start = 0;
  for (int i = 0; i < nin; ++i) {
    TensorView dst = out;
    dst.shape[axis] = in[i].shape[axis];
    int64_t s = 1;
    for (int d = out.ndim - 1; d >= 0; --d) {
      dst.strides[d] = s;
      s *= out.shape[d];
    }
    dst.offset = out.offset + start * dst.strides[axis];
    if (in[i].numel() > 0) copy_view(in[i], dst);
    start += in[i].shape[axis];
  }
  return Status::ok();
}

// gather: x [pre..., D, post...], idx int32 [k...] -> out [pre..., k..., post...] with out = x[pre, idx[k], post]
static Status k_gather(const TensorView* in, int, const TensorView& out, const double* attrs) {
  const TensorView& x = in[0];
  const TensorView& idx = in[1];
  const int64_t axis = static_cast<int64_t>(attrs[ATTR_GATHER_AXIS]);
  KILN_REQUIRE(x.contiguous() && idx.contiguous(), ST_ARG, "gather needs contiguous inputs");
  KILN_REQUIRE(idx.dtype == DT_INT32, ST_DTYPE, "gather indices must be int32, got ", kDTypeNames[idx.dtype]);
  KILN_REQUIRE(out.dtype == x.dtype, ST_DTYPE, "gather keeps the dtype of x");
  KILN_REQUIRE(axis >= 0 && axis < x.ndim, ST_ARG, "gather axis ", axis, " out of range for ", shape_str(x));
  KILN_REQUIRE(out.ndim == x.ndim - 1 + idx.ndim, ST_SHAPE, "gather output rank ", out.ndim, " is wrong");
  int64_t pre = 1, post = 1;
  for (int d = 0; d < axis; ++d) {
    KILN_REQUIRE(out.shape[d] == x.shape[d], ST_SHAPE, "gather output ", shape_str(out), " is wrong");
    pre *= x.shape[d];
  }
  for (int d = 0; d < idx.ndim; ++d)
    KILN_REQUIRE(out.shape[axis + d] == idx.shape[d], ST_SHAPE, "gather output ", shape_str(out), " is wrong");
  for (int d = static_cast<int>(axis) + 1; d < x.ndim; ++d) {
    KILN_REQUIRE(out.shape[d - 1 + idx.ndim] == x.shape[d], ST_SHAPE, "gather output ", shape_str(out), " is wrong");
    post *= x.shape[d];
  }
  const int64_t D = x.shape[axis];
  const int64_t k = idx.numel();
  const int32_t* pi = idx.ptr<int32_t>();
  for (int64_t i = 0; i < k; ++i)  // validate every index before reading x
    KILN_REQUIRE(pi[i] >= 0 && pi[i] < D, ST_ARG, "gather index ", pi[i], " at position ", i,
                 " is out of range for axis ", axis, " of size ", D);
  const int sz = kDTypeSize[x.dtype];
  const char* px = x.bytes();
  char* po = out.bytes();
  const size_t row = static_cast<size_t>(post * sz);
  parallel_for(pre * k, std::max<int64_t>(1, kGrain / std::max<int64_t>(post, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t p = t / k, j = t % k;
      __builtin_memcpy(po + t * row, px + (p * D + pi[j]) * row, row);
    }
  });
  return Status::ok();
}

// scatterAdd: g [pre..., k..., post...], idx int32 [k...]; attrs axis, size D -> out [pre..., D, post...]
static Status k_scatter_add(const TensorView* in, int, const TensorView& out, const double* attrs) {
  const TensorView& g = in[0];
  const TensorView& idx = in[1];
  const int64_t axis = static_cast<int64_t>(attrs[ATTR_SCATTER_ADD_AXIS]);
  const int64_t D = static_cast<int64_t>(attrs[ATTR_SCATTER_ADD_SIZE]);
  KILN_REQUIRE(g.contiguous() && idx.contiguous(), ST_ARG, "scatterAdd needs contiguous inputs");
  KILN_REQUIRE(idx.dtype == DT_INT32, ST_DTYPE, "scatterAdd indices must be int32, got ", kDTypeNames[idx.dtype]);
  KILN_REQUIRE((g.dtype == DT_FLOAT32 || g.dtype == DT_INT32) && out.dtype == g.dtype, ST_DTYPE,
               "scatterAdd takes float32 or int32, got ", kDTypeNames[g.dtype]);
  KILN_REQUIRE(axis >= 0 && axis < out.ndim && out.shape[axis] == D, ST_ARG, "scatterAdd axis/size mismatch");
  KILN_REQUIRE(g.ndim == out.ndim - 1 + idx.ndim, ST_SHAPE, "scatterAdd gradient rank ", g.ndim, " is wrong");
  int64_t pre = 1, post = 1;
  for (int d = 0; d < axis; ++d) {
    KILN_REQUIRE(g.shape[d] == out.shape[d], ST_SHAPE, "scatterAdd shapes disagree: ", shape_str(g), " vs ",
                 shape_str(out));
    pre *= out.shape[d];
  }
  for (int d = 0; d < idx.ndim; ++d)
    KILN_REQUIRE(g.shape[axis + d] == idx.shape[d], ST_SHAPE, "scatterAdd shapes disagree: ", shape_str(g), " vs ",
                 shape_str(idx));
  for (int d = static_cast<int>(axis) + 1; d < out.ndim; ++d) {
    KILN_REQUIRE(g.shape[d - 1 + idx.ndim] == out.shape[d], ST_SHAPE, "scatterAdd shapes disagree: ", shape_str(g),
                 " vs ", shape_str(out));
    post *= out.shape[d];
  }
  const int64_t k = idx.numel();
  const int32_t* pi = idx.ptr<int32_t>();
  for (int64_t i = 0; i < k; ++i)
    KILN_REQUIRE(pi[i] >= 0 && pi[i] < D, ST_ARG, "scatterAdd index ", pi[i], " at position ", i,
                 " is out of range for size ", D);
  const int64_t total = out.numel();
  if (g.dtype == DT_FLOAT32) {
    float* po = out.ptr<float>();
    const float* pg = g.ptr<float>();
    for (int64_t i = 0; i < total; ++i) po[i] = 0.f;
    parallel_for(pre, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t p = lo; p < hi; ++p)
        for (int64_t j = 0; j < k; ++j) {
          float* dst = po + (p * D + pi[j]) * post;
          const float* src = pg + (p * k + j) * post;
          for (int64_t q = 0; q < post; ++q) dst[q] += src[q];
        }
    });
  } else {
    uint32_t* po = reinterpret_cast<uint32_t*>(out.ptr<int32_t>());
    const uint32_t* pg = reinterpret_cast<const uint32_t*>(g.ptr<int32_t>());
    for (int64_t i = 0; i < total; ++i) po[i] = 0;
    for (int64_t p = 0; p < pre; ++p)
      for (int64_t j = 0; j < k; ++j)
        for (int64_t q = 0; q < post; ++q) po[(p * D + pi[j]) * post + q] += pg[(p * k + j) * post + q];
  }
  return Status::ok();
}

}  // namespace mv

void register_movement(KernelTable& t) {
  t.fn[OP_COPY] = mv::k_copy;
  t.fn[OP_CONCAT] = mv::k_concat;
  t.fn[OP_GATHER] = mv::k_gather;
  t.fn[OP_SCATTER_ADD] = mv::k_scatter_add;
}

#endif
