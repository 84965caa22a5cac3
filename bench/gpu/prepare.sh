#!/usr/bin/env bash
# Stages what bench/gpu/run.sh needs on a lent GPU machine (which has no Node,
# no node_modules, no oneDNN and no network) into a carry folder, default
# .carry (git-ignored). Run it HERE, on a build machine with Node, npm, nvcc
# and libdnnl-dev; then carry the folder:  bash bench/gpu/prepare.sh [.carry]
#
# <carry>/node.xz          this machine's node binary, xz-compressed (kept if present)
# <carry>/gpu/nst_native.node   the addon, built with the cuda engine
# <carry>/gpu/libs.tar.xz  shared libraries it needs beyond glibc/libstdc++ (oneDNN, libgomp, ...)
# <carry>/gpu/kernel_test  the kernels' GPU self-test (CUDA runtime linked statically)
# <carry>/gpu/cuda-tests.mjs, bench.mjs   the GPU tests and the benchmark, bundled for plain Node
set -euo pipefail
cd "$(dirname "$0")/../.."
CARRY=${1:-.carry}
G="$CARRY/gpu"
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
rm -rf "$G"
mkdir -p "$G/libs"

# NST_ADDON=path/to/nst_native.node uses an addon built elsewhere instead.
ADDON=${NST_ADDON:-native/build/Release/nst_native.node}
if [ -z "${NST_ADDON:-}" ]; then
  echo "== addon (native/build, with the cuda engine)"
  NST_REQUIRE_NATIVE=1 npm run -s build:native -w @nst/native
fi
ADDON=$(readlink -f "$ADDON")
node -e 'if (!require(process.argv[1]).cudaCompiled) { console.error("the addon was built without the cuda engine (is nvcc found?)"); process.exit(1); }' "$ADDON"
cp "$ADDON" "$G/nst_native.node"

echo "== shared libraries beyond glibc and libstdc++"
ldd "$G/nst_native.node" | awk '/=> \// {print $1, $3}' | while read -r name path; do
  case "$name" in
    libc.so* | libm.so* | libdl.so* | libpthread.so* | librt.so* | ld-linux* | libstdc++.so* | libgcc_s.so*) ;;
    *) cp -L "$path" "$G/libs/$name" && echo "  $name" ;;
  esac
done
tar -C "$G/libs" -cJf "$G/libs.tar.xz" .
rm -rf "$G/libs"

echo "== kernel self-test (sm_80, sm_90)"
"$NVCC" -std=c++17 -O2 -Werror all-warnings -Xcompiler=-Wall,-Wextra,-Werror,-fopenmp \
  -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
  -Inative/src native/src/cuda/test/kernel_test.cu native/src/cuda/kernels.cu -lgomp -o "$G/kernel_test"

echo "== GPU tests and benchmark, bundled"
node bench/gpu/bundle.mjs "$G"

if [ ! -f "$CARRY/node.xz" ]; then
  echo "== node $(node --version), xz-compressed"
  xz -T2 -6 -c "$(readlink -f "$(command -v node)")" > "$CARRY/node.xz"
fi

total=$(du -sm "$CARRY" | cut -f1)
ls -la "$CARRY" "$G"
echo "carry folder $CARRY: ${total} MiB (the run tool carries at most 64 MiB)"
[ "$total" -le 64 ] || { echo "too large to carry" >&2; exit 1; }
