#!/usr/bin/env python3
"""Copies infra/dashboard.json into template.yaml as the dashboard's DashboardBody.

infra/dashboard.json is the source of truth: edit it (or build it in the CloudWatch console and
paste its "source" here), then run `python3 infra/sync-dashboard.py`. The body is a CloudFormation
`Fn::Sub` string, so `${AWS::Region}`, `${AWS::StackName}` and `${<FunctionLogicalId>}` are
filled in at deploy time. tests/template.rs fails when the two differ.
"""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
BODY = ROOT / "infra" / "dashboard.json"
START = "      DashboardBody:\n        Fn::Sub: |\n"
INDENT = " " * 10


def main() -> int:
    template = TEMPLATE.read_text()
    body = BODY.read_text().rstrip() + "\n"
    at = template.find(START)
    if at < 0:
        print("template.yaml has no 'DashboardBody: Fn::Sub: |' block", file=sys.stderr)
        return 1
    begin = at + len(START)
    end = begin
    lines = template[begin:].splitlines(keepends=True)
    for line in lines:  # the block ends at the first line indented less than the body
        if line.strip() and not line.startswith(INDENT):
            break
        end += len(line)
    block = "".join(INDENT + line if line.strip() else "\n" for line in body.splitlines(keepends=True))
    updated = template[:begin] + block + template[end:]
    if updated != template:
        TEMPLATE.write_text(updated)
        print("template.yaml: dashboard body updated")
    else:
        print("template.yaml: dashboard body already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
