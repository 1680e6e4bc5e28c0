#!/usr/bin/env bash
# GPU machine: builds eplb with every backend it can, runs eplb-bench on all
# available backends and the PyTorch seed baseline on CUDA, and writes to OUTDIR:
#   eplb-bench.md / .json      (paste with: python3 bench/splice_results.py cuda OUTDIR/eplb-bench.md)
#   torch-seed.md / .json      (paste with: python3 bench/splice_results.py python OUTDIR/torch-seed.md)
# Usage: bench/run_gpu_bench.sh OUTDIR [extra eplb-bench arguments]
set -euo pipefail
out=${1:?usage: bench/run_gpu_bench.sh OUTDIR [eplb-bench arguments]}
shift
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
build=${EPLB_BENCH_BUILD:-build-gpu-bench}
jobs=$(nproc 2>/dev/null || echo 4)
cmake -B "$build" -DCMAKE_BUILD_TYPE=Release -DEPLB_BUILD_TESTS=OFF > "$out/cmake.log" 2>&1
# A module that fails to build must not cost the whole run: report and go on.
if ! cmake --build "$build" -j "$jobs" >> "$out/cmake.log" 2>&1; then
  echo "run_gpu_bench: build had errors (see $out/cmake.log); running what was built" >&2
  cmake --build "$build" -j "$jobs" --target eplb-bench >> "$out/cmake.log" 2>&1
fi
source=$(git describe --always --dirty 2>/dev/null || echo unknown)
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1 || true)
{
  echo "- source: commit $source, recorded $(date -u +%Y-%m-%d); GPU: ${gpu:-none found}"
  "$build/bin/eplb-bench" --markdown --max-time 10 --json "$out/eplb-bench.json" "$@"
} | tee "$out/eplb-bench.md"
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  {
    echo "- source: commit $source, recorded $(date -u +%Y-%m-%d)"
    python3 bench/torch_seed_eplb.py --device cuda --runs 50 --markdown \
      --case v3-prefill --case v3-decode-288 --case v3-decode-320 --case scale \
      --eplb-json "$out/eplb-bench.json" --json "$out/torch-seed.json"
  } | tee "$out/torch-seed.md"
else
  echo "run_gpu_bench: PyTorch with CUDA not importable; torch baseline skipped" | tee "$out/torch-seed.md"
fi
