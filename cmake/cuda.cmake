# The CUDA engine as a static library `nst_cuda`, included by
# native/CMakeLists.txt when nvcc is found (at directory scope: enable_language
# must not run inside a function).
#
# cuDNN and cuBLAS are NOT linked: native/src/cuda/dnn_api.h declares the
# subset we use and library_search.cc dlopens them at run time. The CUDA
# runtime is linked statically, so the addon needs only the driver (libcuda,
# itself loaded by cudart at run time): it loads on machines without a GPU.

if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  # Only for the compiler check; the target sets its own list below.
  set(CMAKE_CUDA_ARCHITECTURES 80)
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

set(NST_CUDA_SOURCE_DIR "${CMAKE_CURRENT_LIST_DIR}/../native/src/cuda")
file(GLOB NST_CUDA_SOURCES CONFIGURE_DEPENDS "${NST_CUDA_SOURCE_DIR}/*.cu" "${NST_CUDA_SOURCE_DIR}/*.cc")
list(FILTER NST_CUDA_SOURCES EXCLUDE REGEX "host_test\\.cc$")

add_library(nst_cuda STATIC ${NST_CUDA_SOURCES})
set_target_properties(nst_cuda PROPERTIES
  POSITION_INDEPENDENT_CODE ON
  # sm_80 (A100), sm_86 (A10/RTX 30), sm_89 (L4/RTX 40), sm_90 (H100) as SASS,
  # plus compute_90 PTX for anything newer.
  CUDA_ARCHITECTURES "80-real;86-real;89-real;90-real;90-virtual"
  CXX_STANDARD 17
  CXX_STANDARD_REQUIRED ON
  CUDA_STANDARD 17
  CUDA_STANDARD_REQUIRED ON
  CUDA_RUNTIME_LIBRARY Static)
target_include_directories(nst_cuda PUBLIC "${CMAKE_CURRENT_LIST_DIR}/../native/src")
# OpenMP: the kernel families' CPU references (native/src/kernels) are
# parallel loops, seen by every file that includes a family.
target_compile_options(nst_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Werror>
  $<$<COMPILE_LANGUAGE:CUDA>:SHELL:-Werror all-warnings>
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Werror,-fopenmp>)
target_link_libraries(nst_cuda PUBLIC CUDA::cudart_static OpenMP::OpenMP_CXX ${CMAKE_DL_LIBS})
target_compile_definitions(nst_cuda PUBLIC NST_HAVE_CUDA=1)

# The kernels' self-test, beside the addon's build: run by bench/gpu/run.sh
# and by the one-time GPU self-check before `--backend auto` trusts the engine.
add_executable(nst_kernel_test "${NST_CUDA_SOURCE_DIR}/test/kernel_test.cu")
set_target_properties(nst_kernel_test PROPERTIES
  CUDA_ARCHITECTURES "80-real;86-real;89-real;90-real;90-virtual"
  CUDA_STANDARD 17
  CUDA_RUNTIME_LIBRARY Static)
target_compile_options(nst_kernel_test PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-fopenmp>)
target_link_libraries(nst_kernel_test PRIVATE nst_cuda)
