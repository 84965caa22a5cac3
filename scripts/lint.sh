#!/usr/bin/env bash
# The shell part of `npm run lint` (package.json runs biome, knip and tsc's
# unused checks first): the format check and the native lint.
set -euo pipefail
cd "$(dirname "$0")/.."

# The format check (scripts/format.sh fixes what it finds).
node_modules/.bin/biome format .

scripts/lint-native.sh
