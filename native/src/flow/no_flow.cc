// The flow in a build without OpenCV: says why, and how to get it.
#include "engine.h"
#include "flow/flow.h"

#ifndef NST_NO_OPENCV_REASON
#define NST_NO_OPENCV_REASON "OpenCV not found"
#endif

namespace nst::flow {

bool available() { return false; }

std::string describe() {
  return std::string(NST_NO_OPENCV_REASON) +
         ": sudo apt-get install libopencv-dev, then npm run build:native -w @nst/native";
}

void dis_flow(const uint8_t*, const uint8_t*, int, int, Preset, float*) {
  throw Error(ErrorCode::Unsupported, "backend", describe());
}

}  // namespace nst::flow
