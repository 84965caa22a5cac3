#!/usr/bin/env bash
# Renders the README's quality pictures (docs/quality/*.jpg) on the example
# pair with the VGG-19 blocks 1-3 weights (the full network is not shipped
# here: content conv3_2, style conv1_1,conv2_1,conv3_1 stand in for
# conv4_2 and conv1_1..conv5_1). Each picture's numbers go to <name>.json; README.md shows the commands.
# Usage: docs/quality/make-pictures.sh [name...]   (default: all; "scales" makes direct.jpg and scales.jpg)
# About 20 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
IMAGES=${IMAGES:-../shared/images}
WEIGHTS=${WEIGHTS:-../shared/weights/vgg19-keras-blocks1-3}
OUT=${OUT:-docs/quality}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
BASE=(--content "$IMAGES/tubingen.jpg" --style "$IMAGES/starry_night.jpg" --weights "$WEIGHTS" --size 400x300
  --backend cpu --save-every 0 --print-every 50)
LAYERS=(--content-layers conv3_2 --style-layers conv1_1,conv2_1,conv3_1)
# neural-style's per-layer weights (jcjohnson and hq; 4 / C^2, see packages/job/src/presets.ts) for the layers the blocks 1-3 set has.
JC_LAYERS=(--content-layers conv3_2:4 --style-layers conv1_1:9.765625e-4,conv2_1:2.44140625e-4,conv3_1:6.103515625e-5)

render() { # name, then flags
  local name=$1; shift
  echo "== $name: nst render ... $*"
  node packages/cli/bin/nst.js render "${BASE[@]}" "$@" --out "$TMP/$name.png" --json > "$TMP/$name.json"
  node -e "
    const s = require('fs').readFileSync('$TMP/$name.json', 'utf8').trim().split('\n').map(JSON.parse).find((l) => l.summary);
    console.log(JSON.stringify({ seconds: s.seconds, iterations: s.iterations, evaluations: s.evaluations, J: s.final.total, content: s.final.content, style: s.final.style }));
  " | tee "$OUT/$name.json"
  node -e "require('sharp')('$TMP/$name.png').jpeg({ quality: 85 }).toFile('$OUT/$name.jpg')"
}

ALL=("$@")
want() { [ ${#ALL[@]} -eq 0 ] || [[ " ${ALL[*]} " == *" $1 "* ]]; }
run() { local name=$1; shift; if want "$name"; then render "$name" "$@"; fi; }

# Every picture with its real iteration count, rendered one at a time on a quiet machine.
run notebook    "${LAYERS[@]}"                       # the spec: Adam, 200 iterations
run lbfgs       "${LAYERS[@]}" --optimizer lbfgs --iterations 200
run luminance   "${LAYERS[@]}" --preserve-colors luminance --optimizer lbfgs --iterations 200
run histogram   "${LAYERS[@]}" --preserve-colors histogram --optimizer lbfgs --iterations 200
run jcjohnson   --preset jcjohnson "${JC_LAYERS[@]}"   # 1000 iterations
run hq          --preset hq "${JC_LAYERS[@]}"          # auto scales 283x212, 400x300; 300 iterations each
if want notebook; then node docs/quality/recombine.mjs; fi
# Coarse to fine against direct optimisation at 800x600 in the same time, scored at three sizes.
if want scales; then
  OUT="$TMP/svd" bench/quality/scales-vs-direct.sh | tee "$OUT/scales-vs-direct.txt"
  for name in direct scales; do node -e "require('sharp')('$TMP/svd/$name.png').jpeg({ quality: 85 }).toFile('$OUT/$name.jpg')"; done
fi
