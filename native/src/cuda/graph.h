// One optimisation step captured into a CUDA graph and replayed: the session
// enqueues the same kernels and library calls every step, so capturing them
// once removes the per-launch host cost.
#pragma once

#include <cuda_runtime.h>

#include <functional>
#include <string>

namespace nst::cuda {

class StepGraph {
 public:
  StepGraph() = default;
  ~StepGraph() { reset(); }
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;

  bool ready() const { return exec_ != nullptr; }

  // Captures what `enqueue` puts on `stream`. Returns "" with the graph
  // ready, or why capture failed (a library call that cannot be captured
  // throws nst::Error; ending or instantiating the capture may fail), with no
  // graph and the stream usable for eager work. Any other exception ends the
  // capture (the stream never stays capturing) and propagates.
  std::string capture(cudaStream_t stream, const std::function<void()>& enqueue);

  void launch(cudaStream_t stream) const;

  // Drops the graph (it holds buffer pointers and launch constants).
  void reset();

 private:
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace nst::cuda
