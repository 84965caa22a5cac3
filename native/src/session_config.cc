#include "session_config.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace nst {

namespace {

void check_range(const char* field, int value, int min, int max) {
  if (value < min || value > max) {
    throw Error(std::string(field) + " must be in " + std::to_string(min) + ".." + std::to_string(max) + ", got " +
                std::to_string(value));
  }
}

// A layer listed twice would be summed by one engine and overwritten by the
// other; the TypeScript core refuses it too.
void check_layers(const std::vector<WeightedLayer>& layers, const char* list, int num_layers) {
  for (size_t i = 0; i < layers.size(); i++) {
    const std::string field = std::string("loss.") + list + "[" + std::to_string(i) + "]";
    const int index = layers[i].conv_index;
    if (index < 0 || index >= num_layers) {
      throw Error(field + ": conv layer " + std::to_string(index) + " is outside the " + std::to_string(num_layers) +
                  " layers of the weights (0.." + std::to_string(num_layers - 1) + ")");
    }
    if (!(layers[i].weight >= 0) || !std::isfinite(layers[i].weight)) {
      throw Error(field + ": weight must be finite and >= 0");
    }
    for (size_t j = 0; j < i; j++) {
      if (layers[j].conv_index == index) {
        throw Error(field + ": conv layer " + std::to_string(index) + " (" + kVgg19[index].name +
                    ") is listed twice (also at " + list + "[" + std::to_string(j) + "])");
      }
    }
  }
}

}  // namespace

void validate_session_config(const SessionConfig& config, int num_layers) {
  check_range("height", config.height, 1, kMaxImageSide);
  check_range("width", config.width, 1, kMaxImageSide);
  check_range("batch", config.batch, 1, kMaxBatch);
  const LossSpec& loss = config.loss;
  if (loss.content.empty() && loss.style.empty()) throw Error("loss needs at least one content or style layer");
  check_layers(loss.content, "content", num_layers);
  check_layers(loss.style, "style", num_layers);
  for (const float term : {loss.alpha, loss.beta, loss.tv_weight}) {
    if (!std::isfinite(term)) throw Error("loss: alpha, beta and the TV weight must be finite");
  }
  if (!std::isfinite(loss.temporal_weight) || loss.temporal_weight < 0)
    throw Error("loss: the temporal weight must be finite and >= 0");
}

int deepest_layer(const std::vector<WeightedLayer>& layers) {
  int deepest = -1;
  for (const auto& l : layers) deepest = std::max(deepest, l.conv_index);
  return deepest;
}

int deepest_layer(const LossSpec& loss) { return std::max(deepest_layer(loss.content), deepest_layer(loss.style)); }

int entry_at_layer(const std::vector<WeightedLayer>& layers, int conv_index) {
  for (size_t i = 0; i < layers.size(); i++)
    if (layers[i].conv_index == conv_index) return int(i);
  return -1;
}

std::vector<bool> layer_flags(const std::vector<WeightedLayer>& layers) {
  std::vector<bool> flags(std::size(kVgg19), false);
  for (const auto& l : layers) flags[l.conv_index] = true;
  return flags;
}

std::vector<bool> loss_layer_flags(const LossSpec& loss) {
  std::vector<bool> flags = layer_flags(loss.style);
  for (const auto& l : loss.content) flags[l.conv_index] = true;
  return flags;
}

}  // namespace nst
