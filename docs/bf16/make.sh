#!/usr/bin/env bash
# The bf16 quality proof (issue 24): the example pair (tubingen.jpg in the
# style of starry_night.jpg) at 400x300, 200 Adam iterations, rendered twice
# from the same start (seed 0) on the cpu backend, --precision fp32 and
# --precision bf16, on two weight sets: the built-in VGG-19 blocks 1-3 (their own
# layers: content conv3_2, style conv1_1, conv2_1, conv3_1) and random full
# VGG-19 weights (random:1, the notebook's layers: content conv4_2, style
# conv1_1..conv5_1). Then, for each pair:
#   - each final image's loss scored in fp32 (a 0-iteration fp32 render with
#     --init the written image: the loss of the picture as written);
#   - relative L2, PSNR and the largest difference between the two images
#     (8-bit RGB, as written);
#   - docs/bf16/<set>.jpg: fp32 | bf16 | their difference x8.
# Writes docs/bf16/results.txt (the numbers) and results.json. About 10
# minutes on 2 quiet cores. bf16 needs native bf16 (AMX-BF16 or AVX512-BF16);
# elsewhere NST_CPU_FEATURES=avx512_bf16 runs oneDNN's emulated bf16 (slow).
# Usage: docs/bf16/make.sh [blocks|random ...]   (default: both)
set -euo pipefail
cd "$(dirname "$0")/../.."
IMAGES=${IMAGES:-examples/images}
BLOCKS=${BLOCKS:-embedded}  # the built-in blocks 1-3; nst picks their layers
OUT=${OUT:-docs/bf16}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
NST=(node packages/cli/bin/nst.js)
BASE=(--content "$IMAGES/tubingen.jpg" --style "$IMAGES/starry_night.jpg" --size 400x300 --backend cpu --seed 0 --save-every 0)

SETS=("$@")
[ ${#SETS[@]} -gt 0 ] || SETS=(blocks random)
weights() { if [ "$1" = blocks ]; then echo "$BLOCKS"; else echo random:1; fi; }

summary() { # json file -> the summary line
  node -e "console.log(JSON.stringify(require('fs').readFileSync('$1', 'utf8').trim().split('\n').map(JSON.parse).find((l) => l.summary)))"
}

{
  echo "bf16 quality proof: docs/bf16/make.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
  "${NST[@]}" backends | grep '^cpu'
  for set in "${SETS[@]}"; do
    for p in fp32 bf16; do
      echo "== $set $p: nst render ${BASE[*]} --weights $(weights "$set") --iterations 200 --precision $p"
      "${NST[@]}" render "${BASE[@]}" --weights "$(weights "$set")" --iterations 200 --precision "$p" --print-every 50 \
        --out "$TMP/$set-$p.png" --json > "$TMP/$set-$p.json"
      summary "$TMP/$set-$p.json" > "$TMP/$set-$p.summary.json"
      # The picture as written, scored in fp32 (the render's own loss is of the last float image, before 8-bit rounding).
      "${NST[@]}" render "${BASE[@]}" --weights "$(weights "$set")" --iterations 0 --precision fp32 --init "$TMP/$set-$p.png" \
        --out "$TMP/$set-$p-score.png" --json > "$TMP/$set-$p-score.json"
      summary "$TMP/$set-$p-score.json" > "$TMP/$set-$p.score.json"
      node -e "
        const r = JSON.parse(require('fs').readFileSync('$TMP/$set-$p.summary.json', 'utf8'));
        const s = JSON.parse(require('fs').readFileSync('$TMP/$set-$p.score.json', 'utf8'));
        console.log('   ' + r.backend + ': ' + r.seconds.toFixed(1) + ' s (' + r.secondsPerIteration.toFixed(3) + ' s/it); reported J ' + r.final.total.toExponential(4) +
          '; scored in fp32: J ' + s.final.total.toExponential(4) + ' (content ' + s.final.content.toExponential(4) + ', style ' + s.final.style.toExponential(4) + ')');"
    done
    node docs/bf16/compare.mjs "$set" "$TMP" "$OUT"
  done
} | tee "$OUT/results.txt"
