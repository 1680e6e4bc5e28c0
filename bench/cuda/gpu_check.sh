#!/usr/bin/env bash
# GPU check of the cuda backend, for the GPU machine (nvcc, cmake, ninja,
# compute-sanitizer, ncu; no Criterion, no jansson, no internet), in about 5
# minutes on an H100/H200 with 16 cores (at most ~9: every step has a timeout). Steps (each runs even if one fails,
# each under its own timeout): build, `eplb conformance --random 200`,
# `eplb_cuda_bench check` (goldens + random vs cpu on every cuda path, device
# API, scale case), timing of each EPLB_TUNE_CUDA_PATH (fused, stages), of
# refine 256 with each EPLB_TUNE_CUDA_REFINE search, and of the scale case at
# the log2phy width its plan needs, compute-sanitizer
# memcheck + racecheck on DeepSeek-V3 plans, ncu on the fused kernel of the
# global 288/72 case. Logs: OUTDIR/gpu-check-logs.tar.gz; OUTDIR/summary.txt;
# the summary and a compact timing table are printed last.
#
# Usage: bench/cuda/gpu_check.sh [OUTDIR]   (default: $OUT, else ./gpu-check-out)
out=${1:-${OUT:-gpu-check-out}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/../.."
build=${EPLB_GPU_BUILD:-build-gpu-check}
bench=$build/bin/eplb_cuda_bench
logs=$(mktemp -d)/gpu-check-logs
mkdir -p "$logs"
summary=$logs/summary.txt
: > "$summary"
note() { echo "$*" | tee -a "$summary"; }
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 ))s]"; }

{ nvidia-smi; nvcc --version || /usr/local/cuda/bin/nvcc --version; } > "$logs/build.log" 2>&1
nvcc_path=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
cmake -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DEPLB_BUILD_TESTS=OFF -DEPLB_JSON=OFF \
  -DEPLB_OPENCL=OFF -DEPLB_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc_path" >> "$logs/build.log" 2>&1
rc=$?
note "$(stamp) configure: rc=$rc"
timeout 200 cmake --build "$build" -j "$(nproc)" >> "$logs/build.log" 2>&1
rc=$?
note "$(stamp) build: rc=$rc"
export EPLB_MODULE_DIR=$PWD/$build/lib

timeout 60 "$build/bin/eplb" conformance --random 200 > "$logs/conformance.txt" 2>&1
rc=$?
note "$(stamp) eplb conformance --random 200: rc=$rc $(grep -E '[0-9]+ passed' "$logs/conformance.txt" | tail -1)"

timeout 180 "$bench" check > "$logs/check.txt" 2>&1
rc=$?
note "$(stamp) eplb_cuda_bench check: rc=$rc $(tail -1 "$logs/check.txt")"
grep FAIL "$logs/check.txt" | head -20 >> "$summary"

# Every value of EPLB_TUNE_CUDA_PATH, timed in the same run: fused (the
# default) and stages (every stage its own kernel).
for path in fused stages; do
  timeout 60 "$bench" time --runs 300 --path $path > "$logs/time-$path.txt" 2>&1
  rc=$?
  note "$(stamp) timing ($path): rc=$rc"
done
# The refine 256 plan (the CLI's and Python's refine=True) with each refine
# search of plan_fused: block (the default) and team (opt-in).
for path in fused fused-team-refine; do
  timeout 60 "$bench" time --runs 200 --case v3 --refine 256 --path $path > "$logs/time-refine-$path.txt" 2>&1
  note "$(stamp) timing (refine 256, $path): rc=$?"
done
# The scale case again with log2phy at the width its plan needs (the table
# above uses R - E + 1: 11.7 GB of -1 fill for that case).
timeout 30 "$bench" time --runs 20 --case scale --width needed > "$logs/time-scale-needed.txt" 2>&1
note "$(stamp) timing (scale, width needed): rc=$?"
# And at the width the device chooses (EPLB_LOG2PHY_WIDTH_NEEDED): the caller
# need not know it, though its buffer is still allocated at R - E + 1.
timeout 30 "$bench" time --runs 20 --case scale --width device > "$logs/time-scale-device.txt" 2>&1
note "$(stamp) timing (scale, width chosen by the device): rc=$?"

# The optional steps only run while the whole script stays under 9 minutes.
late() { [ $(( $(date +%s) - t0 )) -gt 420 ]; }
if late; then
  note "$(stamp) out of time: sanitizers and ncu skipped"
elif command -v compute-sanitizer > /dev/null; then
  : > "$logs/sanitizer.txt"
  for tool in memcheck racecheck; do
    timeout 45 compute-sanitizer --tool $tool --error-exitcode 9 "$bench" sanitize --iterations 1 \
      >> "$logs/sanitizer.txt" 2>&1
    rc=$?
    note "$(stamp) compute-sanitizer $tool: rc=$rc $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$logs/sanitizer.txt" | tail -1)"
  done
else
  note "compute-sanitizer not found: skipped"
fi

ncu_bin=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null)
if late; then
  :
elif [ -n "$ncu_bin" ]; then
  timeout 45 "$ncu_bin" --kernel-name regex:plan_fused --launch-skip 5 --launch-count 1 \
    --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
    --section InstructionStats --section MemoryWorkloadAnalysis \
    "$bench" time --runs 3 --path fused --case "global 288/72" > "$logs/ncu.txt" 2>&1
  rc=$?
  note "$(stamp) ncu (fused, global 288/72): rc=$rc $(grep -E '^ +Duration' "$logs/ncu.txt" | head -1 | tr -s ' ')"
  # The hierarchical case runs a block per (layer, node): its own profile.
  timeout 45 "$ncu_bin" --kernel-name regex:plan_fused --launch-skip 5 --launch-count 1 \
    --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
    --section InstructionStats \
    "$bench" time --runs 3 --path fused --case "hierarchical" > "$logs/ncu-hierarchical.txt" 2>&1
  rc=$?
  note "$(stamp) ncu (fused, hierarchical 288/8/4/32): rc=$rc $(grep -E '^ +Duration' "$logs/ncu-hierarchical.txt" | head -1 | tr -s ' ')"
else
  note "ncu not found: skipped"
fi

cp "$summary" "$out/summary.txt"
tar -C "$(dirname "$logs")" -czf "$out/gpu-check-logs.tar.gz" gpu-check-logs
echo "==== summary"
cat "$summary"
echo "==== timing (us, CUDA events per call, median of 300; fused = default path)"
grep -h -E '^(==|case|v3|scale|few)' "$logs/time-fused.txt" "$logs/time-stages.txt" \
  "$logs/time-refine-fused.txt" "$logs/time-refine-fused-team-refine.txt" \
  "$logs/time-scale-needed.txt" "$logs/time-scale-device.txt"
