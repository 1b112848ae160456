// Weights packed once: a kernel that rearranges a weight into its own layout on every call (the int8 GEMM's
// B panels, the int8 convolution's tap-major words) keeps the packed copy here and reuses it while the weight's
// buffer holds the same contents. Every write to a host buffer (addon write, an op's output, an in-place input)
// gives the buffer a new generation (buffers.h), and a packed copy is keyed by (buffer id, generation, view
// address, layout tag), so a changed weight can never meet a stale copy. Copies are dropped with their buffer,
// by kn.emptyCache(), and least recently used first above the budget (KILN_PACK_CACHE_MB, default 256; 0 turns
// the cache off). Callers hold buffers_mutex() (every addon entry point does).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>

#include "kiln/tensor_view.h"

namespace kiln {

// The inputs of the op addon.run is executing on this thread, and what their buffers hold (set around the
// kernel call; a view the kernel made itself is not among them and is never cached).
struct RunInputs {
  const TensorView* views = nullptr;
  const uint64_t* ids = nullptr;
  const uint64_t* gens = nullptr;
  int n = 0;
};
void set_run_inputs(const RunInputs* r);

// A layout tag: the packing routine's name and every parameter its output depends on (ISA widths, shapes).
uint64_t pack_tag(std::initializer_list<int64_t> parts);

// The packed form (`bytes` bytes, 64-byte aligned) of input view `v` under `tag`: the cached copy, or a new one
// that fill(dst) writes. nullptr when v is not an input of the running op, the cache is off, or `bytes` is over
// the budget: the caller then packs into its own workspace, as before. The copy stays valid until the op returns
// (one packed_input call per op: a second one may evict the first's copy).
// With `repeated`, the first sighting of a view's contents only notes them and returns nullptr; the copy is made
// the second time. For float32 weights: a training step writes its weights before it reads them again under the
// same layout, so it never pays for a copy, while inference (and gradient accumulation) packs once.
const void* packed_input(const TensorView& v, uint64_t tag, size_t bytes, const std::function<void(void*)>& fill,
                         bool repeated = false);

void pack_cache_forget(uint64_t buffer_id);  // the buffer was freed
void pack_cache_clear();
// The budget in bytes (0: off); returns the previous one. Copies past a smaller budget are dropped.
uint64_t pack_cache_set_limit(uint64_t bytes);
struct PackStats {
  uint64_t entries = 0, bytes = 0, hits = 0, misses = 0;
};
PackStats pack_stats();

}  // namespace kiln
