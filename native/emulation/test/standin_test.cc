// The stand-in is strict where a GPU is: each case below commits one
// mistake and checks that the stand-in reports it (an error code with the
// reason, or, for a stray memory access, an abort naming the allocation),
// and one control case checks that correct use passes. Every case runs in
// its own child process (the stand-in's errors are sticky, like a GPU
// context's, and a fault ends the process); the parent checks how the child
// ended and what it wrote on stderr. Exit code 0 when every check fires.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "cuda/dnn_api.h"
#include "cuda/launch.h"

using namespace nst::cuda;

namespace {

__global__ void copy_kernel(const float* in, float* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = in[i];
}

// Reads one element past `n` (an off-by-one a GPU's memory checker would flag).
__global__ void overrun_kernel(const float* in, float* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) out[0] += in[i];
}

struct Holder {
  float* p;
};
// Dereferences a pointer the launch cannot see (inside a struct).
__global__ void hidden_pointer_kernel(Holder h) { h.p[0] = 1.f; }

// Lanes 16..31 skip the shuffle their mask names.
__global__ void partial_shuffle_kernel(float* out) {
  float v = float(threadIdx.x);
  if (threadIdx.x < 16) v += __shfl_down_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}

// A full-warp reduction: correct use of the shuffle.
__global__ void warp_sum_kernel(const float* in, float* out) {
  float v = in[threadIdx.x];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  if (threadIdx.x % 32 == 0) atomicAdd(out, v);
}

// Half the block waits at a barrier the other half never reaches.
__global__ void divergent_barrier_kernel(float* out) {
  if (threadIdx.x < 32) __syncthreads();
  out[threadIdx.x] = 1.f;
}

__global__ void barrier_kernel(float* out) {
  __syncthreads();
  out[threadIdx.x] = 1.f;
}

float* device_floats(size_t n);

// A 1x8x8x4 -> 4-channel 3x3 convolution through the cuDNN stand-in, its
// input in host memory when `host_input`, its output `y_floats` long.
int convolve(bool host_input, size_t y_floats) {
  using namespace nst::cuda;
  const DnnApi& api = load_dnn_api();
  cudnnHandle_t h;
  api.cudnnCreate(&h);
  cudnnTensorDescriptor_t xd, yd;
  cudnnFilterDescriptor_t wd;
  cudnnConvolutionDescriptor_t cd;
  api.cudnnCreateTensorDescriptor(&xd);
  api.cudnnCreateTensorDescriptor(&yd);
  api.cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 1, 4, 8, 8);
  api.cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 1, 4, 8, 8);
  api.cudnnCreateFilterDescriptor(&wd);
  api.cudnnSetFilter4dDescriptor(wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, 4, 4, 3, 3);
  api.cudnnCreateConvolutionDescriptor(&cd);
  api.cudnnSetConvolution2dDescriptor(cd, 1, 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT);
  static std::vector<float> host_x(size_t(8) * 8 * 4);
  float* x = host_input ? host_x.data() : device_floats(size_t(8) * 8 * 4);
  float* w = device_floats(size_t(4) * 9 * 4);
  float* y = device_floats(y_floats);
  const float one = 1.f, zero = 0.f;
  return api.cudnnConvolutionForward(h, &one, xd, x, wd, w, cd, 0, nullptr, 0, &zero, yd, y);
}

bool expect(bool ok, const char* what) {
  if (!ok) std::fprintf(stderr, "expectation failed: %s\n", what);
  return ok;
}

float* device_floats(size_t n) {
  void* p = nullptr;
  if (cudaMalloc(&p, n * sizeof(float)) != cudaSuccess) std::abort();
  return static_cast<float*>(p);
}

struct Case {
  const char* name;
  bool aborts;          // the check ends the process (a fault), else the child exits 0 when it fired
  const char* message;  // what stderr must contain
  std::function<bool()> body;
};

std::vector<Case> cases() {
  std::vector<Case> c;
  c.push_back({"correct use passes (kernels, shuffles, barrier, atomics, graph replay)", false, "", [] {
                 float* in = device_floats(64);
                 float* out = device_floats(65);  // the sum, then the barrier kernel's 64 values
                 std::vector<float> host(64, 1.f);
                 cudaMemcpy(in, host.data(), 256, cudaMemcpyHostToDevice);
                 cudaMemset(out, 0, size_t(65) * 4);
                 cudaStream_t s;
                 cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
                 cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
                 NST_LAUNCH(warp_sum_kernel, 1, 64, 0, s)(in, out);
                 cudaGraph_t g;
                 bool ok = expect(cudaStreamEndCapture(s, &g) == cudaSuccess, "capture ends");
                 cudaGraphExec_t e;
                 ok &= expect(cudaGraphInstantiate(&e, g, 0) == cudaSuccess, "instantiate");
                 cudaGraphLaunch(e, s);
                 cudaGraphLaunch(e, s);
                 NST_LAUNCH(barrier_kernel, 1, 64, 0, s)(out + 1);
                 ok &= expect(cudaStreamSynchronize(s) == cudaSuccess, "sync succeeds");
                 float sum = 0;
                 cudaMemcpy(&sum, out, 4, cudaMemcpyDeviceToHost);
                 ok &= expect(sum == 128.f, "two replays of a 64-lane warp sum give 128");
                 return ok;
               }});
  c.push_back({"kernel reads past the end of an allocation", true, "access outside a device allocation", [] {
                 float* in = device_floats(100);
                 float* out = device_floats(1);
                 NST_LAUNCH(overrun_kernel, 1, 128, 0, 0)(in, out, 100);
                 cudaDeviceSynchronize();
                 return false;
               }});
  c.push_back({"copy past the end of an allocation", false, "ends 4 bytes past the end", [] {
                 float* d = device_floats(10);
                 std::vector<float> host(11);
                 return expect(cudaMemcpy(d, host.data(), 44, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
                               "error");
               }});
  c.push_back({"cuBLAS reads past the end of a matrix", false, "A (", [] {
                 float* a = device_floats(15);  // 4x4 needs 16
                 float* cmat = device_floats(16);
                 const DnnApi& api = load_dnn_api();  // the engine's loader: NST_CUBLAS_PATH, NST_CUDNN_PATH
                 cublasHandle_t h;
                 api.cublasCreate_v2(&h);
                 const float one = 1.f, zero = 0.f;
                 int status = api.cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, a, 4, 16, a, 4,
                                                            16, &zero, cmat, 4, 16, 1);
                 return expect(status != 0, "SGEMM refused") &&
                        expect(std::strstr(api.cublasGetStatusString(status), "past the end") != nullptr,
                               "the status string says why");
               }});
  c.push_back({"cuDNN convolution into an output too small for its descriptor", false, "y (",
               [] { return expect(convolve(false, size_t(8) * 8 * 4 - 1) == 3, "CUDNN_STATUS_BAD_PARAM"); }});
  c.push_back({"cuDNN convolution of a host pointer", false, "x (",
               [] { return expect(convolve(true, size_t(8) * 8 * 4) == 3, "CUDNN_STATUS_BAD_PARAM"); }});
  c.push_back({"kernel argument from a freed allocation", false, "points into a freed device allocation", [] {
                 float* a = device_floats(32);
                 float* b = device_floats(32);
                 cudaFree(a);
                 NST_LAUNCH(copy_kernel, 1, 32, 0, 0)(a, b, 32);
                 return expect(cudaGetLastError() == cudaErrorInvalidValue, "launch error");
               }});
  c.push_back({"graph replayed after a buffer it uses was freed", false, "(at execution)", [] {
                 float* a = device_floats(32);
                 float* b = device_floats(32);
                 cudaStream_t s;
                 cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
                 cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
                 NST_LAUNCH(copy_kernel, 1, 32, 0, s)(a, b, 32);
                 cudaGraph_t g;
                 cudaStreamEndCapture(s, &g);
                 cudaGraphExec_t e;
                 cudaGraphInstantiate(&e, g, 0);
                 cudaFree(a);
                 cudaGraphLaunch(e, s);
                 return expect(cudaStreamSynchronize(s) == cudaErrorIllegalAddress, "sticky error at the sync");
               }});
  c.push_back({"stale pointer dereferenced inside a kernel", true, "access to a freed device allocation", [] {
                 float* a = device_floats(32);
                 cudaFree(a);
                 NST_LAUNCH(hidden_pointer_kernel, 1, 1, 0, 0)(Holder{a});
                 cudaDeviceSynchronize();
                 return false;
               }});
  c.push_back({"host pointer as a kernel argument", false, "is a host pointer, not device memory", [] {
                 std::vector<float> host(32);
                 float* d = device_floats(32);
                 NST_LAUNCH(copy_kernel, 1, 32, 0, 0)(host.data(), d, 32);
                 return expect(cudaGetLastError() == cudaErrorInvalidValue, "launch error");
               }});
  c.push_back({"host pointer as a copy's device destination", false, "destination (", [] {
                 std::vector<float> a(8), b(8);
                 return expect(cudaMemcpy(a.data(), b.data(), 32, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
                               "error");
               }});
  c.push_back({"host code dereferences device memory", true, "host code dereferenced device memory", [] {
                 float* d = device_floats(8);
                 volatile float x = d[0];
                 (void)x;
                 return false;
               }});
  c.push_back({"synchronisation inside graph capture", false, "cudaStreamSynchronize during stream capture", [] {
                 cudaStream_t s;
                 cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
                 cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
                 bool ok = expect(cudaStreamSynchronize(s) == cudaErrorStreamCaptureUnsupported, "sync refused");
                 cudaGraph_t g;
                 ok &= expect(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated, "capture invalidated");
                 return ok;
               }});
  c.push_back({"allocation inside graph capture", false, "cudaMalloc during stream capture", [] {
                 cudaStream_t s;
                 cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
                 cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
                 void* p;
                 bool ok = expect(cudaMalloc(&p, 64) == cudaErrorStreamCaptureUnsupported, "malloc refused");
                 cudaGraph_t g;
                 ok &= expect(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated, "capture invalidated");
                 return ok;
               }});
  c.push_back({"host reads device results before synchronising", true, "synchronise its stream", [] {
                 float* d = device_floats(8);
                 cudaMemset(d, 0, 32);
                 float* pinned = nullptr;
                 cudaMallocHost(reinterpret_cast<void**>(&pinned), 32);
                 cudaStream_t s;
                 cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
                 cudaMemcpyAsync(pinned, d, 32, cudaMemcpyDeviceToHost, s);
                 volatile float x = pinned[0];  // no cudaStreamSynchronize(s) first
                 (void)x;
                 return false;
               }});
  c.push_back({"shuffle whose mask names lanes that skip it", false, "which had exited instead", [] {
                 float* out = device_floats(32);
                 NST_LAUNCH(partial_shuffle_kernel, 1, 32, 0, 0)(out);
                 return expect(cudaDeviceSynchronize() == cudaErrorLaunchFailure, "launch failure at the sync");
               }});
  c.push_back({"__syncthreads not reached by every thread", false, "exited while the others wait at __syncthreads", [] {
                 float* out = device_floats(64);
                 NST_LAUNCH(divergent_barrier_kernel, 1, 64, 0, 0)(out);
                 return expect(cudaDeviceSynchronize() == cudaErrorLaunchFailure, "launch failure at the sync");
               }});
  c.push_back({"a kernel declared independent synchronises", false, "calls __syncthreads", [] {
                 float* out = device_floats(64);
                 NST_LAUNCH_INDEPENDENT(barrier_kernel, 1, 64, 0, 0)(out);
                 return expect(cudaDeviceSynchronize() == cudaErrorLaunchFailure, "launch failure at the sync");
               }});
  c.push_back({"launch with more than 1024 threads per block", false, "is out of range", [] {
                 float* out = device_floats(64);
                 NST_LAUNCH(barrier_kernel, 1, 2048, 0, 0)(out);
                 return expect(cudaGetLastError() == cudaErrorInvalidConfiguration, "configuration error");
               }});
  return c;
}

}  // namespace

int main() {
  int failures = 0;
  for (const Case& c : cases()) {
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) return 2;
    pid_t pid = fork();
    if (pid == 0) {
      dup2(pipe_fds[1], 2);
      close(pipe_fds[0]);
      bool ok = c.body();
      std::fflush(stderr);
      _exit(ok ? 0 : 1);
    }
    close(pipe_fds[1]);
    std::string err;
    char buf[4096];
    for (ssize_t n; (n = read(pipe_fds[0], buf, sizeof buf)) > 0;) err.append(buf, size_t(n));
    close(pipe_fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    bool ended_right = c.aborts ? (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT)
                                : (WIFEXITED(status) && WEXITSTATUS(status) == 0);
    bool said_why = err.find(c.message) != std::string::npos;
    bool ok = ended_right && said_why;
    std::printf("%-72s %s\n", c.name, ok ? "ok" : "FAIL");
    if (!ok) {
      std::printf("  ended %s, stderr:\n%s\n", WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "normally",
                  err.c_str());
      failures++;
    } else if (*c.message) {
      size_t at = err.find("nst cuda stand-in");
      std::string line = at == std::string::npos ? "" : err.substr(at, err.find('\n', at) - at);
      std::printf("  %s\n", line.c_str());
    }
  }
  std::printf(failures ? "standin_test: %d check(s) did not fire\n" : "standin_test: every check fires\n", failures);
  return failures ? 1 : 0;
}
