#!/usr/bin/env bash
# The Python package on the GPU machine: install (no internet there, so no
# build isolation), run every Python test (CUDA ones included), then time
# eplb on CUDA tensors against the seed's PyTorch code. Results go to $OUT
# (or ./gpu-check-out). Run from the repository root: bash python/gpu_check.sh
set -uo pipefail
out=${OUT:-gpu-check-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'

# 1. pip install ./python with the image's scikit-build-core; if that is
#    missing or too old, build libeplb with CMake and load it via EPLB_LIBRARY.
if python3 -m pip install --no-build-isolation --no-deps ./python >"$out/install.log" 2>&1; then
  echo "installed with pip (scikit-build-core)"
  cd /tmp  # import the installed package, not python/src
  repo=$OLDPWD
else
  echo "pip install failed (see install.log); falling back to cmake + EPLB_LIBRARY"
  cmake -S . -B build-python -G Ninja -DEPLB_BUILD_TESTS=OFF -DEPLB_BUILD_TOOLS=OFF \
    >>"$out/install.log" 2>&1 && cmake --build build-python >>"$out/install.log" 2>&1 || {
    tail -30 "$out/install.log"; exit 1; }
  export EPLB_LIBRARY=$PWD/build-python/lib/libeplb.so PYTHONPATH=$PWD/python/src
  repo=$PWD
fi
python3 -c 'import eplb; print(eplb.library_path); [print(b) for b in eplb.backends()]'

# 2. All Python tests; the CUDA file fails (not skips) if the GPU is there but
#    the cuda backend is not.
python3 -m pytest -v -p no:cacheprovider "$repo/python/tests" 2>&1 | tee "$out/pytest.log"
tests=${PIPESTATUS[0]}

# 3. Timing (median of 50 CUDA-event timings per case).
python3 "$repo/python/bench_torch.py" --json "$out/bench_torch.json" 2>&1 | tee "$out/bench_torch.txt"
bench=${PIPESTATUS[0]}
echo "pytest exit $tests, bench exit $bench"
exit $(( tests != 0 || bench != 0 ))
