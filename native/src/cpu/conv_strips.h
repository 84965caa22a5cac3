// A Winograd convolution run over horizontal strips of its map, one strip at
// a time, so that its scratchpad is a strip's and not the whole map's.
//
// Why: oneDNN 2.6's Winograd (avx512_core, F(4x4, 3x3)) keeps the whole map's
// transformed input and output tiles in its scratchpad, about 600 bytes per
// pixel at conv1_2 (64 channels; 584 MiB at 1024x1024), more than the layer's
// own activation. Strips of a few dozen rows keep it to kStripScratchBytes.
//
// Exact: the forward gives each strip its input rows with one row of halo on
// each side (zeros beyond the image, as the whole map's padding), and a conv
// without vertical padding computes exactly the strip's output rows; strips
// start at multiples of 4 rows, so Winograd's 4x4 output tiles fall where they
// fall on the whole map. The backward-data of a strip (its output rows'
// gradient, no vertical padding) gives the gradient of its input rows halo
// included; the strips' results overlap by one row on each side and are added
// (the order of that sum is the only difference from the whole map's).
// Float32, nChw16c only (what Winograd runs on).
#pragma once

#include <dnnl.hpp>

#include <array>
#include <cstddef>

namespace nst::cpu {

// The scratchpad a striped conv aims at (the strips' rows are chosen for it),
// and the fewest rows a strip has: the backward-data of a strip computes its
// two halo rows too, one more row of Winograd's 4x4 tiles (6% of a 64-row
// strip's backward).
inline constexpr size_t kStripScratchBytes = size_t(16) << 20;
inline constexpr int kMinStripRows = 64;

struct StripPlan {
  int rows = 0;  // output rows per strip, a multiple of 4 (0: not striped); the last strip takes what is left
  int last_rows = 0;
  // [0]: a strip of `rows`, [1]: the last (when last_rows differs; else the same as [0]).
  std::array<dnnl::convolution_forward::primitive_desc, 2> forward;
  std::array<dnnl::convolution_backward_data::primitive_desc, 2> backward;  // with a backward
  // Bytes of the two strip buffers: a strip's input (rows + 2 rows) and its output.
  size_t input_bytes() const { return forward[0].src_desc().get_size(); }
  size_t output_bytes() const { return forward[0].dst_desc().get_size(); }
};

// Strips for a Winograd conv (`whole`: its forward primitive over the map of
// `h` rows, `whole_scratchpad`: the largest scratchpad of its forward and
// backward) when that scratchpad passes kStripScratchBytes and oneDNN has the
// strips' primitives, and NST_CPU_STRIPS is not 0 (for tests: the whole map
// at once); else rows = 0. The attributes are the whole map's
// (the forward's: bias + ReLU; both: a user scratchpad).
StripPlan plan_strips(const dnnl::engine& engine, const dnnl::convolution_forward::primitive_desc& whole,
                      size_t whole_scratchpad, bool with_backward, const dnnl::primitive_attr& forward_attr,
                      const dnnl::primitive_attr& backward_attr);

// Runs a StripPlan on full maps (nChw16c float32; the whole map's shapes).
class StripedConv {
 public:
  StripedConv() = default;
  StripedConv(const dnnl::engine& engine, const StripPlan& plan, const dnnl::memory& weights_forward,
              const dnnl::memory& weights_backward, const dnnl::memory& bias, void* input_strip, void* output_strip,
              void* scratchpad);
  bool active() const { return plan_.rows > 0; }
  void set_scratchpad(void* scratchpad) { scratchpad_ = scratchpad; }
  // dst = conv(src) with bias and ReLU, strip by strip (src, dst: the whole map's).
  void forward(dnnl::stream& s, const dnnl::memory& src, const dnnl::memory& dst) const;
  // diff_src = the conv's backward-data of diff_dst, strip by strip.
  void backward(dnnl::stream& s, const dnnl::memory& diff_dst, const dnnl::memory& diff_src) const;

 private:
  dnnl::engine engine_;
  StripPlan plan_;
  std::array<dnnl::primitive, 2> forward_, backward_;
  dnnl::memory weights_forward_, weights_backward_, bias_;
  void* input_strip_ = nullptr;
  void* output_strip_ = nullptr;
  void* scratchpad_ = nullptr;
};

}  // namespace nst::cpu
