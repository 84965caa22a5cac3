// StepGraph (cuda/graph.h) on a real CUDA runtime: a capture that succeeds
// replays its work; one whose enqueue throws nst::Error (a call that cannot
// be captured) reports why and leaves the stream usable; one whose enqueue
// throws anything else propagates it, and the stream must not be left
// capturing (every later call on it would fail). Exit 3 when there is no
// GPU. Built and run by packages/native/test/cuda-host.test.ts:
//   g++ -std=c++17 -Wall -Wextra -Werror -Inative/src -I<cuda>/include native/src/cuda/test/graph_test.cc
//       native/src/cuda/graph.cc -L<cuda>/lib64 -lcudart_static -ldl -lpthread -lrt
#include <cuda_runtime.h>

#include <cstdio>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/graph.h"
#include "cuda/test/expect.h"
#include "engine.h"

using nst::cuda::StepGraph;

using nst::test::failures;

static bool capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  EXPECT(cudaStreamIsCapturing(stream, &status) == cudaSuccess);
  return status != cudaStreamCaptureStatusNone;
}

// Fills the buffer with `byte` on the stream, waits and reads it back.
static bool stream_fills(cudaStream_t stream, void* device, size_t bytes, int byte) {
  std::vector<unsigned char> host(bytes, 0);
  if (cudaMemsetAsync(device, byte, bytes, stream) != cudaSuccess) return false;
  if (cudaMemcpyAsync(host.data(), device, bytes, cudaMemcpyDeviceToHost, stream) != cudaSuccess) return false;
  if (cudaStreamSynchronize(stream) != cudaSuccess) return false;
  for (unsigned char b : host) {
    if (b != byte) return false;
  }
  return true;
}

int main() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("graph_test: no GPU, nothing to test\n");
    return 3;
  }
  cudaStream_t stream = nullptr;
  EXPECT(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess);
  const size_t bytes = 4096;
  void* device = nullptr;
  EXPECT(cudaMalloc(&device, bytes) == cudaSuccess);
  std::vector<unsigned char> host(bytes, 0);

  // Captured work runs only when the graph is launched.
  StepGraph graph;
  std::string failure =
      graph.capture(stream, [&] { EXPECT(cudaMemsetAsync(device, 7, bytes, stream) == cudaSuccess); });
  EXPECT(failure.empty());
  EXPECT(graph.ready());
  EXPECT(!capturing(stream));
  EXPECT(stream_fills(stream, device, bytes, 0));
  graph.launch(stream);
  EXPECT(cudaMemcpyAsync(host.data(), device, bytes, cudaMemcpyDeviceToHost, stream) == cudaSuccess);
  EXPECT(cudaStreamSynchronize(stream) == cudaSuccess);
  EXPECT(host[0] == 7 && host[bytes - 1] == 7);

  // nst::Error during capture: a reported failure, no graph, a usable stream.
  failure = graph.capture(stream, [&] {
    EXPECT(cudaMemsetAsync(device, 1, bytes, stream) == cudaSuccess);
    throw nst::Error("cuda: a call that cannot be captured");
  });
  EXPECT(failure == "cuda: a call that cannot be captured");
  EXPECT(!graph.ready());
  EXPECT(!capturing(stream));
  EXPECT(stream_fills(stream, device, bytes, 2));

  // Any other exception propagates, and the capture is over.
  bool propagated = false;
  try {
    graph.capture(stream, [&] {
      EXPECT(cudaMemsetAsync(device, 3, bytes, stream) == cudaSuccess);
      throw std::bad_alloc();
    });
  } catch (const std::bad_alloc&) {
    propagated = true;
  }
  EXPECT(propagated);
  EXPECT(!graph.ready());
  EXPECT(!capturing(stream));
  EXPECT(stream_fills(stream, device, bytes, 4));

  // Capture works again afterwards.
  failure = graph.capture(stream, [&] { EXPECT(cudaMemsetAsync(device, 5, bytes, stream) == cudaSuccess); });
  EXPECT(failure.empty() && graph.ready());
  graph.launch(stream);
  EXPECT(cudaStreamSynchronize(stream) == cudaSuccess);
  EXPECT(cudaMemcpy(host.data(), device, bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
  EXPECT(host[0] == 5);

  graph.reset();
  cudaFree(device);
  cudaStreamDestroy(stream);
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("graph_test: all passed\n");
  return 0;
}
