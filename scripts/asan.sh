#!/usr/bin/env bash
# Builds the native addon with AddressSanitizer (CMake option NST_ASAN) into
# native/build/asan and runs the native tests against it, with the ASan
# runtime preloaded into node (node itself is not instrumented). Fails when
# ASan reports anything. Leak checking is off: V8 and the test runner keep
# memory alive until exit by design, which LeakSanitizer would list.
set -euo pipefail
cd "$(dirname "$0")/.."

NST_REQUIRE_NATIVE=1 node packages/native/scripts/build-addon.mjs --out native/build/asan --CDNST_ASAN=ON
addon="$PWD/native/build/asan/Release/nst_native.node"
runtime="$(gcc -print-file-name=libasan.so)"
[ -f "$runtime" ] || { echo "asan.sh: libasan.so not found (gcc -print-file-name=libasan.so gave '$runtime')" >&2; exit 1; }

log="$(mktemp -d)/asan"
export NST_NATIVE_ADDON="$addon"
export LD_PRELOAD="$runtime"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1:log_path=$log"
# The tests that load the addon (cuda-host.test.ts runs nvcc, which must not
# inherit the ASan preload, and does not touch the addon).
tests=(packages/native/test/cpu- packages/native/test/cuda.test.ts)
echo "asan.sh: running ${tests[*]} with $addon"
npx vitest run "${tests[@]}" "$@"
unset LD_PRELOAD
if ls "$log".* >/dev/null 2>&1; then
  echo "asan.sh: AddressSanitizer reported errors:" >&2
  cat "$log".* >&2
  exit 1
fi
echo "asan.sh: no AddressSanitizer reports"
