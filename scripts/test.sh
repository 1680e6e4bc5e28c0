#!/usr/bin/env bash
# Runs eplb's tests on a build made by scripts/bootstrap.sh (./build):
#   1. the Criterion suites through ctest,
#   2. the conformance command on every available backend,
#   3. the Python package's tests, in a virtualenv (skipped with EPLB_SKIP_PYTHON=1).
# Exits non-zero if any of them fails.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
failed=()

echo "== ctest"
ctest --test-dir "$build" --output-on-failure || failed+=(ctest)

echo "== eplb conformance"
"$build"/bin/eplb conformance --golden tests/golden || failed+=(conformance)

if [ "${EPLB_SKIP_PYTHON:-0}" != 1 ]; then
  echo "== python"
  venv="$build/python-venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" || failed+=(python-venv)
  if [ -x "$venv/bin/pip" ]; then
    "$venv/bin/pip" install -q ./python pytest && "$venv/bin/python" -m pytest -q python/tests \
      || failed+=(python)
  fi
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all test stages passed"
