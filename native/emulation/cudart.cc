// The CUDA runtime calls the engine makes, on the CPU (libnst_cudart_standin.so).
//
// Memory: every device allocation is its own mapping with an inaccessible
// page on each side, the data ending where the upper guard begins, so a
// kernel or library loop that runs past the end faults at once; the fault is
// reported with the allocation it belongs to. A fresh allocation holds NaN
// (bytes 0xFF), not zeros. Freed allocations stay mapped
// and inaccessible for a while (a quarantine), so a stale pointer faults too.
// Between the moments device work runs, device memory is inaccessible to the
// host as well: host code that dereferences a device pointer faults as it
// would on a GPU.
//
// Streams are in-order queues: work runs when the host synchronises (or a
// call that is synchronous on a GPU forces it), so a host that reads results
// before synchronising sees stale data, and pinned memory waiting for a
// device-to-host copy is made unreadable until the copy has run. Capture
// records the queued work into a graph instead; a graph launch queues it.
// Synchronisation and allocation during capture fail and invalidate the
// capture, as cudaStreamCaptureModeGlobal/ThreadLocal do on a GPU.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "runtime.h"

namespace nst::emu {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kAlign = 16;  // float4 loads; see README (cudaMalloc gives 256)

size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

struct Allocation {
  uintptr_t start = 0;
  size_t bytes = 0;
  char* map_base = nullptr;  // the mapping, guards included
  size_t map_bytes = 0;
  bool pinned = false;
  bool live = true;
  bool host_protected = false;  // pinned memory awaiting a device-to-host copy
};

struct Op {
  uint64_t seq;
  const char* what;
  std::function<void()> work;
};

struct Graph {
  std::vector<Op> ops;
};

struct Stream {
  std::deque<Op> queue;
  uint64_t next_seq = 1;
  uint64_t done_seq = 0;
  bool capturing = false;
  bool capture_invalidated = false;
  std::thread::id capture_thread;
  cudaStreamCaptureMode capture_mode = cudaStreamCaptureModeGlobal;
  std::unique_ptr<Graph> graph;
};

struct Event {
  Stream* stream = nullptr;
  uint64_t seq = 0;
  bool recorded = false;
  bool timing = true;
  double time_ms = 0;
};

std::mutex table_mutex;                       // allocations
std::map<uintptr_t, Allocation> allocations;  // by start
std::deque<uintptr_t> quarantine;             // freed, still mapped, oldest first
size_t quarantine_bytes = 0;
size_t device_bytes_in_use = 0;

std::recursive_mutex queue_mutex;  // streams, events, graphs
std::recursive_mutex exec_mutex;   // one "device": work runs on one host thread at a time
Stream legacy_stream;
std::set<Stream*> streams;
std::set<Event*> events;
std::set<Graph*> graphs;
std::set<Graph*> graph_execs;

cudaError_t sticky_error = cudaSuccess;
std::string sticky_detail;
thread_local cudaError_t last_error = cudaSuccess;
thread_local std::string last_detail;  // for cudaGetErrorString of last_error
thread_local std::string error_text;
thread_local cudaError_t detail_code = cudaSuccess;
int device_access_depth = 0;  // under exec_mutex: device work is running

size_t memory_total() {
  static const size_t total = [] {
    const char* v = std::getenv("NST_EMULATED_GPU_MEMORY_MIB");
    long long mib = v ? std::atoll(v) : 4096;
    return size_t(mib > 0 ? mib : 4096) << 20;
  }();
  return total;
}

// ---- device memory visibility -------------------------------------------

void protect_all_device(bool accessible) {
  std::lock_guard<std::mutex> lock(table_mutex);
  for (auto& [start, a] : allocations) {
    if (!a.live || a.pinned || a.bytes == 0) continue;
    char* first = a.map_base + kPage;
    size_t len = a.map_bytes - 2 * kPage;
    mprotect(first, len, accessible ? PROT_READ | PROT_WRITE : PROT_NONE);
  }
}

// While one of these lives, the host thread runs device work: device memory
// is accessible. Nested (a synchronous copy inside a drain) is fine.
struct DeviceAccess {
  DeviceAccess() {
    if (device_access_depth++ == 0) protect_all_device(true);
  }
  ~DeviceAccess() {
    if (--device_access_depth == 0) protect_all_device(false);
  }
};

// ---- fault reports ---------------------------------------------------------

struct sigaction previous_segv, previous_bus;

void write_text(const char* text) {
  ssize_t ignored = write(2, text, std::strlen(text));
  (void)ignored;
}

void on_fault(int sig, siginfo_t* info, void* context) {
  uintptr_t addr = reinterpret_cast<uintptr_t>(info->si_addr);
  const Allocation* hit = nullptr;
  // The table may be locked by the faulting thread: read it without the lock
  // (we are about to abort; a torn read only spoils the message).
  for (const auto& [start, a] : allocations) {
    uintptr_t lo = reinterpret_cast<uintptr_t>(a.map_base), hi = lo + a.map_bytes;
    if (addr >= lo && addr < hi) {
      hit = &a;
      break;
    }
  }
  if (hit) {
    char text[512];
    long long offset = (long long)(addr - hit->start);
    const char* why;
    if (hit->pinned) {
      why =
          "host access to pinned memory while a device-to-host copy into it is queued: synchronise its stream "
          "(cudaStreamSynchronize/cudaEventSynchronize) before reading it";
    } else if (!hit->live) {
      why = "access to a freed device allocation";
    } else if (addr < hit->start || addr >= hit->start + round_up(hit->bytes, kAlign)) {
      why = "access outside a device allocation";
    } else if (device_access_depth == 0) {
      why = "host code dereferenced device memory (use cudaMemcpy)";
    } else {
      why = "access fault in device memory";
    }
    std::snprintf(text, sizeof text,
                  "nst cuda stand-in: %s: address 0x%llx is at offset %lld of a %zu-byte %s allocation at 0x%llx\n",
                  why, (unsigned long long)addr, offset, hit->bytes, hit->pinned ? "pinned host" : "device",
                  (unsigned long long)hit->start);
    write_text(text);
    signal(SIGABRT, SIG_DFL);
    abort();
  }
  // Not ours: hand over (V8, for one, handles its own faults).
  struct sigaction& prev = sig == SIGBUS ? previous_bus : previous_segv;
  if (prev.sa_flags & SA_SIGINFO) {
    prev.sa_sigaction(sig, info, context);
  } else if (prev.sa_handler == SIG_DFL || prev.sa_handler == SIG_IGN) {
    sigaction(sig, &prev, nullptr);  // re-raised by the faulting instruction
  } else {
    prev.sa_handler(sig);
  }
}

void install_fault_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_segv);
    sigaction(SIGBUS, &sa, &previous_bus);
  });
}

// ---- allocation table -----------------------------------------------------

const Allocation* find_containing(uintptr_t p) {
  auto it = allocations.upper_bound(p);
  if (it == allocations.begin()) return nullptr;
  --it;
  const Allocation& a = it->second;
  if (p >= a.start && p < a.start + std::max<size_t>(a.bytes, 1)) return &a;
  return nullptr;
}

void unmap_oldest_quarantined() {
  uintptr_t start = quarantine.front();
  quarantine.pop_front();
  auto it = allocations.find(start);
  if (it == allocations.end() || it->second.live) return;
  munmap(it->second.map_base, it->second.map_bytes);
  quarantine_bytes -= it->second.map_bytes;
  allocations.erase(it);
}

// Maps `bytes` with guard pages; the data ends at the upper guard.
// cudaMalloc's memory holds whatever was there before: a fresh allocation
// holds NaN (every byte 0xFF) here, so that reading memory nobody wrote shows
// in the results (0 * NaN is NaN) instead of passing as zeros.
void fill_with_nan(char* data_first, size_t data_pages) {
  if (device_access_depth == 0) mprotect(data_first, data_pages, PROT_READ | PROT_WRITE);
  std::memset(data_first, 0xFF, data_pages);
  if (device_access_depth == 0) mprotect(data_first, data_pages, PROT_NONE);
}

cudaError_t map_allocation(size_t bytes, bool pinned, void** out) {
  install_fault_handler();
  size_t data_pages = round_up(std::max<size_t>(bytes, 1), kPage);
  size_t map_bytes = data_pages + 2 * kPage;
  void* base = mmap(nullptr, map_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) return cudaErrorMemoryAllocation;
  char* data_first = static_cast<char*>(base) + kPage;
  // Device memory starts inaccessible (only device work may touch it);
  // pinned memory is host memory.
  if (pinned || device_access_depth > 0) mprotect(data_first, data_pages, PROT_READ | PROT_WRITE);
  Allocation a;
  a.start = pinned
                ? reinterpret_cast<uintptr_t>(data_first)
                : reinterpret_cast<uintptr_t>(data_first) + data_pages - round_up(std::max<size_t>(bytes, 1), kAlign);
  a.bytes = bytes;
  a.map_base = static_cast<char*>(base);
  a.map_bytes = map_bytes;
  a.pinned = pinned;
  // A new mapping may reuse the address range of unmapped old ones: drop
  // any stale entry it overlaps.
  for (auto it = allocations.begin(); it != allocations.end();) {
    uintptr_t lo = reinterpret_cast<uintptr_t>(it->second.map_base);
    bool overlaps = lo < reinterpret_cast<uintptr_t>(base) + map_bytes &&
                    reinterpret_cast<uintptr_t>(base) < lo + it->second.map_bytes;
    it = overlaps ? allocations.erase(it) : std::next(it);
  }
  allocations[a.start] = a;
  if (!pinned) fill_with_nan(data_first, data_pages);
  *out = reinterpret_cast<void*>(a.start);
  return cudaSuccess;
}

// ---- streams ----------------------------------------------------------------

Stream* stream_of(cudaStream_t s) {
  if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return &legacy_stream;
  Stream* st = reinterpret_cast<Stream*>(s);
  return streams.count(st) ? st : nullptr;
}

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

// An unsafe call during capture: fails, and the capture is invalidated.
cudaError_t refuse_during_capture(const char* call) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex);
  Stream* s = capturing_stream_of_this_thread();
  if (!s) return cudaSuccess;
  s->capture_invalidated = true;
  return fail(cudaErrorStreamCaptureUnsupported,
              std::string(call) + " during stream capture (the capture is invalidated)");
}

void run_op(Op& op) {
  if (sticky_error != cudaSuccess) return;  // the context is lost, as on a GPU
  op.work();
}

// Runs `stream`'s queued work up to and including `upto`.
void drain(Stream* s, uint64_t upto) {
  std::lock_guard<std::recursive_mutex> exec(exec_mutex);
  DeviceAccess access;
  for (;;) {
    Op op;
    {
      std::lock_guard<std::recursive_mutex> lock(queue_mutex);
      if (s->queue.empty() || s->queue.front().seq > upto) return;
      op = std::move(s->queue.front());
      s->queue.pop_front();
    }
    run_op(op);
    std::lock_guard<std::recursive_mutex> lock(queue_mutex);
    s->done_seq = op.seq;
  }
}

void drain_all() {
  std::vector<Stream*> all;
  {
    std::lock_guard<std::recursive_mutex> lock(queue_mutex);
    all.push_back(&legacy_stream);
    all.insert(all.end(), streams.begin(), streams.end());
  }
  for (Stream* s : all) drain(s, UINT64_MAX);
}

cudaError_t result_now() { return sticky_error != cudaSuccess ? sticky_error : cudaSuccess; }

const char* generic_error_string(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorNotReady:
      return "device not ready";
    case cudaErrorIllegalAddress:
      return "an illegal memory access was encountered";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure";
    case cudaErrorStreamCaptureUnsupported:
      return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
      return "operation failed due to a previous error during capture";
    case cudaErrorIllegalState:
      return "the operation cannot be performed in the present state";
    case cudaErrorInvalidDevicePointer:
      return "invalid device pointer";
    default:
      return "unknown error";
  }
}

// The direction a copy's pointers must have.
std::string copy_problem(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaMemcpyKind* resolved) {
  PointerKind d = classify(dst), s = classify(src);
  if (kind == cudaMemcpyDefault) {
    bool dd = d == PointerKind::Device, sd = s == PointerKind::Device;
    kind = dd ? (sd ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
              : (sd ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  }
  *resolved = kind;
  std::string problem;
  auto need_device = [&](const void* p, const char* role) {
    std::string why = device_range_problem(p, n);
    if (!why.empty()) problem += std::string(problem.empty() ? "" : "; ") + role + " " + why;
  };
  auto need_host = [&](PointerKind k, const char* role) {
    if (k == PointerKind::Device || k == PointerKind::FreedDevice) {
      problem += std::string(problem.empty() ? "" : "; ") + role + " is device memory where host memory is required";
    } else if (k == PointerKind::Null && n > 0) {
      problem += std::string(problem.empty() ? "" : "; ") + role + " is null";
    }
  };
  switch (kind) {
    case cudaMemcpyHostToDevice:
      need_device(dst, "destination");
      need_host(s, "source");
      break;
    case cudaMemcpyDeviceToHost:
      need_device(src, "source");
      need_host(d, "destination");
      break;
    case cudaMemcpyDeviceToDevice:
      need_device(dst, "destination");
      need_device(src, "source");
      break;
    case cudaMemcpyHostToHost:
      need_host(d, "destination");
      need_host(s, "source");
      break;
    default:
      problem = "unknown copy kind";
  }
  return problem;
}

const char* kind_name(cudaMemcpyKind k) {
  switch (k) {
    case cudaMemcpyHostToDevice:
      return "HostToDevice";
    case cudaMemcpyDeviceToHost:
      return "DeviceToHost";
    case cudaMemcpyDeviceToDevice:
      return "DeviceToDevice";
    case cudaMemcpyHostToHost:
      return "HostToHost";
    default:
      return "Default";
  }
}

void set_host_protection(void* p, size_t n, bool readable) {
  std::lock_guard<std::mutex> lock(table_mutex);
  const Allocation* a = find_containing(reinterpret_cast<uintptr_t>(p));
  if (!a || !a->pinned) return;
  Allocation& m = allocations[a->start];
  m.host_protected = !readable;
  mprotect(m.map_base + kPage, m.map_bytes - 2 * kPage, readable ? PROT_READ | PROT_WRITE : PROT_NONE);
  (void)n;
}

}  // namespace

// ---- the shared internal API (runtime.h) ----------------------------------

PointerKind classify(const void* p) {
  if (!p) return PointerKind::Null;
  std::lock_guard<std::mutex> lock(table_mutex);
  const Allocation* a = find_containing(reinterpret_cast<uintptr_t>(p));
  if (!a) {
    // Within the guard pages or alignment slack of an allocation: a bad device pointer, not a host one.
    uintptr_t q = reinterpret_cast<uintptr_t>(p);
    for (const auto& [start, x] : allocations) {
      uintptr_t lo = reinterpret_cast<uintptr_t>(x.map_base);
      if (q >= lo && q < lo + x.map_bytes) return x.live ? PointerKind::Host : PointerKind::FreedDevice;
    }
    return PointerKind::Host;
  }
  if (!a->live) return PointerKind::FreedDevice;
  return a->pinned ? PointerKind::Pinned : PointerKind::Device;
}

std::string device_range_problem(const void* p, size_t bytes) {
  char text[256];
  if (!p) return "is a null pointer";
  std::lock_guard<std::mutex> lock(table_mutex);
  uintptr_t q = reinterpret_cast<uintptr_t>(p);
  const Allocation* a = find_containing(q);
  if (!a) {
    for (const auto& [start, x] : allocations) {
      uintptr_t lo = reinterpret_cast<uintptr_t>(x.map_base);
      if (q >= lo && q < lo + x.map_bytes && !x.pinned) {
        std::snprintf(text, sizeof text, "(0x%llx) lies outside the %zu-byte device allocation at 0x%llx%s",
                      (unsigned long long)q, x.bytes, (unsigned long long)x.start, x.live ? "" : " (freed)");
        return text;
      }
    }
    std::snprintf(text, sizeof text, "(0x%llx) is a host pointer, not device memory", (unsigned long long)q);
    return text;
  }
  if (a->pinned) {
    std::snprintf(text, sizeof text, "(0x%llx) is pinned host memory, not device memory", (unsigned long long)q);
    return text;
  }
  if (!a->live) {
    std::snprintf(text, sizeof text, "(0x%llx) points into a freed device allocation", (unsigned long long)q);
    return text;
  }
  size_t offset = q - a->start;
  if (bytes > a->bytes - offset) {
    std::snprintf(text, sizeof text,
                  "(0x%llx, %zu bytes) ends %zu bytes past the end of its %zu-byte device allocation",
                  (unsigned long long)q, bytes, bytes - (a->bytes - offset), a->bytes);
    return text;
  }
  return "";
}

cudaError_t fail(cudaError_t code, const std::string& what) {
  std::fprintf(stderr, "nst cuda stand-in: %s\n", what.c_str());
  last_error = code;
  detail_code = code;
  last_detail = what;
  return code;
}

void fail_sticky(cudaError_t code, const std::string& what) {
  std::fprintf(stderr, "nst cuda stand-in: %s\n", what.c_str());
  std::lock_guard<std::recursive_mutex> lock(queue_mutex);
  if (sticky_error == cudaSuccess) {
    sticky_error = code;
    sticky_detail = what;
  }
}

cudaError_t enqueue(cudaStream_t stream, const char* what, std::function<void()> work) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex);
  Stream* s = stream_of(stream);
  if (!s) return fail(cudaErrorInvalidResourceHandle, std::string(what) + ": invalid stream");
  if (sticky_error != cudaSuccess) return sticky_error;
  // Work on the legacy stream while another stream captures in global mode
  // would be an implicit dependency: refused, as on a GPU.
  Op op{s->next_seq++, what, std::move(work)};
  if (s->capturing) {
    if (s->capture_invalidated) return cudaErrorStreamCaptureInvalidated;
    s->graph->ops.push_back(std::move(op));
  } else {
    s->queue.push_back(std::move(op));
  }
  return cudaSuccess;
}

namespace {
// One per thread for all libraries: only the latest failure's text is kept.
thread_local std::string library_problem;
thread_local const char* library_problem_owner = nullptr;
thread_local int library_problem_status = 0;
}  // namespace

int LibraryProblems::report(int status, const std::string& what) {
  std::fprintf(stderr, "nst cuda stand-in: %s: %s\n", library_, what.c_str());
  library_problem = what;
  library_problem_owner = library_;
  library_problem_status = status;
  return status;
}

const char* LibraryProblems::text(int status, const char* generic) const {
  bool mine = library_problem_owner == library_ && status == library_problem_status && !library_problem.empty();
  return mine ? library_problem.c_str() : generic;
}

bool capturing() {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex);
  return capturing_stream_of_this_thread() != nullptr;
}

void check_atomic_target(const void* p, size_t bytes) {
  std::string why = device_range_problem(p, bytes);
  if (!why.empty())
    fail_sticky(cudaErrorIllegalAddress, "atomic operation on memory that " + why.substr(why.find(')') + 2));
}

}  // namespace nst::emu

// ---- the CUDA runtime API ----------------------------------------------------

using namespace nst::emu;

extern "C" {

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (device != 0)
    return fail(cudaErrorInvalidDevice,
                "cudaSetDevice(" + std::to_string(device) + "): the stand-in has one device, 0");
  return result_now();
}

cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties_v2(cudaDeviceProp* prop, int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return fail(cudaErrorInvalidDevice, "cudaGetDeviceProperties: no device " + std::to_string(device));
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "emulated on the CPU");
  prop->major = 8;
  prop->minor = 0;
  prop->totalGlobalMem = memory_total();
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->multiProcessorCount = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties_v2(cudaDeviceProp* prop, int device) {
  return cudaGetDeviceProperties(prop, device);
}

cudaError_t cudaGetLastError(void) {
  if (sticky_error != cudaSuccess) return sticky_error;
  cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) { return sticky_error != cudaSuccess ? sticky_error : last_error; }

const char* cudaGetErrorString(cudaError_t error) {
  const char* base = generic_error_string(error);
  if (error == sticky_error && !sticky_detail.empty()) {
    error_text = std::string(base) + " (stand-in: " + sticky_detail + ")";
    return error_text.c_str();
  }
  if (error == detail_code && !last_detail.empty()) {
    error_text = std::string(base) + " (stand-in: " + last_detail + ")";
    return error_text.c_str();
  }
  return base;
}

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle:
      return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady:
      return "cudaErrorNotReady";
    case cudaErrorIllegalAddress:
      return "cudaErrorIllegalAddress";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
    case cudaErrorStreamCaptureUnsupported:
      return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated:
      return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorIllegalState:
      return "cudaErrorIllegalState";
    case cudaErrorInvalidDevicePointer:
      return "cudaErrorInvalidDevicePointer";
    default:
      return "cudaErrorUnknown";
  }
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  std::lock_guard<std::mutex> lock(table_mutex);
  *total_bytes = memory_total();
  *free_bytes = memory_total() - std::min(memory_total(), device_bytes_in_use);
  return result_now();
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (cudaError_t e = refuse_during_capture("cudaMalloc")) return e;
  if (sticky_error != cudaSuccess) return sticky_error;
  *ptr = nullptr;
  if (bytes == 0) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lock(table_mutex);
    if (bytes > memory_total() - std::min(memory_total(), device_bytes_in_use)) {
      last_error = cudaErrorMemoryAllocation;
      detail_code = cudaSuccess;
      return cudaErrorMemoryAllocation;
    }
    while (quarantine_bytes > (size_t(256) << 20) && !quarantine.empty()) unmap_oldest_quarantined();
    cudaError_t e = map_allocation(bytes, false, ptr);
    if (e != cudaSuccess) return e;
    device_bytes_in_use += bytes;
  }
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (cudaError_t e = refuse_during_capture("cudaFree")) return e;
  if (!ptr) return cudaSuccess;
  drain_all();  // cudaFree synchronises the device
  std::lock_guard<std::mutex> lock(table_mutex);
  auto it = allocations.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == allocations.end() || it->second.pinned) {
    return fail(cudaErrorInvalidValue, "cudaFree of a pointer that cudaMalloc did not return");
  }
  Allocation& a = it->second;
  if (!a.live) return fail(cudaErrorInvalidValue, "cudaFree of an allocation already freed");
  a.live = false;
  mprotect(a.map_base, a.map_bytes, PROT_NONE);
  madvise(a.map_base, a.map_bytes, MADV_DONTNEED);  // keep the address range, not the memory
  device_bytes_in_use -= a.bytes;
  quarantine.push_back(a.start);
  quarantine_bytes += a.map_bytes;
  return result_now();
}

cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  if (cudaError_t e = refuse_during_capture("cudaMallocHost")) return e;
  std::lock_guard<std::mutex> lock(table_mutex);
  return map_allocation(bytes, true, ptr);
}

// What cudaMallocHost's C++ overloads call.
cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned int flags) {
  (void)flags;
  return cudaMallocHost(ptr, bytes);
}

cudaError_t cudaFreeHost(void* ptr) {
  if (cudaError_t e = refuse_during_capture("cudaFreeHost")) return e;
  if (!ptr) return cudaSuccess;
  drain_all();
  std::lock_guard<std::mutex> lock(table_mutex);
  auto it = allocations.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == allocations.end() || !it->second.pinned) {
    return fail(cudaErrorInvalidValue, "cudaFreeHost of a pointer that cudaMallocHost did not return");
  }
  munmap(it->second.map_base, it->second.map_bytes);
  allocations.erase(it);
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  (void)flags;
  std::lock_guard<std::recursive_mutex> lock(queue_mutex);
  Stream* s = new Stream();
  streams.insert(s);
  *stream = reinterpret_cast<cudaStream_t>(s);
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, 0); }

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  Stream* s;
  {
    std::lock_guard<std::recursive_mutex> lock(queue_mutex);
    s = stream_of(stream);
    if (!s || s == &legacy_stream) return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: invalid stream");
    if (s->capturing) return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamDestroy of a capturing stream");
  }
  drain(s, UINT64_MAX);  // queued work still completes
  std::lock_guard<std::recursive_mutex> lock(queue_mutex);
  streams.erase(s);
  delete s;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (cudaError_t e = refuse_during_capture("cudaStreamSynchronize")) return e;
  Stream* s;
  {
    std::lock_guard<std::recursive_mutex> lock(queue_mutex);
    s = stream_of(stream);
    if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaStreamSynchronize: invalid stream");
  }
  drain(s, UINT64_MAX);
  return result_now();
}

cudaError_t cudaDeviceSynchronize(void) {
  if (cudaError_t e = refuse_during_capture("cudaDeviceSynchronize")) return e;
  drain_all();
  return result_now();
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t stream) {
  if (sticky_error != cudaSuccess) return sticky_error;
  if (n == 0) return cudaSuccess;
  cudaMemcpyKind resolved;
  std::string problem = copy_problem(dst, src, n, kind, &resolved);
  if (!problem.empty())
    return fail(cudaErrorInvalidValue, std::string("cudaMemcpyAsync ") + kind_name(kind) + ": " + problem);
  const bool capturing_now = [&] {
    std::lock_guard<std::recursive_mutex> lock(queue_mutex);
    Stream* s = stream_of(stream);
    return s && s->capturing;
  }();
  if (resolved == cudaMemcpyHostToDevice) {
    if (classify(src) == PointerKind::Pinned) {
      return enqueue(stream, "cudaMemcpyAsync HostToDevice", [dst, src, n] { std::memcpy(dst, src, n); });
    }
    if (capturing_now) {
      return fail(cudaErrorStreamCaptureUnsupported, "cudaMemcpyAsync from pageable host memory during stream capture");
    }
    // Pageable source: staged at the call, as the driver does.
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src), static_cast<const char*>(src) + n);
    return enqueue(stream, "cudaMemcpyAsync HostToDevice",
                   [dst, staged] { std::memcpy(dst, staged->data(), staged->size()); });
  }
  if (resolved == cudaMemcpyDeviceToHost) {
    if (classify(dst) == PointerKind::Pinned) {
      set_host_protection(dst, n, false);  // unreadable until the copy has run
      return enqueue(stream, "cudaMemcpyAsync DeviceToHost", [dst, src, n] {
        set_host_protection(dst, n, true);
        std::memcpy(dst, src, n);
      });
    }
    if (capturing_now) {
      return fail(cudaErrorStreamCaptureUnsupported, "cudaMemcpyAsync to pageable host memory during stream capture");
    }
    // Pageable destination: the call returns when the copy is done.
    if (cudaError_t e = enqueue(stream, "cudaMemcpyAsync DeviceToHost", [dst, src, n] { std::memcpy(dst, src, n); }))
      return e;
    Stream* s;
    {
      std::lock_guard<std::recursive_mutex> lock(queue_mutex);
      s = stream_of(stream);
    }
    drain(s, UINT64_MAX);
    return result_now();
  }
  return enqueue(stream, "cudaMemcpyAsync", [dst, src, n] { std::memmove(dst, src, n); });
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  if (cudaError_t e = refuse_during_capture("cudaMemcpy (synchronous)")) return e;
  if (sticky_error != cudaSuccess) return sticky_error;
  cudaMemcpyKind resolved;
  std::string problem = copy_problem(dst, src, n, kind, &resolved);
  if (!problem.empty())
    return fail(cudaErrorInvalidValue, std::string("cudaMemcpy ") + kind_name(kind) + ": " + problem);
  drain_all();
  std::lock_guard<std::recursive_mutex> exec(exec_mutex);
  DeviceAccess access;
  if (resolved == cudaMemcpyDeviceToHost) set_host_protection(dst, n, true);
  std::memmove(dst, src, n);
  return result_now();
}

cudaError_t cudaMemsetAsync(void* p, int value, size_t n, cudaStream_t stream) {
  if (sticky_error != cudaSuccess) return sticky_error;
  if (n == 0) return cudaSuccess;
  std::string problem = device_range_problem(p, n);
  if (!problem.empty()) return fail(cudaErrorInvalidValue, "cudaMemsetAsync: destination " + problem);
  return enqueue(stream, "cudaMemsetAsync", [p, value, n] { std::memset(p, value, n); });
}

cudaError_t cudaMemset(void* p, int value, size_t n) {
  if (cudaError_t e = refuse_during_capture("cudaMemset (synchronous)")) return e;
  cudaError_t e = cudaMemsetAsync(p, value, n, nullptr);
  if (e != cudaSuccess) return e;
  return cudaDeviceSynchronize();
}

// ---- events ------------------------------------------------------------------

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex);
  Event* e = new Event();
  e->timing = !(flags & cudaEventDisableTiming);
  events.insert(e);
  *event = reinterpret_cast<cudaEvent_t>(e);
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, 0); }

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex);
  Event* e = reinterpret_cast<Event*>(event);
  if (!events.erase(e)) return fail(cudaErrorInvalidResourceHandle, "cudaEventDestroy: invalid event");
  // Queued records of it still run: keep the object (a few bytes) alive.
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex);
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
    std::lock_guard<std::recursive_mutex> lock(queue_mutex);
    e = reinterpret_cast<Event*>(event);
    if (!events.count(e)) return fail(cudaErrorInvalidResourceHandle, "cudaEventSynchronize: invalid event");
    if (!e->recorded) return cudaSuccess;
  }
  drain(e->stream, e->seq);
  return result_now();
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex);
  Event* e = reinterpret_cast<Event*>(event);
  if (!events.count(e)) return cudaErrorInvalidResourceHandle;
  return !e->recorded || e->stream->done_seq >= e->seq ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex);
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

// ---- graphs --------------------------------------------------------------------

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex);
  Stream* s = stream_of(stream);
  if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaStreamBeginCapture: invalid stream");
  if (s == &legacy_stream)
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
  std::lock_guard<std::recursive_mutex> lock(queue_mutex);
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
  std::lock_guard<std::recursive_mutex> lock(queue_mutex);
  Stream* s = stream_of(stream);
  if (!s) return cudaErrorInvalidResourceHandle;
  *status = !s->capturing            ? cudaStreamCaptureStatusNone
            : s->capture_invalidated ? cudaStreamCaptureStatusInvalidated
                                     : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags) {
  (void)flags;
  std::lock_guard<std::recursive_mutex> lock(queue_mutex);
  Graph* g = reinterpret_cast<Graph*>(graph);
  if (!graphs.count(g)) return fail(cudaErrorInvalidResourceHandle, "cudaGraphInstantiate: invalid graph");
  Graph* e = new Graph(*g);
  graph_execs.insert(e);
  *exec = reinterpret_cast<cudaGraphExec_t>(e);
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex);
  Graph* g = reinterpret_cast<Graph*>(graph);
  if (!graphs.erase(g)) return fail(cudaErrorInvalidResourceHandle, "cudaGraphDestroy: invalid graph");
  delete g;
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex);
  Graph* g = reinterpret_cast<Graph*>(exec);
  if (!graph_execs.erase(g)) return fail(cudaErrorInvalidResourceHandle, "cudaGraphExecDestroy: invalid graph exec");
  // Queued launches hold copies of its work: nothing refers to it any more.
  delete g;
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(queue_mutex);
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
