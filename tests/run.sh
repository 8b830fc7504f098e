#!/usr/bin/env bash
# The whole test suite: cfn-lint on template.yaml, the supply-chain check (cargo-deny, offline),
# unit tests, each port's contract suite against
# the in-process and the AWS adapters, end-to-end flows through the local stack on both backends,
# the offline checks of the SAM template; then a property-based fuzzer (schemathesis) against the
# local stack, from the OpenAPI document it serves at /openapi.json: any 5xx, or any answer the
# document does not describe (status, content type, headers, body schema), fails the run.
#
# It needs only Rust, Python 3 and git. On first run it installs the pinned AWS emulator (moto, from
# localstack/requirements.txt), cfn-lint (infra/requirements-lint.txt) and schemathesis
# (tests/requirements-fuzz.txt) into ./.venv, and cargo-deny into ./.tools; on every run it
# lints the template, checks the dependencies (tests/supply-chain.sh), starts the emulator on a free
# loopback port, runs the tests against it, and stops it again — on success, failure or Ctrl-C.
#
# Usage: bash tests/run.sh [extra arguments for cargo nextest run]
#   bash tests/run.sh                                  # everything
#   bash tests/run.sh aws::                            # tests whose name contains "aws::"
#   bash tests/run.sh -E 'binary(contract_store)'      # one test binary
# The fuzzer runs after the tests when no arguments are given; NOTIFY_FUZZ=1 runs it with a
# filter too, NOTIFY_FUZZ=0 never, NOTIFY_FUZZ=only runs it alone (no emulator, no cargo tests).
# The emulator's log is target/moto.log; the fuzzed stack's is target/fuzz-stack.log.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

venv=.venv
requirements=(localstack/requirements.txt infra/requirements-lint.txt tests/requirements-fuzz.txt)
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
  say "installing the AWS emulator, cfn-lint and schemathesis (${requirements[*]}) into $venv"
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

# The local stack the fuzzer runs against (see 6.).
stack_pid=""
stop_stack() {
  [[ -n "$stack_pid" ]] || return 0
  kill -TERM "$stack_pid" 2>/dev/null || true
  wait "$stack_pid" 2>/dev/null || true
  stack_pid=""
}

cleanup() {
  stop_stack
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

# 6. The API fuzzer: the local stack (in-process backend, a known API key, a port of its own
#    choosing, 10 events a second per key so that 429s are answered too) fuzzed by schemathesis
#    from the OpenAPI document it serves. Bounded (examples per
#    operation, a fixed seed) so it is reproducible and takes a minute or two on two cores.
fuzz_api() {
  say "building the local stack for the API fuzzer"
  local built
  built=$(cargo build --quiet -p local-stack --bin local-stack --message-format=json-render-diagnostics \
    | "$venv/bin/python" -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])' | tail -n 1)
  if [[ -z "$built" ]]; then
    say "could not build the local stack"
    return 1
  fi
  # A copy of this checkout's binary: the shared target directory's may be rebuilt by another checkout meanwhile.
  cp "$built" "$workdir/local-stack"
  NOTIFY_API_KEYS=fuzz-key NOTIFY_OUTBOX_DIR=none NOTIFY_BACKEND=memory NOTIFY_INGEST_RATE_PER_KEY=10 RUST_LOG=warn \
    "$workdir/local-stack" --addr 127.0.0.1:0 > target/fuzz-stack.log 2>&1 &
  stack_pid=$!
  local url=""
  for _ in $(seq 1 300); do # 30 s
    if ! kill -0 "$stack_pid" 2>/dev/null; then
      say "the local stack exited at start; its log (target/fuzz-stack.log):"
      cat target/fuzz-stack.log >&2
      stack_pid=""
      return 1
    fi
    url=$(sed -n 's/.*local stack: \(http:[^ ]*\).*/\1/p' target/fuzz-stack.log | head -n 1)
    if [[ -n "$url" ]] && answers_http "$url/health"; then break; fi
    sleep 0.1
  done
  if [[ -z "$url" ]]; then
    say "the local stack did not start within 30 s; see target/fuzz-stack.log"
    return 1
  fi
  say "fuzzing $url from $url/openapi.json (schemathesis; log: target/fuzz-stack.log)"
  local fuzz_status=0
  # From the scratch directory: schemathesis keeps a cache (.schemathesis/) where it runs.
  (cd "$workdir" && exec "$root/$venv/bin/schemathesis" run "$url/openapi.json" \
    --header "Authorization: Bearer fuzz-key" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-examples "${NOTIFY_FUZZ_EXAMPLES:-300}" --seed "${NOTIFY_FUZZ_SEED:-20261201}" \
    --generation-database none --workers 2 --no-color --warnings off) &
  runner_pid=$!
  wait "$runner_pid" || fuzz_status=$?
  runner_pid=""
  stop_stack
  if [[ $fuzz_status -ne 0 ]]; then
    say "the API fuzzer found answers the OpenAPI document does not allow (above); the stack's log is target/fuzz-stack.log"
  fi
  return "$fuzz_status"
}

fuzz="${NOTIFY_FUZZ:-}"
if [[ -z "$fuzz" ]]; then
  if [[ $# -eq 0 ]]; then fuzz=1; else fuzz=0; fi
fi
if [[ "$fuzz" == "only" ]]; then
  fuzz_api
  exit $?
fi

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
stop_emulator

if [[ "$fuzz" == "1" ]]; then
  fuzz_api || status=1
fi
exit "$status"
