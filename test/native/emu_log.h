// What an emulated library (cublaslt_emu.cc, nccl_emu.cc) ran and refused, for test/cuda-emu.test.ts: counts by
// name and each refusal with what it was, appended at exit to the file an environment variable names, as lines
// "<name> <count>" then "refused <what>".
#pragma once
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <mutex>
#include <string>
#include <vector>

class EmuLog {
 public:
  EmuLog(const char* env, std::initializer_list<const char*> names) : env_(env), names_(names), counts_(names.size()) {}
  ~EmuLog() {
    const char* path = std::getenv(env_);
    if (!path) return;
    if (FILE* f = std::fopen(path, "a")) {
      for (size_t i = 0; i < names_.size(); ++i) std::fprintf(f, "%s %ld\n", names_[i], counts_[i]);
      for (const std::string& r : refusals_) std::fprintf(f, "refused %s\n", r.c_str());
      std::fclose(f);
    }
  }
  /** Adds to the counts: one value per name, in the order the names were given. */
  void count(std::initializer_list<bool> which) {
    std::lock_guard<std::mutex> lock(mu_);
    size_t i = 0;
    for (bool w : which) counts_.at(i++) += w;
  }
  /** Records a refusal (the first 100) and returns its code. */
  int refuse(int code, const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    if (refusals_.size() < 100) refusals_.push_back(what);
    return code;
  }

 private:
  const char* env_;
  std::vector<const char*> names_;
  std::vector<long> counts_;
  std::vector<std::string> refusals_;
  std::mutex mu_;
};
