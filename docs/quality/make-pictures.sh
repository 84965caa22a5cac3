#!/usr/bin/env bash
# Renders the README's quality pictures (docs/quality/*.jpg) on the example
# pair with the VGG-19 blocks 1-3 weights (the full network is not shipped
# here: content conv3_2, style conv1_1,conv2_1,conv3_1 stand in for
# conv4_2 and conv1_1..conv5_1). Each picture's numbers go to <name>.json; README.md shows the commands.
# Usage: docs/quality/make-pictures.sh [name...]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/../.."
IMAGES=${IMAGES:-../shared/images}
WEIGHTS=${WEIGHTS:-../shared/weights/vgg19-keras-blocks1-3}
OUT=${OUT:-docs/quality}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
BASE=(--content "$IMAGES/tubingen.jpg" --style "$IMAGES/starry_night.jpg" --weights "$WEIGHTS" --size 400x300
  --content-layers conv3_2 --style-layers conv1_1,conv2_1,conv3_1 --backend cpu --save-every 0 --print-every 50)
# neural-style's per-layer style weights (4 / C^2, see packages/render/src/presets.ts) for the layers the blocks 1-3 set has.
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
run() { local name=$1; shift; if [ ${#ALL[@]} -eq 0 ] || [[ " ${ALL[*]} " == *" $name "* ]]; then render "$name" "$@"; fi; }

# Iteration counts are kept low: these were rendered on 2 shared cores (under a load of ~30).
run notebook                                          # the spec: Adam, 200 iterations
run lbfgs       --optimizer lbfgs --iterations 60
run luminance   --preserve-colors luminance --optimizer lbfgs --iterations 60
run histogram   --preserve-colors histogram --optimizer lbfgs --iterations 60
# Equal time: 60 iterations at 400x300, or 40 at 200x150 + 40 at 283x212 + 30 at 400x300 (about 60 of the final size's cost).
run direct      --optimizer lbfgs --iterations 60 --tv-weight 1e-3
run scales      --optimizer lbfgs --scales 200,283 --scale-iterations 40,40,30 --tv-weight 1e-3
run jcjohnson   --preset jcjohnson --iterations 80 "${JC_LAYERS[@]}"
run hq          --preset hq --scale-iterations 60,40
