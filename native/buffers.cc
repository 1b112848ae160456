// The buffer table and the host caching allocator (declared in buffers.h).
#include "buffers.h"

#include <cmath>
#include <cstdlib>
#include <unordered_map>
#include <vector>

#include "kiln/cuda_runtime.h"
#include "kiln/pack_cache.h"

namespace kiln {

namespace {
// ---- caching allocator ----
// Fresh large allocations cost an mmap plus a page fault per page on first touch (measured ~35 ms for 16 MiB
// in this sandbox against ~1 ms for the kernel itself), and a training loop allocates the same sizes every
// step. Freed buffers of >= 64 KiB go to per-size-class free lists and are reused; the cache is capped
// (KILN_CPU_CACHE_MB, default 1024) and emptied before an allocation is allowed to fail.
constexpr uint64_t kCacheMin = 64 * 1024;

struct Cache {
  std::unordered_map<uint64_t, std::vector<void*>> lists;
  uint64_t bytes = 0;
  uint64_t limit = 0;
  uint64_t hits = 0, misses = 0;
};

Cache& cache() {
  static Cache* c = [] {
    auto* k = new Cache();
    k->limit = env_megabytes("KILN_CPU_CACHE_MB", 1024) << 20;
    return k;
  }();
  return *c;
}

struct Table {
  std::unordered_map<uint64_t, Buffer> map;
  uint64_t next_id = 1;
  uint64_t next_gen = 1;
  uint64_t live_bytes = 0;  // host buffers
};
Table& table() {
  static auto* t = new Table();
  return *t;
}
}  // namespace

uint64_t env_megabytes(const char* name, uint64_t def) {
  const char* e = std::getenv(name);
  if (!e || !*e) return def;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(e, &end, 10);
  return end && *end == 0 ? v : def;
}

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

CacheStats cache_stats() {
  const Cache& c = cache();
  return CacheStats{c.bytes, c.hits, c.misses};
}

std::mutex& buffers_mutex() {
  static auto* m = new std::mutex();
  return *m;
}

uint64_t add_buffer(const Buffer& b) {
  Table& t = table();
  const uint64_t id = t.next_id++;
  Buffer& nb = t.map[id] = b;
  touch_buffer(nb);
  if (b.device == 0) t.live_bytes += b.bytes;
  return id;
}

Buffer* find_buffer(double id_d, std::string& error) {
  if (!(id_d >= 1 && id_d <= kMaxIndex) || std::floor(id_d) != id_d) {
    error = "invalid buffer id " + std::to_string(id_d);
    return nullptr;
  }
  auto it = table().map.find(static_cast<uint64_t>(id_d));
  if (it == table().map.end()) {
    error = "buffer " + std::to_string(static_cast<uint64_t>(id_d)) +
            " does not exist (it was freed, or the tensor was disposed)";
    return nullptr;
  }
  return &it->second;
}

void touch_buffer(Buffer& b) { b.gen = table().next_gen++; }

void remove_buffer(uint64_t id) {
  Table& t = table();
  auto it = t.map.find(id);
  if (it == t.map.end()) return;
  const Buffer& b = it->second;
  if (b.device == 1) {
    cuda::release(b.ptr, b.capacity);
  } else {
    cached_free(b.ptr, b.capacity);
    t.live_bytes -= b.bytes;
  }
  t.map.erase(it);
  pack_cache_forget(id);
}

TableStats table_stats() { return TableStats{table().map.size(), table().live_bytes}; }

}  // namespace kiln
