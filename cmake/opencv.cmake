# OpenCV for the optical flow of `nst video` (cv::DISOpticalFlow, in the video
# module; Debian/Ubuntu: apt-get install libopencv-dev). Optional: without it
# the addon builds with native/src/flow/no_flow.cc, which says what is
# missing, and everything but video works. NST_WITH_OPENCV=OFF builds without
# it on purpose (the tests of that build). Sets NST_FLOW_SOURCES and
# NST_FLOW_LIBRARIES for the addon.
option(NST_WITH_OPENCV "Build the optical flow of nst video with OpenCV when found" ON)
set(NST_FLOW_LIBRARIES "")
set(NST_FLOW_DEFINITIONS "")
if(NST_WITH_OPENCV)
  find_package(OpenCV 4 QUIET COMPONENTS core video)
endif()
if(NST_WITH_OPENCV AND OpenCV_FOUND)
  set(NST_FLOW_SOURCES "${CMAKE_CURRENT_SOURCE_DIR}/src/flow/dis_flow.cc")
  set(NST_FLOW_LIBRARIES opencv_core opencv_video)
  set(NST_FLOW_INCLUDE_DIRS ${OpenCV_INCLUDE_DIRS})
  message(STATUS "OpenCV: ${OpenCV_VERSION} (optical flow for nst video)")
else()
  set(NST_FLOW_SOURCES "${CMAKE_CURRENT_SOURCE_DIR}/src/flow/no_flow.cc")
  set(NST_FLOW_INCLUDE_DIRS "")
  if(NST_WITH_OPENCV)
    set(NST_FLOW_DEFINITIONS "NST_NO_OPENCV_REASON=\"OpenCV not found\"")
    message(STATUS "OpenCV: not found, building without the optical flow of nst video (apt-get install libopencv-dev)")
  else()
    set(NST_FLOW_DEFINITIONS "NST_NO_OPENCV_REASON=\"OpenCV left out of this build (NST_WITH_OPENCV=OFF)\"")
    message(STATUS "OpenCV: disabled by NST_WITH_OPENCV=OFF")
  endif()
endif()
