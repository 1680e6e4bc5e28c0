#!/usr/bin/env bash
# OpenCL backend on NVIDIA's OpenCL driver: build, conformance, device time.
#
# For a GPU machine that has the driver (libnvidia-opencl.so.1) but no .icd
# file for it, and maybe no system ICD loader: writes an .icd file into a
# folder of its own (OCL_ICD_VENDORS), finds libOpenCL.so.1 (system, else the
# CUDA toolkit) and puts it on LD_LIBRARY_PATH. Needs cmake, a C compiler and
# OpenCL headers (the CUDA toolkit's include/CL will do); no Criterion, no jansson.
#
#   bench/opencl_nvidia_check.sh            results in $OUT (default ./opencl-nvidia-out)
#   RUNS=500 WARMUP=50 bench/opencl_nvidia_check.sh
#
# A few minutes on an H100/H200: conformance with plan_fused (seven knob sets)
# and the stage kernels (two), the plan kernel's time per knob set for the
# three V3 shapes, and the marker-bracketed device time.
#
# Writes $OUT/summary.txt (everything below), and one file per step.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$PWD/opencl-nvidia-out}
BUILD=${BUILD:-$ROOT/build-opencl-nvidia}
RUNS=${RUNS:-300}
WARMUP=${WARMUP:-30}
mkdir -p "$OUT"
exec > >(tee "$OUT/summary.txt") 2>&1
say() { printf '\n== %s\n' "$*"; }
CUDA_ROOTS="${CUDA_HOME:-} ${CUDA_PATH:-} /usr/local/cuda $(ls -d /usr/local/cuda-* 2>/dev/null | sort -rV | tr '\n' ' ')"

say "NVIDIA OpenCL driver"
driver=${NVIDIA_OPENCL_DRIVER:-}  # override: the driver library to use
for d in $(ldconfig -p 2>/dev/null | awk '/libnvidia-opencl\.so\.1/ {print $NF}') \
         /usr/lib/x86_64-linux-gnu/libnvidia-opencl.so.1 /usr/lib64/libnvidia-opencl.so.1 \
         /usr/local/nvidia/lib64/libnvidia-opencl.so.1 /usr/lib/libnvidia-opencl.so.1; do
  if [ -n "$driver" ]; then break; fi
  if [ -e "$d" ]; then driver=$d; break; fi
done
if [ -z "$driver" ]; then
  driver=$(find / -xdev -name 'libnvidia-opencl.so.1' 2>/dev/null | head -n 1)
fi
if [ -z "$driver" ]; then echo "libnvidia-opencl.so.1 not found: no NVIDIA OpenCL driver"; exit 1; fi
echo "driver: $driver"
mkdir -p "$OUT/icd"
echo "$driver" > "$OUT/icd/nvidia.icd"
export OCL_ICD_VENDORS="$OUT/icd"
echo "OCL_ICD_VENDORS=$OCL_ICD_VENDORS ($(cat "$OUT/icd/nvidia.icd"))"

say "ICD loader (libOpenCL.so.1)"
loader=$(ldconfig -p 2>/dev/null | awk '/libOpenCL\.so\.1 / {print $NF; exit}')
if [ -z "$loader" ]; then
  for r in $CUDA_ROOTS; do
    for lib in "$r/lib64" "$r/targets/x86_64-linux/lib" "$r/lib"; do
      if [ -e "$lib/libOpenCL.so.1" ]; then loader="$lib/libOpenCL.so.1"; break 2; fi
    done
  done
fi
if [ -z "$loader" ]; then echo "no libOpenCL.so.1 (system or CUDA toolkit)"; exit 1; fi
export LD_LIBRARY_PATH="$(dirname "$loader")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "loader: $loader"

say "OpenCL headers"
include=""
for r in /usr $CUDA_ROOTS; do
  for inc in "$r/include" "$r/targets/x86_64-linux/include"; do
    if [ -e "$inc/CL/cl.h" ]; then include=$inc; break 2; fi
  done
done
if [ -z "$include" ]; then echo "no CL/cl.h (install opencl-headers or the CUDA toolkit)"; exit 1; fi
echo "headers: $include"

say "build ($BUILD)"
gen=""; command -v ninja >/dev/null && gen="-G Ninja"
cmake -S "$ROOT" -B "$BUILD" $gen -DCMAKE_BUILD_TYPE=Release -DEPLB_BUILD_TESTS=OFF -DEPLB_JSON=OFF \
  -DEPLB_OPENCL=ON -DEPLB_CUDA=OFF -DEPLB_OPENCL_INCLUDE_DIR="$include" > "$OUT/cmake.txt" 2>&1 \
  && cmake --build "$BUILD" -j "$(nproc)" >> "$OUT/cmake.txt" 2>&1
rc=$?
tail -n 5 "$OUT/cmake.txt"
if [ $rc -ne 0 ]; then echo "build failed (see $OUT/cmake.txt)"; exit 1; fi

say "eplb backends"
"$BUILD/bin/eplb" backends 2>&1 | tee "$OUT/backends.txt"
if command -v clinfo >/dev/null; then
  clinfo 2>/dev/null | grep -iE "^  (Device Name|Driver Version|Local memory size|Max work group size|Device Extensions)" \
    | tee "$OUT/clinfo.txt"
  grep -io "cl_khr_subgroup[a-z_]*" "$OUT/clinfo.txt" | sort -u | tr '\n' ' '; echo "(sub-group extensions)"
fi

# Paths and knob sets: the default (NVIDIA: warp teams, two work-groups per
# layer, a build per plan shape from a shape's third plan), a build per shape
# from the first plan (every conformance shape then runs its own build), one
# and four work-groups per layer, the portable local-memory teams, a
# work-item per packing, and the stage kernels.
FUSED_KNOBS=("" "EPLB_TUNE_OPENCL_SHAPED=always" "EPLB_TUNE_OPENCL_SPLIT=1" "EPLB_TUNE_OPENCL_SPLIT=4"
             "EPLB_TUNE_OPENCL_WARP=0" "EPLB_TUNE_OPENCL_FUSED_TEAM=0"
             "EPLB_TUNE_OPENCL_FUSED_WG=64 EPLB_TUNE_OPENCL_FUSED_TEAM=4")
STAGE_KNOBS=("EPLB_TUNE_OPENCL_PATH=stages" "EPLB_TUNE_OPENCL_PATH=stages EPLB_TUNE_OPENCL_WG=32 EPLB_TUNE_OPENCL_ITEMS_PER_THREAD=1")

say "conformance per path and knob set (each must say 0 failed)"
conformance_rc=0
i=0
for knobs in "${FUSED_KNOBS[@]}" "${STAGE_KNOBS[@]}"; do
  i=$((i + 1))
  random=${RANDOM_CASES:-100}
  case "$knobs" in *SHAPED=always*) random=10 ;; esac  # about a second of build per shape
  env $knobs EPLB_BACKEND=opencl timeout 300 "$BUILD/bin/eplb" conformance --random "$random" \
    > "$OUT/conformance-$i.txt" 2>&1
  rc=$?
  echo "${knobs:-default}: $(tail -n 1 "$OUT/conformance-$i.txt") (exit $rc)"
  [ $rc -eq 0 ] || conformance_rc=$rc
done

# Kernel time: the plan's one plan_fused kernel, START to END of its
# profiling event (EPLB_TUNE_OPENCL_PROFILE=1; mean over the warm-up and timed
# plans of eplb-bench, the first two of a shape on the generic build).
say "kernel time per plan (EPLB_TUNE_OPENCL_PROFILE, eplb-bench --runs $RUNS)"
for knobs in "" "EPLB_TUNE_OPENCL_SPLIT=1" "EPLB_TUNE_OPENCL_SHAPED=0" "EPLB_TUNE_OPENCL_WARP=0" "EPLB_TUNE_OPENCL_FUSED_TEAM=0"; do
  printf '%-28s' "${knobs:-default}:"
  for c in v3-prefill v3-decode-288 v3-decode-320; do
    env $knobs EPLB_TUNE_OPENCL_PROFILE=1 timeout 120 "$BUILD/bin/eplb-bench" --backend opencl --case $c \
      --runs "$RUNS" --no-baseline 2>&1 | grep "profile: eplb_plan_fused" | tail -n 1 \
      | awk -v c=$c '{printf "  %s %s us", c, $(NF-2)}'
  done
  echo
done | tee "$OUT/kernel-time.txt"

# Enqueue-to-completion: eplb_opencl_timing brackets each call with two
# markers behind a user event; on NVIDIA's driver that adds tens of us of
# scheduling to the kernel time above.
say "marker-bracketed device time (eplb_rebalance_device, $RUNS runs after $WARMUP)"
for knobs in "" "EPLB_TUNE_OPENCL_WARP=0"; do
  echo "-- ${knobs:-default}"
  env $knobs timeout 180 "$BUILD/bin/eplb_opencl_timing" "$RUNS" "$WARMUP" 2>&1
done | tee "$OUT/timing.txt"

exit $conformance_rc
