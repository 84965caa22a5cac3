#!/usr/bin/env bash
# The README's print (issue 20): the example's photo and painting at 4096x3072, coarse to fine,
# with the real weights this machine has (the built-in VGG-19 blocks 1-3), under a 6000 MiB
# budget (the final scale runs in 6 tiles: untiled it would need about 11.6 GiB), then the
# README's pictures of it: docs/print.jpg (the whole, 1024x768) and docs/print-crop.jpg (a
# 100% crop).
#   bash bench/print/run.sh [OUT_DIR]   (44 minutes on the 2-core development machine, beside other work)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/bench/print/out}
mkdir -p "$out"
node "$root/packages/cli/bin/nst.js" render \
  -c "$root/examples/images/tubingen.jpg" -s "$root/examples/images/starry_night.jpg" \
  --size 4096x3072 --scales 512,1024,2048 --scale-iterations 200,100,50,30 --memory 6000 \
  --print-every 10 --checkpoint-every 10 --resume -o "$out/print.png"
node "$root/bench/print/pictures.mjs" "$out/print.png"
