// Linked instead of native/src/cuda/ when the build found no CUDA toolkit (or
// was configured with -DNST_WITH_CUDA=OFF): asking for the cuda engine then
// fails with a reason the loader can show in one line.
#include "engine.h"

namespace nst {

std::unique_ptr<Engine> make_cuda_engine(const CudaOptions&) {
  throw Error(ErrorCode::Unsupported, "backend",
              "this build has no CUDA support: the addon was compiled without nvcc (rebuild with the CUDA toolkit "
              "installed and NST_WITH_CUDA=ON)");
}

}  // namespace nst
