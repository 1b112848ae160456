// The only N-API file: the entry points (the buffer table and allocator are in buffers.cc, the N-API argument
// helpers in napi_util.h). Surface: alloc/free/read/write/run/supports/sync/info/setIsa/setThreads/stats, plus
// cudaAlloc/cudaSupports: a CUDA buffer lives in the same id table (device = 1) and free/read/write/run/sync
// route to native/cuda/ for it; run refuses to mix devices.
// Every argument is validated here (ids, dtypes, shapes, strides, bounds, attribute counts) before any
// pointer is formed; kernels then validate the op-specific shape rules. No C++ exception crosses into JS:
// every entry point catches and converts to a JS Error whose `code` the TS binding maps to a KilnError.
#include <node_api.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include "buffers.h"
#include "kiln/cpu_common.h"
#include "kiln/cpu_dispatch.h"
#include "kiln/cuda_plugin.h"
#include "kiln/pack_cache.h"
#include "kiln/cuda_runtime.h"
#include "kiln/op_ids.h"
#include "kiln/tensor_view.h"
#include "napi_util.h"

namespace kiln {

namespace {

Buffer* find_buffer(double id, JsError& err) {
  std::string why;
  Buffer* b = kiln::find_buffer(id, why);
  if (!b) err = {"KILN_ARG", why};
  return b;
}

bool is_int_in(double d, double lo, double hi) { return d >= lo && d <= hi && std::floor(d) == d; }

// Parses one view: id, dtype, ndim, offset, shape[ndim], strides[ndim] (strides omitted: contiguous output).
bool parse_view(const double* d, size_t len, size_t& pos, bool is_output, TensorView& v, uint64_t& id, JsError& err) {
  const size_t head = is_output ? 3 : 4;
  if (pos + head > len) {
    err = {"KILN_ARG", "tensor descriptor is truncated"};
    return false;
  }
  Buffer* b = find_buffer(d[pos], err);
  if (!b) return false;
  id = static_cast<uint64_t>(d[pos]);
  if (!is_int_in(d[pos + 1], 0, DT_COUNT - 1)) {
    err = {"KILN_DTYPE", "invalid dtype code " + std::to_string(d[pos + 1])};
    return false;
  }
  v.dtype = static_cast<int32_t>(d[pos + 1]);
  if (v.dtype != b->dtype) {
    err = {"KILN_DTYPE", std::string("descriptor says ") + kDTypeNames[v.dtype] + " but buffer " + std::to_string(id) +
                             " holds " + kDTypeNames[b->dtype]};
    return false;
  }
  if (!is_int_in(d[pos + 2], 0, kMaxDims)) {
    err = {"KILN_SHAPE", "rank must be in [0, " + std::to_string(kMaxDims) + "], got " + std::to_string(d[pos + 2])};
    return false;
  }
  v.ndim = static_cast<int32_t>(d[pos + 2]);
  v.offset = 0;
  if (!is_output) {
    if (!is_int_in(d[pos + 3], 0, kMaxIndex)) {
      err = {"KILN_ARG", "invalid element offset " + std::to_string(d[pos + 3])};
      return false;
    }
    v.offset = static_cast<int64_t>(d[pos + 3]);
  }
  pos += head;
  const size_t need = static_cast<size_t>(v.ndim) * (is_output ? 1 : 2);
  if (pos + need > len) {
    err = {"KILN_ARG", "tensor descriptor is truncated"};
    return false;
  }
  unsigned __int128 numel = 1;
  for (int i = 0; i < v.ndim; ++i) {
    if (!is_int_in(d[pos + i], 0, kMaxIndex)) {
      err = {"KILN_SHAPE",
             "dimension " + std::to_string(i) + " must be a non-negative integer, got " + std::to_string(d[pos + i])};
      return false;
    }
    v.shape[i] = static_cast<int64_t>(d[pos + i]);
    numel *= static_cast<unsigned __int128>(v.shape[i]);
    if (numel > static_cast<unsigned __int128>(kMaxIndex)) numel = static_cast<unsigned __int128>(kMaxIndex) + 1;
  }
  pos += v.ndim;
  if (is_output) {
    int64_t s = 1;
    for (int i = v.ndim - 1; i >= 0; --i) {
      v.strides[i] = s;
      s *= v.shape[i] == 0 ? 1 : v.shape[i];
    }
    if (numel != static_cast<unsigned __int128>(b->numel)) {
      err = {"KILN_SHAPE", "output shape " + shape_str(v) + " has a different element count than its buffer (" +
                               std::to_string(b->numel) + ")"};
      return false;
    }
  } else {
    unsigned __int128 last = static_cast<unsigned __int128>(v.offset);
    for (int i = 0; i < v.ndim; ++i) {
      if (!is_int_in(d[pos + i], 0, kMaxIndex)) {
        err = {"KILN_ARG",
               "stride " + std::to_string(i) + " must be a non-negative integer, got " + std::to_string(d[pos + i])};
        return false;
      }
      v.strides[i] = static_cast<int64_t>(d[pos + i]);
      if (v.shape[i] > 0) last += static_cast<unsigned __int128>(v.shape[i] - 1) * static_cast<uint64_t>(v.strides[i]);
    }
    pos += v.ndim;
    if (numel > 0 && last >= static_cast<unsigned __int128>(b->numel)) {
      err = {"KILN_ARG", "view " + shape_str(v) + " at offset " + std::to_string(v.offset) +
                             " reaches past the end of buffer " + std::to_string(id) + " (" + std::to_string(b->numel) +
                             " elements)"};
      return false;
    }
  }
  v.data = b->ptr;
  return true;
}

// ---------------- entry points ----------------

/** alloc(dtype, numel) arguments, and the byte size (refusing anything above 16 TiB). */
bool alloc_args(napi_env env, napi_callback_info info, int64_t& dt, int64_t& numel, uint64_t& bytes, JsError& err) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv, err)) return false;
  if (!get_index(env, argv[0], "dtype", 0, DT_COUNT - 1, dt, err)) return false;
  if (!get_index(env, argv[1], "element count", 0, kMaxIndex, numel, err)) return false;
  const unsigned __int128 bytes128 = static_cast<unsigned __int128>(numel) * kDTypeSize[dt];
  if (bytes128 > kMaxBytes) {
    err = {"KILN_OOM",
           "cannot allocate " + std::to_string(numel) + " " + kDTypeNames[dt] + " elements: above the 16 TiB limit"};
    return false;
  }
  bytes = static_cast<uint64_t>(bytes128);
  return true;
}

napi_value Alloc(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> lock(buffers_mutex());
  JsError err;
  int64_t dt, numel;
  uint64_t bytes;
  if (!alloc_args(env, info, dt, numel, bytes, err)) return throw_js(env, err);
  const uint64_t cls = size_class(bytes);
  void* p = cached_alloc(cls);
  if (!p)
    return throw_js(env, {"KILN_OOM", "out of memory: could not allocate " + std::to_string(bytes) + " bytes for " +
                                          std::to_string(numel) + " " + kDTypeNames[dt] + " elements"});
  // not zeroed: every kernel writes its whole output (the conformance suite checks every element)
  const uint64_t id = add_buffer(Buffer{p, bytes, cls, numel, static_cast<int32_t>(dt)});
  napi_value r;
  NAPI_OK(napi_create_double(env, static_cast<double>(id), &r));
  return r;
}

napi_value Free(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> lock(buffers_mutex());
  napi_value argv[1];
  JsError err;
  if (!get_args(env, info, 1, argv, err)) return throw_js(env, err);
  double id;
  if (!get_number(env, argv[0], "buffer id", id, err)) return throw_js(env, err);
  Buffer* b = find_buffer(id, err);
  if (!b) return throw_js(env, err);
  remove_buffer(static_cast<uint64_t>(id));
  return nullptr;
}

bool typed_array_for(napi_env env, napi_value v, const Buffer& b, void*& data, size_t& len, JsError& err) {
  bool is_ta = false;
  napi_is_typedarray(env, v, &is_ta);
  if (!is_ta) {
    err = {"KILN_ARG", "expected a typed array"};
    return false;
  }
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &type, &len, &data, &ab, &off) != napi_ok) {
    err = {"KILN_ARG", "could not read the typed array"};
    return false;
  }
  napi_typedarray_type want;
  switch (b.dtype) {
    case DT_FLOAT32: want = napi_float32_array; break;
    case DT_INT32: want = napi_int32_array; break;
    case DT_FLOAT16:
    case DT_BFLOAT16: want = napi_uint16_array; break;
    case DT_INT8: want = napi_int8_array; break;
    default: want = napi_uint8_array; break;
  }
  if (type != want) {
    err = {"KILN_DTYPE", std::string("typed array does not match the buffer dtype ") + kDTypeNames[b.dtype]};
    return false;
  }
  if (len > 0 && data == nullptr) {
    err = {"KILN_ARG", "typed array is detached"};
    return false;
  }
  return true;
}

enum class Direction { kToBuffer, kFromBuffer };

// write(id, typedArray, elemOffset) / read(id, typedArray, elemOffset): copies between the typed array and
// buffer[elemOffset : elemOffset + len], after checking the dtype and the range.
napi_value Copy(napi_env env, napi_callback_info info, Direction dir) {
  std::lock_guard<std::mutex> lock(buffers_mutex());
  const bool to_buffer = dir == Direction::kToBuffer;
  napi_value argv[3];
  JsError err;
  if (!get_args(env, info, 3, argv, err)) return throw_js(env, err);
  double id;
  if (!get_number(env, argv[0], "buffer id", id, err)) return throw_js(env, err);
  Buffer* b = find_buffer(id, err);
  if (!b) return throw_js(env, err);
  void* data;
  size_t len;
  if (!typed_array_for(env, argv[1], *b, data, len, err)) return throw_js(env, err);
  int64_t off;
  if (!get_index(env, argv[2], "element offset", 0, kMaxIndex, off, err)) return throw_js(env, err);
  if (static_cast<unsigned __int128>(off) + len > static_cast<unsigned __int128>(b->numel))
    return throw_js(
        env, {"KILN_ARG", std::string(to_buffer ? "write" : "read") + " of " + std::to_string(len) + " elements at " +
                              std::to_string(off) + " overruns buffer of " + std::to_string(b->numel)});
  const int sz = kDTypeSize[b->dtype];
  char* at = static_cast<char*>(b->ptr) + off * sz;
  if (to_buffer) touch_buffer(*b);
  if (b->device == 1) {
    const Status st = to_buffer ? cuda::to_device(at, data, len * sz) : cuda::to_host(data, at, len * sz);
    if (!st.good()) return throw_js(env, js_error(st));
    return nullptr;
  }
  if (len) {
    if (to_buffer)
      std::memcpy(at, data, len * sz);
    else
      std::memcpy(data, at, len * sz);
  }
  return nullptr;
}
napi_value Write(napi_env env, napi_callback_info info) { return Copy(env, info, Direction::kToBuffer); }
napi_value Read(napi_env env, napi_callback_info info) { return Copy(env, info, Direction::kFromBuffer); }

bool attr_ok(int op, double a) {
  if (op == OP_FILL) return true;                        // NaN and +-inf are valid fill values
  if (op == OP_CLAMP) return a == a;                     // +-inf = unbounded
  return std::isfinite(a) && std::fabs(a) <= kMaxIndex;  // everything else is used as a finite number
}

// run(opId, inputs: Float64Array, output: Float64Array, attrs: Float64Array)
napi_value Run(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> lock(buffers_mutex());
  napi_value argv[4];
  JsError err;
  if (!get_args(env, info, 4, argv, err)) return throw_js(env, err);
  int64_t op;
  if (!get_index(env, argv[0], "op id", 0, OP_COUNT - 1, op, err)) return throw_js(env, err);
  const double *ind, *outd, *attrs;
  size_t inlen, outlen, nattrs;
  if (!get_f64_array(env, argv[1], "input descriptors", ind, inlen, err)) return throw_js(env, err);
  if (!get_f64_array(env, argv[2], "output descriptor", outd, outlen, err)) return throw_js(env, err);
  if (!get_f64_array(env, argv[3], "attributes", attrs, nattrs, err)) return throw_js(env, err);
  const std::string opname = kOpNames[op];
  if (static_cast<int>(nattrs) != kOpAttrCount[op])
    return throw_js(env, {"KILN_ARG", "op '" + opname + "' takes " + std::to_string(kOpAttrCount[op]) +
                                          " attributes, got " + std::to_string(nattrs)});
  for (size_t i = 0; i < nattrs; ++i)
    if (!attr_ok(static_cast<int>(op), attrs[i]))
      return throw_js(env, {"KILN_ARG", "op '" + opname + "' attribute " + std::to_string(i) + " is " +
                                            std::to_string(attrs[i]) + ", expected a finite number"});
  if (inlen < 1 || !is_int_in(ind[0], 0, 64))
    return throw_js(env, {"KILN_ARG", "input descriptor must start with the input count (0..64)"});
  const int nin = static_cast<int>(ind[0]);
  const int want = kOpInputs[op];
  if ((want >= 0 && nin != want) || (want < 0 && nin < 1))
    return throw_js(
        env, {"KILN_ARG", "op '" + opname + "' takes " + (want < 0 ? std::string("at least 1") : std::to_string(want)) +
                              " inputs, got " + std::to_string(nin)});
  std::vector<TensorView> ins(static_cast<size_t>(nin));
  std::vector<uint64_t> in_ids(static_cast<size_t>(nin));
  size_t pos = 1;
  for (int i = 0; i < nin; ++i)
    if (!parse_view(ind, inlen, pos, false, ins[i], in_ids[i], err)) {
      err.message = "op '" + opname + "' input " + std::to_string(i) + ": " + err.message;
      return throw_js(env, err);
    }
  if (pos != inlen) return throw_js(env, {"KILN_ARG", "input descriptor has trailing values"});
  TensorView out;
  uint64_t out_id;
  size_t opos = 0;
  if (!parse_view(outd, outlen, opos, true, out, out_id, err)) {
    err.message = "op '" + opname + "' output: " + err.message;
    return throw_js(env, err);
  }
  if (opos != outlen) return throw_js(env, {"KILN_ARG", "output descriptor has trailing values"});
  for (int i = 0; i < nin; ++i)
    if (in_ids[i] == out_id)
      return throw_js(env, {"KILN_ARG", "op '" + opname + "': the output buffer aliases input " + std::to_string(i)});
  // In-place inputs (optimizer state): contiguous float32, and no other input may share their buffer, so a
  // kernel that writes them cannot change what it reads through another input. The mask covers 32 inputs: an op
  // with in-place inputs takes no more, so none escapes the check.
  if (kOpInplace[op] != 0 && nin > 32)
    return throw_js(env, {"KILN_ARG", "op '" + opname + "' updates inputs in place and takes at most 32 inputs, got " +
                                          std::to_string(nin)});
  for (int i = 0; i < nin && i < 32; ++i) {
    if (!(kOpInplace[op] & (1u << i))) continue;
    if (ins[i].dtype != DT_FLOAT32 || !ins[i].contiguous())
      return throw_js(env, {"KILN_ARG", "op '" + opname + "': input " + std::to_string(i) +
                                            " is updated in place and must be a contiguous float32 tensor"});
    for (int j = 0; j < nin; ++j)
      if (j != i && in_ids[j] == in_ids[i])
        return throw_js(env,
                        {"KILN_ARG", "op '" + opname + "': input " + std::to_string(i) +
                                         " is updated in place but shares its buffer with input " + std::to_string(j)});
  }
  // every buffer on one device: host kernels never see device pointers, nor CUDA kernels host ones
  std::string unused;
  const auto device_of = [&](uint64_t id) { return kiln::find_buffer(static_cast<double>(id), unused)->device; };
  const int32_t device = device_of(out_id);
  for (int i = 0; i < nin; ++i)
    if (device_of(in_ids[i]) != device)
      return throw_js(env, {"KILN_BACKEND", "op '" + opname + "': input " + std::to_string(i) + " is on " +
                                                (device ? "the cpu" : "a CUDA device") + " but the output is on " +
                                                (device ? "a CUDA device" : "the cpu")});
  const KernelFn fn = device == 1 ? cuda::kernel_for(static_cast<int>(op)) : kernel_for(static_cast<int>(op));
  if (!fn)
    return throw_js(
        env, {"KILN_BACKEND", "op '" + opname + "' has no kernel on backend '" + (device ? "cuda" : "cpu") + "'"});
  // what the kernel writes gets new contents; what it reads is named by (id, generation) for packed weights
  std::vector<uint64_t> in_gens(static_cast<size_t>(nin));
  Buffer* ob = kiln::find_buffer(static_cast<double>(out_id), unused);
  touch_buffer(*ob);
  for (int i = 0; i < nin; ++i) {
    Buffer* ib = kiln::find_buffer(static_cast<double>(in_ids[i]), unused);
    if (i < 32 && (kOpInplace[op] & (1u << i))) touch_buffer(*ib);
    in_gens[i] = ib->gen;
  }
  const RunInputs run_inputs{ins.data(), in_ids.data(), in_gens.data(), nin};
  set_run_inputs(&run_inputs);
  struct ClearRunInputs {
    ~ClearRunInputs() { set_run_inputs(nullptr); }
  } clear_run_inputs;
  Status st;
  try {
    st = fn(ins.data(), nin, out, attrs);
  } catch (const std::bad_alloc&) {
    st = fail(ST_OOM, "out of memory while running op '" + opname + "'");
  } catch (const std::exception& e) {
    st = fail(ST_BACKEND, std::string("op '") + opname + "' failed: " + e.what());
  } catch (...) { st = fail(ST_BACKEND, "op '" + opname + "' failed with an unknown error"); }
  if (!st.good()) return throw_js(env, js_error(st));
  return nullptr;
}

napi_value Supports(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  JsError err;
  if (!get_args(env, info, 1, argv, err)) return throw_js(env, err);
  int64_t op;
  if (!get_index(env, argv[0], "op id", 0, OP_COUNT - 1, op, err)) return throw_js(env, err);
  napi_value r;
  NAPI_OK(napi_get_boolean(env, kernel_for(static_cast<int>(op)) != nullptr, &r));
  return r;
}

napi_value Sync(napi_env env, napi_callback_info) {
  // CPU kernels complete before run() returns; CUDA ones are waited for, and their error flags read
  const Status st = cuda::synchronize();
  if (!st.good()) return throw_js(env, js_error(st));
  napi_value u;
  NAPI_OK(napi_get_undefined(env, &u));
  return u;
}

// cudaAlloc(dtype, numel): device memory in the same id table
napi_value CudaAlloc(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> lock(buffers_mutex());
  JsError err;
  int64_t dt, numel;
  uint64_t bytes;
  if (!alloc_args(env, info, dt, numel, bytes, err)) return throw_js(env, err);
  void* p = nullptr;
  const Status st = cuda::alloc(bytes, &p);
  if (!st.good()) return throw_js(env, js_error(st));
  const uint64_t id = add_buffer(Buffer{p, bytes, bytes, numel, static_cast<int32_t>(dt), 1});
  napi_value r;
  NAPI_OK(napi_create_double(env, static_cast<double>(id), &r));
  return r;
}

napi_value CudaSupports(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  JsError err;
  if (!get_args(env, info, 1, argv, err)) return throw_js(env, err);
  int64_t op;
  if (!get_index(env, argv[0], "op id", 0, OP_COUNT - 1, op, err)) return throw_js(env, err);
  napi_value r;
  NAPI_OK(napi_get_boolean(env, cuda::kernel_for(static_cast<int>(op)) != nullptr, &r));
  return r;
}

// ---- NCCL (kn.distributed on the cuda backend; dlopen'd at run time, see native/cuda/nccl.cc) ----

// ncclStatus() -> '' when NCCL can be used, else the reason
napi_value NcclStatus(napi_env env, napi_callback_info) {
  const Status st = cuda::nccl_status();
  return str(env, st.good() ? std::string() : st.message);
}

// ncclUniqueId() -> Uint8Array(128)
napi_value NcclUniqueId(napi_env env, napi_callback_info) {
  uint8_t id[128];
  const Status st = cuda::nccl_unique_id(id);
  if (!st.good()) return throw_js(env, js_error(st));
  void* data = nullptr;
  napi_value ab, arr;
  NAPI_OK(napi_create_arraybuffer(env, 128, &data, &ab));
  std::memcpy(data, id, 128);
  NAPI_OK(napi_create_typedarray(env, napi_uint8_array, 128, ab, 0, &arr));
  return arr;
}

// ncclInit(rank, size, id: Uint8Array(128))
napi_value NcclInit(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  JsError err;
  if (!get_args(env, info, 3, argv, err)) return throw_js(env, err);
  int64_t rank, size;
  if (!get_index(env, argv[1], "size", 1, 1 << 20, size, err) ||
      !get_index(env, argv[0], "rank", 0, static_cast<double>(size - 1), rank, err))
    return throw_js(env, err);
  bool is_ta = false;
  napi_is_typedarray(env, argv[2], &is_ta);
  napi_typedarray_type type;
  size_t len = 0, off = 0;
  void* raw = nullptr;
  napi_value ab;
  if (!is_ta || napi_get_typedarray_info(env, argv[2], &type, &len, &raw, &ab, &off) != napi_ok ||
      type != napi_uint8_array || len != 128 || raw == nullptr)
    return throw_js(env, {"KILN_ARG", "the NCCL id must be a Uint8Array of 128 bytes"});
  const Status st = cuda::nccl_init(static_cast<int>(rank), static_cast<int>(size), static_cast<uint8_t*>(raw));
  if (!st.good()) return throw_js(env, js_error(st));
  return nullptr;
}

// ncclAllreduce(bufferId, op) / ncclBroadcast(bufferId, root): the whole device buffer, in place, on kiln's stream
napi_value NcclCollective(napi_env env, napi_callback_info info, bool reduce) {
  std::lock_guard<std::mutex> lock(buffers_mutex());
  napi_value argv[2];
  JsError err;
  if (!get_args(env, info, 2, argv, err)) return throw_js(env, err);
  double id;
  if (!get_number(env, argv[0], "buffer id", id, err)) return throw_js(env, err);
  Buffer* b = find_buffer(id, err);
  if (!b) return throw_js(env, err);
  if (b->device != 1) return throw_js(env, {"KILN_ARG", "NCCL collectives take CUDA device buffers"});
  int64_t arg;
  if (!get_index(env, argv[1], reduce ? "reduce op" : "root", 0, reduce ? 3 : (1 << 20), arg, err))
    return throw_js(env, err);
  const Status st = reduce ? cuda::nccl_allreduce(b->ptr, b->numel, b->dtype, static_cast<int>(arg))
                           : cuda::nccl_broadcast(b->ptr, b->numel, b->dtype, static_cast<int>(arg));
  if (!st.good()) return throw_js(env, js_error(st));
  return nullptr;
}
napi_value NcclAllreduce(napi_env env, napi_callback_info info) { return NcclCollective(env, info, true); }
napi_value NcclBroadcast(napi_env env, napi_callback_info info) { return NcclCollective(env, info, false); }

napi_value Info(napi_env env, napi_callback_info) {
  napi_value o, names, isas;
  NAPI_OK(napi_create_object(env, &o));
  NAPI_OK(napi_create_array_with_length(env, OP_COUNT, &names));
  for (int i = 0; i < OP_COUNT; ++i) NAPI_OK(napi_set_element(env, names, i, str(env, kOpNames[i])));
  set_prop(env, o, "opNames", names);
  set_prop(env, o, "opCount", num(env, OP_COUNT));
  set_prop(env, o, "isa", str(env, isa_name(active_isa())));
  set_prop(env, o, "isaError", str(env, isa_error()));
  NAPI_OK(napi_create_array(env, &isas));
  uint32_t k = 0;
  for (int i = 2; i >= 0; --i)
    if (isa_supported(i)) NAPI_OK(napi_set_element(env, isas, k++, str(env, isa_name(i))));
  set_prop(env, o, "supportedIsas", isas);
  set_prop(env, o, "threads", num(env, num_threads()));
  napi_value cuda;
  NAPI_OK(napi_create_object(env, &cuda));
  const CudaInfo ci = cuda_info();
  set_prop(env, cuda, "compiled", boolean(env, ci.compiled));
  set_prop(env, cuda, "available", boolean(env, ci.available));
  set_prop(env, cuda, "deviceCount", num(env, ci.device_count));
  set_prop(env, cuda, "reason", str(env, ci.reason));
  set_prop(env, cuda, "device", str(env, ci.name));
  set_prop(env, cuda, "matmul", str(env, ci.matmul));
  set_prop(env, cuda, "cublasLt", str(env, ci.cublaslt));
  set_prop(env, cuda, "cublasLtReason", str(env, ci.cublaslt_reason));
  set_prop(env, cuda, "wgmma", boolean(env, ci.wgmma));
  set_prop(env, cuda, "wgmmaReason", str(env, ci.wgmma_reason));
  set_prop(env, o, "cuda", cuda);
#if defined(__VERSION__)
  set_prop(env, o, "compiler", str(env, __VERSION__));
#endif
  return o;
}

napi_value SetIsa(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  JsError err;
  if (!get_args(env, info, 1, argv, err)) return throw_js(env, err);
  char buf[32] = {0};
  size_t n = 0;
  if (napi_get_value_string_utf8(env, argv[0], buf, sizeof buf, &n) != napi_ok)
    return throw_js(env, {"KILN_ARG", "ISA name must be a string"});
  const int idx = isa_index(buf);
  if (idx < 0)
    return throw_js(env, {"KILN_ARG", std::string("unknown ISA '") + buf + "', expected avx512, avx2 or scalar"});
  if (!set_isa(idx)) return throw_js(env, {"KILN_BACKEND", std::string("this CPU does not support ") + buf});
  return nullptr;
}

// cudaLoad(path): opens the optional CUDA library (kiln/cuda_plugin.h); '' when loaded, else why not. Called once
// by the JS loader before anything else touches CUDA; an empty path records that none was built.
napi_value CudaLoad(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  JsError err;
  if (!get_args(env, info, 1, argv, err)) return throw_js(env, err);
  size_t n = 0;
  if (napi_get_value_string_utf8(env, argv[0], nullptr, 0, &n) != napi_ok || n > 4096)
    return throw_js(env, {"KILN_ARG", "the CUDA library path must be a string of at most 4096 bytes"});
  std::string path(n, '\0');
  if (napi_get_value_string_utf8(env, argv[0], path.data(), n + 1, &n) != napi_ok)
    return throw_js(env, {"KILN_ARG", "the CUDA library path must be a string"});
  if (path.find('\0') != std::string::npos)
    return throw_js(env, {"KILN_ARG", "the CUDA library path must not contain a NUL character"});
  return str(env, cuda::load_plugin(path));
}

napi_value SetThreads(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  JsError err;
  if (!get_args(env, info, 1, argv, err)) return throw_js(env, err);
  int64_t n;
  if (!get_index(env, argv[0], "thread count", 1, 1024, n, err)) return throw_js(env, err);
  set_num_threads(static_cast<int>(n));
  return nullptr;
}

// peakFlops(ms): the measured float32 multiply-add peak of the active ISA on every pool thread, in GFLOP/s,
// running for about `ms` milliseconds. One thread's rate is timed first to size the run.
napi_value PeakFlops(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  JsError err;
  if (!get_args(env, info, 1, argv, err)) return throw_js(env, err);
  int64_t ms;
  if (!get_index(env, argv[0], "measurement time (ms)", 1, 10000, ms, err)) return throw_js(env, err);
  using clock = std::chrono::steady_clock;
  int64_t iters = 2000;
  double secs = 0;
  while (true) {  // grow the probe until it runs long enough to time
    const auto t0 = clock::now();
    fma_loop(iters);
    secs = std::chrono::duration<double>(clock::now() - t0).count();
    if (secs > 2e-3 || iters > (int64_t{1} << 40)) break;
    iters *= 4;
  }
  const int64_t per_thread = std::max<int64_t>(1, static_cast<int64_t>(iters * (ms * 1e-3) / std::max(secs, 1e-9)));
  const int threads = num_threads();
  std::atomic<int64_t> done_flops{0};
  const auto t0 = clock::now();
  parallel_for(threads, 1, [&](int64_t lo, int64_t hi) {
    double f = 0;
    for (int64_t i = lo; i < hi; ++i) f += fma_loop(per_thread);
    done_flops.fetch_add(static_cast<int64_t>(f));
  });
  const double s = std::chrono::duration<double>(clock::now() - t0).count();
  napi_value o;
  NAPI_OK(napi_create_object(env, &o));
  set_prop(env, o, "gflops", num(env, static_cast<double>(done_flops.load()) / std::max(s, 1e-9) / 1e9));
  set_prop(env, o, "threads", num(env, threads));
  set_prop(env, o, "isa", str(env, isa_name(active_isa())));
  set_prop(env, o, "seconds", num(env, s));
  return o;
}

napi_value Stats(napi_env env, napi_callback_info) {
  std::lock_guard<std::mutex> lock(buffers_mutex());
  napi_value o;
  NAPI_OK(napi_create_object(env, &o));
  const TableStats t = table_stats();
  const CacheStats c = cache_stats();
  set_prop(env, o, "buffers", num(env, static_cast<double>(t.buffers)));
  set_prop(env, o, "bytes", num(env, static_cast<double>(t.bytes)));
  set_prop(env, o, "cachedBytes", num(env, static_cast<double>(c.bytes)));
  set_prop(env, o, "cacheHits", num(env, static_cast<double>(c.hits)));
  set_prop(env, o, "cacheMisses", num(env, static_cast<double>(c.misses)));
  const PackStats p = pack_stats();
  set_prop(env, o, "packedEntries", num(env, static_cast<double>(p.entries)));
  set_prop(env, o, "packedBytes", num(env, static_cast<double>(p.bytes)));
  set_prop(env, o, "packedHits", num(env, static_cast<double>(p.hits)));
  set_prop(env, o, "packedMisses", num(env, static_cast<double>(p.misses)));
  return o;
}

napi_value EmptyCache(napi_env env, napi_callback_info) {
  std::lock_guard<std::mutex> lock(buffers_mutex());
  empty_cache();
  pack_cache_clear();
  cuda::empty_cache();
  return nullptr;
}

// setPackCacheLimit(mb) -> the previous budget in MiB: how much the packed-weight cache may keep (0: off)
napi_value SetPackCacheLimit(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> lock(buffers_mutex());
  napi_value argv[1];
  JsError err;
  if (!get_args(env, info, 1, argv, err)) return throw_js(env, err);
  int64_t mb;
  if (!get_index(env, argv[0], "pack cache budget (MiB)", 0, 1 << 24, mb, err)) return throw_js(env, err);
  return num(env, static_cast<double>(pack_cache_set_limit(static_cast<uint64_t>(mb) << 20) >> 20));
}

napi_value Init(napi_env env, napi_value exports) {
  struct Fn {
    const char* name;
    napi_callback cb;
  } fns[] = {{"alloc", Alloc},
             {"free", Free},
             {"write", Write},
             {"read", Read},
             {"run", Run},
             {"supports", Supports},
             {"sync", Sync},
             {"info", Info},
             {"setIsa", SetIsa},
             {"setThreads", SetThreads},
             {"stats", Stats},
             {"peakFlops", PeakFlops},
             {"emptyCache", EmptyCache},
             {"setPackCacheLimit", SetPackCacheLimit},
             {"cudaLoad", CudaLoad},
             {"cudaAlloc", CudaAlloc},
             {"cudaSupports", CudaSupports},
             {"ncclStatus", NcclStatus},
             {"ncclUniqueId", NcclUniqueId},
             {"ncclInit", NcclInit},
             {"ncclAllreduce", NcclAllreduce},
             {"ncclBroadcast", NcclBroadcast}};
  for (const Fn& f : fns) {
    napi_value v;
    if (napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.cb, nullptr, &v) != napi_ok) return nullptr;
    if (napi_set_named_property(env, exports, f.name, v) != napi_ok) return nullptr;
  }
  return exports;
}

}  // namespace
}  // namespace kiln

NAPI_MODULE(NODE_GYP_MODULE_NAME, kiln::Init)
