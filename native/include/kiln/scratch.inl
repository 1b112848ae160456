// Included INSIDE each ISA pass (no include guard on purpose) by the kernels that keep workspaces between calls
// (native/cpu/conv.cc, matmul.cc, quant.cc); the file that includes it includes <memory>.
//
// A std::vector per call cost a zero fill of the whole buffer and, above glibc's mmap threshold, an mmap and a
// page fault per page on every call (perf: memset and page faults ~25% of the conv fwd+bwd step, ~40% of a
// 256x256 GEMM). So each thread keeps its buffers between calls and only grows them. They are never zeroed: every
// kernel writes what it later reads.

// A grow-only buffer of at least n T's, one per thread and per Tag (Tag tells apart the buffers one kernel holds at
// once). A pool task that calls this gets its own thread's buffer; a pointer taken on the calling thread may be
// handed to the tasks (a thread_local must not be named inside a lambda that runs on another thread).
template <class T, int Tag>
static T* thread_scratch(int64_t n) {
  static thread_local std::unique_ptr<T[]> buf;
  static thread_local size_t cap = 0;
  const size_t need = static_cast<size_t>(n);
  if (cap < need) {
    buf.reset(new T[need]);
    cap = need;
  }
  return buf.get();
}

// The workspace of one call on one thread for kernels whose buffers scale with the batch: up to 32 MiB it is the
// thread's grow-only buffer for Slot, above that it lives for the call only, so one huge call does not pin its
// memory for the life of the process.
template <int Slot, class T = float>
class ThreadBuffer {
 public:
  T* get(int64_t n) {
    const size_t need = static_cast<size_t>(n);
    if (need <= kKeep) return thread_scratch<T, kSlotBase + Slot>(n);
    if (cap_ < need) {
      own_.reset(new T[need]);
      cap_ = need;
    }
    return own_.get();
  }

 private:
  static constexpr int kSlotBase = 1000;  // apart from the tags a file passes to thread_scratch itself
  static constexpr size_t kKeep = (size_t{32} << 20) / sizeof(T);
  std::unique_ptr<T[]> own_;
  size_t cap_ = 0;
};
