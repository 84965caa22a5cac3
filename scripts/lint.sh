#!/usr/bin/env bash
# The shell part of `npm run lint` (package.json runs biome, knip and tsc's
# unused checks first): the format check and the native lint.
set -euo pipefail
cd "$(dirname "$0")/.."

# Until scripts/format.sh has formatted the whole tree once, the marker file
# says so and the check is skipped with that reason; format.sh removes it.
if [ -e scripts/.format-pending ]; then
  echo "format check skipped: $(head -n 1 scripts/.format-pending)"
else
  node_modules/.bin/biome format .
fi

if [ -x scripts/lint-native.sh ]; then
  scripts/lint-native.sh
else
  echo "native lint skipped: scripts/lint-native.sh is absent"
fi
