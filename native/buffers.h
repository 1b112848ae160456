// The addon's memory: every tensor buffer (host or CUDA device) lives in one table keyed by a numeric id, and
// host buffers come from a caching allocator. No N-API here: native/addon.cc is the only N-API file and holds
// buffers_mutex() around every call into this module (several worker threads may load the addon).
#pragma once
#include <cstdint>
#include <mutex>
#include <string>

#include "kiln/tensor_view.h"

namespace kiln {

inline constexpr double kMaxIndex = 9007199254740991.0;  // 2^53 - 1, the largest id, count or offset accepted
inline constexpr uint64_t kMaxBytes = 1ull << 44;        // 16 TiB: anything above is certainly a mistake

struct Buffer {
  void* ptr = nullptr;
  uint64_t bytes = 0;     // requested
  uint64_t capacity = 0;  // allocated (size class)
  int64_t numel = 0;
  int32_t dtype = 0;
  int32_t device = 0;  // 0 host (cpu backend), 1 CUDA device memory
  uint64_t gen = 0;    // which contents it holds: new at every write (touch_buffer), never reused
};

/** A size in MiB from the environment variable `name` (a decimal integer), or `def` when unset or malformed. */
uint64_t env_megabytes(const char* name, uint64_t def);

// ---- caching allocator (host memory) ----
/** The allocation size for a request: 64-byte granules, then pages, then 12.5% steps above 1 MiB. */
uint64_t size_class(uint64_t bytes);
/** 64-byte aligned memory of a size class (+64 bytes of readable tail), from the cache when one is free. */
void* cached_alloc(uint64_t cls);
void cached_free(void* p, uint64_t cls);
/** Frees every cached (unused) host buffer. */
void empty_cache();
struct CacheStats {
  uint64_t bytes = 0, hits = 0, misses = 0;
};
CacheStats cache_stats();

// ---- buffer table (callers hold buffers_mutex()) ----
std::mutex& buffers_mutex();
/** Adds a buffer and returns its id (ids are never reused). */
uint64_t add_buffer(const Buffer& b);
/** The buffer with this id, or nullptr with `error` saying why (a bad id, or one already freed). */
Buffer* find_buffer(double id, std::string& error);
/** Marks the buffer's contents as changed (a write, an op's output, an in-place input): packed copies of the
 * old contents (kiln/pack_cache.h) no longer match it. */
void touch_buffer(Buffer& b);
/** Releases the buffer's memory (host cache or CUDA allocator) and forgets its id. */
void remove_buffer(uint64_t id);
struct TableStats {
  uint64_t buffers = 0, bytes = 0;  // live buffers, and the bytes of the host ones
};
TableStats table_stats();

}  // namespace kiln
