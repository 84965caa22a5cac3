// Events of the CUDA runtime stand-in: a record is queued work that stamps
// the time when it runs; synchronising on an event runs its stream up to it.
#include <chrono>
#include <set>

#include "cudart_internal.h"

namespace nst::emu {
namespace {

struct Event {
  Stream* stream = nullptr;
  uint64_t seq = 0;
  bool recorded = false;
  bool timing = true;
  double time_ms = 0;
};

std::set<Event*> events;  // under queue_mutex()

}  // namespace
}  // namespace nst::emu

using namespace nst::emu;

extern "C" {

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex());
  Event* e = new Event();
  e->timing = !(flags & cudaEventDisableTiming);
  events.insert(e);
  *event = reinterpret_cast<cudaEvent_t>(e);
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, 0); }

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex());
  Event* e = reinterpret_cast<Event*>(event);
  if (!events.erase(e)) return fail(cudaErrorInvalidResourceHandle, "cudaEventDestroy: invalid event");
  // Queued records of it still run: keep the object (a few bytes) alive.
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex());
  Event* e = reinterpret_cast<Event*>(event);
  if (!events.count(e)) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: invalid event");
  Stream* s = stream_of(stream);
  if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: invalid stream");
  e->stream = s;
  e->seq = s->next_seq;
  e->recorded = true;
  return enqueue(stream, "cudaEventRecord", [e] {
    e->time_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
  });
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (cudaError_t e = refuse_during_capture("cudaEventSynchronize")) return e;
  Event* e;
  {
    std::lock_guard<std::recursive_mutex> lock(queue_mutex());
    e = reinterpret_cast<Event*>(event);
    if (!events.count(e)) return fail(cudaErrorInvalidResourceHandle, "cudaEventSynchronize: invalid event");
    if (!e->recorded) return cudaSuccess;
  }
  drain(e->stream, e->seq);
  return sticky_error();
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex());
  Event* e = reinterpret_cast<Event*>(event);
  if (!events.count(e)) return cudaErrorInvalidResourceHandle;
  return !e->recorded || e->stream->done_seq >= e->seq ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex());
  Event *a = reinterpret_cast<Event*>(start), *b = reinterpret_cast<Event*>(end);
  if (!events.count(a) || !events.count(b))
    return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: invalid event");
  if (!a->timing || !b->timing)
    return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime of an event created with cudaEventDisableTiming");
  if (!a->recorded || !b->recorded || a->stream->done_seq < a->seq || b->stream->done_seq < b->seq)
    return cudaErrorNotReady;
  *ms = float(b->time_ms - a->time_ms);
  return cudaSuccess;
}

}  // extern "C"
