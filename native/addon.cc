// The only N-API file. Surface: alloc/free/read/write/run/supports/sync/info/setIsa/setThreads/stats, plus
// cudaAlloc/cudaSupports: a CUDA buffer lives in the same id table (device = 1) and free/read/write/run/sync
// route to native/cuda/ for it; run refuses to mix devices.
// Every argument is validated here (ids, dtypes, shapes, strides, bounds, attribute counts) before any
// pointer is formed; kernels then validate the op-specific shape rules. No C++ exception crosses into JS:
// every entry point catches and converts to a JS Error whose `code` the TS binding maps to a KilnError.
#include <node_api.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include "kiln/cpu_dispatch.h"
#include "kiln/cuda_runtime.h"
#include "kiln/op_ids.h"
#include "kiln/tensor_view.h"

namespace kiln {

std::string shape_str(const TensorView& t) {
  std::string s = "[";
  for (int i = 0; i < t.ndim; ++i) {
    if (i) s += ", ";
    s += std::to_string(t.shape[i]);
  }
  return s + "]";
}

namespace {

constexpr double kMaxIndex = 9007199254740991.0;  // 2^53 - 1
constexpr uint64_t kMaxBytes = 1ull << 44;        // 16 TiB: anything above is certainly a mistake

struct Buffer {
  void* ptr = nullptr;
  uint64_t bytes = 0;     // requested
  uint64_t capacity = 0;  // allocated (size class)
  int64_t numel = 0;
  int32_t dtype = 0;
  int32_t device = 0;  // 0 host (cpu backend), 1 CUDA device memory
};

// ---- caching allocator ----
// Fresh large allocations cost an mmap plus a page fault per page on first touch (measured ~35 ms for 16 MiB
// in this sandbox against ~1 ms for the kernel itself), and a training loop allocates the same sizes every
// step. Freed buffers of >= 64 KiB go to per-size-class free lists and are reused; the cache is capped
// (KILN_CPU_CACHE_MB, default 1024) and emptied before an allocation is allowed to fail.
constexpr uint64_t kCacheMin = 64 * 1024;

uint64_t size_class(uint64_t bytes) {
  uint64_t c = ((bytes + 63) / 64) * 64;
  if (c < 64) c = 64;
  if (c < kCacheMin) return c;  // small: not cached, so no rounding beyond the 64-byte alignment
  if (c <= (1u << 20)) return ((c + 4095) / 4096) * 4096;
  uint64_t p = 1;
  while ((p << 1) <= c) p <<= 1;
  const uint64_t step = p / 8;  // 12.5% granularity
  return ((c + step - 1) / step) * step;
}

struct Cache {
  std::unordered_map<uint64_t, std::vector<void*>> lists;
  uint64_t bytes = 0;
  uint64_t limit = 0;
  uint64_t hits = 0, misses = 0;
};

Cache& cache() {
  static Cache* c = [] {
    auto* k = new Cache();
    uint64_t mb = 1024;
    if (const char* e = std::getenv("KILN_CPU_CACHE_MB")) {
      char* end = nullptr;
      const unsigned long long v = std::strtoull(e, &end, 10);
      if (end && *end == 0) mb = v;
    }
    k->limit = mb << 20;
    return k;
  }();
  return *c;
}

void empty_cache() {
  Cache& c = cache();
  for (auto& kv : c.lists)
    for (void* p : kv.second) std::free(p);
  c.lists.clear();
  c.bytes = 0;
}

void* cached_alloc(uint64_t cls) {
  Cache& c = cache();
  if (cls >= kCacheMin) {
    auto it = c.lists.find(cls);
    if (it != c.lists.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.bytes -= cls;
      ++c.hits;
      return p;
    }
    ++c.misses;
  }
  void* p = std::aligned_alloc(64, cls + 64);  // +64: vector tails may read past the end
  if (!p && c.bytes > 0) {
    empty_cache();
    p = std::aligned_alloc(64, cls + 64);
  }
  return p;
}

void cached_free(void* p, uint64_t cls) {
  Cache& c = cache();
  if (cls >= kCacheMin && c.bytes + cls <= c.limit) {
    c.lists[cls].push_back(p);
    c.bytes += cls;
    return;
  }
  std::free(p);
}

std::unordered_map<uint64_t, Buffer>& buffers() {
  static auto* m = new std::unordered_map<uint64_t, Buffer>();
  return *m;
}
uint64_t g_next_id = 1;
uint64_t g_live_bytes = 0;
// Guards the buffer table: several worker_threads may load the addon in one process.
std::mutex g_buffers_mu;

struct JsError {
  const char* code;
  std::string message;
};

const char* code_for(StatusCode c) {
  switch (c) {
    case ST_SHAPE: return "KILN_SHAPE";
    case ST_DTYPE: return "KILN_DTYPE";
    case ST_ARG: return "KILN_ARG";
    case ST_OOM: return "KILN_OOM";
    default: return "KILN_BACKEND";
  }
}

// ---- tiny N-API helpers: every failure becomes a JsError (no exceptions) ----
#define NAPI_OK(call)                                                              \
  do {                                                                             \
    if ((call) != napi_ok) {                                                       \
      napi_throw_error(env, "KILN_BACKEND", "internal N-API call failed: " #call); \
      return nullptr;                                                              \
    }                                                                              \
  } while (0)

napi_value throw_js(napi_env env, const JsError& e) {
  napi_throw_error(env, e.code, e.message.c_str());
  return nullptr;
}

bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value* argv, JsError& err) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) {
    err = {"KILN_BACKEND", "could not read arguments"};
    return false;
  }
  if (argc < want) {
    err = {"KILN_ARG", "expected " + std::to_string(want) + " arguments, got " + std::to_string(argc)};
    return false;
  }
  return true;
}

bool get_number(napi_env env, napi_value v, const char* what, double& out, JsError& err) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    err = {"KILN_ARG", std::string(what) + " must be a number"};
    return false;
  }
  napi_get_value_double(env, v, &out);
  return true;
}

bool get_index(napi_env env, napi_value v, const char* what, double lo, double hi, int64_t& out, JsError& err) {
  double d;
  if (!get_number(env, v, what, d, err)) return false;
  if (!(d >= lo && d <= hi) || std::floor(d) != d) {
    err = {"KILN_ARG", std::string(what) + " must be an integer in [" + std::to_string(static_cast<int64_t>(lo)) +
                           ", " + std::to_string(static_cast<int64_t>(hi)) + "], got " + std::to_string(d)};
    return false;
  }
  out = static_cast<int64_t>(d);
  return true;
}

bool get_f64_array(napi_env env, napi_value v, const char* what, const double*& data, size_t& len, JsError& err) {
  bool is_ta = false;
  napi_is_typedarray(env, v, &is_ta);
  if (!is_ta) {
    err = {"KILN_ARG", std::string(what) + " must be a Float64Array"};
    return false;
  }
  napi_typedarray_type type;
  void* raw = nullptr;
  napi_value ab;
  size_t off = 0;
  if (napi_get_typedarray_info(env, v, &type, &len, &raw, &ab, &off) != napi_ok || type != napi_float64_array) {
    err = {"KILN_ARG", std::string(what) + " must be a Float64Array"};
    return false;
  }
  data = static_cast<const double*>(raw);
  if (len > 0 && data == nullptr) {
    err = {"KILN_ARG", std::string(what) + " is detached"};
    return false;
  }
  return true;
}

Buffer* find_buffer(double id_d, JsError& err) {
  if (!(id_d >= 1 && id_d <= kMaxIndex) || std::floor(id_d) != id_d) {
    err = {"KILN_ARG", "invalid buffer id " + std::to_string(id_d)};
    return nullptr;
  }
  auto it = buffers().find(static_cast<uint64_t>(id_d));
  if (it == buffers().end()) {
    err = {"KILN_ARG", "buffer " + std::to_string(static_cast<uint64_t>(id_d)) +
                           " does not exist (it was freed, or the tensor was disposed)"};
    return nullptr;
  }
  return &it->second;
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
  std::lock_guard<std::mutex> lock(g_buffers_mu);
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
  const uint64_t id = g_next_id++;
  buffers()[id] = Buffer{p, bytes, cls, numel, static_cast<int32_t>(dt)};
  g_live_bytes += bytes;
  napi_value r;
  NAPI_OK(napi_create_double(env, static_cast<double>(id), &r));
  return r;
}

napi_value Free(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> lock(g_buffers_mu);
  napi_value argv[1];
  JsError err;
  if (!get_args(env, info, 1, argv, err)) return throw_js(env, err);
  double id;
  if (!get_number(env, argv[0], "buffer id", id, err)) return throw_js(env, err);
  Buffer* b = find_buffer(id, err);
  if (!b) return throw_js(env, err);
  if (b->device == 1)
    cuda::release(b->ptr, b->capacity);
  else {
    cached_free(b->ptr, b->capacity);
    g_live_bytes -= b->bytes;
  }
  buffers().erase(static_cast<uint64_t>(id));
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

// write(id, typedArray, elemOffset)
napi_value Write(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> lock(g_buffers_mu);
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
    return throw_js(env, {"KILN_ARG", "write of " + std::to_string(len) + " elements at " + std::to_string(off) +
                                          " overruns buffer of " + std::to_string(b->numel)});
  const int sz = kDTypeSize[b->dtype];
  if (b->device == 1) {
    const Status st = cuda::to_device(static_cast<char*>(b->ptr) + off * sz, data, len * sz);
    if (!st.good()) return throw_js(env, {code_for(st.code), st.message});
    return nullptr;
  }
  if (len) std::memcpy(static_cast<char*>(b->ptr) + off * sz, data, len * sz);
  return nullptr;
}

// read(id, typedArray, elemOffset): copies buffer[elemOffset : elemOffset + len] into the typed array
napi_value Read(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> lock(g_buffers_mu);
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
    return throw_js(env, {"KILN_ARG", "read of " + std::to_string(len) + " elements at " + std::to_string(off) +
                                          " overruns buffer of " + std::to_string(b->numel)});
  const int sz = kDTypeSize[b->dtype];
  if (b->device == 1) {
    const Status st = cuda::to_host(data, static_cast<char*>(b->ptr) + off * sz, len * sz);
    if (!st.good()) return throw_js(env, {code_for(st.code), st.message});
    return nullptr;
  }
  if (len) std::memcpy(data, static_cast<char*>(b->ptr) + off * sz, len * sz);
  return nullptr;
}

bool attr_ok(int op, double a) {
  if (op == OP_FILL) return true;                        // NaN and +-inf are valid fill values
  if (op == OP_CLAMP) return a == a;                     // +-inf = unbounded
  return std::isfinite(a) && std::fabs(a) <= kMaxIndex;  // everything else is used as a finite number
}

// run(opId, inputs: Float64Array, output: Float64Array, attrs: Float64Array)
napi_value Run(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> lock(g_buffers_mu);
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
  // kernel that writes them cannot change what it reads through another input.
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
  const int32_t device = buffers()[out_id].device;
  for (int i = 0; i < nin; ++i)
    if (buffers()[in_ids[i]].device != device)
      return throw_js(env, {"KILN_BACKEND", "op '" + opname + "': input " + std::to_string(i) + " is on " +
                                                (device ? "the cpu" : "a CUDA device") + " but the output is on " +
                                                (device ? "a CUDA device" : "the cpu")});
  const KernelFn fn = device == 1 ? cuda::kernel_for(static_cast<int>(op)) : kernel_for(static_cast<int>(op));
  if (!fn)
    return throw_js(
        env, {"KILN_BACKEND", "op '" + opname + "' has no kernel on backend '" + (device ? "cuda" : "cpu") + "'"});
  Status st;
  try {
    st = fn(ins.data(), nin, out, attrs);
  } catch (const std::bad_alloc&) {
    st = fail(ST_OOM, "out of memory while running op '" + opname + "'");
  } catch (const std::exception& e) {
    st = fail(ST_BACKEND, std::string("op '") + opname + "' failed: " + e.what());
  } catch (...) { st = fail(ST_BACKEND, "op '" + opname + "' failed with an unknown error"); }
  if (!st.good()) return throw_js(env, {code_for(st.code), st.message});
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
  if (!st.good()) return throw_js(env, {code_for(st.code), st.message});
  napi_value u;
  NAPI_OK(napi_get_undefined(env, &u));
  return u;
}

// cudaAlloc(dtype, numel): device memory in the same id table
napi_value CudaAlloc(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> lock(g_buffers_mu);
  JsError err;
  int64_t dt, numel;
  uint64_t bytes;
  if (!alloc_args(env, info, dt, numel, bytes, err)) return throw_js(env, err);
  void* p = nullptr;
  const Status st = cuda::alloc(bytes, &p);
  if (!st.good()) return throw_js(env, {code_for(st.code), st.message});
  const uint64_t id = g_next_id++;
  buffers()[id] = Buffer{p, bytes, bytes, numel, static_cast<int32_t>(dt), 1};
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

napi_value set_prop(napi_env env, napi_value obj, const char* key, napi_value v) {
  if (napi_set_named_property(env, obj, key, v) != napi_ok) return nullptr;
  return obj;
}
napi_value str(napi_env env, const std::string& s) {
  napi_value v = nullptr;
  napi_create_string_utf8(env, s.c_str(), s.size(), &v);
  return v;
}
napi_value num(napi_env env, double d) {
  napi_value v = nullptr;
  napi_create_double(env, d, &v);
  return v;
}
napi_value boolean(napi_env env, bool b) {
  napi_value v = nullptr;
  napi_get_boolean(env, b, &v);
  return v;
}

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

napi_value SetThreads(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  JsError err;
  if (!get_args(env, info, 1, argv, err)) return throw_js(env, err);
  int64_t n;
  if (!get_index(env, argv[0], "thread count", 1, 1024, n, err)) return throw_js(env, err);
  set_num_threads(static_cast<int>(n));
  return nullptr;
}

napi_value Stats(napi_env env, napi_callback_info) {
  std::lock_guard<std::mutex> lock(g_buffers_mu);
  napi_value o;
  NAPI_OK(napi_create_object(env, &o));
  set_prop(env, o, "buffers", num(env, static_cast<double>(buffers().size())));
  set_prop(env, o, "bytes", num(env, static_cast<double>(g_live_bytes)));
  set_prop(env, o, "cachedBytes", num(env, static_cast<double>(cache().bytes)));
  set_prop(env, o, "cacheHits", num(env, static_cast<double>(cache().hits)));
  set_prop(env, o, "cacheMisses", num(env, static_cast<double>(cache().misses)));
  return o;
}

napi_value EmptyCache(napi_env env, napi_callback_info) {
  std::lock_guard<std::mutex> lock(g_buffers_mu);
  empty_cache();
  cuda::empty_cache();
  return nullptr;
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
             {"emptyCache", EmptyCache},
             {"cudaAlloc", CudaAlloc},
             {"cudaSupports", CudaSupports}};
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
