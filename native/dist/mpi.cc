// kiln_mpi.node: a thin N-API binding over the MPI C API for kn.distributed (src/distributed/). Built only when
// CMake finds MPI; the main addon never links libmpi.
//
// Threads: every MPI call, MPI_Init and MPI_Finalize included, runs on one communication thread, so
// MPI_THREAD_FUNNELED is enough and no MPI call ever comes from a libuv pool thread. The JS thread queues jobs
// (FIFO, so collectives are issued in the order JS asked for them, which must be the same on every rank) and
//   mode 0: blocks until the job is done (sync allreduce, broadcast, barrier);
//   mode 1: gets a handle and carries on; wait(handle) blocks later (DDP buckets overlap the rest of backward);
//   mode 2: gets a Promise, resolved on the JS thread through a threadsafe function (allreduceAsync).
// The one exception is abort(), which calls MPI_Abort from the JS thread: the comm thread may be stuck in a
// collective with a dead peer, and ending the job is the point.
//
// Messages are reduced in chunks (16 MiB by default): MPI implementations allocate a temporary the size of the
// message, and above glibc's mmap threshold that is a fresh mmap (and page faults) on every call.
#include <dlfcn.h>
#include <mpi.h>
#include <node_api.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "napi_util.h"

namespace {

using kiln::JsError;

enum Kind { K_INIT, K_ALLREDUCE, K_BROADCAST, K_ALLGATHER, K_BARRIER, K_FINALIZE };
// reduction ops (src/distributed/comm.ts REDUCE_OPS)
enum RedOp { OP_SUM = 0, OP_MEAN = 1, OP_MAX = 2, OP_MIN = 3 };
// element types, from the typed array passed in
enum Elem { E_F32, E_F64, E_I32, E_U8 };

struct Job {
  Kind kind = K_BARRIER;
  char* send = nullptr;
  char* recv = nullptr;
  int64_t count = 0;  // elements (allgather: per rank)
  Elem elem = E_F32;
  int op = OP_SUM;
  int root = 0;
  bool done = false;
  std::string error;  // empty on success
  napi_ref ref_send = nullptr, ref_recv = nullptr;
  napi_deferred deferred = nullptr;
};

struct State {
  std::thread thread;
  std::mutex mu;
  std::condition_variable cv_work, cv_done;
  std::deque<Job*> queue;
  bool initialized = false, finalized = false;
  napi_env owner = nullptr;  // the one JS environment allowed to use MPI
  int rank = 0, size = 1, local_rank = 0, local_size = 1, provided = 0;
  std::string library, init_error;
  int64_t chunk_bytes = int64_t(16) << 20;
  bool backoff = false;
  napi_threadsafe_function tsfn = nullptr;
  int64_t promises = 0;  // outstanding mode-2 jobs (the tsfn is ref'd while > 0)
  std::unordered_map<int64_t, Job*> handles;
  int64_t next_handle = 1;
};
State& S = *new State();  // never destroyed: a joinable comm thread must not meet ~thread at exit

size_t elem_size(Elem e) { return e == E_F64 ? 8 : e == E_U8 ? 1 : 4; }
MPI_Datatype mpi_type(Elem e) {
  switch (e) {
    case E_F64: return MPI_DOUBLE;
    case E_I32: return MPI_INT;
    case E_U8: return MPI_UNSIGNED_CHAR;
    default: return MPI_FLOAT;
  }
}
MPI_Op mpi_op(int op) { return op == OP_MAX ? MPI_MAX : op == OP_MIN ? MPI_MIN : MPI_SUM; }

std::string mpi_error(const char* what, int rc) {
  char buf[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(rc, buf, &len);
  return std::string(what) + " failed: " + std::string(buf, static_cast<size_t>(std::max(len, 0)));
}

// Waits for a non-blocking request, sleeping between polls (poll: 'backoff'): a rank waiting for a straggler
// then uses a few percent of a core instead of spinning one at 100%.
int wait_backoff(MPI_Request* req) {
  const auto t0 = std::chrono::steady_clock::now();
  int sleep_us = 20;
  for (;;) {
    int flag = 0;
    const int rc = MPI_Test(req, &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS || flag) return rc;
    if (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(1)) continue;
    usleep(static_cast<useconds_t>(sleep_us));
    sleep_us = std::min(sleep_us * 2, 500);
  }
}

void scale(Job* j, double f) {
  if (j->elem == E_F32) {
    float* p = reinterpret_cast<float*>(j->send);
    const float ff = static_cast<float>(f);
    for (int64_t i = 0; i < j->count; ++i) p[i] *= ff;
  } else if (j->elem == E_F64) {
    double* p = reinterpret_cast<double*>(j->send);
    for (int64_t i = 0; i < j->count; ++i) p[i] *= f;
  }
}

// Ends the process with a line that says why, when the launcher stops this rank (mpirun sends SIGTERM to every
// rank once one of them fails). Only write() and _exit(): async-signal-safe.
char g_term_msg[200];
size_t g_term_len = 0;
void on_term(int) {
  ssize_t w = write(2, g_term_msg, g_term_len);
  (void)w;
  _exit(143);
}

void do_init(Job* j) {
  // Open MPI dlopens its components, some of which expect libmpi's symbols in the global scope. A library loaded
  // by Node's dlopen (this addon's dependency libmpi) is RTLD_LOCAL: promote it, as mpi4py does.
  Dl_info dl;
  if (dladdr(reinterpret_cast<void*>(&MPI_Init_thread), &dl) && dl.dli_fname)
    dlopen(dl.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
  int provided = 0;
  int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  if (rc != MPI_SUCCESS) {
    j->error = mpi_error("MPI_Init_thread", rc);
    return;
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &S.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &S.size);
  MPI_Comm local;
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, S.rank, MPI_INFO_NULL, &local) == MPI_SUCCESS) {
    MPI_Comm_rank(local, &S.local_rank);
    MPI_Comm_size(local, &S.local_size);
    MPI_Comm_free(&local);
  }
  S.provided = provided;
  char lib[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int len = 0;
  MPI_Get_library_version(lib, &len);
  S.library.assign(lib, static_cast<size_t>(std::max(len, 0)));
  while (!S.library.empty() && (S.library.back() == '\n' || S.library.back() == '\0')) S.library.pop_back();
  const size_t nl = S.library.find('\n');
  if (nl != std::string::npos) S.library.resize(nl);
}

void do_job(Job* j) {
  const MPI_Datatype dt = mpi_type(j->elem);
  const int64_t per_chunk = std::max<int64_t>(1, S.chunk_bytes / static_cast<int64_t>(elem_size(j->elem)));
  const size_t es = elem_size(j->elem);
  int rc = MPI_SUCCESS;
  switch (j->kind) {
    case K_INIT: do_init(j); return;
    case K_FINALIZE:
      rc = MPI_Finalize();
      if (rc != MPI_SUCCESS) j->error = mpi_error("MPI_Finalize", rc);
      return;
    case K_ALLREDUCE:
      for (int64_t off = 0; off < j->count && rc == MPI_SUCCESS; off += per_chunk) {
        const int n = static_cast<int>(std::min(per_chunk, j->count - off));
        void* p = j->send + off * static_cast<int64_t>(es);
        if (S.backoff) {
          MPI_Request req;
          rc = MPI_Iallreduce(MPI_IN_PLACE, p, n, dt, mpi_op(j->op), MPI_COMM_WORLD, &req);
          if (rc == MPI_SUCCESS) rc = wait_backoff(&req);
        } else {
          rc = MPI_Allreduce(MPI_IN_PLACE, p, n, dt, mpi_op(j->op), MPI_COMM_WORLD);
        }
      }
      if (rc != MPI_SUCCESS)
        j->error = mpi_error("MPI_Allreduce", rc);
      else if (j->op == OP_MEAN)
        scale(j, 1.0 / S.size);
      return;
    case K_BROADCAST:
      for (int64_t off = 0; off < j->count && rc == MPI_SUCCESS; off += per_chunk) {
        const int n = static_cast<int>(std::min(per_chunk, j->count - off));
        void* p = j->send + off * static_cast<int64_t>(es);
        if (S.backoff) {
          MPI_Request req;
          rc = MPI_Ibcast(p, n, dt, j->root, MPI_COMM_WORLD, &req);
          if (rc == MPI_SUCCESS) rc = wait_backoff(&req);
        } else {
          rc = MPI_Bcast(p, n, dt, j->root, MPI_COMM_WORLD);
        }
      }
      if (rc != MPI_SUCCESS) j->error = mpi_error("MPI_Bcast", rc);
      return;
    case K_ALLGATHER: {
      const int n = static_cast<int>(j->count);
      if (S.backoff) {
        MPI_Request req;
        rc = MPI_Iallgather(j->send, n, dt, j->recv, n, dt, MPI_COMM_WORLD, &req);
        if (rc == MPI_SUCCESS) rc = wait_backoff(&req);
      } else {
        rc = MPI_Allgather(j->send, n, dt, j->recv, n, dt, MPI_COMM_WORLD);
      }
      if (rc != MPI_SUCCESS) j->error = mpi_error("MPI_Allgather", rc);
      return;
    }
    case K_BARRIER:
      if (S.backoff) {
        MPI_Request req;
        rc = MPI_Ibarrier(MPI_COMM_WORLD, &req);
        if (rc == MPI_SUCCESS) rc = wait_backoff(&req);
      } else {
        rc = MPI_Barrier(MPI_COMM_WORLD);
      }
      if (rc != MPI_SUCCESS) j->error = mpi_error("MPI_Barrier", rc);
      return;
  }
}

void comm_loop() {
  for (;;) {
    Job* j;
    {
      std::unique_lock<std::mutex> lk(S.mu);
      S.cv_work.wait(lk, [] { return !S.queue.empty(); });
      j = S.queue.front();
      S.queue.pop_front();
    }
    do_job(j);
    const bool last = j->kind == K_FINALIZE || (j->kind == K_INIT && !j->error.empty());
    const bool promise = j->deferred != nullptr;
    {
      std::lock_guard<std::mutex> lk(S.mu);
      j->done = true;
    }
    S.cv_done.notify_all();
    if (promise) napi_call_threadsafe_function(S.tsfn, j, napi_tsfn_blocking);
    if (last) return;
  }
}

void enqueue(Job* j) {
  {
    std::lock_guard<std::mutex> lk(S.mu);
    S.queue.push_back(j);
  }
  S.cv_work.notify_one();
}

void wait_done(Job* j) {
  std::unique_lock<std::mutex> lk(S.mu);
  S.cv_done.wait(lk, [j] { return j->done; });
}

// Runs a job with no buffers (init, finalize) on the comm thread and waits for it; returns its error ('' if none).
std::string run_control(Kind kind) {
  Job* j = new Job();
  j->kind = kind;
  enqueue(j);
  wait_done(j);
  std::string e = j->error;
  delete j;
  return e;
}

// MPI_Finalize on the comm thread, which then ends. The caller made sure no collective is in flight.
std::string finalize_now() {
  std::string e = run_control(K_FINALIZE);
  S.thread.join();
  S.finalized = true;
  return e;
}

// Gives up on MPI without finalizing (a failure, or collectives still in flight): MPI_Finalize synchronises with
// the other ranks, which may be waiting for this one; the launcher ends them once this rank exits. The comm
// thread is left as it is.
void abandon_now() {
  S.finalized = true;
  if (S.thread.joinable()) S.thread.detach();
}

void release(napi_env env, Job* j) {
  if (j->ref_send) napi_delete_reference(env, j->ref_send);
  if (j->ref_recv) napi_delete_reference(env, j->ref_recv);
  delete j;
}

// Runs on the JS thread for each finished mode-2 job: settles its Promise.
void settle(napi_env env, napi_value, void*, void* data) {
  Job* j = static_cast<Job*>(data);
  if (env != nullptr) {
    napi_value v = nullptr;
    if (j->error.empty()) {
      napi_get_undefined(env, &v);
      napi_resolve_deferred(env, j->deferred, v);
    } else {
      napi_value msg = kiln::str(env, j->error), code = kiln::str(env, "KILN_DIST");
      napi_create_error(env, code, msg, &v);
      napi_reject_deferred(env, j->deferred, v);
    }
    if (--S.promises == 0 && S.tsfn) napi_unref_threadsafe_function(env, S.tsfn);
    release(env, j);
  }
}

bool check_env(napi_env env, JsError& err, bool need_init = true) {
  if (S.owner != nullptr && S.owner != env) {
    err = {"KILN_DIST", "kn.distributed is used from the main thread only (MPI is one per process)"};
    return false;
  }
  if (need_init && !S.initialized) {
    err = {"KILN_DIST", "MPI is not initialized: call kn.distributed.init() first"};
    return false;
  }
  if (S.finalized) {
    err = {"KILN_DIST", "MPI was already finalized; no collective can run after finalize()"};
    return false;
  }
  return true;
}

// A typed array argument: its element type, length and data, and a napi_value to keep alive.
bool get_typed(napi_env env, napi_value v, const char* what, Elem& e, int64_t& len, char*& data, JsError& err) {
  bool is_ta = false;
  napi_is_typedarray(env, v, &is_ta);
  if (!is_ta) {
    err = {"KILN_ARG", std::string(what) + " must be a Float32Array, Float64Array, Int32Array or Uint8Array"};
    return false;
  }
  napi_typedarray_type type;
  size_t n = 0, off = 0;
  void* raw = nullptr;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &type, &n, &raw, &ab, &off) != napi_ok) {
    err = {"KILN_ARG", std::string(what) + ": could not read the typed array"};
    return false;
  }
  switch (type) {
    case napi_float32_array: e = E_F32; break;
    case napi_float64_array: e = E_F64; break;
    case napi_int32_array: e = E_I32; break;
    case napi_uint8_array: e = E_U8; break;
    default:
      err = {"KILN_ARG", std::string(what) + " must be a Float32Array, Float64Array, Int32Array or Uint8Array"};
      return false;
  }
  if (n > 0 && raw == nullptr) {
    err = {"KILN_ARG", std::string(what) + " is detached"};
    return false;
  }
  len = static_cast<int64_t>(n);
  data = static_cast<char*>(raw);
  return true;
}

// Queues `j` in `mode` and returns what JS gets: undefined (0), a handle number (1) or a Promise (2).
napi_value submit(napi_env env, Job* j, int64_t mode, napi_value keep_send, napi_value keep_recv) {
  if (mode != 0) {
    if (keep_send) napi_create_reference(env, keep_send, 1, &j->ref_send);
    if (keep_recv) napi_create_reference(env, keep_recv, 1, &j->ref_recv);
  }
  napi_value out = nullptr;
  if (mode == 2) {
    if (napi_create_promise(env, &j->deferred, &out) != napi_ok) {
      release(env, j);
      napi_throw_error(env, "KILN_BACKEND", "could not create a Promise");
      return nullptr;
    }
    if (S.promises++ == 0) napi_ref_threadsafe_function(env, S.tsfn);
    enqueue(j);
    return out;
  }
  enqueue(j);
  if (mode == 1) {
    const int64_t h = S.next_handle++;
    S.handles[h] = j;
    return kiln::num(env, static_cast<double>(h));
  }
  wait_done(j);
  std::string e = j->error;
  release(env, j);
  if (!e.empty()) return kiln::throw_js(env, {"KILN_DIST", e});
  napi_get_undefined(env, &out);
  return out;
}

// ---- exports ----

// init(chunkBytes, backoff, termMessage) -> { rank, size, localRank, localSize, threadLevel, library }
// termMessage: install the SIGTERM handler that says why this rank ends (JS has no SIGTERM listener; Node's own
// handler only restores the terminal and re-raises).
napi_value Init(napi_env env, napi_callback_info info) {
  JsError err;
  napi_value argv[3];
  if (!kiln::get_args(env, info, 3, argv, err)) return kiln::throw_js(env, err);
  if (!check_env(env, err, false)) return kiln::throw_js(env, err);
  int64_t chunk = 0;
  if (!kiln::get_index(env, argv[0], "chunkBytes", 4096, double(int64_t(1) << 40), chunk, err))
    return kiln::throw_js(env, err);
  bool backoff = false, term = false;
  napi_get_value_bool(env, argv[1], &backoff);
  napi_get_value_bool(env, argv[2], &term);
  if (!S.initialized) {
    if (!S.init_error.empty()) return kiln::throw_js(env, {"KILN_DIST", S.init_error});
    S.owner = env;
    napi_value name = kiln::str(env, "kiln_mpi");
    NAPI_OK(
        napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, nullptr, nullptr, nullptr, settle, &S.tsfn));
    NAPI_OK(napi_unref_threadsafe_function(env, S.tsfn));
    S.thread = std::thread(comm_loop);
    S.init_error = run_control(K_INIT);
    if (!S.init_error.empty()) {
      S.thread.join();  // comm_loop ends after a failed init
      return kiln::throw_js(env, {"KILN_DIST", S.init_error});
    }
    S.initialized = true;
    if (term) {
      const int n = snprintf(g_term_msg, sizeof g_term_msg,
                             "kiln: rank %d of %d was stopped by the launcher (another rank failed, or the job "
                             "was interrupted)\n",
                             S.rank, S.size);
      g_term_len = n > 0 ? std::min(static_cast<size_t>(n), sizeof g_term_msg - 1) : 0;
      struct sigaction sa;
      std::memset(&sa, 0, sizeof sa);
      sa.sa_handler = on_term;
      sigaction(SIGTERM, &sa, nullptr);
    }
  }
  S.chunk_bytes = chunk;
  S.backoff = backoff;
  napi_value o;
  NAPI_OK(napi_create_object(env, &o));
  kiln::set_prop(env, o, "rank", kiln::num(env, S.rank));
  kiln::set_prop(env, o, "size", kiln::num(env, S.size));
  kiln::set_prop(env, o, "localRank", kiln::num(env, S.local_rank));
  kiln::set_prop(env, o, "localSize", kiln::num(env, S.local_size));
  kiln::set_prop(env, o, "threadLevel", kiln::num(env, S.provided));
  kiln::set_prop(env, o, "library", kiln::str(env, S.library));
  return o;
}

int64_t get_mode(napi_env env, napi_value v, JsError& err, bool& ok) {
  int64_t m = 0;
  ok = kiln::get_index(env, v, "mode", 0, 2, m, err);
  return m;
}

// allreduce(typedArray, op, mode) and broadcast(typedArray, root, mode): in place
napi_value InPlace(napi_env env, napi_callback_info info, Kind kind) {
  const bool reduce = kind == K_ALLREDUCE;
  JsError err;
  napi_value argv[3];
  if (!kiln::get_args(env, info, 3, argv, err) || !check_env(env, err)) return kiln::throw_js(env, err);
  Elem e;
  int64_t len = 0, arg = 0;
  char* data = nullptr;
  bool ok = false;
  if (!get_typed(env, argv[0], reduce ? "allreduce buffer" : "broadcast buffer", e, len, data, err) ||
      !kiln::get_index(env, argv[1], reduce ? "reduce op" : "root", 0, reduce ? 3 : S.size - 1, arg, err))
    return kiln::throw_js(env, err);
  const int64_t mode = get_mode(env, argv[2], err, ok);
  if (!ok) return kiln::throw_js(env, err);
  if (reduce && arg == OP_MEAN && e != E_F32 && e != E_F64)
    return kiln::throw_js(env, {"KILN_ARG", "allreduce 'mean' needs a Float32Array or Float64Array"});
  Job* j = new Job();
  j->kind = kind;
  j->send = data;
  j->count = len;
  j->elem = e;
  (reduce ? j->op : j->root) = static_cast<int>(arg);
  return submit(env, j, mode, argv[0], nullptr);
}
napi_value Allreduce(napi_env env, napi_callback_info info) { return InPlace(env, info, K_ALLREDUCE); }
napi_value Broadcast(napi_env env, napi_callback_info info) { return InPlace(env, info, K_BROADCAST); }

// allgather(send, recv, mode): recv holds size * send.length elements of the same type
napi_value Allgather(napi_env env, napi_callback_info info) {
  JsError err;
  napi_value argv[3];
  if (!kiln::get_args(env, info, 3, argv, err) || !check_env(env, err)) return kiln::throw_js(env, err);
  Elem es, er;
  int64_t ns = 0, nr = 0;
  char *ds = nullptr, *dr = nullptr;
  bool ok = false;
  if (!get_typed(env, argv[0], "allgather input", es, ns, ds, err) ||
      !get_typed(env, argv[1], "allgather output", er, nr, dr, err))
    return kiln::throw_js(env, err);
  const int64_t mode = get_mode(env, argv[2], err, ok);
  if (!ok) return kiln::throw_js(env, err);
  if (es != er) return kiln::throw_js(env, {"KILN_ARG", "allgather input and output must be the same array type"});
  if (ns > INT32_MAX)
    return kiln::throw_js(
        env, {"KILN_ARG", "allgather input has " + std::to_string(ns) + " elements; at most 2147483647 per rank"});
  if (nr != ns * S.size)
    return kiln::throw_js(env, {"KILN_ARG", "allgather output has " + std::to_string(nr) + " elements, expected " +
                                                std::to_string(ns * S.size) + " (input length x world size)"});
  if (ns > 0 && ds + ns * int64_t(elem_size(es)) > dr && dr + nr * int64_t(elem_size(er)) > ds)
    return kiln::throw_js(env, {"KILN_ARG", "allgather input and output must not overlap"});
  Job* j = new Job();
  j->kind = K_ALLGATHER;
  j->send = ds;
  j->recv = dr;
  j->count = ns;
  j->elem = es;
  return submit(env, j, mode, argv[0], argv[1]);
}

// barrier(mode)
napi_value Barrier(napi_env env, napi_callback_info info) {
  JsError err;
  napi_value argv[1];
  if (!kiln::get_args(env, info, 1, argv, err) || !check_env(env, err)) return kiln::throw_js(env, err);
  bool ok = false;
  const int64_t mode = get_mode(env, argv[0], err, ok);
  if (!ok) return kiln::throw_js(env, err);
  Job* j = new Job();
  j->kind = K_BARRIER;
  return submit(env, j, mode, nullptr, nullptr);
}

// wait(handle): blocks until a mode-1 job is done; throws its error
napi_value Wait(napi_env env, napi_callback_info info) {
  JsError err;
  napi_value argv[1];
  if (!kiln::get_args(env, info, 1, argv, err) || !check_env(env, err, false)) return kiln::throw_js(env, err);
  int64_t h = 0;
  if (!kiln::get_index(env, argv[0], "handle", 1, 9007199254740991.0, h, err)) return kiln::throw_js(env, err);
  auto it = S.handles.find(h);
  if (it == S.handles.end())
    return kiln::throw_js(env, {"KILN_ARG", "no pending collective with handle " + std::to_string(h) +
                                                " (each handle is waited on once)"});
  Job* j = it->second;
  S.handles.erase(it);
  wait_done(j);
  std::string e = j->error;
  release(env, j);
  if (!e.empty()) return kiln::throw_js(env, {"KILN_DIST", e});
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

// finalize(): waits for queued work, then MPI_Finalize on the comm thread. Idempotent.
napi_value Finalize(napi_env env, napi_callback_info info) {
  napi_value u;
  napi_get_undefined(env, &u);
  if (!S.initialized || S.finalized || S.owner != env) return u;
  for (auto& [h, j] : S.handles) {
    wait_done(j);
    release(env, j);
  }
  S.handles.clear();
  const std::string e = finalize_now();
  if (S.tsfn) {
    napi_release_threadsafe_function(S.tsfn, napi_tsfn_release);
    S.tsfn = nullptr;
  }
  if (!e.empty()) return kiln::throw_js(env, {"KILN_DIST", e});
  return u;
}

// abort(code): MPI_Abort from the JS thread; ends every rank of the job
napi_value Abort(napi_env env, napi_callback_info info) {
  JsError err;
  napi_value argv[1];
  int64_t code = 1;
  if (!kiln::get_args(env, info, 1, argv, err) || !kiln::get_index(env, argv[0], "code", 0, 255, code, err))
    return kiln::throw_js(env, err);
  if (S.initialized && !S.finalized) MPI_Abort(MPI_COMM_WORLD, static_cast<int>(code));
  _exit(static_cast<int>(code));
}

// abandon(): the process is exiting after a failure; see abandon_now()
napi_value Abandon(napi_env env, napi_callback_info) {
  if (S.initialized && !S.finalized && S.owner == env) abandon_now();
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

// state() -> { initialized, finalized, pending }
napi_value StateOf(napi_env env, napi_callback_info) {
  napi_value o;
  NAPI_OK(napi_create_object(env, &o));
  kiln::set_prop(env, o, "initialized", kiln::boolean(env, S.initialized));
  kiln::set_prop(env, o, "finalized", kiln::boolean(env, S.finalized));
  kiln::set_prop(env, o, "pending", kiln::num(env, static_cast<double>(S.handles.size() + S.promises)));
  return o;
}

// The env is going away (worker exit, or process exit without process.exit()): finalize if still up.
void cleanup(void* arg) {
  napi_env env = static_cast<napi_env>(arg);
  if (!S.initialized || S.finalized || S.owner != env) return;
  bool busy;
  {
    std::lock_guard<std::mutex> lk(S.mu);
    busy = !S.queue.empty() || !S.handles.empty() || S.promises > 0;
  }
  if (busy)  // collectives still in flight: finalizing could wait forever for a peer
    abandon_now();
  else
    finalize_now();
}

napi_value ModuleInit(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"init", nullptr, Init, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"allreduce", nullptr, Allreduce, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"broadcast", nullptr, Broadcast, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"allgather", nullptr, Allgather, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"barrier", nullptr, Barrier, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"wait", nullptr, Wait, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"finalize", nullptr, Finalize, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"abort", nullptr, Abort, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"abandon", nullptr, Abandon, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"state", nullptr, StateOf, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_add_env_cleanup_hook(env, cleanup, env);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, ModuleInit)
