// A small persistent thread pool. parallel_for splits [0, n) into at most num_threads() chunks; the calling
// thread takes one. Calls from inside a worker (nested parallelism) run inline.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#if defined(__linux__)
#include <sched.h>
#endif

#include "kiln/cpu_common.h"

namespace kiln {
namespace {

thread_local bool t_in_parallel = false;

// How long an idle thread polls before it sleeps on a condition variable: waking a sleeping thread costs
// tens of microseconds on this kind of VM, which small kernels (an MLP's GEMMs) paid on every call.
constexpr int kSpin = 4000;
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

class Pool {
 public:
  explicit Pool(int n) { resize(n); }
  ~Pool() { stop(); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int n) {
    std::lock_guard<std::mutex> job(job_mu_);  // never while a job runs
    stop();
    stopping_ = false;
    stop_hint_.store(false, std::memory_order_relaxed);
    for (int i = 0; i < n - 1; ++i) workers_.emplace_back([this] { loop(); });
  }

  // Runs task(0..chunks-1) on the pool and the calling thread. One job at a time (callers from several JS
  // threads queue on job_mu_). Chunks are claimed under mu_ and tagged with the job's generation, so a worker
  // that wakes late can never take a chunk of a later job. The first exception thrown by any chunk is
  // rethrown on the calling thread once every chunk has finished.
  void run(int64_t chunks, const std::function<void(int64_t)>& task) {
    std::lock_guard<std::mutex> job(job_mu_);
    uint64_t gen;
    {
      std::lock_guard<std::mutex> lk(mu_);
      task_ = &task;
      chunks_ = chunks;
      next_ = 0;
      pending_ = chunks;
      error_ = nullptr;
      gen = ++generation_;
      pending_hint_.store(chunks, std::memory_order_relaxed);
      gen_hint_.store(gen, std::memory_order_release);
    }
    cv_.notify_all();
    work(gen);
    // the hints only decide whether to poll a little longer; the state itself is read under mu_ below
    for (int i = 0; i < kSpin && pending_hint_.load(std::memory_order_acquire) > 0; ++i) cpu_relax();
    std::exception_ptr err;
    {
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, [&] { return pending_ == 0; });
      task_ = nullptr;
      err = error_;
      error_ = nullptr;
    }
    if (err) std::rethrow_exception(err);
  }

 private:
  void work(uint64_t gen) {
    t_in_parallel = true;
    for (;;) {
      int64_t c;
      const std::function<void(int64_t)>* task;
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (generation_ != gen || next_ >= chunks_) break;
        c = next_++;
        task = task_;
      }
      std::exception_ptr err;
      try {
        (*task)(c);
      } catch (...) { err = std::current_exception(); }
      std::lock_guard<std::mutex> lk(mu_);
      if (err && !error_) error_ = err;
      pending_hint_.store(--pending_, std::memory_order_release);
      if (pending_ == 0) done_cv_.notify_all();
    }
    t_in_parallel = false;
  }

  void loop() {
    uint64_t seen = 0;
    for (;;) {
      for (int i = 0; i < kSpin && gen_hint_.load(std::memory_order_acquire) == seen &&
                      !stop_hint_.load(std::memory_order_relaxed);
           ++i)
        cpu_relax();
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
      }
      work(seen);
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stopping_ = true;
      stop_hint_.store(true, std::memory_order_relaxed);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex job_mu_;  // one job at a time
  std::mutex mu_;      // everything below
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t)>* task_ = nullptr;
  int64_t chunks_ = 0;
  int64_t next_ = 0;
  int64_t pending_ = 0;
  uint64_t generation_ = 0;
  std::exception_ptr error_;
  bool stopping_ = false;
  std::atomic<uint64_t> gen_hint_{0};
  std::atomic<int64_t> pending_hint_{0};
  std::atomic<bool> stop_hint_{false};
};

int default_threads() {
  if (const char* e = std::getenv("KILN_NUM_THREADS")) {
    const int v = std::atoi(e);
    if (v >= 1 && v <= 1024) return v;
  }
  unsigned hc = std::thread::hardware_concurrency();
#if defined(__linux__)
  // the cores this process may run on: under mpirun's default binding (one core per rank), taskset or a cgroup
  // cpuset that is fewer than the machine has, and a thread per machine core would pile onto them
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) hc = std::min(hc == 0 ? 256u : hc, static_cast<unsigned>(n));
  }
#endif
  return hc == 0 ? 1 : static_cast<int>(std::min(hc, 256u));
}

Pool& pool() {
  static Pool* p = new Pool(default_threads());  // leaked on purpose: no join at process exit
  return *p;
}

}  // namespace

int num_threads() { return pool().size(); }

void set_num_threads(int n) { pool().resize(std::max(1, std::min(n, 1024))); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int threads = t_in_parallel ? 1 : num_threads();
  const int64_t chunks = std::min<int64_t>(threads, (n + grain - 1) / grain);
  if (chunks <= 1) {
    fn(0, n);
    return;
  }
  const int64_t per = (n + chunks - 1) / chunks;
  const std::function<void(int64_t)> task = [&](int64_t c) {
    const int64_t lo = c * per, hi = std::min(n, lo + per);
    if (lo < hi) fn(lo, hi);
  };
  pool().run(chunks, task);
}

}  // namespace kiln
