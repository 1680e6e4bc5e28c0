#!/usr/bin/env bash
# Installs what eplb needs on Debian/Ubuntu (when run as root or with sudo) and
# builds it into ./build. Safe to run again: installs and configures only once.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake ninja-build pkg-config
          libcriterion-dev libjansson-dev
          ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo
          python3 python3-venv python3-pip)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "bootstrap: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "bootstrap: please install: ${missing[*]}" >&2
  fi
fi

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
[ -f build/CMakeCache.txt ] || cmake -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release ${EPLB_CMAKE_ARGS:-}
cmake --build build -j "$(nproc)"
