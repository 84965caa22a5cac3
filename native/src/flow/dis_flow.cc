// The flow on OpenCV's cv::DISOpticalFlow (compiled when CMake finds OpenCV).
#include <opencv2/core.hpp>
#include <opencv2/core/version.hpp>
#include <opencv2/video/tracking.hpp>

#include "engine.h"
#include "flow/flow.h"

namespace nst::flow {

bool available() { return true; }

std::string describe() { return std::string("OpenCV ") + CV_VERSION + " (DIS optical flow)"; }

void dis_flow(const uint8_t* from, const uint8_t* to, int width, int height, Preset preset, float* out) {
  const int cv_preset = preset == Preset::Medium ? cv::DISOpticalFlow::PRESET_MEDIUM
                        : preset == Preset::Fast ? cv::DISOpticalFlow::PRESET_FAST
                                                 : cv::DISOpticalFlow::PRESET_ULTRAFAST;
  // Borrowed, not copied: the Mats wrap the caller's buffers.
  const cv::Mat a(height, width, CV_8UC1, const_cast<uint8_t*>(from));
  const cv::Mat b(height, width, CV_8UC1, const_cast<uint8_t*>(to));
  cv::Mat flow(height, width, CV_32FC2, out);
  try {
    cv::Ptr<cv::DISOpticalFlow> dis = cv::DISOpticalFlow::create(cv_preset);
    dis->calc(a, b, flow);
  } catch (const cv::Exception& e) {
    throw Error(std::string("optical flow: ") + e.what());
  }
  // calc writes into `flow`, which must still be the caller's buffer.
  if (flow.ptr<float>() != out) throw Error("optical flow: OpenCV reallocated the output");
}

}  // namespace nst::flow
