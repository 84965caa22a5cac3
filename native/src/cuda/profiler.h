// Per-operation GPU timing of one evaluation, on request (NST_CUDA_PROFILE).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "cuda/check.h"

namespace nst::cuda {

// NST_CUDA_PROFILE=1: an evaluation (iterate with no steps) is run with an
// event after every operation and the time of each printed to stderr, with
// totals per kind: where an iteration's time goes, without a profiler.
class Profiler {
 public:
  static bool requested() {
    const char* v = std::getenv("NST_CUDA_PROFILE");
    return v && *v && *v != '0';
  }
  void begin(cudaStream_t stream) {
    stream_ = stream;
    on_ = true;
    mark("start", "");
  }
  // `kind` groups the totals: "conv forward", "conv backward-data", "own kernels", "cuBLAS".
  void mark(const char* kind, const std::string& label) {
    if (!on_) return;
    cudaEvent_t e;
    check_cuda(cudaEventCreate(&e), "cudaEventCreate (profile)");
    check_cuda(cudaEventRecord(e, stream_), "cudaEventRecord (profile)");
    marks_.push_back({kind, label, e});
  }
  void end_and_print() {
    if (!on_) return;
    on_ = false;
    check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (profile)");
    std::vector<std::pair<std::string, float>> totals;
    float all = 0;
    for (size_t i = 1; i < marks_.size(); i++) {
      float ms = 0;
      cudaEventElapsedTime(&ms, marks_[i - 1].event, marks_[i].event);
      all += ms;
      std::fprintf(stderr, "nst cuda profile: %8.3f ms  %s %s\n", ms, marks_[i].kind, marks_[i].label.c_str());
      auto it = std::find_if(totals.begin(), totals.end(), [&](const auto& t) { return t.first == marks_[i].kind; });
      if (it == totals.end())
        totals.push_back({marks_[i].kind, ms});
      else
        it->second += ms;
    }
    for (const auto& [kind, ms] : totals)
      std::fprintf(stderr, "nst cuda profile total: %8.3f ms  %s\n", ms, kind.c_str());
    std::fprintf(stderr, "nst cuda profile total: %8.3f ms  one evaluation (forward, losses, backward; no Adam)\n",
                 all);
    for (const auto& m : marks_) cudaEventDestroy(m.event);
    marks_.clear();
  }

 private:
  struct Mark {
    const char* kind;
    std::string label;
    cudaEvent_t event;
  };
  bool on_ = false;
  cudaStream_t stream_ = nullptr;
  std::vector<Mark> marks_;
};

}  // namespace nst::cuda
