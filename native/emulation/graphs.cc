// Stream capture and graphs of the CUDA runtime stand-in: a capturing
// stream records its work into a graph (streams.cc's enqueue); an
// instantiated graph is a copy of that work, which a launch queues again.
#include <set>
#include <string>

#include "cudart_internal.h"

namespace nst::emu {
namespace {

std::set<Graph*> graphs;       // under queue_mutex()
std::set<Graph*> graph_execs;  // under queue_mutex()

// Deletes a graph or an instantiated one (`live` says which kind); queued
// launches hold copies of its work, so nothing refers to it any more.
cudaError_t destroy(std::set<Graph*>& live, Graph* g, const char* call, const char* kind) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex());
  if (!live.erase(g)) return fail(cudaErrorInvalidResourceHandle, std::string(call) + ": invalid " + kind);
  delete g;
  return cudaSuccess;
}

}  // namespace
}  // namespace nst::emu

using namespace nst::emu;

extern "C" {

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex());
  Stream* s = stream_of(stream);
  if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaStreamBeginCapture: invalid stream");
  if (is_legacy(s))
    return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamBeginCapture on the legacy default stream");
  if (s->capturing) return fail(cudaErrorIllegalState, "cudaStreamBeginCapture on a stream already capturing");
  s->capturing = true;
  s->capture_invalidated = false;
  s->capture_thread = std::this_thread::get_id();
  s->capture_mode = mode;
  s->graph = std::make_unique<Graph>();
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex());
  Stream* s = stream_of(stream);
  *graph = nullptr;
  if (!s || !s->capturing) return fail(cudaErrorIllegalState, "cudaStreamEndCapture on a stream not capturing");
  s->capturing = false;
  std::unique_ptr<Graph> g = std::move(s->graph);
  if (s->capture_invalidated) {
    return fail(cudaErrorStreamCaptureInvalidated,
                "cudaStreamEndCapture: the capture was invalidated by an earlier call");
  }
  Graph* raw = g.release();
  graphs.insert(raw);
  *graph = reinterpret_cast<cudaGraph_t>(raw);
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex());
  Stream* s = stream_of(stream);
  if (!s) return cudaErrorInvalidResourceHandle;
  *status = !s->capturing            ? cudaStreamCaptureStatusNone
            : s->capture_invalidated ? cudaStreamCaptureStatusInvalidated
                                     : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags) {
  (void)flags;
  std::lock_guard<std::recursive_mutex> lock(queue_mutex());
  Graph* g = reinterpret_cast<Graph*>(graph);
  if (!graphs.count(g)) return fail(cudaErrorInvalidResourceHandle, "cudaGraphInstantiate: invalid graph");
  Graph* e = new Graph(*g);
  graph_execs.insert(e);
  *exec = reinterpret_cast<cudaGraphExec_t>(e);
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  return destroy(graphs, reinterpret_cast<Graph*>(graph), "cudaGraphDestroy", "graph");
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  return destroy(graph_execs, reinterpret_cast<Graph*>(exec), "cudaGraphExecDestroy", "graph exec");
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex());
  Graph* g = reinterpret_cast<Graph*>(exec);
  if (!graph_execs.count(g)) return fail(cudaErrorInvalidResourceHandle, "cudaGraphLaunch: invalid graph exec");
  Stream* s = stream_of(stream);
  if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaGraphLaunch: invalid stream");
  if (s->capturing) return fail(cudaErrorStreamCaptureUnsupported, "cudaGraphLaunch into a capturing stream");
  for (const Op& op : g->ops) {
    if (cudaError_t e = enqueue(stream, op.what, op.work)) return e;
  }
  return cudaSuccess;
}

}  // extern "C"
