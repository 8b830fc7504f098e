#!/usr/bin/env bash
# The whole test suite: unit tests, each port's contract suite against the in-process and the
# AWS adapters, end-to-end flows through the local stack on both backends.
#
# It needs only Rust and Python 3. On first run it installs the pinned AWS emulator (moto, from
# localstack/requirements.txt) into ./.venv; on every run it starts the emulator on a free
# loopback port, runs the tests against it, and stops it again — on success, failure or Ctrl-C.
#
# Usage: bash tests/run.sh [extra arguments for the test runner]
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
requirements=localstack/requirements.txt
stamp="$venv/.requirements.sha256"
wanted=$(sha256sum "$requirements" | cut -d' ' -f1)

# 1. The emulator, installed once per change of its pinned version.
if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
  echo "tests/run.sh: installing the AWS emulator into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$wanted" > "$stamp"
fi

# 2. Start it on a free loopback port; stop it however this script ends.
mkdir -p target
workdir=$(mktemp -d)
moto_pid=""
cleanup() {
  if [[ -n "$moto_pid" ]] && kill -0 "$moto_pid" 2>/dev/null; then
    kill "$moto_pid" 2>/dev/null || true
    wait "$moto_pid" 2>/dev/null || true
  fi
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$venv/bin/python" localstack/moto_server.py --port-file "$workdir/port" > target/moto.log 2>&1 &
moto_pid=$!
for _ in $(seq 1 300); do
  [[ -s "$workdir/port" ]] && break
  kill -0 "$moto_pid" 2>/dev/null || { echo "tests/run.sh: the emulator did not start; see target/moto.log" >&2; exit 1; }
  sleep 0.1
done
[[ -s "$workdir/port" ]] || { echo "tests/run.sh: the emulator did not start within 30 s; see target/moto.log" >&2; exit 1; }
endpoint="http://127.0.0.1:$(cat "$workdir/port")"

export NOTIFY_TEST_AWS_ENDPOINT="$endpoint"
export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
echo "tests/run.sh: AWS emulator at $endpoint (log: target/moto.log)" >&2

# 3. Every test.
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
  cargo test --workspace --no-fail-fast "$@" || status=$?
fi
exit "$status"
