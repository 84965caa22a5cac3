#!/usr/bin/env bash
# C++ lint of native/: clang-format (.clang-format) in check mode on every
# native/**/*.{cc,h,cu,cuh}, then clang-tidy (.clang-tidy) on
#   - the C++ sources of the CPU build (the addon, the cpu engine), with the
#     compile database CMake writes for a build without CUDA;
#   - the CUDA engine's host C++ (native/src/cuda/*.cc and its host tests),
#     with the CUDA toolkit's headers, when they are installed;
#   - the CPU stand-in for the CUDA platform (native/emulation/, its test) and
#     the .cu files as the stand-in compiles them (C++, the kernels' launches
#     through native/emulation/device.h), with the toolkit's headers too.
# The .cu files are not tidied as CUDA (clang-tidy would parse them with
# clang's own CUDA front end, which needs a toolkit version clang knows; nvcc
# builds them with -Werror all-warnings instead).
#
# Needs clang-format and clang-tidy 14 or newer, and clang's omp.h
# (Debian/Ubuntu: apt-get install clang-format clang-tidy libomp-14-dev).
# Usage: scripts/lint-native.sh [--format-only | --tidy-only]
set -euo pipefail
cd "$(dirname "$0")/.."

clang_format=${CLANG_FORMAT:-clang-format}
clang_tidy=${CLANG_TIDY:-clang-tidy}
mode=${1:-all}
status=0

need() {
  command -v "$1" >/dev/null || { echo "lint-native.sh: $1 not found (apt-get install $2)" >&2; exit 2; }
  local major
  major=$("$1" --version | grep -o 'version [0-9]*' | grep -o '[0-9]*' | head -1)
  [ "${major:-0}" -ge 14 ] || { echo "lint-native.sh: $1 is version ${major:-unknown}, 14 or newer is needed" >&2; exit 2; }
}

if [ "$mode" != --tidy-only ]; then
  need "$clang_format" clang-format
  mapfile -t sources < <(git ls-files --cached --others --exclude-standard 'native/*.cc' 'native/*.h' 'native/*.cu' 'native/*.cuh')
  if "$clang_format" --dry-run -Werror "${sources[@]}"; then
    echo "lint-native.sh: clang-format: ${#sources[@]} files formatted"
  else
    echo "lint-native.sh: clang-format: the files above differ from .clang-format (fix: clang-format -i FILE)" >&2
    status=1
  fi
fi

if [ "$mode" != --format-only ]; then
  need "$clang_tidy" clang-tidy
  probe=$(mktemp --suffix=.cc)
  echo '#include <omp.h>' >"$probe"
  if ! "$clang_tidy" --quiet --checks='-*,bugprone-branch-clone' "$probe" -- -fopenmp >/dev/null 2>&1; then
    rm -f "$probe"
    echo "lint-native.sh: clang-tidy finds no omp.h of its own (apt-get install libomp-14-dev)" >&2
    exit 2
  fi
  rm -f "$probe"
  # The CPU build's compile database (configure only: nothing is compiled).
  build=native/build/lint
  node node_modules/cmake-js/bin/cmake-js configure --directory native --out "$build" \
    --CDNST_WITH_CUDA=OFF --CDCMAKE_EXPORT_COMPILE_COMMANDS=ON >"$build.log" 2>&1 ||
    { cat "$build.log" >&2; echo "lint-native.sh: cmake-js configure failed" >&2; exit 2; }
  mapfile -t cpu_sources < <(node -e 'for (const e of require(process.argv[1])) console.log(e.file)' \
    "$PWD/$build/compile_commands.json")
  jobs=$(nproc)
  echo "lint-native.sh: clang-tidy on ${#cpu_sources[@]} files of the CPU build"
  printf '%s\n' "${cpu_sources[@]}" | xargs -P "$jobs" -n 1 "$clang_tidy" --quiet -p "$build" || status=1
  cuda_include=${CUDA_HOME:-/usr/local/cuda}/include
  if [ -f "$cuda_include/cuda_runtime.h" ]; then
    mapfile -t cuda_sources < <(ls native/src/cuda/*.cc native/src/cuda/test/*.cc)
    echo "lint-native.sh: clang-tidy on ${#cuda_sources[@]} host C++ files of the CUDA engine"
    printf '%s\n' "${cuda_sources[@]}" | xargs -P "$jobs" -I{} "$clang_tidy" --quiet {} -- -std=c++17 -fopenmp \
      -Inative/src -isystem "$cuda_include" || status=1
    mapfile -t standin_sources < <(ls native/emulation/*.cc native/emulation/test/*.cc native/src/cuda/*.cu \
      native/src/cuda/test/*.cu)
    echo "lint-native.sh: clang-tidy on ${#standin_sources[@]} files of the CPU stand-in build"
    printf '%s\n' "${standin_sources[@]}" | xargs -P "$jobs" -I{} "$clang_tidy" --quiet {} -- -x c++ -std=c++17 \
      -fopenmp -Inative/emulation -Inative/src -isystem "$cuda_include" || status=1
  else
    echo "lint-native.sh: no $cuda_include/cuda_runtime.h: the CUDA engine's C++ and the stand-in are not tidied"
  fi
fi

[ "$status" = 0 ] && echo "lint-native.sh: clean"
exit "$status"
