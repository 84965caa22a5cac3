// Host-only tests of the CUDA engine's pure C++ parts (no GPU, no CUDA
// runtime): SAME-pooling index math against TensorFlow's padding formula,
// network geometry and memory estimate against the spec's numbers, cuDNN's
// 2^31-element tensor limit, a whole job's estimate, the style pass's memory,
// the algorithm cache key, and the cuDNN/cuBLAS library search on a fake
// folder tree. Built and run by packages/native/test/cuda-host.test.ts:
//   g++ -std=c++17 -Wall -Wextra -Werror -Inative/src native/src/cuda/test/host_test.cc
//       native/src/cuda/geometry.cc native/src/cuda/memory_plan.cc native/src/session_config.cc
//       native/src/cuda/library_search.cc -ldl
#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "cuda/conv_key.h"
#include "cuda/geometry.h"
#include "cuda/library_search.h"
#include "cuda/memory_plan.h"
#include "cuda/test/expect.h"
#include "engine.h"
#include "kernels/pool_math.h"

using namespace nst::cuda;
using nst::kernels::pooled_size;
using nst::kernels::window_extent;

using nst::test::failures;

// TensorFlow's SAME rule for a window of 2, stride 2 (tf.nn.pool docs):
// out = ceil(n / 2); pad_total = max((out - 1) * 2 + 2 - n, 0);
// pad_before = pad_total / 2. Window o spans [2o - pad_before, +2) clipped.
static void test_pool_math() {
  for (int n = 1; n <= 33; n++) {
    int out = (n + 1) / 2;
    EXPECT(pooled_size(n) == out);
    int pad_total = std::max((out - 1) * 2 + 2 - n, 0), pad_before = pad_total / 2;
    for (int o = 0; o < out; o++) {
      int lo = std::max(2 * o - pad_before, 0), hi = std::min(2 * o - pad_before + 2, n);
      EXPECT(window_extent(o, n) == hi - lo);
      EXPECT(lo == 2 * o);  // the kernels start every window at 2o
    }
  }
}

static void test_geometry_and_memory() {
  // 300 x 400 -> 150x200 -> 75x100 -> 38x50 -> 19x25 (core/src/vgg.ts).
  auto g = network_geometry(300, 400, 16);
  EXPECT(g.size() == 16);
  EXPECT(g[0].height == 300 && g[0].width == 400 && g[0].in_channels == 3 && g[0].out_channels == 64);
  EXPECT(g[2].height == 150 && g[2].width == 200);
  EXPECT(g[4].height == 75 && g[4].width == 100);
  EXPECT(g[8].height == 38 && g[8].width == 50);
  EXPECT(g[12].height == 19 && g[12].width == 25 && g[12].in_channels == 512);

  // NST-SPEC.md: 512 x 512 keeps 320 MiB of float32 activations (conv1_1..conv5_1).
  SessionShape s;
  s.height = s.width = 512;
  s.num_layers = 13;
  s.content_layers = {9};
  s.style_layers = {0, 2, 4, 8, 12};
  MemoryPlan m = estimate_memory(s);
  EXPECT(m.activations == size_t(320) << 20);
  EXPECT(m.gradients == 2 * (size_t(64) << 20));  // two 512x512x64 maps
  EXPECT(m.content_targets == size_t(8) << 20);   // conv4_2: 64x64x512
  EXPECT(m.image_state == 5 * size_t(512) * 512 * 3 * 4);
  EXPECT(m.style_buffers == size_t(2) * 4 * (64 * 64 + 128 * 128 + 256 * 256 + 512 * 512 + 512 * 512));
  // The budget: <= 1 GB at 512x512 with Adam, workspace reserve included.
  EXPECT(required_bytes(s) <= size_t(1) << 30);
  // Linear in the batch (apart from the fixed workspace reserve).
  SessionShape s8 = s;
  s8.batch = 8;
  EXPECT(estimate_memory(s8).total() == 8 * m.total());
}

// The default loss (conv1_1..conv5_1) at one size and batch.
static SessionShape default_loss_shape(int height, int width, int batch) {
  SessionShape s;
  s.height = height;
  s.width = width;
  s.batch = batch;
  s.num_layers = 13;
  s.content_layers = {9};
  s.style_layers = {0, 2, 4, 8, 12};
  return s;
}

// cuDNN's legacy descriptors take fewer than 2^31 elements per tensor: the
// conv1 maps (64 channels at full size) reach it first. (The refusal's
// message and the largest size within the limit are core's, from the
// engine's estimate: packages/native/test/memory-plan.test.ts.)
static void test_tensor_limit() {
  SessionShape big = default_loss_shape(4096, 4096, 2);
  EXPECT(largest_tensor_elements(big) == size_t(1) << 31);  // 4096 * 4096 * 64 * 2
  EXPECT(!within_tensor_limit(big));
  EXPECT(within_tensor_limit(default_loss_shape(4096, 4096, 1)));
  EXPECT(!within_tensor_limit(default_loss_shape(2048, 2048, 8)));
  EXPECT(within_tensor_limit(default_loss_shape(2048, 2048, 7)));
  // A style image runs at batch 1: 6000x6000 is beyond the limit too.
  SessionShape style = default_loss_shape(6000, 6000, 1);
  style.backward = false;
  EXPECT(!within_tensor_limit(style));
}

// A job's estimate: the weights, the session, and its largest style pass;
// infinite when the session or a style pass is beyond the tensor limit.
static void test_job_bytes() {
  nst::SessionConfig config;
  config.height = 300;
  config.width = 400;
  config.loss.content = {{9, 1.f}};
  config.loss.style = {{0, .2f}, {2, .2f}, {4, .2f}, {8, .2f}, {12, .2f}};
  const SessionShape session = session_shape(config, false);
  EXPECT(session.num_layers == 13 && session.content_layers == std::vector<int>{9} && session.style_layers.size() == 5);
  const size_t weights = sizeof(float) * nst::vgg_weight_floats(13);
  EXPECT(weights == size_t(51'779'840));  // NST-SPEC.md: 12.94 M parameters to conv5_1, 51.8 MB
  const size_t small = estimate_memory(style_pass_shape(config, {200, 100}, false)).total();
  const size_t large = estimate_memory(style_pass_shape(config, {600, 800}, false)).total();
  EXPECT(small < large);
  EXPECT(job_bytes(config, {}, false) == double(weights + required_bytes(session)));
  EXPECT(job_bytes(config, {{200, 100}, {600, 800}}, false) == double(weights + required_bytes(session) + large));
  // Without style layers the style images cost nothing.
  nst::SessionConfig content_only = config;
  content_only.loss.style.clear();
  EXPECT(job_bytes(content_only, {{600, 800}}, false) == job_bytes(content_only, {}, false));
  EXPECT(std::isinf(job_bytes(config, {{6000, 6000}}, false)));
  config.height = config.width = 4096;
  config.batch = 2;
  EXPECT(std::isinf(job_bytes(config, {}, false)));
}

// A style pass adds its maps, its style layers' Gram and the growth of the
// session's workspace to what the session holds.
static void test_style_pass_memory() {
  SessionShape s = default_loss_shape(512, 512, 1);
  s.backward = false;
  s.content_layers.clear();
  const MemoryPlan plan = estimate_memory(s);
  EXPECT(plan.style_buffers == size_t(512) * 512 * 4);  // conv5_1's Gram, the largest
  EXPECT(style_pass_bytes(s, 0) == plan.total() + kWorkspaceCap);
  EXPECT(style_pass_bytes(s, size_t(100) << 20) == plan.total() + kWorkspaceCap - (size_t(100) << 20));
  EXPECT(style_pass_bytes(s, kWorkspaceCap) == plan.total());
  SessionShape no_styles = s;
  no_styles.style_layers.clear();
  EXPECT(style_pass_bytes(s, 0) == style_pass_bytes(no_styles, 0) + size_t(512) * 512 * 4);
  // The fused conv adds a zero map as large as the largest output (conv1: 512x512x64).
  SessionShape fused = s;
  fused.fused_conv = true;
  EXPECT(estimate_memory(fused).total() == plan.total() + size_t(512) * 512 * 64 * 4);
}

static void test_conv_key() {
  std::map<ConvKey, int> cache;
  ConvKey a{1, 64, 64, 3, 64, 1, ConvDirection::Forward};
  ConvKey b = a;
  b.direction = ConvDirection::BackwardData;
  ConvKey c = a;
  c.math = 0;
  ConvKey d = a;
  d.batch = 4;
  cache[a] = 1;
  cache[b] = 2;
  cache[c] = 3;
  cache[d] = 4;
  EXPECT(cache.size() == 4);
  EXPECT(cache[a] == 1 && cache[b] == 2 && cache[c] == 3 && cache[d] == 4);
}

static std::string make_dir(const std::string& path) {
  for (size_t i = 1; i <= path.size(); i++) {
    if (i == path.size() || path[i] == '/') mkdir(path.substr(0, i).c_str(), 0755);
  }
  return path;
}

static void touch(const std::string& path) { std::ofstream(path) << "not a real library"; }

static void test_library_search() {
  char tmpl[] = "/tmp/nst-cuda-host-test-XXXXXX";
  std::string root = mkdtemp(tmpl);
  LibrarySpec spec = cudnn_spec();
  SearchEnv env;
  env.root = root;  // system folders under the fake root
  EXPECT(find_library_file(spec, env).empty());

  // Order of the plan: variable, LD_LIBRARY_PATH, pip wheels, system.
  env.explicit_path = root + "/explicit";
  env.ld_library_path = root + "/ld1:" + root + "/ld2";
  env.virtual_env = root + "/venv";
  make_dir(root + "/venv/lib/python3.12/site-packages");
  auto plan = search_plan(spec, env);
  EXPECT(plan.size() == 4);
  EXPECT(plan[0].label == "NST_CUDNN_PATH" && plan[0].dirs.size() == 1);
  EXPECT(plan[1].label == "LD_LIBRARY_PATH" && plan[1].dirs.size() == 2 && plan[1].dirs[1] == root + "/ld2");
  EXPECT(plan[2].label == "pip wheels" && !plan[2].dirs.empty() &&
         plan[2].dirs[0] == root + "/venv/lib/python3.12/site-packages/nvidia/cudnn/lib");
  EXPECT(plan[3].label == "system" && plan[3].dirs[0] == root + "/usr/local/cuda/lib64");

  // Lowest priority first, each higher one then wins.
  touch(make_dir(root + "/usr/lib/x86_64-linux-gnu") + "/libcudnn.so.9");
  EXPECT(find_library_file(spec, env) == root + "/usr/lib/x86_64-linux-gnu/libcudnn.so.9");
  std::string wheel = make_dir(root + "/venv/lib/python3.12/site-packages/nvidia/cudnn/lib") + "/libcudnn.so.9";
  touch(wheel);
  EXPECT(find_library_file(spec, env) == wheel);
  touch(make_dir(root + "/ld2") + "/libcudnn.so.9");
  EXPECT(find_library_file(spec, env) == root + "/ld2/libcudnn.so.9");
  touch(make_dir(root + "/explicit") + "/libcudnn.so.9");
  EXPECT(find_library_file(spec, env) == root + "/explicit/libcudnn.so.9");
  // The variable may name the file itself.
  env.explicit_path = wheel;
  EXPECT(find_library_file(spec, env) == wheel);

  // cuBLAS: either soname version, from the user-site wheel folder.
  LibrarySpec blas = cublas_spec();
  SearchEnv benv;
  benv.root = root;
  benv.home = root + "/home";
  std::string user_wheel = make_dir(root + "/home/.local/lib/python3.11/site-packages/nvidia/cublas/lib");
  touch(user_wheel + "/libcublas.so.12");
  EXPECT(find_library_file(blas, benv) == user_wheel + "/libcublas.so.12");

  // Not found: one line naming every place searched.
  SearchEnv empty;
  empty.root = root + "/nothing";
  std::string text = describe_search(spec, empty);
  EXPECT(text.find('\n') == std::string::npos);
  for (const char* needle : {"libcudnn.so.9", "NST_CUDNN_PATH (unset)", "LD_LIBRARY_PATH", "nvidia/cudnn/lib",
                             "/usr/local/cuda/lib64", "loader cache"}) {
    EXPECT(text.find(needle) != std::string::npos);
  }

  // open_library with the process environment: a fake library that does
  // not exist anywhere is reported (one line); a file that is not ELF makes
  // dlopen fail with its path in the message.
  LibrarySpec fake{"FakeLib", "NST_FAKE_LIB_PATH", {"libnst_fake_never_installed.so.7"}, {"nvidia/fake/lib"}, {}};
  unsetenv("NST_FAKE_LIB_PATH");
  try {
    open_library(fake, nullptr);
    EXPECT(false);
  } catch (const nst::Error& e) {
    std::string m = e.what();
    EXPECT(m.find("FakeLib (libnst_fake_never_installed.so.7) not found") == 0);
    EXPECT(m.find('\n') == std::string::npos);
  }
  std::string bogus = make_dir(root + "/bogus") + "/libnst_fake_never_installed.so.7";
  touch(bogus);
  setenv("NST_FAKE_LIB_PATH", (root + "/bogus").c_str(), 1);
  try {
    open_library(fake, nullptr);
    EXPECT(false);
  } catch (const nst::Error& e) {
    std::string m = e.what();
    EXPECT(m.find("FakeLib: dlopen(" + bogus + ") failed") == 0);
  }
  unsetenv("NST_FAKE_LIB_PATH");

  // library_symbol on a real library (libm) and a missing symbol.
  void* libm = dlopen("libm.so.6", RTLD_NOW);
  EXPECT(libm != nullptr);
  if (libm) {
    EXPECT(library_symbol(libm, "cos", "libm") != nullptr);
    try {
      library_symbol(libm, "cudnnNoSuchFunction", "libm");
      EXPECT(false);
    } catch (const nst::Error& e) {
      EXPECT(std::string(e.what()).find("symbol cudnnNoSuchFunction not found") != std::string::npos);
    }
  }
  std::string cleanup = "rm -rf '" + root + "'";
  EXPECT(std::system(cleanup.c_str()) == 0);
}

int main() {
  test_pool_math();
  test_geometry_and_memory();
  test_tensor_limit();
  test_job_bytes();
  test_style_pass_memory();
  test_conv_key();
  test_library_search();
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("cuda host tests: all passed\n");
  return 0;
}
