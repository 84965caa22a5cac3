// Dense optical flow for video (nst video): OpenCV's DIS optical flow
// (Kroeger et al., "Fast Optical Flow using Dense Inverse Search", 2016),
// cv::DISOpticalFlow. Optional: the addon builds without OpenCV (then
// no_flow.cc says why there is none) and everything but video works.
#pragma once

#include <cstdint>
#include <string>

namespace nst::flow {

// OpenCV's presets: more scales and refinement iterations, more accuracy.
enum class Preset { UltraFast, Fast, Medium };

// Whether this build has the flow (OpenCV was found when it was built).
bool available();
// "OpenCV 4.6.0", or why there is no flow.
std::string describe();

// The flow from frame `from` to frame `to` (grey, 8 bits, width x height,
// row-major): out[(y * width + x) * 2 + {0, 1}] = (dx, dy), such that
// from(x, y) matches to(x + dx, y + dy). Throws nst::Error (unsupported,
// field "backend") when unavailable.
void dis_flow(const uint8_t* from, const uint8_t* to, int width, int height, Preset preset, float* out);

}  // namespace nst::flow
