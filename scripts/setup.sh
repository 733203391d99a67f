#!/usr/bin/env bash
# One idempotent set-up for building, running and testing Quiver on Debian 12.
#   1. apt packages (through sudo when not root), installed only when one is missing;
#   2. .venv from the pinned requirements.txt, rebuilt only when that file changes;
#   3. .venv-feast from requirements-feast.txt likewise (Feast's pins conflict with .venv's).
# On a ready machine this finishes in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential g++ cmake ninja-build ccache pkg-config git
  python3 python3-venv python3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libxxhash-dev nlohmann-json3-dev libboost-dev libyaml-cpp-dev liburing-dev
  clang-format clang-tidy curl redis-server redis-tools tzdata
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing apt packages: ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || ! -f $stamp || "$(cat "$stamp")" != "$want" ]]; then
  echo "setup: creating .venv from requirements.txt"
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi
feast_stamp=.venv-feast/.requirements.sha256
feast_want=$(sha256sum requirements-feast.txt | cut -d' ' -f1)
if [[ ! -x .venv-feast/bin/python || ! -f $feast_stamp || "$(cat "$feast_stamp")" != "$feast_want" ]]; then
  echo "setup: creating .venv-feast from requirements-feast.txt"
  rm -rf .venv-feast
  python3 -m venv .venv-feast
  .venv-feast/bin/pip install --quiet --disable-pip-version-check -r requirements-feast.txt
  echo "$feast_want" > "$feast_stamp"
fi
echo "setup: ready (pyarrow $(.venv/bin/python -c 'import pyarrow; print(pyarrow.__version__)'))"
