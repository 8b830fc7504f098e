#!/usr/bin/env python3
"""Dollars per million notifications, by component, from measured AWS request counts.

Input: target/aws-requests.json, written by the measurement (tests/aws_cost.rs):

    NOTIFY_FUZZ=0 bash tests/run.sh -E 'binary(aws_cost)' --run-ignored ignored-only --no-capture
    python3 infra/cost.py                      # every scenario measured
    python3 infra/cost.py --log-level warn     # the logs of LogLevel=warn
    python3 -m doctest infra/cost.py           # the model's own checks

For each scenario (single-channel email posted alone, the same in batches of ten, three channels
per event) it prints one table: Lambda (requests and arm64 GB-s, per function), the HTTP API,
SQS FIFO, DynamoDB on-demand (write and read request units, from the items' measured sizes),
CloudWatch Logs ingestion (platform lines, the handlers' info lines, EMF documents), and the same
total with a Lambda function URL as ingest's front door instead of the HTTP API.

What is measured and what is assumed:

- Requests per notification, by stage (ingest, route, send), service and operation: measured on
  moto with the AWS backend, every queue consumed in full batches of ten (see tests/aws_cost.rs).
  SQS `ReceiveMessage` is counted once per batch (the receive that returned it); the mappings'
  empty long polls of idle queues are a fixed cost, not a per-notification one (see FIXED below).
- DynamoDB item sizes: measured (items as stored, scanned after the run). A write costs
  ceil(size / 1 KB) WRU (an update: the larger of the item before and after), a strongly
  consistent read ceil(size / 4 KB) RRU; a failed conditional write still costs its WRU.
- Handler durations: NOT measured on moto (its latencies are not AWS's). Each function's billed
  duration per invocation is modelled as its AWS calls per invocation times the in-region
  latency of each (LATENCY_MS, typical p50 figures), one after the other as the handlers make
  them, plus CPU_MS_PER_RECORD of our own code per record (validate, render: well under 1 ms,
  see the issue's micro-benchmarks), rounded up to the millisecond as Lambda bills.
  Override with --duration-ms ingest=12,route=150,send=600.
- Memory: each function's MemorySize from template.yaml (Globals, else the function's own).
- Log bytes: per invocation, the platform's START/END/REPORT lines; per record, the handler's
  one info line; per invocation, one EMF document per metric the handler records. Sizes below
  (LOG_BYTES) are the lengths of real lines of the local stack and the Lambda runtime.
"""
import argparse
import json
import math
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# --- AWS list prices, us-east-1, as of 2026-12-01 (aws.amazon.com/<service>/pricing). ---------
PRICES_AS_OF = "us-east-1 list prices as published since the November 2024 DynamoDB on-demand cut (first tier, no free tier); written down 2026-12-01, not re-checked online from this machine"
LAMBDA_ARM_GB_SECOND = 0.0000133334  # arm64, first 7.5 billion GB-s a month
LAMBDA_REQUEST = 0.20 / 1e6
HTTP_API_REQUEST = 1.00 / 1e6  # first 300 million a month; each 512 KB of a request is one
FUNCTION_URL_REQUEST = 0.0  # a function URL adds no fee beyond the function's own
SQS_FIFO_REQUEST = 0.50 / 1e6  # every 64 KB chunk of a request's payload is one request
DYNAMODB_WRU = 0.625 / 1e6  # on-demand, after the November 2024 price cut
DYNAMODB_RRU = 0.125 / 1e6
LOGS_INGESTED_GB = 0.50  # CloudWatch Logs standard class; EMF documents are log lines too
EMF_METRIC_MONTH = 0.30  # each custom metric (name + dimension values) a month, first 10,000

# --- Assumptions (see the docstring). ----------------------------------------------------------
LATENCY_MS = {  # in-region, typical p50 of one call
    ("DynamoDB", "GetItem"): 4,
    ("DynamoDB", "PutItem"): 6,
    ("DynamoDB", "UpdateItem"): 6,
    ("DynamoDB", "DeleteItem"): 6,
    ("DynamoDB", "Query"): 6,
    ("SQS", "SendMessageBatch"): 10,
    ("SQS", "DeleteMessageBatch"): 0,  # made by the event source mapping, not billed as duration
    ("SQS", "ChangeMessageVisibility"): 8,
    ("SESv2", "SendEmail"): 40,
    ("SNS", "Publish"): 30,
    ("ApiGatewayManagementApi", "PostToConnection"): 20,
}
DEFAULT_LATENCY_MS = 10
CPU_MS_PER_RECORD = 1.0
LOG_BYTES = {
    "platform_per_invocation": 420,  # START (95) + END (60) + REPORT (~265, Init Duration on cold ones)
    "info_line": {"ingest": 230, "route": 270, "send": 250},  # "event accepted" / "event routed" / "sent"
    "emf_document": 480,  # one metric with its dimensions and _aws metadata
}
EMF_DOCUMENTS = {"ingest": 1, "route": 0, "send": 4}  # EventsAccepted; none (queued at once); NotificationsRouted (its claim creates it), Sent, IngestToSentLatency, ProviderLatency
# Which function each stage's requests run in, and the table its writes go to.
STAGE_FUNCTION = {"ingest": "IngestFunction", "route": "RouterFunction", "send": "SendEmailFunction"}
STAGE_TABLE = {"ingest": "events", "route": "notifications", "send": "notifications"}
FIXED = (
    "Fixed costs, not per notification: the event source mappings' long polls of idle queues "
    "(about 3 ReceiveMessage a minute per poller: ~$0.07 a month per poller), and EMF custom "
    "metrics at ${:.2f} per metric a month (dimension combinations of the 11 metrics: a few dozen)."
).format(EMF_METRIC_MONTH)

DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
DYNAMODB_READS = {"GetItem", "Query", "Scan", "BatchGetItem"}


def memory_sizes(template_text):
    """MemorySize (MB) of every function resource in a SAM template: its own, else Globals'.

    >>> t = "Globals:\\n  Function:\\n    MemorySize: 256\\nResources:\\n  A:\\n    Type: AWS::Serverless::Function\\n    Properties:\\n      MemorySize: 512\\n  B:\\n    Type: AWS::Serverless::Function\\n"
    >>> memory_sizes(t)
    {'A': 512, 'B': 256}
    """
    default, sizes, section, current, is_function = 128, {}, None, None, False
    for line in template_text.splitlines():
        if re.match(r"^\S", line):
            section = line.split(":")[0]
            continue
        m = re.match(r"^    MemorySize:\s*(\d+)", line)
        if section == "Globals" and m:
            default = int(m.group(1))
        if section != "Resources":
            continue
        r = re.match(r"^  (\w+):\s*$", line)
        if r:
            current, is_function = r.group(1), False
            continue
        if re.match(r"^    Type:\s*AWS::Serverless::Function", line):
            is_function = True
            sizes.setdefault(current, None)
        m = re.match(r"^      MemorySize:\s*(\d+)", line)
        if m and current:
            sizes[current] = int(m.group(1))
    return {name: (size or default) for name, size in sizes.items() if size is not None or name in sizes}


def wru(item_bytes):
    """Write request units of one write of an item of `item_bytes`.

    >>> wru(300), wru(1024), wru(1025)
    (1, 1, 2)
    """
    return max(1, math.ceil(item_bytes / 1024))


def rru(item_bytes):
    """Read request units of one strongly consistent read.

    >>> rru(100), rru(4097)
    (1, 2)
    """
    return max(1, math.ceil(item_bytes / 4096))


def billed_ms(requests_per_invocation, records_per_invocation):
    """Modelled billed duration of one invocation: its calls one after another, plus our CPU.

    >>> billed_ms({("DynamoDB", "PutItem"): 1, ("SQS", "SendMessageBatch"): 1}, 1)
    17
    """
    total = CPU_MS_PER_RECORD * records_per_invocation
    for (service, op), n in requests_per_invocation.items():
        total += n * LATENCY_MS.get((service, op), DEFAULT_LATENCY_MS)
    return math.ceil(total)


def model(scenario, memory, durations=None, log_level="info"):
    """Dollars per million notifications of one measured scenario, by component.

    >>> s = {"events": 10, "notifications": 10, "stages": {
    ...   "ingest": {"requests": {"DynamoDB:PutItem": 10, "SQS:SendMessageBatch": 10}, "batches": 0, "records": 10},
    ...   "route": {"requests": {"DynamoDB:GetItem": 10, "DynamoDB:PutItem": 10, "SQS:SendMessageBatch": 10, "SQS:DeleteMessageBatch": 1}, "batches": 1, "records": 10},
    ...   "send": {"requests": {"DynamoDB:UpdateItem": 20, "SESv2:SendEmail": 10, "SQS:DeleteMessageBatch": 1}, "batches": 1, "records": 10}},
    ...   "item_bytes": {"events": {"average": 600, "largest": 900}, "notifications": {"average": 700, "largest": 1000}}}
    >>> m = model(s, {"IngestFunction": 256, "RouterFunction": 256, "SendEmailFunction": 256})
    >>> round(m["DynamoDB writes"], 3), round(m["HTTP API"], 2), m["dynamodb_writes_per_notification"]
    (2.5, 1.0, 4.0)
    """
    per = scenario["notifications"]
    items = scenario.get("item_bytes", {})
    notes = []
    lambda_requests = lambda_compute = 0.0
    sqs = writes = write_units = reads = read_units = log_bytes = 0.0
    ingest_calls = 0
    for stage, data in scenario["stages"].items():
        requests = {tuple(k.split(":", 1)): v for k, v in data["requests"].items()}
        records = data["records"]
        # Ingest runs once per HTTP request; the other stages once per batch.
        invocations = data["batches"] or sum(v for (s, o), v in requests.items() if (s, o) == ("SQS", "SendMessageBatch"))
        if stage == "ingest":
            invocations = ingest_calls = scenario.get("http_requests", scenario["events"])
        per_invocation = {k: v / invocations for k, v in requests.items() if k[0] != "SQS" or k[1] != "DeleteMessageBatch"}
        ms = (durations or {}).get(stage) or billed_ms(per_invocation, records / invocations)
        mb = memory.get(STAGE_FUNCTION[stage], 256)
        lambda_requests += invocations * LAMBDA_REQUEST
        lambda_compute += invocations * ms / 1000 * mb / 1024 * LAMBDA_ARM_GB_SECOND
        size = items.get(STAGE_TABLE[stage], {}).get("largest", 1024)
        for (service, op), n in requests.items():
            if service == "SQS":
                sqs += n
            elif service == "DynamoDB" and op in DYNAMODB_WRITES:
                writes += n
                write_units += n * wru(size)
            elif service == "DynamoDB" and op in DYNAMODB_READS:
                reads += n
                read_units += n * rru(size)
        if stage != "ingest":
            sqs += data["batches"]  # the ReceiveMessage that returned each batch
        log_bytes += invocations * (LOG_BYTES["platform_per_invocation"] + EMF_DOCUMENTS[stage] * LOG_BYTES["emf_document"])
        if log_level in ("info", "debug"):
            log_bytes += records * LOG_BYTES["info_line"][stage]
        notes.append(f"{STAGE_FUNCTION[stage]}: {mb} MB, {ms} ms billed per invocation (modelled), {invocations / per:.3f} invocations per notification")
    million = 1e6 / per
    out = {
        "Lambda requests": lambda_requests * million,
        "Lambda compute (arm64 GB-s)": lambda_compute * million,
        "HTTP API": ingest_calls * HTTP_API_REQUEST * million,
        "SQS FIFO": sqs * SQS_FIFO_REQUEST * million,
        "DynamoDB writes": write_units * DYNAMODB_WRU * million,
        "DynamoDB reads": read_units * DYNAMODB_RRU * million,
        "CloudWatch Logs (incl. EMF)": log_bytes / 1e9 * LOGS_INGESTED_GB * million,
    }
    out["total"] = sum(out.values())
    out["total with a function URL"] = out["total"] - out["HTTP API"] + ingest_calls * FUNCTION_URL_REQUEST * million
    out["dynamodb_writes_per_notification"] = writes / per
    out["sqs_requests_per_notification"] = sqs / per
    out["log_bytes_per_notification"] = log_bytes / per
    out["notes"] = notes
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", default=str(ROOT / "target" / "aws-requests.json"))
    parser.add_argument("--template", default=str(ROOT / "template.yaml"))
    parser.add_argument("--log-level", default="info", choices=["error", "warn", "info", "debug"])
    parser.add_argument("--duration-ms", default="", help="billed ms per invocation by stage, e.g. ingest=12,route=150,send=600")
    args = parser.parse_args()
    try:
        measured = json.loads(pathlib.Path(args.requests).read_text())
    except FileNotFoundError:
        sys.exit(f"{args.requests} not found: run the measurement first (see the top of infra/cost.py)")
    memory = memory_sizes(pathlib.Path(args.template).read_text())
    durations = {k: int(v) for k, v in (p.split("=") for p in args.duration_ms.split(",") if p)}
    print(f"Prices: {PRICES_AS_OF}. Logs at level {args.log_level}. Provider fees (SES, SNS) excluded.")
    for name, scenario in measured.items():
        if name == "item_bytes":
            continue
        scenario = dict(scenario, item_bytes=measured.get("item_bytes", {}))
        if name.endswith("batch10"):
            scenario["http_requests"] = math.ceil(scenario["events"] / 10)
        m = model(scenario, memory, durations, args.log_level)
        unit = "notification" if scenario["notifications"] == scenario["events"] else f"notification ({scenario['notifications'] // scenario['events']} per event)"
        print(f"\n{name}: $ per million, per {unit}")
        for note in m["notes"]:
            print(f"  {note}")
        print(f"  {'component':<32} {'$ / million':>12}")
        for component in ["Lambda requests", "Lambda compute (arm64 GB-s)", "HTTP API", "SQS FIFO", "DynamoDB writes", "DynamoDB reads", "CloudWatch Logs (incl. EMF)"]:
            print(f"  {component:<32} {m[component]:>12.3f}")
        print(f"  {'total':<32} {m['total']:>12.3f}")
        print(f"  {'total, function URL front door':<32} {m['total with a function URL']:>12.3f}")
        if scenario["notifications"] != scenario["events"]:
            k = scenario["notifications"] / scenario["events"]
            print(f"  {'total per million events':<32} {m['total'] * k:>12.3f}")
        print(f"  DynamoDB writes per notification: {m['dynamodb_writes_per_notification']:.2f}; SQS requests: {m['sqs_requests_per_notification']:.2f}; log bytes: {m['log_bytes_per_notification']:.0f}")
    print(f"\n{FIXED}")


if __name__ == "__main__":
    main()
