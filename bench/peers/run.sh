#!/usr/bin/env bash
# The peer comparison (issue 11 §2), in one go on this machine:
#   (a) in process: parse + validate (envelope, payload schema) + render every default channel,
#       over the same N mixed events (tests/benches/mix.rs), for ours (Rust, the criterion
#       bench binary in its in-process mode), Python (Pydantic v2 + jsonschema + Jinja2) and
#       Node (Ajv + nunjucks): events/s and our ratio to each;
#   (b) over HTTP: POST /v1/events under the same load generator (local-stack's `load` binary:
#       64 connections posting the mix for a fixed time) against the release local stack
#       (memory backend), FastAPI + uvicorn (2 workers, uvloop, httptools) and Fastify
#       (node:cluster, 2 workers): requests/s, latency p50/p90/p99, errors, and our ratios.
#
# It installs what it needs: bench/peers/.venv from requirements.txt (every package pinned),
# bench/peers/node/node_modules with `npm ci` (package-lock.json), and builds ours in release.
#
# Usage: bash bench/peers/run.sh
#   env: EVENTS (10000), INPROC_SECONDS (3), HTTP_SECONDS (10), HTTP_WARMUP (2),
#        CONCURRENCY (64), ONLY=inproc|http (one half), PYTHON (python3)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
out="$here/out"
mkdir -p "$out/bin"
EVENTS=${EVENTS:-10000}
INPROC_SECONDS=${INPROC_SECONDS:-3}
HTTP_SECONDS=${HTTP_SECONDS:-10}
HTTP_WARMUP=${HTTP_WARMUP:-2}
CONCURRENCY=${CONCURRENCY:-64}
ONLY=${ONLY:-}
say() { echo "run.sh: $*" >&2; }
sha256() { if command -v sha256sum >/dev/null; then sha256sum "$1"; else shasum -a 256 "$1"; fi | cut -d' ' -f1; }

# 1. The peers' dependencies, installed once and again when their pins change.
venv="$here/.venv"
if [[ ! -x "$venv/bin/python" || "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$(sha256 "$here/requirements.txt")" ]]; then
  say "installing the Python peer (requirements.txt) into $venv"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  sha256 "$here/requirements.txt" > "$venv/.requirements.sha256"
fi
if [[ ! -d "$here/node/node_modules" || "$(cat "$here/node/node_modules/.lock.sha256" 2>/dev/null)" != "$(sha256 "$here/node/package-lock.json")" ]]; then
  say "installing the Node peer (npm ci)"
  (cd "$here/node" && npm ci --no-audit --no-fund --loglevel=error)
  sha256 "$here/node/package-lock.json" > "$here/node/node_modules/.lock.sha256"
fi

# 2. Ours, in release: the criterion bench binary (in-process mode) and the local stack and the
#    load generator. Copied out of the (possibly shared) target directory before use.
executables() { "$venv/bin/python" -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"], m["executable"])'; }
say "building ours in release"
cargo bench -p notify-tests --bench hot_paths --no-run --message-format=json-render-diagnostics | executables > "$out/built.txt"
cargo build --release -p local-stack --bin local-stack --bin load --message-format=json-render-diagnostics | executables >> "$out/built.txt"
while read -r name exe; do
  case "$name" in hot_paths|local-stack|load) cp "$exe" "$out/bin/$name" ;; esac
done < "$out/built.txt"

# 3. The event mix, the same file for all three.
NOTIFY_BENCH_WRITE_MIX="$out/events.jsonl" NOTIFY_BENCH_EVENTS="$EVENTS" "$out/bin/hot_paths"

table() { # $1: results file (JSON lines), $2: kind
  "$venv/bin/python" - "$1" "$2" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {r.get("impl") or r.get("name"): r for r in rows}
ours = by.get("ours") or by.get("rust")
if sys.argv[2] == "inproc":
    print(f"\nValidate + render in process, {ours['events']} mixed events ({ours['messages_per_pass']} messages a pass), one core each:\n")
    print("| implementation | events/s | ours ÷ it |")
    print("|---|---:|---:|")
    for name, label in [("rust", "ours (Rust: serde_json, jsonschema, MiniJinja)"), ("python", "Python 3.11: Pydantic v2 + jsonschema + Jinja2"), ("node", "Node 20: Ajv + nunjucks")]:
        r = by[name]
        print(f"| {label} | {r['events_per_s']:,.0f} | {ours['events_per_s'] / r['events_per_s']:.1f}× |")
else:
    print(f"\nPOST /v1/events over HTTP, {ours['concurrency']} connections, {ours['seconds']:.0f} s (after a warm-up), the same load generator:\n")
    print("| server | requests/s | p50 | p90 | p99 | max | errors | ours ÷ it (req/s) | its p99 ÷ ours |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, label in [("ours", "ours: local stack, release, memory backend"), ("fastapi", "FastAPI + uvicorn (2 workers, uvloop, httptools)"), ("fastify", "Fastify (node:cluster, 2 workers)")]:
        r = by[name]
        print(f"| {label} | {r['rps']:,.0f} | {r['p50_ms']:.2f} ms | {r['p90_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {r['max_ms']:.1f} ms | {r['errors']} | {ours['rps'] / r['rps']:.2f}× | {r['p99_ms'] / ours['p99_ms']:.2f}× |")
PY
}

# 4. (a) In process.
if [[ "$ONLY" != "http" ]]; then
  : > "$out/inproc.jsonl"
  say "in process: ours"
  NOTIFY_BENCH_INPROC="$out/events.jsonl" NOTIFY_BENCH_SECONDS="$INPROC_SECONDS" "$out/bin/hot_paths" >> "$out/inproc.jsonl"
  say "in process: Python"
  "$venv/bin/python" "$here/python/peer.py" "$root/catalog" "$out/events.jsonl" "$INPROC_SECONDS" >> "$out/inproc.jsonl"
  say "in process: Node"
  node "$here/node/peer.js" "$root/catalog" "$out/events.jsonl" "$INPROC_SECONDS" >> "$out/inproc.jsonl"
  table "$out/inproc.jsonl" inproc | tee "$out/inproc.md"
fi

# 5. (b) Over HTTP: each server started in its own process group, loaded, then stopped.
if [[ "$ONLY" != "inproc" ]]; then
  key="bench-$RANDOM$RANDOM"
  server_pid=""
  stop_server() {
    [[ -n "$server_pid" ]] || return 0
    kill -TERM -- "-$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 -- "-$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  }
  trap stop_server EXIT
  free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
  load() { # $1 name, $2 port
    for _ in $(seq 1 300); do listening "$2" && break; sleep 0.1; done
    listening "$2" || { say "$1 did not start; see $out/$1.log"; cat "$out/$1.log" >&2; exit 1; }
    say "HTTP: $1 on 127.0.0.1:$2"
    "$out/bin/load" --name "$1" --url "http://127.0.0.1:$2" --key "$key" --concurrency "$CONCURRENCY" \
      --duration "$HTTP_SECONDS" --warmup "$HTTP_WARMUP" >> "$out/http.jsonl"
    stop_server
  }
  : > "$out/http.jsonl"
  port=$(free_port)
  setsid env NOTIFY_API_KEYS="$key" NOTIFY_BACKEND=memory NOTIFY_OUTBOX_DIR=none RUST_LOG=warn \
    "$out/bin/local-stack" --addr "127.0.0.1:$port" > "$out/ours.log" 2>&1 &
  server_pid=$!
  load ours "$port"
  port=$(free_port)
  (cd "$here/python" && exec setsid env NOTIFY_CATALOG_DIR="$root/catalog" NOTIFY_API_KEYS="$key" \
    "$venv/bin/uvicorn" app:app --host 127.0.0.1 --port "$port" --workers 2 --loop uvloop --http httptools \
    --no-access-log --log-level warning) > "$out/fastapi.log" 2>&1 &
  server_pid=$!
  load fastapi "$port"
  port=$(free_port)
  setsid env NOTIFY_CATALOG_DIR="$root/catalog" NOTIFY_API_KEYS="$key" PORT="$port" WORKERS=2 \
    node "$here/node/server.js" > "$out/fastify.log" 2>&1 &
  server_pid=$!
  load fastify "$port"
  table "$out/http.jsonl" http | tee "$out/http.md"
fi
say "results: $out (inproc.jsonl, http.jsonl, inproc.md, http.md)"
