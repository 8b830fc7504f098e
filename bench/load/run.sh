#!/usr/bin/env bash
# The local stack under load (issue 11 §3), in one go on this machine: the release local stack
# (memory backend) in its own process, and the load generator (`local-stack --bin load`, delivery
# mode) posting `order.completed` events for email + WebSocket to USERS recipients, each with a
# live WebSocket, from CONCURRENCY producers:
#
#   1. closed loop: every producer posts back to back — the most the stack accepts and delivers;
#   2. open loop at RATE events/s: POST → WebSocket frame latency at a fixed arrival rate;
#   3. sustained: SUSTAIN_SECONDS at SUSTAIN_RATE events/s (closed loop when 0), the stack's
#      resident memory sampled every 250 ms — bounded by its retention settings
#      (NOTIFY_LOCAL_RETAIN_EVENTS, NOTIFY_LOCAL_RETAIN_OUTBOX; defaults 50,000 and 2,000).
#
# Each run prints accepted events/s with the HTTP latency, POST → outbox events/s once drained,
# POST → frame p50/p90/p99/max and the stack's memory, and one JSON line (kept in
# bench/load/out/results.jsonl).
#
# Usage: bash bench/load/run.sh
#   env: USERS (1000), CONCURRENCY (64), SECONDS_MEASURED (10), WARMUP (2), RATE (10000),
#        SUSTAIN_SECONDS (60), SUSTAIN_RATE (0: closed loop), ONLY=closed|open|sustained
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
out="$here/out"
mkdir -p "$out/bin"
USERS=${USERS:-1000}
CONCURRENCY=${CONCURRENCY:-64}
SECONDS_MEASURED=${SECONDS_MEASURED:-10}
WARMUP=${WARMUP:-2}
RATE=${RATE:-10000}
SUSTAIN_SECONDS=${SUSTAIN_SECONDS:-60}
SUSTAIN_RATE=${SUSTAIN_RATE:-0}
ONLY=${ONLY:-}
say() { echo "run.sh: $*" >&2; }

# 1. Ours, in release, copied out of the (possibly shared) target directory.
say "building the local stack and the load generator in release"
cargo build --release -p local-stack --bin local-stack --bin load --message-format=json-render-diagnostics \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"], m["executable"])' > "$out/built.txt"
while read -r name exe; do cp "$exe" "$out/bin/$name"; done < "$out/built.txt"

# 2. One stack per run, on a free loopback port, stopped however this script ends.
stack_pid=""
stop_stack() {
  [[ -n "$stack_pid" ]] || return 0
  kill -TERM "$stack_pid" 2>/dev/null || true
  wait "$stack_pid" 2>/dev/null || true
  stack_pid=""
}
trap stop_stack EXIT INT TERM
key="load-$RANDOM$RANDOM"
start_stack() {
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  NOTIFY_ADDR="127.0.0.1:$port" NOTIFY_API_KEYS="$key" NOTIFY_OUTBOX_DIR=none RUST_LOG=warn \
    "$out/bin/local-stack" > "$out/stack.log" 2>&1 &
  stack_pid=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  say "the local stack did not start; see $out/stack.log"
  exit 1
}
load() { # $1: name, then extra arguments for the generator
  local name=$1
  shift
  start_stack
  "$out/bin/load" --url "http://127.0.0.1:$port" --key "$key" --users "$USERS" --concurrency "$CONCURRENCY" \
    --pid "$stack_pid" --name "$name" "$@" | tee -a "$out/results.jsonl"
  stop_stack
}

: > "$out/results.jsonl"
if [[ -z "$ONLY" || "$ONLY" == closed ]]; then
  load closed-loop --warmup "$WARMUP" --duration "$SECONDS_MEASURED"
fi
if [[ -z "$ONLY" || "$ONLY" == open ]]; then
  load "open-loop-$RATE" --warmup "$WARMUP" --duration "$SECONDS_MEASURED" --rate "$RATE"
fi
if [[ -z "$ONLY" || "$ONLY" == sustained ]]; then
  if [[ "$SUSTAIN_RATE" == 0 ]]; then
    load sustained --warmup 0 --duration "$SUSTAIN_SECONDS"
  else
    load sustained --warmup 0 --duration "$SUSTAIN_SECONDS" --rate "$SUSTAIN_RATE"
  fi
fi

# 3. The table.
python3 - "$out/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
print("\n| run | accepted events/s | HTTP p99 | POST→outbox events/s | POST→frame p50 | p90 | p99 | stack memory peak / end |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    d = r["delivered_per_s"]
    print(f"| {r['name']} | {r['accepted_per_s']:,.0f} | {r['http_p99_ms']:.1f} ms | {'not drained' if d is None else f'{d:,.0f}'} "
          f"| {r['frame_p50_ms']:.1f} ms | {r['frame_p90_ms']:.1f} ms | {r['frame_p99_ms']:.1f} ms | {r['rss_peak_mib']:.0f} / {r['rss_end_mib']:.0f} MiB |")
PY
