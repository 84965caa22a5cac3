// Byte counts for messages: "320 MiB", "1.5 GiB".
#pragma once

#include <cstddef>
#include <string>

namespace nst::cuda {

std::string format_bytes(size_t bytes);

}  // namespace nst::cuda
