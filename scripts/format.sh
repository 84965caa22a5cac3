#!/usr/bin/env bash
# Formats the tree: TypeScript/JavaScript/JSON with Biome (biome.json: 2
# spaces, single quotes, semicolons, width 140), C++/CUDA with clang-format
# when .clang-format exists. `npm run lint` checks
# the result (scripts/lint.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

node_modules/.bin/biome format --write .

# The same files as scripts/lint-native.sh checks.
if [ -e .clang-format ]; then
  command -v clang-format >/dev/null || { echo "format.sh: clang-format is not installed (apt-get install clang-format)" >&2; exit 1; }
  git ls-files -z --cached --others --exclude-standard -- 'native/*.cc' 'native/*.h' 'native/*.cu' | xargs -0 -r clang-format -i
fi

