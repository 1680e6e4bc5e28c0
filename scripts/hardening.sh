#!/usr/bin/env bash
# CI stage for reliability (docs/reliability.md). Three tiers, each must end
# with no finding:
#   1. build-asan (gcc, -DEPLB_SANITIZE=ON, OpenCL on, CUDA off: nvcc and ASan
#      don't mix): ctest, including the fuzz corpus replays and test_faults,
#      and `eplb conformance`; any AddressSanitizer, LeakSanitizer or UBSan
#      report fails (reports go to files: Criterion does not fail a test
#      whose worker only leaks).
#      The CLI allocation-failure sweep (test_cli_faults) preloads its own
#      malloc, which does not mix with ASan: it skips here and runs in the
#      normal build's ctest.
#   2. build-valgrind (normal build): the eplb CLI under valgrind memcheck,
#      cpu backend only (EPLB_MODULE_DIR without modules).
#   3. build-fuzz (clang, libFuzzer + ASan/UBSan): every fuzz target for
#      EPLB_FUZZ_SECONDS (default 60) from tests/fuzz/corpus/<target>.
# Environment: EPLB_FUZZ_SECONDS, EPLB_HARDENING_JOBS (build jobs, default 2),
# EPLB_HARDENING_SKIP (space-separated tiers to skip: asan valgrind fuzz),
# EPLB_HARDENING_CMAKE_ARGS (more options for build-asan, e.g. -DEPLB_OPENCL=OFF).
# Exits non-zero on any finding or failed step; prints where each report is.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=${EPLB_HARDENING_JOBS:-2}
fuzz_seconds=${EPLB_FUZZ_SECONDS:-60}
skip=" ${EPLB_HARDENING_SKIP:-} "
failed=()
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

step() { echo; echo "== $*"; }
fail() { echo "FINDING: $*"; failed+=("$1"); }

# ---- tools: valgrind, clang with libFuzzer ----------------------------------------
need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v clang >/dev/null || need+=(clang)
fuzzer_works() {
  local dir
  dir=$(mktemp -d)
  printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' > "$dir/t.c"
  clang -fsanitize=fuzzer,address,undefined "$dir/t.c" -o "$dir/t" >/dev/null 2>&1
  local rc=$?
  rm -rf "$dir"
  return $rc
}
if command -v clang >/dev/null && ! fuzzer_works; then
  # libFuzzer ships in clang's runtime package, only recommended by clang.
  v=$(clang --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -1)
  need+=("libclang-rt-${v}-dev")
fi
if [ ${#need[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" -eq 0 ]; then
    step "installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "hardening: please install: ${need[*]}" >&2
  fi
fi

# ---- 1. sanitizers ---------------------------------------------------------------------
if [[ $skip != *" asan "* ]]; then
  step "build-asan: gcc, EPLB_SANITIZE=ON, OpenCL on, CUDA off"
  logs=$root/build-asan/sanitizer-reports
  if cmake -B build-asan "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEPLB_SANITIZE=ON \
       -DEPLB_CUDA=OFF -DEPLB_OPENCL=ON -DEPLB_FUZZ=ON ${EPLB_HARDENING_CMAKE_ARGS:-} >/dev/null &&
     cmake --build build-asan -j "$jobs" >/dev/null; then
    rm -rf "$logs" && mkdir -p "$logs"
    # log_path: reports from every process (Criterion workers, forked and
    # re-executed children, the eplb binary run by test_cli) land in files.
    # use_sigaltstack=0: PoCL's LLVM, compiling a kernel on a thread of ours,
    # replaces ASan's alternate signal stack with its own malloc'd one where
    # ASan's is smaller than LLVM wants (the sizes follow the CPU's signal
    # frame); at that thread's exit ASan then unmaps memory it did not map
    # and aborts with "unable to unmap" (seen with GCC 12 on a Zen 4 VM).
    # The cost is ASan's report of a stack overflow, which no test provokes.
    export ASAN_OPTIONS="log_path=$logs/asan:detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1:use_sigaltstack=0"
    export UBSAN_OPTIONS="log_path=$logs/ubsan:print_stacktrace=1:halt_on_error=1"
    export LSAN_OPTIONS="suppressions=$root/scripts/lsan.supp:print_suppressions=0"
    step "build-asan: ctest"
    ctest --test-dir build-asan --output-on-failure || fail asan-ctest "ctest failed under ASan/UBSan"
    step "build-asan: eplb conformance --random 20"
    EPLB_MODULE_DIR=$root/build-asan/lib build-asan/bin/eplb conformance --random 20 | tail -3 ||
      fail asan-conformance "eplb conformance failed under ASan/UBSan"
    unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
    reports=$(find "$logs" -type f -size +0 | sort)
    if [ -n "$reports" ]; then
      for r in $reports; do echo "--- $r"; head -60 "$r"; done
      fail asan-reports "sanitizer reports in $logs"
    else
      echo "no sanitizer report"
    fi
  else
    fail asan-build "build-asan did not build"
  fi
fi

# ---- 2. valgrind -------------------------------------------------------------------------
if [[ $skip != *" valgrind "* ]]; then
  step "build-valgrind: normal build, the eplb CLI under valgrind memcheck (cpu backend)"
  if cmake -B build-valgrind "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEPLB_CUDA=OFF \
       -DEPLB_BUILD_TESTS=OFF >/dev/null &&
     cmake --build build-valgrind -j "$jobs" --target eplb_cli >/dev/null; then
    vg=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect,possible
        --suppressions="$root/scripts/valgrind.supp" --track-origins=yes)
    eplb=$root/build-valgrind/bin/eplb
    out=$(mktemp -d)
    golden=tests/golden/readme.default.txt
    # The second plan.json run replaces the first; link.json writes through a link.
    ln -s linked.json "$out/link.json"
    # A golden case's weights as a text file: the lines between 'weight' and 'phy2log'.
    for g in mixtral kimi-k2; do
      awk '/^weight/{on=1; next} /^phy2log/{on=0} on' tests/golden/$g.default.txt > "$out/$g.txt"
    done
    runs=(
      "plan -i tests/data/good-sglang.json -r 16 -p 4"
      "plan -i tests/data/good-array.json -r 8 -p 2"
      "plan -i tests/data/good-float32.npy -r 8 -p 2 -o $out/plan.json"
      "plan -i tests/data/good-float32.npy -r 8 -p 2 -o $out/plan.json"
      "plan -i tests/data/good-comma.csv -r 8 -p 2 -o $out/link.json"
      "plan -i tests/data/good-comma.csv -r 8 -p 2 -o -"
      "plan -i tests/data/good-comma.csv -r 8 -p 4 --policy global"
      "plan -i $out/mixtral.txt -r 16 -p 8"
      "plan -i $out/kimi-k2.txt -r 416 -n 4 -p 32"
      "plan -i tests/data/bad-nan.npy -r 8 -p 2"
      "plan -i tests/data/bad-ragged.json -r 8 -p 2"
      "plan -i $golden -r 8 -p 2"
      "demo"
      "conformance --random 20"
    )
    for args in "${runs[@]}"; do
      # shellcheck disable=SC2086
      EPLB_MODULE_DIR=$out EPLB_BACKEND=cpu "${vg[@]}" "$eplb" $args > "$out/stdout" 2> "$out/stderr"
      rc=$?
      if [ $rc -eq 99 ]; then
        cat "$out/stderr"
        fail valgrind "valgrind reports on: eplb $args"
      elif [ $rc -gt 2 ]; then
        cat "$out/stderr"
        fail valgrind "eplb $args exited with $rc under valgrind"
      else
        echo "ok (exit $rc): eplb $args"
      fi
    done
    rm -rf "$out"
  else
    fail valgrind-build "build-valgrind did not build"
  fi
fi

# ---- 3. fuzzing --------------------------------------------------------------------------
if [[ $skip != *" fuzz "* ]]; then
  step "build-fuzz: clang, libFuzzer, ASan/UBSan; ${fuzz_seconds} s per target"
  targets=(fuzz_plan fuzz_weights_sglang fuzz_weights_json_array fuzz_weights_text
           fuzz_weights_npy fuzz_golden)
  if CC=clang cmake -B build-fuzz "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
       -DEPLB_SANITIZE=ON -DEPLB_FUZZ=ON -DEPLB_BUILD_TESTS=OFF -DEPLB_OPENCL=OFF -DEPLB_CUDA=OFF \
       >/dev/null &&
     cmake --build build-fuzz -j "$jobs" --target "${targets[@]}" >/dev/null; then
    findings=$root/build-fuzz/findings
    mkdir -p "$findings"
    for t in "${targets[@]}"; do
      work=$root/build-fuzz/corpus/$t
      mkdir -p "$work"
      dict=()
      case $t in
        fuzz_weights_sglang|fuzz_weights_json_array) dict=(-dict=tests/fuzz/json.dict) ;;
        fuzz_weights_text) dict=(-dict=tests/fuzz/text.dict) ;;
        fuzz_weights_npy) dict=(-dict=tests/fuzz/npy.dict) ;;
        fuzz_golden) dict=(-dict=tests/fuzz/golden.dict) ;;
      esac
      # New inputs go to build-fuzz/corpus/<target>; the seeds stay read-only.
      OMP_NUM_THREADS=1 build-fuzz/bin/"$t" -max_total_time="$fuzz_seconds" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$findings/$t-" "${dict[@]}" \
        "$work" tests/fuzz/corpus/"$t" > "build-fuzz/$t.log" 2>&1
      rc=$?
      execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "build-fuzz/$t.log")
      if [ $rc -ne 0 ]; then
        grep -E "ERROR|SUMMARY|fuzz contract|Test unit written" "build-fuzz/$t.log" | head -20
        fail "fuzz-$t" "$t: a crash or contract breach, input in $findings"
      else
        echo "ok: $t, ${execs:-?} inputs in ${fuzz_seconds} s"
      fi
    done
  else
    fail fuzz-build "build-fuzz did not build (clang with libFuzzer needed)"
  fi
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "hardening FAILED: ${failed[*]}"
  exit 1
fi
echo "hardening passed: no sanitizer, valgrind or fuzzing finding"
