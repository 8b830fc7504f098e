#!/usr/bin/env bash
# The whole test suite: unit tests, port contract suites, end-to-end flows through the local stack.
# Usage: bash tests/run.sh [extra args for the test runner]
set -euo pipefail
cd "$(dirname "$0")/.."

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
