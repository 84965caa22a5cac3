// The one validation of a session's configuration, for both engines: the
// addon calls it once, before Engine::create_session, and the engines trust
// what it let through.
#pragma once

#include <vector>

#include "engine.h"

namespace nst {

// Bounds of a session (and of every image handed to one).
inline constexpr int kMaxImageSide = 1 << 15;
inline constexpr int kMaxBatch = 1024;

// Throws nst::Error naming the field at fault as the config's own path
// ("loss.content[1]: conv layer 3 (conv2_2) is listed twice"); the caller
// prefixes where the config came from. `num_layers`: conv layers of the
// loaded weights.
void validate_session_config(const SessionConfig& config, int num_layers);

// Index of the deepest conv layer in the list (-1 when empty), or that the
// loss uses.
int deepest_layer(const std::vector<WeightedLayer>& layers);
int deepest_layer(const LossSpec& loss);

// The position in `layers` of the entry at conv layer `conv_index` (a
// validated list names a layer at most once), or -1.
int entry_at_layer(const std::vector<WeightedLayer>& layers, int conv_index);

// One flag per VGG-19 conv layer: true where `layers` has an entry.
std::vector<bool> layer_flags(const std::vector<WeightedLayer>& layers);
// The same over the loss's content and style layers together.
std::vector<bool> loss_layer_flags(const LossSpec& loss);

}  // namespace nst
