#!/usr/bin/env bash
# Runs the test suite of an eplb build (./build by default): the Criterion
# suites through ctest, then the conformance command on every available backend.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
status=0
ctest --test-dir "$build" --output-on-failure || status=1
"$build"/bin/eplb conformance --golden tests/golden || status=1
exit $status
