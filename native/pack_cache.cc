// Packed weights kept across calls (declared in kiln/pack_cache.h).
#include "kiln/pack_cache.h"

#include <algorithm>
#include <list>
#include <new>
#include <unordered_map>
#include <vector>

#include "buffers.h"

namespace kiln {

namespace {

struct Key {
  uint64_t id, gen, tag;
  const void* at;
  bool operator==(const Key& o) const { return id == o.id && gen == o.gen && tag == o.tag && at == o.at; }
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    uint64_t h = k.id * 0x9E3779B97F4A7C15ull ^ (k.gen + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull;
    h ^= (k.tag + reinterpret_cast<uintptr_t>(k.at)) * 0x94D049BB133111EBull;
    return static_cast<size_t>(h ^ (h >> 31));
  }
};

struct Entry {
  Key key;
  size_t bytes;
  void* data;
};

using EntryRef = std::list<Entry>::iterator;

// A view under a layout, whatever its buffer holds: what `repeated` remembers the last generation of
struct Sighting {
  uint64_t gen;
  std::list<Key>::iterator order;
};

struct Cache {
  std::list<Entry> lru;  // most recently used first
  std::unordered_map<Key, EntryRef, KeyHash> index;
  std::unordered_map<uint64_t, std::vector<EntryRef>> per_buffer;  // the entries held for each buffer id
  uint64_t bytes = 0, limit = 0, hits = 0, misses = 0;
  // views seen once under `repeated` (keys with gen 0), newest first, at most kSightings of them
  std::list<Key> sighting_order;
  std::unordered_map<Key, Sighting, KeyHash> sightings;
};
constexpr size_t kSightings = 256;

Cache& cache() {
  static Cache* c = [] {
    auto* k = new Cache();
    k->limit = env_megabytes("KILN_PACK_CACHE_MB", 256) << 20;
    return k;
  }();
  return *c;
}

thread_local const RunInputs* current = nullptr;

void drop(Cache& c, EntryRef it) {
  c.bytes -= it->bytes;
  c.index.erase(it->key);
  auto pb = c.per_buffer.find(it->key.id);
  if (pb != c.per_buffer.end()) {
    auto& refs = pb->second;
    refs.erase(std::find(refs.begin(), refs.end(), it));
    if (refs.empty()) c.per_buffer.erase(pb);
  }
  ::operator delete(it->data, std::align_val_t(64));
  c.lru.erase(it);
}

// drops the entries of buffer `id` that match(entry) says to
template <class Match>
void drop_of_buffer(Cache& c, uint64_t id, Match match) {
  auto pb = c.per_buffer.find(id);
  if (pb == c.per_buffer.end()) return;
  std::vector<EntryRef> doomed;
  for (EntryRef it : pb->second)
    if (match(*it)) doomed.push_back(it);
  for (EntryRef it : doomed) drop(c, it);
}

// whether the view has been seen at this generation before (a first sighting is noted, a second one forgotten)
bool seen_before(Cache& c, const Key& key) {
  const Key view{key.id, 0, key.tag, key.at};
  auto s = c.sightings.find(view);
  if (s != c.sightings.end()) {
    if (s->second.gen == key.gen) {
      c.sighting_order.erase(s->second.order);
      c.sightings.erase(s);
      return true;
    }
    // the contents changed since (a training step wrote the weight): this is a first sighting again
    s->second.gen = key.gen;
    c.sighting_order.splice(c.sighting_order.begin(), c.sighting_order, s->second.order);
    return false;
  }
  c.sighting_order.push_front(view);
  c.sightings.emplace(view, Sighting{key.gen, c.sighting_order.begin()});
  if (c.sighting_order.size() > kSightings) {
    c.sightings.erase(c.sighting_order.back());
    c.sighting_order.pop_back();
  }
  return false;
}

}  // namespace

void set_run_inputs(const RunInputs* r) { current = r; }

uint64_t pack_tag(std::initializer_list<int64_t> parts) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (int64_t p : parts) {
    h ^= static_cast<uint64_t>(p);
    h *= 0x100000001B3ull;
    h ^= h >> 29;
  }
  return h;
}

const void* packed_input(const TensorView& v, uint64_t tag, size_t bytes, const std::function<void(void*)>& fill,
                         bool repeated) {
  const RunInputs* r = current;
  if (!r || bytes == 0) return nullptr;
  int i = 0;
  while (i < r->n && &r->views[i] != &v) ++i;
  if (i == r->n) return nullptr;
  Cache& c = cache();
  if (bytes > c.limit) return nullptr;
  const Key key{r->ids[i], r->gens[i], tag, v.ptr<char>()};
  auto found = c.index.find(key);
  if (found != c.index.end() && found->second->bytes == bytes) {
    c.lru.splice(c.lru.begin(), c.lru, found->second);
    ++c.hits;
    return found->second->data;
  }
  if (found != c.index.end()) drop(c, found->second);
  ++c.misses;
  // the copy of this view's older contents (the weight was written since) is of no further use
  drop_of_buffer(c, key.id, [&](const Entry& e) { return e.key.tag == key.tag && e.key.at == key.at; });
  if (repeated && !seen_before(c, key)) return nullptr;
  while (!c.lru.empty() && c.bytes + bytes > c.limit) drop(c, std::prev(c.lru.end()));
  void* data = ::operator new(bytes, std::align_val_t(64), std::nothrow);
  if (!data) return nullptr;
  try {
    fill(data);
  } catch (...) {
    ::operator delete(data, std::align_val_t(64));
    throw;
  }
  c.lru.push_front(Entry{key, bytes, data});
  c.index[key] = c.lru.begin();
  c.per_buffer[key.id].push_back(c.lru.begin());
  c.bytes += bytes;
  return data;
}

void pack_cache_forget(uint64_t buffer_id) {
  drop_of_buffer(cache(), buffer_id, [](const Entry&) { return true; });
}

void pack_cache_clear() {
  Cache& c = cache();
  c.sightings.clear();
  c.sighting_order.clear();
  while (!c.lru.empty()) drop(c, c.lru.begin());
}

uint64_t pack_cache_set_limit(uint64_t bytes) {
  Cache& c = cache();
  const uint64_t prev = c.limit;
  c.limit = bytes;
  while (!c.lru.empty() && c.bytes > c.limit) drop(c, std::prev(c.lru.end()));
  return prev;
}

PackStats pack_stats() {
  const Cache& c = cache();
  return PackStats{c.lru.size(), c.bytes, c.hits, c.misses};
}

}  // namespace kiln
