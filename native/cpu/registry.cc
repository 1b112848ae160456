// Builds one kernel table per instruction set and picks the best one the CPU supports, or the one forced
// by KILN_CPU_ISA=avx512|avx2|scalar (a forced ISA the CPU lacks is an error, reported at load time).
#include <cstdlib>
#include <string>

#include "kiln/cpu_common.h"
#include "kiln/cpu_dispatch.h"

namespace kiln {
namespace {

#define KILN_CALL_REGISTER(family) register_##family(t);

KernelTable make_scalar() {
  KernelTable t;
  using namespace scalar;
  KILN_FAMILIES(KILN_CALL_REGISTER) return t;
}
#if defined(__x86_64__)
KernelTable make_avx2() {
  KernelTable t;
  using namespace avx2;
  KILN_FAMILIES(KILN_CALL_REGISTER) return t;
}
KernelTable make_avx512() {
  KernelTable t;
  using namespace avx512;
  KILN_FAMILIES(KILN_CALL_REGISTER) return t;
}
#endif

struct State {
  KernelTable tables[3];
  bool supported[3] = {true, false, false};
  int active = 0;
  std::string error;
};

State& state() {
  static State* s = [] {
    auto* st = new State();
    st->tables[0] = make_scalar();
#if defined(__x86_64__)
    __builtin_cpu_init();
    st->tables[1] = make_avx2();
    st->tables[2] = make_avx512();
    st->supported[1] =
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    st->supported[2] = st->supported[1] && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                       __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
    st->active = st->supported[2] ? 2 : (st->supported[1] ? 1 : 0);
    if (const char* e = std::getenv("KILN_CPU_ISA")) {
      const std::string want(e);
      const int idx = isa_index(want);
      if (idx < 0)
        st->error = "KILN_CPU_ISA='" + want + "' is not one of avx512, avx2, scalar";
      else if (!st->supported[idx])
        st->error = "KILN_CPU_ISA='" + want + "' but this CPU does not support it";
      else
        st->active = idx;
    }
    return st;
  }();
  return *s;
}

}  // namespace

int isa_index(const std::string& name) {
  if (name == "scalar") return 0;
  if (name == "avx2") return 1;
  if (name == "avx512") return 2;
  return -1;
}

const char* isa_name(int idx) {
  static const char* names[3] = {"scalar", "avx2", "avx512"};
  return names[idx];
}

int active_isa() { return state().active; }
bool isa_supported(int idx) { return idx >= 0 && idx < 3 && state().supported[idx]; }
const std::string& isa_error() { return state().error; }

bool set_isa(int idx) {
  if (!isa_supported(idx)) return false;
  state().active = idx;
  return true;
}

KernelFn kernel_for(int op) { return state().tables[state().active].fn[op]; }
KernelFn kernel_for_isa(int isa, int op) { return state().tables[isa].fn[op]; }
double fma_loop(int64_t iters) { return state().tables[state().active].fma_loop(iters); }

}  // namespace kiln
