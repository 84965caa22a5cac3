// The cuda engine's memory estimate (Engine::estimate_memory, from
// memory_plan.h) against the device bytes the engine really allocates, on the
// CPU stand-in, whose allocation table counts them (runtime.h's peak): whole
// jobs (engine, weights, session, content and style targets, Adam steps
// eager, captured and replayed) at a few shapes, batches, losses, style
// sizes, and with the fused convolution. The estimate must never be below
// the peak, and must exceed it by no more than its two reserves: the cuDNN
// workspace cap (the stand-in's algorithms need 4 KiB of it) and the one Gram
// a style pass is granted but does not allocate. So the plan is the engine's
// real buffers, not a guess with slack. Needs the cuDNN and cuBLAS stand-ins
// (NST_CUDNN_PATH, NST_CUBLAS_PATH). Exit code 0 when every case holds.
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "cuda/memory_plan.h"
#include "cuda/test/expect.h"
#include "engine.h"
#include "runtime.h"
#include "session_config.h"

using namespace nst;
using nst::test::failures;

namespace {

struct Case {
  const char* name;
  SessionConfig config;
  std::vector<ImageSize> style_sizes;
  bool fused_conv;
};

std::vector<float> random_floats(size_t n, unsigned seed, float scale) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// Allocates, runs and measures one whole job; returns the device bytes at its peak.
size_t run_job(Engine& engine, const Case& c) {
  const int layers = deepest_layer(c.config.loss) + 1;
  std::vector<std::vector<float>> kernels, biases;
  std::vector<ConvWeightsView> views;
  for (int i = 0; i < layers; i++) {
    kernels.push_back(random_floats(size_t(9) * kVgg19[i].in_channels * kVgg19[i].out_channels, 10 + i, 0.05f));
    biases.push_back(random_floats(size_t(kVgg19[i].out_channels), 50 + i, 0.01f));
    views.push_back({kVgg19[i].in_channels, kVgg19[i].out_channels, kernels.back().data(), biases.back().data()});
  }
  engine.set_weights(views);
  std::unique_ptr<Session> session = engine.create_session(c.config);
  const size_t image = size_t(c.config.height) * c.config.width * 3;
  std::vector<float> content = random_floats(image, 1, 100.f);
  std::vector<std::vector<float>> styles;
  for (size_t k = 0; k < c.style_sizes.size(); k++)
    styles.push_back(random_floats(size_t(c.style_sizes[k].height) * c.style_sizes[k].width * 3, 2 + k, 100.f));
  std::vector<float> pixel_weights(image / 3, 1.f);  // video: the temporal target's weights
  std::vector<TargetsView> targets;
  for (int b = 0; b < c.config.batch; b++) {
    TargetsView t{{c.config.height, c.config.width, content.data()}, {}};
    if (c.config.loss.temporal_weight != 0.f) t.temporal = TemporalTargetView{content.data(), pixel_weights.data()};
    for (size_t k = 0; k < styles.size(); k++) {
      t.styles.push_back({{c.style_sizes[k].height, c.style_sizes[k].width, styles[k].data()}, 1.f / styles.size()});
    }
    targets.push_back(t);
  }
  session->set_targets(targets);
  session->set_images(random_floats(image * c.config.batch, 3, 20.f).data());
  AdamParams adam{0.9, 0.999, 1e-8, {2.f, 2.f, 2.f}};  // eager, captured, replayed
  session->iterate(adam, [](int) {});
  std::vector<float> gradient(image * c.config.batch);
  session->loss_and_gradient(gradient.data());
  return emu::device_bytes_peak();
}

// The Gram a style pass's plan reserves: its deepest style layer's.
size_t style_gram_reserve(const Case& c) {
  if (c.config.loss.style.empty() || c.style_sizes.empty()) return 0;
  const int channels = kVgg19[deepest_layer(c.config.loss.style)].out_channels;
  return sizeof(float) * size_t(channels) * channels;
}

void check(const Case& c) {
  if (c.fused_conv) setenv("NST_CUDA_FUSED_CONV", "1", 1);
  const size_t before = emu::device_bytes_in_use();
  emu::reset_device_bytes_peak();
  double estimate = 0;
  size_t peak = 0;
  {
    std::unique_ptr<Engine> engine = make_cuda_engine({});
    estimate = engine->estimate_memory(c.config, c.style_sizes, {});
    peak = run_job(*engine, c) - before;
  }
  unsetenv("NST_CUDA_FUSED_CONV");
  EXPECT(emu::device_bytes_in_use() == before);  // the job freed what it took
  const double reserves = double(cuda::kWorkspaceCap + style_gram_reserve(c));
  const double unreserved = estimate - double(cuda::kWorkspaceCap);
  std::printf("%-44s estimate %.0f bytes, allocated peak %zu bytes; without the workspace reserve %.0f (%.4fx)\n",
              c.name, estimate, peak, unreserved, unreserved / double(peak));
  EXPECT(estimate >= double(peak));
  EXPECT(estimate - double(peak) <= reserves);
  // The stand-in's algorithms take 4 KiB of workspace: all but 1 MiB of the
  // reserve is left over, or the plan missed a buffer.
  EXPECT(estimate - double(peak) >= double(cuda::kWorkspaceCap - (size_t(1) << 20)));
}

SessionConfig config(int height, int width, int batch, std::vector<WeightedLayer> content,
                     std::vector<WeightedLayer> style, Pooling pooling) {
  SessionConfig c;
  c.height = height;
  c.width = width;
  c.batch = batch;
  c.pooling = pooling;
  c.loss.content = std::move(content);
  c.loss.style = std::move(style);
  c.loss.tv_weight = 1e-3f;
  return c;
}

// A video frame's loss: with a temporal weight, the session holds its targets.
SessionConfig temporal(SessionConfig c) {
  c.loss.temporal_weight = 100.f;
  return c;
}

}  // namespace

int main() {
  if (!std::getenv("NST_CUDNN_PATH") || !std::getenv("NST_CUBLAS_PATH")) {
    std::fprintf(stderr, "memory_plan_test: set NST_CUDNN_PATH and NST_CUBLAS_PATH to the stand-ins\n");
    return 2;
  }
  const std::vector<WeightedLayer> notebook_style = {{0, .2f}, {2, .2f}, {4, .2f}, {8, .2f}, {12, .2f}};
  const std::vector<Case> cases = {
      {"64x48, the notebook's loss, two style sizes",
       config(48, 64, 1, {{9, 1.f}}, notebook_style, Pooling::Avg),
       {{48, 64}, {60, 40}},
       false},
      {"96x80 batch 2, blocks 1-2, a larger style",
       config(80, 96, 2, {{3, 1.f}}, {{0, .5f}, {2, .5f}}, Pooling::Max),
       {{150, 200}},
       false},
      {"33x31, content only, fused conv", config(31, 33, 1, {{4, 1.f}}, {}, Pooling::Avg), {}, true},
      {"40x30 batch 2, a temporal term (video)",
       temporal(config(30, 40, 2, {{3, 1.f}}, {{0, .5f}, {2, .5f}}, Pooling::Avg)),
       {{30, 40}},
       false},
  };
  for (const Case& c : cases) check(c);
  if (failures) {
    std::fprintf(stderr, "memory_plan_test: %d check(s) failed\n", failures);
    return 1;
  }
  std::printf("memory_plan_test: every estimate covers what the engine allocated, by its reserves only\n");
  return 0;
}
