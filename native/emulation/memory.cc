// Device and pinned memory of the CUDA runtime stand-in. Every device
// allocation is its own mapping with an inaccessible page on each side, the
// data ending where the upper guard begins, so a kernel or library loop that
// runs past the end faults at once; the fault is reported with the allocation
// it belongs to. A fresh allocation holds NaN (bytes 0xFF), not zeros. Freed
// allocations stay mapped and inaccessible for a while (a quarantine), so a
// stale pointer faults too. Between the moments device work runs, device
// memory is inaccessible to the host as well: host code that dereferences a
// device pointer faults as it would on a GPU.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>

#include "cudart_internal.h"

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

std::mutex table_mutex;                       // everything below
std::map<uintptr_t, Allocation> allocations;  // by start
std::deque<uintptr_t> quarantine;             // freed, still mapped, oldest first
size_t quarantine_bytes = 0;
size_t bytes_in_use = 0;      // device memory, live allocations
size_t bytes_peak = 0;        // the most bytes_in_use since the last reset
int device_access_depth = 0;  // under the execution lock (streams.cc): device work is running

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

}  // namespace

size_t memory_total() {
  static const size_t total = [] {
    const char* v = std::getenv("NST_EMULATED_GPU_MEMORY_MIB");
    long long mib = v ? std::atoll(v) : 4096;
    return size_t(mib > 0 ? mib : 4096) << 20;
  }();
  return total;
}

DeviceAccess::DeviceAccess() {
  if (device_access_depth++ == 0) protect_all_device(true);
}

DeviceAccess::~DeviceAccess() {
  if (--device_access_depth == 0) protect_all_device(false);
}

void set_host_protection(void* p, bool readable) {
  std::lock_guard<std::mutex> lock(table_mutex);
  const Allocation* a = find_containing(reinterpret_cast<uintptr_t>(p));
  if (!a || !a->pinned) return;
  Allocation& m = allocations[a->start];
  m.host_protected = !readable;
  mprotect(m.map_base + kPage, m.map_bytes - 2 * kPage, readable ? PROT_READ | PROT_WRITE : PROT_NONE);
}

size_t device_bytes_in_use() {
  std::lock_guard<std::mutex> lock(table_mutex);
  return bytes_in_use;
}

size_t device_bytes_peak() {
  std::lock_guard<std::mutex> lock(table_mutex);
  return bytes_peak;
}

void reset_device_bytes_peak() {
  std::lock_guard<std::mutex> lock(table_mutex);
  bytes_peak = bytes_in_use;
}

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

void check_atomic_target(const void* p, size_t bytes) {
  std::string why = device_range_problem(p, bytes);
  if (!why.empty())
    fail_sticky(cudaErrorIllegalAddress, "atomic operation on memory that " + why.substr(why.find(')') + 2));
}

}  // namespace nst::emu

// ---- the CUDA runtime API ------------------------------------------------------

using namespace nst::emu;

extern "C" {

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  std::lock_guard<std::mutex> lock(table_mutex);
  *total_bytes = memory_total();
  *free_bytes = memory_total() - std::min(memory_total(), bytes_in_use);
  return sticky_error();
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (cudaError_t e = refuse_during_capture("cudaMalloc")) return e;
  if (sticky_error() != cudaSuccess) return sticky_error();
  *ptr = nullptr;
  if (bytes == 0) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lock(table_mutex);
    if (bytes > memory_total() - std::min(memory_total(), bytes_in_use)) {
      set_last_error(cudaErrorMemoryAllocation);
      return cudaErrorMemoryAllocation;
    }
    while (quarantine_bytes > (size_t(256) << 20) && !quarantine.empty()) unmap_oldest_quarantined();
    cudaError_t e = map_allocation(bytes, false, ptr);
    if (e != cudaSuccess) return e;
    bytes_in_use += bytes;
    bytes_peak = std::max(bytes_peak, bytes_in_use);
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
  bytes_in_use -= a.bytes;
  quarantine.push_back(a.start);
  quarantine_bytes += a.map_bytes;
  return sticky_error();
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

}  // extern "C"
