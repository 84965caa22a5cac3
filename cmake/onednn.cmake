# Finds oneDNN (Debian/Ubuntu: apt install libdnnl-dev) and defines the
# imported target nst::dnnl. Searched by hand rather than with the package's
# dnnl-config.cmake, which on Debian also demands the OpenCL development files.
find_path(NST_DNNL_INCLUDE_DIR dnnl.hpp HINTS ENV DNNLROOT PATH_SUFFIXES include)
find_library(NST_DNNL_LIBRARY NAMES dnnl HINTS ENV DNNLROOT PATH_SUFFIXES lib lib64)
if(NOT NST_DNNL_INCLUDE_DIR OR NOT NST_DNNL_LIBRARY)
  message(FATAL_ERROR
    "oneDNN not found (looked for dnnl.hpp and libdnnl.so; set DNNLROOT to its prefix): "
    "install it with 'apt-get install libdnnl-dev' (Debian/Ubuntu)")
endif()
file(STRINGS "${NST_DNNL_INCLUDE_DIR}/oneapi/dnnl/dnnl_version.h" _dnnl_major REGEX "define DNNL_VERSION_MAJOR")
string(REGEX MATCH "[0-9]+" _dnnl_major "${_dnnl_major}")
if(NOT _dnnl_major STREQUAL "2")
  message(FATAL_ERROR "oneDNN ${_dnnl_major}.x found at ${NST_DNNL_INCLUDE_DIR}: this code uses the oneDNN 2.x API (libdnnl-dev 2.6)")
endif()
add_library(nst::dnnl SHARED IMPORTED)
set_target_properties(nst::dnnl PROPERTIES
  IMPORTED_LOCATION "${NST_DNNL_LIBRARY}"
  INTERFACE_INCLUDE_DIRECTORIES "${NST_DNNL_INCLUDE_DIR}")
message(STATUS "oneDNN: ${NST_DNNL_LIBRARY}")
