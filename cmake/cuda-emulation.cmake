# The CUDA engine on the CPU stand-in (native/emulation), included by
# native/CMakeLists.txt with -DNST_CUDA_EMULATION=ON. Defines, like
# cuda.cmake, the static library `nst_cuda`, built from the same sources by
# the host compiler: kernels.cu as C++ (the kernel families' launches go
# through cuda/launch.h), the CUDA runtime replaced by
# libnst_cudart_standin.so.
# Besides: the cuDNN and cuBLAS stand-ins (loaded by the engine through
# NST_CUDNN_PATH / NST_CUBLAS_PATH like the real ones), the kernel self-test,
# the memory plan's test and the stand-in's own strictness test, as
# executables.
find_package(CUDAToolkit REQUIRED)  # the headers only: types and signatures
find_package(Threads REQUIRED)

set(NST_EMU_DIR "${CMAKE_CURRENT_LIST_DIR}/../native/emulation")
set(NST_CUDA_SOURCE_DIR "${CMAKE_CURRENT_LIST_DIR}/../native/src/cuda")
set(NST_EMU_WARNINGS -Wall -Wextra -Werror)

# The runtime: one job per file (cudart_internal.h lists them), and the grid.
add_library(nst_cudart_standin SHARED
  "${NST_EMU_DIR}/errors.cc" "${NST_EMU_DIR}/memory.cc" "${NST_EMU_DIR}/streams.cc" "${NST_EMU_DIR}/copies.cc"
  "${NST_EMU_DIR}/events.cc" "${NST_EMU_DIR}/graphs.cc" "${NST_EMU_DIR}/device_info.cc" "${NST_EMU_DIR}/block.cc")
target_include_directories(nst_cudart_standin PUBLIC ${CUDAToolkit_INCLUDE_DIRS} "${NST_EMU_DIR}")
target_compile_options(nst_cudart_standin PRIVATE ${NST_EMU_WARNINGS} -O2)
target_link_libraries(nst_cudart_standin PUBLIC Threads::Threads)

foreach(lib cudnn cublas)
  add_library(nst_${lib}_standin SHARED "${NST_EMU_DIR}/${lib}.cc")
  set_target_properties(nst_${lib}_standin PROPERTIES OUTPUT_NAME "${lib}_standin" BUILD_RPATH "$ORIGIN")
  target_include_directories(nst_${lib}_standin PRIVATE "${CMAKE_CURRENT_LIST_DIR}/../native/src")
  target_compile_options(nst_${lib}_standin PRIVATE ${NST_EMU_WARNINGS} -O3)
  target_link_libraries(nst_${lib}_standin PRIVATE nst_cudart_standin OpenMP::OpenMP_CXX)
endforeach()

file(GLOB NST_CUDA_SOURCES CONFIGURE_DEPENDS "${NST_CUDA_SOURCE_DIR}/*.cu" "${NST_CUDA_SOURCE_DIR}/*.cc")
file(GLOB NST_CUDA_KERNEL_SOURCES CONFIGURE_DEPENDS "${NST_CUDA_SOURCE_DIR}/*.cu")
set_source_files_properties(${NST_CUDA_KERNEL_SOURCES} "${NST_CUDA_SOURCE_DIR}/test/kernel_test.cu"
  PROPERTIES LANGUAGE CXX COMPILE_OPTIONS "-xc++")

add_library(nst_cuda STATIC ${NST_CUDA_SOURCES})
set_target_properties(nst_cuda PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_include_directories(nst_cuda PUBLIC "${CMAKE_CURRENT_LIST_DIR}/../native/src")
target_compile_options(nst_cuda PRIVATE ${NST_EMU_WARNINGS} -O2)
target_link_libraries(nst_cuda PUBLIC nst_cudart_standin OpenMP::OpenMP_CXX ${CMAKE_DL_LIBS})
target_compile_definitions(nst_cuda PUBLIC NST_HAVE_CUDA=1 NST_CUDA_EMULATED=1)

# The kernel self-test (the GPU one, compiled for the stand-in) and the
# stand-in's strictness test.
add_executable(nst_kernel_test "${NST_CUDA_SOURCE_DIR}/test/kernel_test.cu")
target_link_libraries(nst_kernel_test PRIVATE nst_cuda)
target_compile_options(nst_kernel_test PRIVATE ${NST_EMU_WARNINGS} -O2)
set_target_properties(nst_kernel_test PROPERTIES BUILD_RPATH "$ORIGIN")

# The engine's memory estimate against the bytes it really allocates (the
# stand-in's allocation table counts them).
add_executable(nst_memory_plan_test "${NST_EMU_DIR}/test/memory_plan_test.cc"
  "${NST_CUDA_SOURCE_DIR}/../session_config.cc")
target_link_libraries(nst_memory_plan_test PRIVATE nst_cuda)
target_compile_options(nst_memory_plan_test PRIVATE ${NST_EMU_WARNINGS} -O2)
set_target_properties(nst_memory_plan_test PROPERTIES BUILD_RPATH "$ORIGIN")

add_executable(nst_standin_test "${NST_EMU_DIR}/test/standin_test.cc")
target_include_directories(nst_standin_test PRIVATE "${CMAKE_CURRENT_LIST_DIR}/../native/src")
target_link_libraries(nst_standin_test PRIVATE nst_cuda)
target_compile_options(nst_standin_test PRIVATE ${NST_EMU_WARNINGS} -O2)
set_target_properties(nst_standin_test PROPERTIES BUILD_RPATH "$ORIGIN")
