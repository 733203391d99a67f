#!/usr/bin/env bash
# Feast's own online-store tests run against quiver.feast.QuiverOnlineStore (docs/feast.md
# "Feast's own tests"): `make feast-suite FEAST_SRC=/path/to/feast` or
# `scripts/feast-suite.sh /path/to/feast` with a checkout of github.com/feast-dev/feast.
#
# Feast parametrizes its universal online-store tests by the module FULL_REPO_CONFIGS_MODULE
# names; ours is tests/feast_store/suite/quiver_repo_configuration.py. Its test tree is not on
# PyPI, so this is not part of `make test`. Each group runs twice, over HTTP (a quiverd per test
# environment) and embedded; tests Feast restricts to one store ("redis", "sqlite", "mongodb")
# but that check generic behaviour run with the store renamed so. Feast's benchmark then runs
# against both and against Feast's Redis store (redis-server started per environment).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
src=${1:-${FEAST_SRC:-}}
if [[ -z $src || ! -d $src/sdk/python/tests ]]; then
  echo "usage: $0 FEAST_CHECKOUT (a clone of github.com/feast-dev/feast with sdk/python/tests)" >&2
  exit 2
fi

venv=.venv-feast-suite
stamp=$venv/.requirements.sha256
want=$(sha256sum requirements-feast-suite.txt | cut -d' ' -f1)
if [[ ! -x $venv/bin/python || ! -f $stamp || "$(cat "$stamp")" != "$want" ]]; then
  echo "feast-suite: creating $venv from requirements-feast-suite.txt"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
    -r requirements-feast-suite.txt
  echo "$want" > "$stamp"
fi
# The quiver package as `make python` installed it in .venv.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ln -sfn "$root/.venv/lib/python3.11/site-packages/quiver" "$site/quiver"

# Feast's tests without its source package, so that they import the pinned, installed Feast.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/python"
cp -r "$src/sdk/python/tests" "$work/python/tests"
cp "$src/sdk/python/pytest.ini" "$work/python/" 2>/dev/null || true

export QUIVERD=${QUIVERD:-$root/build/quiverd}
export PYTHONPATH="$work/python:$root/tests/feast_store/suite"
export FULL_REPO_CONFIGS_MODULE=quiver_repo_configuration FEAST_IS_LOCAL_TEST=True
tests=tests/integration/online_store
options=(-p no:cacheprovider -q -rfE -W ignore::DeprecationWarning --integration)
status=0
run() {  # run NAME MODE AS pytest-arguments...
  local name=$1 mode=$2 as=$3
  shift 3
  echo "== $name ($mode, as '$as')"
  (cd "$work/python" && FEAST_SUITE_STORE_MODE=$mode FEAST_SUITE_STORE_AS=$as \
    "$root/$venv/bin/python" -m pytest "${options[@]}" "$@" 2>&1 | tail -n 15) || status=1
}
for mode in http embedded; do
  run universal $mode quiver $tests/test_universal_online.py $tests/test_universal_e2e.py \
    $tests/test_push_features_to_online_store.py -k "not dynamo"
  run "tests Feast runs on redis only" $mode redis $tests/test_universal_online.py \
    -k "(entity_ttl or event_check or async_online_retrieval or cleanup) and not dynamo"
  run "type tests Feast runs on sqlite only" $mode sqlite $tests/test_universal_online_types.py
  run "async push, run by Feast on mongodb only" $mode mongodb \
    $tests/test_push_features_to_online_store.py -k "async and not dynamo"
done
for mode in http embedded redis; do
  run "Feast's online retrieval benchmark" $mode quiver --benchmark \
    tests/benchmarks/test_benchmark_universal_online_retrieval.py \
    --benchmark-min-rounds=300 --benchmark-warmup=on --benchmark-warmup-iterations=20 \
    --benchmark-columns=min,median,mean,max,rounds
done
exit $status
