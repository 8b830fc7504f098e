#!/usr/bin/env python3
"""Cold-start init time, RSS after one invocation and binary size of every function.

Serves a minimal Lambda Runtime API on loopback, starts each function's release binary with
AWS_LAMBDA_RUNTIME_API pointing at it, and measures:

- init: time from process start to the function's first GET /runtime/invocation/next (its
  cold start: configuration read, SDK clients built, catalog loaded), over --runs starts;
- one invocation of the function's first sample in events/lambda/<function>/, its outcome, and
  VmRSS / VmHWM from /proc/<pid>/status once the answer is posted;
- the binary's size.

Binaries: --bin-dir holds either <dir>/<function>/bootstrap (cargo lambda build --release) or
<dir>/<function> (cargo build --release). They must run on this machine (x86_64 here; the
deployed arm64 build is the same code).

The invocation talks to AWS through AWS_ENDPOINT_URL: give --endpoint the URL of an emulator in
which the tables and queues of template.yaml exist under --stack-name, e.g. (see events/README.md)

    .venv/bin/python localstack/moto_server.py --port 5000 &
    AWS_ENDPOINT_URL=http://127.0.0.1:5000 AWS_REGION=eu-west-1 AWS_ACCESS_KEY_ID=test \\
      AWS_SECRET_ACCESS_KEY=test cargo run -p local-stack -- --backend aws --provision --stack-name notify &
    python3 infra/lambda-figures.py --bin-dir target/release --endpoint http://127.0.0.1:5000

Without --endpoint the invocations still run, against an address that refuses connections, so
their outcome is an error; init time and RSS are still measured.
"""
import argparse
import http.server
import json
import os
import pathlib
import statistics
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
FUNCTIONS = ["ingest", "api", "router", "scheduler", "send-email", "send-sms", "send-push",
             "ws-push", "ws-connect", "ws-disconnect", "dead-letter"]
SAMPLE_KEY_HASH = "2974f632b7ce2c2d758f50711e545648ec21bba8dc05103892c1f314e7787fec"
SAMPLE_WS_SECRET = "sample-ws-token-secret-0123456789abcdef"


class Run:
    """One process's conversation with the runtime API."""

    def __init__(self, event: bytes):
        self.event = event
        self.started = time.perf_counter()
        self.first_next = None
        self.nexts = 0
        self.outcome = None
        self.answered = threading.Event()
        self.first_next_seen = threading.Event()
        self.deliver = threading.Event()  # set to hand out the event on the first /next


CURRENT: Run | None = None


class RuntimeApi(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        run = CURRENT
        if not self.path.endswith("/runtime/invocation/next") or run is None:
            self.send_error(404)
            return
        run.nexts += 1
        if run.nexts == 1:
            run.first_next = time.perf_counter()
            run.first_next_seen.set()
            run.deliver.wait()
            body = run.event
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Lambda-Runtime-Aws-Request-Id", "8476a536-e9f4-11e8-9739-2dfe598c3fcd")
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30_000))
            self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:eu-west-1:123456789012:function:notify-sample")
            self.send_header("Lambda-Runtime-Trace-Id", "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the process was killed after its init was measured
        else:
            time.sleep(3600)  # the next invocation never comes; the process is killed

    def do_POST(self):
        run = CURRENT
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if run is not None and "/response" in self.path:
            run.outcome = ("response", body)
        elif run is not None and "/error" in self.path:
            run.outcome = ("error", body)
        self.send_response(202)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
        if run is not None:
            run.answered.set()


def environment(function: str, port: int, endpoint: str | None, stack: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_LAMBDA_")}
    endpoint = endpoint or "http://127.0.0.1:9"
    env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "AWS_LAMBDA_FUNCTION_NAME": f"{stack}-{function}",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{stack}/{function}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "figures",
        "AWS_REGION": env.get("AWS_REGION", "eu-west-1"),
        "AWS_ACCESS_KEY_ID": env.get("AWS_ACCESS_KEY_ID", "test"),
        "AWS_SECRET_ACCESS_KEY": env.get("AWS_SECRET_ACCESS_KEY", "test"),
        "AWS_ENDPOINT_URL": endpoint,
        "RUST_LOG": "warn",
        "NOTIFY_METRICS_NAMESPACE": f"Notify/{stack}",
        "NOTIFY_QUEUE_URL_PREFIX": f"{endpoint}/123456789012/{stack}-",
        "NOTIFY_IDEMPOTENCY_TABLE": f"{stack}-idempotency",
        "NOTIFY_EVENTS_TABLE": f"{stack}-events",
        "NOTIFY_NOTIFICATIONS_TABLE": f"{stack}-notifications",
        "NOTIFY_USERS_TABLE": f"{stack}-users",
        "NOTIFY_CONNECTIONS_TABLE": f"{stack}-connections",
        "NOTIFY_SUPPRESSIONS_TABLE": f"{stack}-suppressions",
        "NOTIFY_RATE_LIMITS_TABLE": f"{stack}-rate-limits",
        "NOTIFY_DEAD_LETTERS_TABLE": f"{stack}-dead-letters",
        "NOTIFY_API_KEYS_TABLE": f"{stack}-api-keys",
        "NOTIFY_API_KEY_HASHES": SAMPLE_KEY_HASH,
        "NOTIFY_WS_TOKEN_SECRET": SAMPLE_WS_SECRET,
        "NOTIFY_EMAIL_FROM": "no-reply@example.com",
        "NOTIFY_PUSH_FCM_APPLICATION_ARN": "arn:aws:sns:eu-west-1:123456789012:app/GCM/notify-fcm",
        "NOTIFY_WS_MANAGEMENT_ENDPOINT": "http://127.0.0.1:9",
        "NOTIFY_PUBLIC_BASE_URL": "https://api.example.com",
    })
    return env


def binary(bin_dir: pathlib.Path, function: str) -> pathlib.Path:
    for candidate in (bin_dir / function / "bootstrap", bin_dir / function):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"no binary for {function} in {bin_dir}")


def memory(pid: int) -> tuple[int, int]:
    fields = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


def outcome_text(outcome) -> str:
    if outcome is None:
        return "no answer"
    kind, body = outcome
    if kind == "error":
        return "error: " + body.decode(errors="replace")[:60]
    try:
        answer = json.loads(body)
    except ValueError:
        return "response"
    if isinstance(answer, dict) and "batchItemFailures" in answer:
        failures = len(answer["batchItemFailures"])
        return "ok" if failures == 0 else f"{failures} batch item failures"
    if isinstance(answer, dict) and "statusCode" in answer:
        return f"HTTP {answer['statusCode']}"
    return "response"


def measure(function: str, exe: pathlib.Path, port: int, args) -> dict:
    global CURRENT
    samples = sorted((ROOT / "events" / "lambda" / function).glob("*.json"), key=lambda p: (p.stem == "health", p.name))
    sample = samples[0]  # a real piece of work rather than the health check
    event = sample.read_bytes()
    env = environment(function, port, args.endpoint, args.stack_name)
    inits = []
    result = {}
    for attempt in range(args.runs):
        run = Run(event)
        CURRENT = run
        run.started = time.perf_counter()
        process = subprocess.Popen([str(exe)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            if not run.first_next_seen.wait(30):
                raise SystemExit(f"{function}: no request to the runtime API within 30 s: {process.stderr.read1(2000)!r}")
            inits.append((run.first_next - run.started) * 1000)
            if attempt == 0:
                run.deliver.set()
                run.answered.wait(30)
                time.sleep(0.05)  # let it go back to /next
                rss, hwm = memory(process.pid)
                result.update(outcome=outcome_text(run.outcome), rss_kib=rss, hwm_kib=hwm, sample=sample.name)
        finally:
            run.deliver.set()
            process.kill()
            process.wait()
    CURRENT = None
    result.update(init_median_ms=statistics.median(inits), init_max_ms=max(inits), size=exe.stat().st_size)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", required=True, type=pathlib.Path)
    parser.add_argument("--endpoint", help="AWS endpoint (an emulator with the template's tables and queues)")
    parser.add_argument("--stack-name", default="notify")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("functions", nargs="*", default=FUNCTIONS)
    args = parser.parse_args()

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass  # a measured process is killed mid-conversation on purpose

    server = Server(("127.0.0.1", 0), RuntimeApi)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]

    print(f"{'function':<14} {'size':>9} {'init p50':>9} {'init max':>9} {'RSS':>9} {'peak RSS':>9}  invocation")
    for function in args.functions:
        r = measure(function, binary(args.bin_dir, function), port, args)
        print(f"{function:<14} {r['size'] / 2**20:>7.1f}Mi {r['init_median_ms']:>7.1f}ms {r['init_max_ms']:>7.1f}ms "
              f"{r['rss_kib'] / 1024:>7.1f}Mi {r['hwm_kib'] / 1024:>7.1f}Mi  {r['sample']}: {r['outcome']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
