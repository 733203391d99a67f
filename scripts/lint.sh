#!/bin/bash
# The lint `make test` runs first (make lint): every C++ file formatted as .clang-format says, and
# .clang-tidy's checks, every finding an error, on the library and program sources (tests and fuzz
# targets are left out; so are the static analyzer's clang-analyzer-* checks, several minutes on
# two cores: `make tidy` runs them). Usage: scripts/lint.sh BUILD_DIR JOBS
set -euo pipefail
build=${1:-build}
jobs=${2:-$(nproc)}
cd "$(dirname "$0")/.."

files=$(find src apps bench python/ext -name '*.cc' -o -name '*.h' | sort)
if ! clang-format --dry-run --Werror $files; then
  echo "lint: files above are not formatted; run make format" >&2
  exit 1
fi

sources=$(find src apps python/ext -name '*.cc' ! -name '*_test.cc' ! -name '*_fuzz.cc' | sort)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
echo "$sources" | xargs -P "$jobs" -n 4 clang-tidy -p "$build" --quiet \
  --checks='-clang-analyzer-*' --warnings-as-errors='*' > "$log" 2>&1 || status=$?
# clang-tidy counts the warnings it suppressed in third-party headers: only findings are shown.
grep -v -e '^[0-9]* warnings\? generated' -e '^[0-9]* warnings\? and [0-9]* errors\? generated' \
  -e '^Suppressed [0-9]* warnings' -e '^Use -header-filter' -e '^[0-9]* errors\? generated' \
  "$log" || true
if [ "$status" -ne 0 ]; then
  echo "lint: clang-tidy found the problems above" >&2
  exit 1
fi
echo "lint: $(echo "$files" | wc -l) files formatted, $(echo "$sources" | wc -l) sources tidy"
