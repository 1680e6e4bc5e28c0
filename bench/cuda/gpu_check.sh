#!/usr/bin/env bash
# GPU check of the cuda backend, for the GPU machine (nvcc, cmake, ninja,
# compute-sanitizer; no Criterion, no jansson, no internet). One run gives:
# build log, `eplb conformance`, eplb_cuda_bench check (goldens + random vs cpu
# on every cuda path, device API), compute-sanitizer memcheck and racecheck on
# DeepSeek-V3 plans, and the timing table. Every step runs even if one fails.
#
# Usage: bench/cuda/gpu_check.sh [OUTDIR]   (default: $OUT, else ./gpu-check-out)
set -x
out=${1:-${OUT:-gpu-check-out}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/../.."
build=${EPLB_GPU_BUILD:-build-gpu-check}
bench=$build/bin/eplb_cuda_bench
summary=$out/summary.txt
: > "$summary"
note() { echo "$*" | tee -a "$summary"; }

nvidia-smi > "$out/nvidia-smi.txt" 2>&1; note "nvidia-smi: rc=$?"
nvcc --version > "$out/nvcc.txt" 2>&1 || /usr/local/cuda/bin/nvcc --version > "$out/nvcc.txt" 2>&1

nvcc_path=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
cmake -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DEPLB_BUILD_TESTS=OFF -DEPLB_JSON=OFF \
  -DEPLB_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc_path" > "$out/build.log" 2>&1
note "configure: rc=$?"
cmake --build "$build" -j "$(nproc)" >> "$out/build.log" 2>&1
note "build: rc=$?"
ls -la "$build/lib" "$build/bin" >> "$out/build.log" 2>&1
export EPLB_MODULE_DIR=$PWD/$build/lib

if [ -x "$build/bin/eplb" ]; then
  "$build/bin/eplb" conformance > "$out/conformance.txt" 2>&1
  note "eplb conformance: rc=$? $(grep -E '[0-9]+ passed' "$out/conformance.txt" | tail -1)"
else
  note "eplb conformance: no $build/bin/eplb, skipped"
fi

timeout 900 "$bench" check > "$out/check.txt" 2>&1
note "eplb_cuda_bench check: rc=$? $(tail -1 "$out/check.txt")"
grep FAIL "$out/check.txt" | head -20 >> "$summary"

if command -v compute-sanitizer > /dev/null; then
  for tool in memcheck racecheck; do
    timeout 900 compute-sanitizer --tool $tool --error-exitcode 9 "$bench" sanitize --iterations 2 \
      > "$out/sanitizer-$tool.txt" 2>&1
    note "compute-sanitizer $tool: rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitizer-$tool.txt" | tail -1)"
  done
  timeout 600 compute-sanitizer --tool synccheck --error-exitcode 9 "$bench" sanitize --iterations 1 \
    > "$out/sanitizer-synccheck.txt" 2>&1
  note "compute-sanitizer synccheck: rc=$? $(grep -E 'ERROR SUMMARY' "$out/sanitizer-synccheck.txt" | tail -1)"
else
  note "compute-sanitizer not found: skipped"
fi

for path in fused stages; do
  timeout 600 "$bench" time --runs 300 --path $path > "$out/time-$path.txt" 2>&1
  note "timing ($path): rc=$?"
done
echo "==== summary"
cat "$summary"
echo "==== timing (us; fused = default path)"
cat "$out/time-fused.txt" "$out/time-stages.txt"
