// The check of the CUDA engine's C++ test programs: a failed condition is
// printed with its place and counted; main() returns non-zero when any failed.
#pragma once

#include <cstdio>

namespace nst::test {
inline int failures = 0;
}  // namespace nst::test

#define EXPECT(cond)                                                       \
  do {                                                                     \
    if (!(cond)) {                                                         \
      std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      nst::test::failures++;                                               \
    }                                                                      \
  } while (0)
