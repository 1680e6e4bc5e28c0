#!/usr/bin/env bash
# Re-measures the cpu backend on this machine and rewrites the "CPU backend"
# results block of docs/benchmarks.md. Extra arguments go to eplb-bench.
#   bench/record_cpu.sh                 # all cases, defaults
#   bench/record_cpu.sh --runs 200      # more runs
set -euo pipefail
cd "$(dirname "$0")/.."
build=${EPLB_BENCH_BUILD:-build-bench}
generator=()
if [ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null; then generator=(-G Ninja); fi
cmake -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DEPLB_BUILD_TESTS=OFF \
      -DEPLB_CUDA=OFF -DEPLB_OPENCL=OFF >/dev/null
cmake --build "$build" -j 2 --target eplb-bench >/dev/null
results=$(mktemp)
trap 'rm -f "$results"' EXIT
{
  echo "- source: commit $(git describe --always --dirty 2>/dev/null || echo unknown)," \
       "recorded $(date -u +%Y-%m-%d) with \`bench/record_cpu.sh${*:+ $*}\`"
  "$build/bin/eplb-bench" --backend cpu --markdown --json "$build/eplb-bench-cpu.json" "$@"
} | tee "$results"
python3 bench/splice_results.py cpu "$results"
