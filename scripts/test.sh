#!/usr/bin/env bash
# Runs eplb's tests on a build made by scripts/bootstrap.sh (./build):
#   1. the Criterion suites through ctest,
#   2. the conformance command on every available backend,
#   3. the Python package's tests and the spec reference's (tests/reference), in a
#      virtualenv (skipped with EPLB_SKIP_PYTHON=1); with
#      torch where the system Python has Debian's CPU-only python3-torch.
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
  # The torch tests need a CPU-only PyTorch: PyPI's torch is the CUDA build,
  # with the CUDA libraries, and PyTorch's own CPU index is not reachable here,
  # but Debian's python3-torch is CPU-only. Where the system Python has it, the
  # venv sees it (docs/python.md, "Tests"); elsewhere the torch tests skip.
  python=python3 venv="$build/python-venv" venv_options=()
  if /usr/bin/python3 -c "import torch" >/dev/null 2>&1; then
    python=/usr/bin/python3 venv="$build/python-venv-torch" venv_options=(--system-site-packages)
  fi
  [ -x "$venv/bin/python" ] || "$python" -m venv "${venv_options[@]}" "$venv" || failed+=(python-venv)
  if [ -x "$venv/bin/pip" ]; then
    "$venv/bin/python" -c "import torch; print('torch', torch.__version__, '(torch tests run)')" \
      2>/dev/null || echo "torch absent: the torch tests skip (apt-get install python3-torch)"
    # EPLB_CLI: python -m eplb plan's plan files are compared with the C tool's.
    cli="$build/bin/eplb"
    [[ $cli == /* ]] || cli="$PWD/$cli"
    [ -x "$cli" ] || cli=""
    "$venv/bin/pip" install -q ./python pytest &&
      EPLB_CLI="$cli" "$venv/bin/python" -m pytest -q python/tests || failed+=(python)
    # The independent reference of SPEC section 13 (incremental rebalance), on
    # numpy, with the C tool's plans where EPLB_CLI names it.
    EPLB_CLI="$cli" "$venv/bin/python" -m pytest -q tests/incremental_reference ||
      failed+=(incremental-reference)
    # The independent reference of docs/spec.md sections 10 to 12 needs only numpy and pytest.
    "$venv/bin/pip" install -q numpy pytest &&
      EPLB_CLI="$cli" "$venv/bin/python" -m pytest -q tests/reference || failed+=(reference)
  fi
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all test stages passed"
