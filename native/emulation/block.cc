// The emulated grid: blocks one after another on the host thread that runs
// the stream's work; in a block, one fiber per CUDA thread with a cooperative
// scheduler, so that __syncthreads and warp shuffles are real rendezvous and
// can be checked (device.h says what is checked).
//
// Scheduling: rounds. Each round resumes every thread that is not finished
// and not waiting at __syncthreads, once, up to its next rendezvous. After a
// round, the threads at a shuffle are checked warp by warp (same mask, every
// lane of the mask there); when every unfinished thread waits at
// __syncthreads, they are all released. Shuffle values go through a
// per-warp exchange buffer, two of them alternating, so that a lane that
// runs ahead into its next shuffle does not overwrite a value another lane
// of the current one has yet to read.
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "device.h"
#include "runtime.h"

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local uint3 blockDim;
thread_local uint3 gridDim;

// Context switch between fibers: callee-saved registers on the stack, then
// the stack pointer (x86-64 System V). Elsewhere, ucontext (slower: a
// signal-mask system call per switch).
#if defined(__x86_64__)
extern "C" void nst_emu_switch(void** save_sp, void* load_sp);
asm(R"(
.text
.globl nst_emu_switch
.hidden nst_emu_switch
.type nst_emu_switch,@function
nst_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size nst_emu_switch, .-nst_emu_switch
)");
#else
#include <ucontext.h>
#endif

namespace nst::emu {
namespace {

constexpr size_t kStackBytes = 64 << 10;
constexpr int kMaxThreads = 1024;

enum class State { Runnable, AtBarrier, AtShuffle, Done };

struct Fiber {
  State state = State::Runnable;
  uint3 tid{};
  unsigned mask = 0;  // of the shuffle it waits at
  int parity = 0;     // which exchange buffer its next shuffle uses
  char* stack = nullptr;
#if defined(__x86_64__)
  void* sp = nullptr;
#else
  ucontext_t context;
#endif
};

struct Block {
  const char* kernel = "";
  const std::function<void()>* body = nullptr;
  std::vector<Fiber> fibers;
  int current = -1;
  uint64_t exchange[kMaxThreads / 32][2][32];
  bool failed = false;
#if defined(__x86_64__)
  void* scheduler_sp = nullptr;
#else
  ucontext_t scheduler;
#endif
};

thread_local Block* running_block = nullptr;            // a cooperative block being run
thread_local const char* independent_kernel = nullptr;  // an independent-thread kernel being run

// Fiber stacks, allocated once per host thread, each with a guard page below.
char* fiber_stack(int index) {
  thread_local std::vector<char*> stacks;
  while (int(stacks.size()) <= index) {
    void* p = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      std::fprintf(stderr, "nst cuda stand-in: cannot map a fiber stack\n");
      std::abort();
    }
    mprotect(p, 4096, PROT_NONE);
    stacks.push_back(static_cast<char*>(p));
  }
  return stacks[index];
}

void switch_to_scheduler(Block& b) {
  Fiber& f = b.fibers[b.current];
#if defined(__x86_64__)
  nst_emu_switch(&f.sp, b.scheduler_sp);
#else
  swapcontext(&f.context, &b.scheduler);
#endif
}

[[noreturn]] void fiber_main() {
  Block& b = *running_block;
  (*b.body)();
  b.fibers[b.current].state = State::Done;
  switch_to_scheduler(b);
  std::abort();  // a finished fiber is never resumed
}

void start_fiber(Fiber& f) {
#if defined(__x86_64__)
  // Stack top: six zeroed registers, fiber_main as the return address, and a
  // slot above it so that fiber_main starts with the alignment of a call.
  uintptr_t top = (reinterpret_cast<uintptr_t>(f.stack) + kStackBytes) & ~uintptr_t(15);
  void** sp = reinterpret_cast<void**>(top - 16);  // [sp+8] dummy return slot, 16-aligned - 8 after ret
  sp[1] = nullptr;
  sp[0] = reinterpret_cast<void*>(&fiber_main);
  sp -= 6;
  for (int i = 0; i < 6; i++) sp[i] = nullptr;
  f.sp = sp;
#else
  getcontext(&f.context);
  f.context.uc_stack.ss_sp = f.stack + 4096;
  f.context.uc_stack.ss_size = kStackBytes - 4096;
  f.context.uc_link = nullptr;
  makecontext(&f.context, reinterpret_cast<void (*)()>(&fiber_main), 0);
#endif
}

void resume(Block& b, int i) {
  b.current = i;
  Fiber& f = b.fibers[i];
  threadIdx = f.tid;
  f.state = State::Runnable;
#if defined(__x86_64__)
  nst_emu_switch(&b.scheduler_sp, f.sp);
#else
  swapcontext(&b.scheduler, &f.context);
#endif
}

const char* state_name(State s) {
  switch (s) {
    case State::Done:
      return "had exited";
    case State::AtBarrier:
      return "was waiting at __syncthreads";
    case State::AtShuffle:
      return "was at another shuffle";
    default:
      return "was running";
  }
}

void block_error(Block& b, const std::string& what) {
  b.failed = true;
  fail_sticky(cudaErrorLaunchFailure, std::string("kernel ") + b.kernel + " block (" + std::to_string(blockIdx.x) +
                                          "," + std::to_string(blockIdx.y) + "," + std::to_string(blockIdx.z) +
                                          "): " + what);
}

// After a round: every warp's shuffle must be one rendezvous of the lanes its mask names.
void check_shuffles(Block& b) {
  const int n = int(b.fibers.size());
  for (int warp = 0; warp * 32 < n; warp++) {
    int first = -1;
    for (int lane = 0; lane < 32 && warp * 32 + lane < n; lane++) {
      const Fiber& f = b.fibers[warp * 32 + lane];
      if (f.state != State::AtShuffle) continue;
      if (first < 0) {
        first = lane;
      } else if (f.mask != b.fibers[warp * 32 + first].mask) {
        char text[160];
        std::snprintf(text, sizeof text, "lanes %d and %d of warp %d shuffle with different masks (0x%08x, 0x%08x)",
                      first, lane, warp, b.fibers[warp * 32 + first].mask, f.mask);
        return block_error(b, text);
      }
    }
    if (first < 0) continue;
    unsigned mask = b.fibers[warp * 32 + first].mask;
    for (int lane = 0; lane < 32; lane++) {
      if (!(mask >> lane & 1u)) continue;
      int t = warp * 32 + lane;
      if (t >= n) {
        char text[160];
        std::snprintf(text, sizeof text,
                      "shuffle mask 0x%08x of warp %d names lane %d, which does not exist (%d threads)", mask, warp,
                      lane, n);
        return block_error(b, text);
      }
      if (b.fibers[t].state != State::AtShuffle) {
        char text[200];
        std::snprintf(text, sizeof text, "shuffle mask 0x%08x of warp %d names lane %d, which %s instead", mask, warp,
                      lane, state_name(b.fibers[t].state));
        return block_error(b, text);
      }
    }
  }
}

void run_block_cooperative(Block& b) {
  const int n = int(b.fibers.size());
  for (int i = 0; i < n; i++) {
    Fiber& f = b.fibers[i];
    f = Fiber{};
    f.tid = {unsigned(i % blockDim.x), unsigned(i / blockDim.x % blockDim.y), unsigned(i / (blockDim.x * blockDim.y))};
    f.stack = fiber_stack(i);
    start_fiber(f);
  }
  running_block = &b;
  for (;;) {
    int done = 0, at_barrier = 0;
    for (int i = 0; i < n; i++) {
      State s = b.fibers[i].state;
      if (s == State::Runnable || s == State::AtShuffle) resume(b, i);
    }
    for (const Fiber& f : b.fibers) {
      done += f.state == State::Done;
      at_barrier += f.state == State::AtBarrier;
    }
    check_shuffles(b);
    if (b.failed || done == n) break;
    if (at_barrier > 0 && at_barrier + done == n) {
      if (done > 0) {
        block_error(b, std::to_string(done) + " of " + std::to_string(n) +
                           " threads exited while the others wait at __syncthreads");
        break;
      }
      for (Fiber& f : b.fibers) f.state = State::Runnable;
    }
  }
  running_block = nullptr;
}

void run_grid(const LaunchShape& shape, const std::function<void()>& body) {
  gridDim = {shape.grid.x, shape.grid.y, shape.grid.z};
  blockDim = {shape.block.x, shape.block.y, shape.block.z};
  const int threads = int(shape.block.x * shape.block.y * shape.block.z);
  thread_local Block block;  // large (the exchange buffers): one per host thread
  block.kernel = shape.kernel;
  block.body = &body;
  block.failed = false;
  block.fibers.resize(threads);
  for (unsigned z = 0; z < shape.grid.z; z++) {
    for (unsigned y = 0; y < shape.grid.y; y++) {
      for (unsigned x = 0; x < shape.grid.x; x++) {
        blockIdx = {x, y, z};
        if (shape.independent) {
          independent_kernel = shape.kernel;
          for (int i = 0; i < threads; i++) {
            threadIdx = {unsigned(i % blockDim.x), unsigned(i / blockDim.x % blockDim.y),
                         unsigned(i / (blockDim.x * blockDim.y))};
            body();
          }
          independent_kernel = nullptr;
        } else {
          run_block_cooperative(block);
          if (block.failed) return;
        }
      }
    }
  }
}

}  // namespace

void block_barrier() {
  Block* b = running_block;
  if (!b) {
    fail_sticky(cudaErrorLaunchFailure, std::string("kernel ") + (independent_kernel ? independent_kernel : "?") +
                                            " was launched as independent threads (NST_LAUNCH_INDEPENDENT) but calls "
                                            "__syncthreads");
    return;
  }
  b->fibers[b->current].state = State::AtBarrier;
  switch_to_scheduler(*b);
}

uint64_t warp_shuffle_down(unsigned mask, uint64_t bits, unsigned delta, int width) {
  Block* b = running_block;
  if (!b) {
    fail_sticky(cudaErrorLaunchFailure, std::string("kernel ") + (independent_kernel ? independent_kernel : "?") +
                                            " was launched as independent threads (NST_LAUNCH_INDEPENDENT) but uses a "
                                            "warp shuffle");
    return bits;
  }
  const int me = b->current;
  const int lane = me % 32, warp = me / 32;
  Fiber& f = b->fibers[me];
  if (!(mask >> lane & 1u)) {
    char text[120];
    std::snprintf(text, sizeof text, "lane %d of warp %d shuffles with mask 0x%08x, which does not name it", lane, warp,
                  mask);
    block_error(*b, text);
  }
  if (width <= 0 || width > 32 || (width & (width - 1)) != 0)
    block_error(*b, "shuffle width is not a power of 2 <= 32");
  uint64_t* exchange = b->exchange[warp][f.parity];
  exchange[lane] = bits;
  f.mask = mask;
  f.state = State::AtShuffle;
  switch_to_scheduler(*b);
  // Back: every lane of the mask has written its value (checked by the scheduler).
  Fiber& again = b->fibers[me];
  again.parity ^= 1;
  const int segment = lane / width * width;
  const int source = lane + int(delta);
  if (source >= segment + width) return bits;
  if (!(mask >> source & 1u)) {
    char text[120];
    std::snprintf(text, sizeof text, "lane %d of warp %d reads lane %d, which mask 0x%08x leaves out", lane, warp,
                  source, mask);
    block_error(*b, text);
    return bits;
  }
  return exchange[source];
}

void launch_grid(const LaunchShape& shape, const std::function<std::string()>& pointer_problems,
                 const std::function<void()>& thread_body) {
  const dim3 g = shape.grid, k = shape.block;
  const unsigned long long threads = 1ull * k.x * k.y * k.z;
  if (g.x == 0 || g.y == 0 || g.z == 0 || k.x == 0 || k.y == 0 || k.z == 0 || threads > kMaxThreads || k.z > 64 ||
      g.y > 65535 || g.z > 65535 || g.x > 0x7fffffffu) {
    fail(cudaErrorInvalidConfiguration, std::string("kernel ") + shape.kernel + ": launch configuration grid (" +
                                            std::to_string(g.x) + "," + std::to_string(g.y) + "," +
                                            std::to_string(g.z) + ") block (" + std::to_string(k.x) + "," +
                                            std::to_string(k.y) + "," + std::to_string(k.z) + ") is out of range");
    return;
  }
  if (shape.shared_bytes != 0) {
    fail(cudaErrorInvalidValue, std::string("kernel ") + shape.kernel + ": dynamic shared memory is not emulated");
    return;
  }
  std::string problems = pointer_problems();
  if (!problems.empty()) {
    fail(cudaErrorInvalidValue, problems);
    return;
  }
  LaunchShape copy = shape;
  enqueue(shape.stream, shape.kernel, [copy, pointer_problems, thread_body]() {
    std::string late = pointer_problems();
    if (!late.empty()) {
      fail_sticky(cudaErrorIllegalAddress, late + " (at execution)");
      return;
    }
    run_grid(copy, thread_body);
  });
}

}  // namespace nst::emu
