#!/usr/bin/env bash
# Coarse to fine against direct optimisation at the same final size in about
# the same time (issue 13), on the example pair with the VGG-19 blocks 1-3 weights.
# Both renders use L-BFGS and --tv-weight 1e-3; only the schedule differs.
# Each result is then scored by the loss itself, evaluated (0 iterations,
# --init the result) at the final size and at two smaller sizes: a painting's
# structure spans every scale, and the small sizes show whether the large
# strokes and swirls match the painting's as well as the fine texture does.
# Usage: bench/quality/scales-vs-direct.sh   (env: FINAL, DIRECT, SCALES, OUT)
set -euo pipefail
cd "$(dirname "$0")/../.."
IMAGES=${IMAGES:-../shared/images}
WEIGHTS=${WEIGHTS:-../shared/weights/vgg19-keras-blocks1-3}
FINAL=${FINAL:-800x600}
DIRECT=${DIRECT:-"--iterations 132"}
SCALES=${SCALES:-"--scales auto --scale-iterations 100,100,60,60"}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
BASE=(--content "$IMAGES/tubingen.jpg" --style "$IMAGES/starry_night.jpg" --weights "$WEIGHTS"
  --content-layers conv3_2 --style-layers conv1_1,conv2_1,conv3_1 --backend cpu --save-every 0 --print-every 20)
nst() { node packages/cli/bin/nst.js "$@"; }
summary() { node -e "
  const s = require('fs').readFileSync('$1', 'utf8').trim().split('\n').map(JSON.parse).find((l) => l.summary);
  console.log(JSON.stringify({ seconds: s.seconds, iterations: s.iterations, evaluations: s.evaluations, style: s.final.style, content: s.final.content }));"; }

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for name in direct scales; do
  # shellcheck disable=SC2086 # the schedules are word lists
  if [ $name = direct ]; then flags=($DIRECT); else flags=($SCALES); fi
  nst render "${BASE[@]}" --size "$FINAL" --optimizer lbfgs --tv-weight 1e-3 "${flags[@]}" --out "$OUT/$name.png" --json > "$OUT/$name.log" 2> "$OUT/$name.err"
  echo "$name ($FINAL, ${flags[*]}): $(summary "$OUT/$name.log")"
done
w=${FINAL%x*}; h=${FINAL#*x}
for size in "$FINAL" "$((w / 2))x$((h / 2))" "$((w / 4))x$((h / 4))"; do
  for name in direct scales; do
    nst render "${BASE[@]}" --size "$size" --init "$OUT/$name.png" --iterations 0 --out "$OUT/eval-$name-$size.png" --json > "$OUT/eval-$name-$size.log" 2>/dev/null
    echo "scored at $size: $name $(summary "$OUT/eval-$name-$size.log")"
  done
done
echo "outputs in $OUT"
