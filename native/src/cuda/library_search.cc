#include "cuda/library_search.h"

#include <dlfcn.h>
#include <glob.h>
#include <sys/stat.h>

#include <cstdlib>

#include "engine.h"

namespace nst::cuda {
namespace {

std::string getenv_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::vector<std::string> split_colons(const std::string& text) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(':', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) parts.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

bool exists(const std::string& path, bool want_dir) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return false;
  return want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode);
}

// Expands a pattern such as /usr/local/lib/python3*/dist-packages (sorted,
// newest Python last as glob sorts; order among Pythons hardly matters).
std::vector<std::string> glob_dirs(const std::string& pattern) {
  std::vector<std::string> out;
  glob_t g{};
  if (glob(pattern.c_str(), GLOB_ONLYDIR, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; i++) out.emplace_back(g.gl_pathv[i]);
  }
  globfree(&g);
  return out;
}

// Python site-packages folders where pip puts the NVIDIA wheels.
std::vector<std::string> site_packages_patterns(const SearchEnv& env) {
  std::vector<std::string> p;
  if (!env.virtual_env.empty()) p.push_back(env.virtual_env + "/lib/python3*/site-packages");
  if (!env.conda_prefix.empty()) p.push_back(env.conda_prefix + "/lib/python3*/site-packages");
  if (!env.home.empty()) p.push_back(env.home + "/.local/lib/python3*/site-packages");
  for (const char* sys :
       {"/usr/local/lib/python3*/dist-packages", "/usr/local/lib/python3*/site-packages",
        "/usr/lib/python3/dist-packages", "/usr/lib/python3*/site-packages", "/opt/conda/lib/python3*/site-packages"}) {
    p.push_back(env.root + sys);
  }
  return p;
}

const char* const kSystemDirs[] = {
    "/usr/local/cuda/lib64",
    "/usr/local/cuda/targets/x86_64-linux/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/local/cudnn/lib64",
    "/usr/lib64",
    "/usr/local/lib",
    "/usr/lib/aarch64-linux-gnu",
};

std::string dir_of(const std::string& file) {
  size_t slash = file.rfind('/');
  return slash == std::string::npos ? "." : file.substr(0, slash);
}

}  // namespace

SearchEnv SearchEnv::from_process(const LibrarySpec& spec) {
  SearchEnv env;
  env.explicit_path = getenv_or_empty(spec.env_var.c_str());
  env.ld_library_path = getenv_or_empty("LD_LIBRARY_PATH");
  env.home = getenv_or_empty("HOME");
  env.virtual_env = getenv_or_empty("VIRTUAL_ENV");
  env.conda_prefix = getenv_or_empty("CONDA_PREFIX");
  return env;
}

std::vector<SearchStep> search_plan(const LibrarySpec& spec, const SearchEnv& env) {
  std::vector<SearchStep> plan;
  plan.push_back({spec.env_var, split_colons(env.explicit_path)});
  plan.push_back({"LD_LIBRARY_PATH", split_colons(env.ld_library_path)});
  SearchStep wheels{"pip wheels", {}};
  for (const std::string& pattern : site_packages_patterns(env)) {
    for (const std::string& site : glob_dirs(pattern)) {
      for (const std::string& sub : spec.wheel_dirs) wheels.dirs.push_back(site + "/" + sub);
    }
  }
  plan.push_back(wheels);
  SearchStep system{"system", {}};
  for (const char* d : kSystemDirs) system.dirs.push_back(env.root + d);
  plan.push_back(system);
  return plan;
}

std::string find_library_file(const LibrarySpec& spec, const SearchEnv& env) {
  for (const SearchStep& step : search_plan(spec, env)) {
    for (const std::string& entry : step.dirs) {
      // The explicit variable may name the library file itself.
      if (exists(entry, /*want_dir=*/false)) return entry;
      for (const std::string& name : spec.file_names) {
        std::string candidate = entry + "/" + name;
        if (exists(candidate, false)) return candidate;
      }
    }
  }
  return "";
}

std::string describe_search(const LibrarySpec& spec, const SearchEnv& env) {
  std::string names;
  for (const std::string& n : spec.file_names) names += (names.empty() ? "" : " or ") + n;
  std::string text = spec.what + " (" + names + ") not found; searched " + spec.env_var +
                     (env.explicit_path.empty() ? " (unset)" : " (" + env.explicit_path + ")") + ", LD_LIBRARY_PATH" +
                     (env.ld_library_path.empty() ? " (unset)" : "") + ", pip wheels (";
  std::string wheel_list;
  for (const std::string& w : spec.wheel_dirs) wheel_list += (wheel_list.empty() ? "" : ", ") + w;
  text += wheel_list + " under Python site-packages), ";
  std::string sys;
  for (const char* d : kSystemDirs) sys += (sys.empty() ? "" : ", ") + std::string(d);
  text += sys + " and the loader cache; set " + spec.env_var + " to the folder holding it";
  return text;
}

void* open_library(const LibrarySpec& spec, std::string* path_out) {
  SearchEnv env = SearchEnv::from_process(spec);
  std::string path = find_library_file(spec, env);
  if (!path.empty()) {
    std::string dir = dir_of(path);
    // Best effort: a companion that fails to load (say, one needing NVRTC)
    // only matters if the library itself then fails, which is reported.
    for (const std::string& c : spec.companions) {
      std::string cpath = dir + "/" + c;
      if (exists(cpath, false)) dlopen(cpath.c_str(), RTLD_LAZY | RTLD_GLOBAL);
    }
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!handle) {
      const char* why = dlerror();
      throw Error(ErrorCode::Unsupported, "backend",
                  spec.what + ": dlopen(" + path + ") failed: " + (why ? why : "unknown error"));
    }
    if (path_out) *path_out = path;
    return handle;
  }
  // Last resort: the loader's own search (ld.so.cache, RPATH of the process).
  for (const std::string& name : spec.file_names) {
    if (void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
      if (path_out) *path_out = name;
      return handle;
    }
  }
  throw Error(ErrorCode::Unsupported, "backend", describe_search(spec, env));
}

void* library_symbol(void* handle, const char* name, const std::string& library) {
  dlerror();
  void* sym = dlsym(handle, name);
  if (!sym) {
    throw Error(ErrorCode::Unsupported, "backend",
                library + ": symbol " + name + " not found (library too old or not the expected one)");
  }
  return sym;
}

LibrarySpec cudnn_spec() {
  return {"cuDNN",
          "NST_CUDNN_PATH",
          {"libcudnn.so.9"},
          {"nvidia/cudnn/lib", "nvidia/cu13/lib", "nvidia/cu12/lib"},
          {"libcudnn_graph.so.9", "libcudnn_engines_precompiled.so.9", "libcudnn_engines_runtime_compiled.so.9",
           "libcudnn_heuristic.so.9", "libcudnn_ops.so.9", "libcudnn_cnn.so.9", "libcudnn_adv.so.9"}};
}

LibrarySpec cublas_spec() {
  return {"cuBLAS",
          "NST_CUBLAS_PATH",
          {"libcublas.so.13", "libcublas.so.12"},
          {"nvidia/cublas/lib", "nvidia/cu13/lib", "nvidia/cu12/lib"},
          {"libcublasLt.so.13", "libcublasLt.so.12"}};
}

}  // namespace nst::cuda
