#include "cuda/format_bytes.h"

#include <cstdio>

namespace nst::cuda {

std::string format_bytes(size_t bytes) {
  char buf[32];
  const double mib = double(bytes) / (1 << 20);
  if (mib >= 1024) {
    std::snprintf(buf, sizeof buf, "%.1f GiB", mib / 1024);
  } else {
    std::snprintf(buf, sizeof buf, "%.0f MiB", mib);
  }
  return buf;
}

}  // namespace nst::cuda
