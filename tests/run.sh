#!/usr/bin/env bash
# The whole test suite: cfn-lint on template.yaml, the supply-chain check (cargo-deny, offline),
# unit tests, each port's contract suite against
# the in-process and the AWS adapters, end-to-end flows through the local stack on both backends,
# the offline checks of the SAM template.
#
# It needs only Rust, Python 3 and git. On first run it installs the pinned AWS emulator (moto, from
# localstack/requirements.txt) and cfn-lint (infra/requirements-lint.txt) into ./.venv, and
# cargo-deny into ./.tools; on every run it lints the template, checks the dependencies
# (tests/supply-chain.sh), starts the emulator on a free
# loopback port, runs the tests against it, and stops it again — on success, failure or Ctrl-C.
#
# Usage: bash tests/run.sh [extra arguments for cargo nextest run]
#   bash tests/run.sh                                  # everything
#   bash tests/run.sh aws::                            # tests whose name contains "aws::"
#   bash tests/run.sh -E 'binary(contract_store)'      # one test binary
# The emulator's log is target/moto.log.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
requirements=(localstack/requirements.txt infra/requirements-lint.txt)
constraints=tests/python-constraints.txt # every package, direct or not, pinned exactly
stamp="$venv/.requirements.sha256"

say() { echo "tests/run.sh: $*" >&2; }

sha256() {
  if command -v sha256sum >/dev/null; then sha256sum "$1"; else shasum -a 256 "$1"; fi | cut -d' ' -f1
}

# 1. The emulator and the template linter, installed into ./.venv once, and again only when a
#    requirements file or the constraints file changes (their hashes are kept in the stamp file).
#    Every package, direct or not, is pinned exactly by the constraints file. pip uses whatever
#    index this machine is configured for.
wanted=$(for r in "${requirements[@]}" "$constraints"; do sha256 "$r"; done)
if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
  say "installing the AWS emulator and cfn-lint (${requirements[*]}) into $venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c "$constraints" "${requirements[@]/#/-r}"
  echo "$wanted" > "$stamp" # only once the install succeeded
fi

# 2. The SAM template passes cfn-lint (errors fail the run; nothing is running yet).
say "cfn-lint template.yaml"
if ! "$venv/bin/cfn-lint" template.yaml; then
  say "cfn-lint found problems in template.yaml (above)"
  exit 1
fi

# 2b. Supply chain: cargo-deny (installed into ./.tools once) checks Cargo.lock offline against the
#     RustSec advisory database snapshot at ../shared/advisory-db, and licences, bans and sources
#     against deny.toml; any error fails the run. See tests/supply-chain.sh.
bash tests/supply-chain.sh

# 3. Start the emulator on a free loopback port (the launcher picks one and writes it to a file), and make
#    sure it is stopped however this script ends: success, failure, Ctrl-C or kill.
mkdir -p target
workdir=$(mktemp -d)
moto_pid=""

stop_emulator() {
  [[ -n "$moto_pid" ]] || return 0
  if kill -0 "$moto_pid" 2>/dev/null; then
    kill -TERM "$moto_pid" 2>/dev/null || true
    # Give it 5 s to exit, then insist.
    for _ in $(seq 1 50); do
      kill -0 "$moto_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$moto_pid" 2>/dev/null || true
  fi
  wait "$moto_pid" 2>/dev/null || true
  moto_pid=""
}

cleanup() {
  stop_emulator
  rm -rf "$workdir"
}

# The test runner runs in the background (see 5.) so that a signal reaches this script at once;
# the script passes it on as SIGTERM, which cargo-nextest answers by stopping every test.
runner_pid=""
stop_runner() {
  [[ -n "$runner_pid" ]] || return 0
  pkill -TERM -P "$runner_pid" 2>/dev/null || true # its children (rustc, or test binaries under cargo test)
  kill -TERM "$runner_pid" 2>/dev/null || true
  wait "$runner_pid" 2>/dev/null || true
  runner_pid=""
}

# On Ctrl-C or kill: stop the tests, then exit, which runs the EXIT trap (stops the emulator).
trap cleanup EXIT
trap 'stop_runner; exit 130' INT
trap 'stop_runner; exit 143' TERM

# Answers anything over HTTP (any status counts: it only has to be serving).
answers_http() {
  if command -v curl >/dev/null; then
    curl --silent --output /dev/null --max-time 1 "$1"
  else
    "$venv/bin/python" - "$1" <<'PY'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=1)
except urllib.error.HTTPError:
    pass
PY
  fi
}

# A background job of this (non-interactive) shell ignores Ctrl-C; stop_emulator ends it.
"$venv/bin/python" localstack/moto_server.py --port-file "$workdir/port" > target/moto.log 2>&1 &
moto_pid=$!

endpoint=""
for _ in $(seq 1 300); do # 300 × 0.1 s = 30 s
  if ! kill -0 "$moto_pid" 2>/dev/null; then
    say "the emulator exited at start; its log (target/moto.log):"
    cat target/moto.log >&2
    exit 1
  fi
  if [[ -z "$endpoint" && -s "$workdir/port" ]]; then
    endpoint="http://127.0.0.1:$(cat "$workdir/port")"
  fi
  if [[ -n "$endpoint" ]] && answers_http "$endpoint/moto-api/"; then
    break
  fi
  sleep 0.1
done
if [[ -z "$endpoint" ]] || ! answers_http "$endpoint/moto-api/"; then
  say "the emulator did not answer within 30 s; see target/moto.log"
  exit 1
fi

# 4. Point the AWS tests at it. The SDK needs a region and some credentials; no instance
#    metadata lookups.
export NOTIFY_TEST_AWS_ENDPOINT="$endpoint"
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_EC2_METADATA_DISABLED=true
say "AWS emulator at $endpoint (pid $moto_pid, log: target/moto.log)"

# 5. Every test; cargo test if cargo-nextest is not installed. The runner is waited for in the
#    background (a trapped signal interrupts `wait`, not a foreground command); its status is
#    kept, not fatal, so the emulator is stopped before the script exits with it.
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@" &
else
  say "cargo-nextest not found; running cargo test"
  cargo test --workspace --no-fail-fast "$@" &
fi
runner_pid=$!
wait "$runner_pid" || status=$?
runner_pid=""

if ! kill -0 "$moto_pid" 2>/dev/null; then
  say "warning: the emulator exited during the run; see target/moto.log"
  [[ $status -ne 0 ]] || status=1
fi
exit "$status"
