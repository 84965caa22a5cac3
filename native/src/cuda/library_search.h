// Finding and opening cuDNN / cuBLAS at run time.
//
// Why dlopen: the addon must build on machines with nvcc but without cuDNN or
// cuBLAS (CI), and load on machines without a GPU. So neither library is a
// link-time dependency; we look for it when a CUDA engine is created.
//
// Search order (the first folder holding one of the file names wins):
//   1. the environment variable (NST_CUDNN_PATH / NST_CUBLAS_PATH): a file or
//      a folder, or several separated by ':'
//   2. LD_LIBRARY_PATH
//   3. pip wheels: <site-packages>/nvidia/<pkg>/lib for the usual Python
//      site-packages folders (virtualenv, conda, ~/.local, /usr/local, /usr)
//   4. system folders (/usr/local/cuda/lib64, /usr/lib/x86_64-linux-gnu, ...)
//   5. the dynamic loader's own search (ld.so.cache), by file name
// Pure host code: tested by host_test.cc without a GPU.
#pragma once

#include <string>
#include <vector>

namespace nst::cuda {

struct LibrarySpec {
  std::string what;                     // "cuDNN", for messages
  std::string env_var;                  // "NST_CUDNN_PATH"
  std::vector<std::string> file_names;  // tried in order: "libcudnn.so.9"
  std::vector<std::string> wheel_dirs;  // relative to site-packages: "nvidia/cudnn/lib"
  // Loaded (best effort) from the same folder before the library itself, so
  // that its own dlopen/DT_NEEDED of them by soname finds these copies
  // (cuDNN 9's libcudnn.so.9 is a shim over libcudnn_*.so.9 sub-libraries).
  std::vector<std::string> companions;
};

// The parts of the environment the search reads (injected by tests).
struct SearchEnv {
  std::string explicit_path;    // value of spec.env_var ("" when unset)
  std::string ld_library_path;  // LD_LIBRARY_PATH
  std::string home;             // HOME
  std::string virtual_env;      // VIRTUAL_ENV
  std::string conda_prefix;     // CONDA_PREFIX
  std::string root = "";        // prefix for absolute system paths (tests)
  static SearchEnv from_process(const LibrarySpec& spec);
};

struct SearchStep {
  std::string label;              // "NST_CUDNN_PATH", "LD_LIBRARY_PATH", "pip wheels", "system"
  std::vector<std::string> dirs;  // folders (or files) in this step, in order
};

// The ordered search plan: which folders each step looks in.
std::vector<SearchStep> search_plan(const LibrarySpec& spec, const SearchEnv& env);

// The first existing candidate file, or "" when none exists.
std::string find_library_file(const LibrarySpec& spec, const SearchEnv& env);

// One line: what was searched, for the "not found" error.
std::string describe_search(const LibrarySpec& spec, const SearchEnv& env);

// dlopen()s the library (companions first); throws nst::Error in one line.
// Returns the handle; *path_out receives the path actually loaded.
void* open_library(const LibrarySpec& spec, std::string* path_out);

// dlsym that throws nst::Error naming the symbol and library.
void* library_symbol(void* handle, const char* name, const std::string& library);

// The specs the engine uses.
LibrarySpec cudnn_spec();
LibrarySpec cublas_spec();

}  // namespace nst::cuda
