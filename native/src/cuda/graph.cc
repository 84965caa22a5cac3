#include "cuda/graph.h"

#include "cuda/check.h"
#include "engine.h"

namespace nst::cuda {

namespace {

// Ends the stream's capture when it goes out of scope, however the scope is
// left: a capture left open would make every later call on the stream fail.
class CaptureScope {
 public:
  explicit CaptureScope(cudaStream_t stream) : stream_(stream) {
    check_cuda(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  }
  ~CaptureScope() {
    if (open_) {
      cudaGraph_t graph = nullptr;
      if (cudaStreamEndCapture(stream_, &graph) == cudaSuccess && graph) cudaGraphDestroy(graph);
      cudaGetLastError();  // the capture was abandoned: its error is not the caller's
    }
  }
  CaptureScope(const CaptureScope&) = delete;
  CaptureScope& operator=(const CaptureScope&) = delete;

  // The captured graph (the caller owns it), or the error ending the capture.
  cudaError_t end(cudaGraph_t* graph) {
    open_ = false;
    return cudaStreamEndCapture(stream_, graph);
  }

 private:
  cudaStream_t stream_;
  bool open_ = true;
};

}  // namespace

std::string StepGraph::capture(cudaStream_t stream, const std::function<void()>& enqueue) {
  reset();
  std::string failure;
  cudaGraph_t graph = nullptr;
  {
    CaptureScope scope(stream);
    try {
      enqueue();
    } catch (const Error& e) {
      failure = e.what();
    }
    cudaError_t end = scope.end(&graph);
    if (failure.empty() && end != cudaSuccess)
      failure = std::string("cudaStreamEndCapture: ") + cudaGetErrorString(end);
  }
  if (failure.empty()) {
    cudaError_t inst = cudaGraphInstantiate(&exec_, graph, 0);
    if (inst != cudaSuccess) {
      failure = std::string("cudaGraphInstantiate: ") + cudaGetErrorString(inst);
      exec_ = nullptr;
    }
  }
  if (graph) cudaGraphDestroy(graph);
  if (!failure.empty()) cudaGetLastError();
  return failure;
}

void StepGraph::launch(cudaStream_t stream) const { check_cuda(cudaGraphLaunch(exec_, stream), "cudaGraphLaunch"); }

void StepGraph::reset() {
  if (exec_) cudaGraphExecDestroy(exec_);
  exec_ = nullptr;
}

}  // namespace nst::cuda
