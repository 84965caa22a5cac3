// Streams of the CUDA runtime stand-in: in-order queues whose work runs when
// the host synchronises (or a call that is synchronous on a GPU forces it),
// so a host that reads results before synchronising sees stale data. One
// "device": queued work runs on one host thread at a time, with device memory
// made accessible while it runs (memory.cc). While a stream captures, its
// work goes into a graph instead (graphs.cc), and calls that synchronise or
// allocate fail and invalidate the capture, as cudaStreamCaptureModeGlobal and
// ThreadLocal do on a GPU.
#include <set>
#include <string>

#include "cudart_internal.h"

namespace nst::emu {
namespace {

std::recursive_mutex exec_mutex;  // one "device": work runs on one host thread at a time
Stream legacy_stream;
std::set<Stream*> streams;  // under queue_mutex()

Stream* capturing_stream_of_this_thread() {
  auto mine = [](Stream* s) {
    return s->capturing &&
           (s->capture_mode == cudaStreamCaptureModeGlobal || s->capture_thread == std::this_thread::get_id());
  };
  if (mine(&legacy_stream)) return &legacy_stream;
  for (Stream* s : streams) {
    if (mine(s)) return s;
  }
  return nullptr;
}

void run_op(Op& op) {
  if (sticky_error() != cudaSuccess) return;  // the context is lost, as on a GPU
  op.work();
}

}  // namespace

std::recursive_mutex& queue_mutex() {
  static std::recursive_mutex mutex;
  return mutex;
}

Stream* stream_of(cudaStream_t s) {
  if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return &legacy_stream;
  Stream* st = reinterpret_cast<Stream*>(s);
  return streams.count(st) ? st : nullptr;
}

bool is_legacy(const Stream* s) { return s == &legacy_stream; }

cudaError_t refuse_during_capture(const char* call) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex());
  Stream* s = capturing_stream_of_this_thread();
  if (!s) return cudaSuccess;
  s->capture_invalidated = true;
  return fail(cudaErrorStreamCaptureUnsupported,
              std::string(call) + " during stream capture (the capture is invalidated)");
}

void drain(Stream* s, uint64_t upto) {
  std::lock_guard<std::recursive_mutex> exec(exec_mutex);
  DeviceAccess access;
  for (;;) {
    Op op;
    {
      std::lock_guard<std::recursive_mutex> lock(queue_mutex());
      if (s->queue.empty() || s->queue.front().seq > upto) return;
      op = std::move(s->queue.front());
      s->queue.pop_front();
    }
    run_op(op);
    std::lock_guard<std::recursive_mutex> lock(queue_mutex());
    s->done_seq = op.seq;
  }
}

void run_as_device_work(const std::function<void()>& work) {
  std::lock_guard<std::recursive_mutex> exec(exec_mutex);
  DeviceAccess access;
  work();
}

void drain_all() {
  std::vector<Stream*> all;
  {
    std::lock_guard<std::recursive_mutex> lock(queue_mutex());
    all.push_back(&legacy_stream);
    all.insert(all.end(), streams.begin(), streams.end());
  }
  for (Stream* s : all) drain(s, UINT64_MAX);
}

// ---- the shared internal API (runtime.h) ----------------------------------

cudaError_t enqueue(cudaStream_t stream, const char* what, std::function<void()> work) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex());
  Stream* s = stream_of(stream);
  if (!s) return fail(cudaErrorInvalidResourceHandle, std::string(what) + ": invalid stream");
  if (sticky_error() != cudaSuccess) return sticky_error();
  Op op{s->next_seq++, what, std::move(work)};
  if (s->capturing) {
    if (s->capture_invalidated) return cudaErrorStreamCaptureInvalidated;
    s->graph->ops.push_back(std::move(op));
  } else {
    s->queue.push_back(std::move(op));
  }
  return cudaSuccess;
}

bool capturing() {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex());
  return capturing_stream_of_this_thread() != nullptr;
}

}  // namespace nst::emu

// ---- the CUDA runtime API ------------------------------------------------------

using namespace nst::emu;

extern "C" {

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  (void)flags;
  std::lock_guard<std::recursive_mutex> lock(queue_mutex());
  Stream* s = new Stream();
  streams.insert(s);
  *stream = reinterpret_cast<cudaStream_t>(s);
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, 0); }

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  Stream* s;
  {
    std::lock_guard<std::recursive_mutex> lock(queue_mutex());
    s = stream_of(stream);
    if (!s || s == &legacy_stream) return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: invalid stream");
    if (s->capturing) return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamDestroy of a capturing stream");
  }
  drain(s, UINT64_MAX);  // queued work still completes
  std::lock_guard<std::recursive_mutex> lock(queue_mutex());
  streams.erase(s);
  delete s;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (cudaError_t e = refuse_during_capture("cudaStreamSynchronize")) return e;
  Stream* s;
  {
    std::lock_guard<std::recursive_mutex> lock(queue_mutex());
    s = stream_of(stream);
    if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaStreamSynchronize: invalid stream");
  }
  drain(s, UINT64_MAX);
  return sticky_error();
}

cudaError_t cudaDeviceSynchronize(void) {
  if (cudaError_t e = refuse_during_capture("cudaDeviceSynchronize")) return e;
  drain_all();
  return sticky_error();
}

}  // extern "C"
