#!/usr/bin/env python3
"""Copies infra/dashboard.json into template.yaml as the dashboard's DashboardBody.

infra/dashboard.json is the source of truth: edit it (or build the dashboard in the CloudWatch
console and paste its "source" here), then run

    python3 infra/sync-dashboard.py           # rewrite the DashboardBody block of template.yaml
    python3 infra/sync-dashboard.py --check   # only say whether the two differ (exit 1 if so)

The body is a CloudFormation `Fn::Sub` string, so `${AWS::Region}`, `${AWS::StackName}` and
`${<FunctionLogicalId>}` (the function's name) are filled in at deploy time; a literal `${` would
have to be written `${!`. Before writing, the file is checked: JSON once its placeholders are
filled, and every `${Name}` a resource or pseudo parameter of the template. tests/template.rs
fails when the template and the file differ. Python 3 standard library only.
"""
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
BODY = ROOT / "infra" / "dashboard.json"
START = "      DashboardBody:\n        Fn::Sub: |\n"
INDENT = " " * 10
PLACEHOLDER = re.compile(r"\$\{([^}!][^}]*)\}")


def problems_of(body: str, template: str) -> list:
    """What would make the body a broken dashboard or a failing Fn::Sub."""
    problems = []
    try:
        json.loads(PLACEHOLDER.sub("X", body))
    except json.JSONDecodeError as e:
        problems.append(f"{BODY.name} is not JSON (placeholders filled in): {e}")
    resources = set(re.findall(r"^  ([A-Za-z0-9]+):\s*$", template, flags=re.MULTILINE))
    for name in sorted(set(PLACEHOLDER.findall(body))):
        logical_id = name.split(".")[0]
        if not (name.startswith("AWS::") or logical_id in resources):
            problems.append(f"${{{name}}} is neither a pseudo parameter nor a resource of template.yaml")
    return problems


def main() -> int:
    check_only = sys.argv[1:] == ["--check"]
    if sys.argv[1:] and not check_only:
        print(__doc__, file=sys.stderr)
        return 2
    template = TEMPLATE.read_text()
    body = BODY.read_text().rstrip() + "\n"
    problems = problems_of(body, template)
    if problems:
        for p in problems:
            print(f"infra/sync-dashboard.py: {p}", file=sys.stderr)
        return 1
    at = template.find(START)
    if at < 0:
        print("infra/sync-dashboard.py: template.yaml has no 'DashboardBody:\\n  Fn::Sub: |' block", file=sys.stderr)
        return 1
    begin = at + len(START)
    # The block runs to the last line indented as its body; blank lines after it are not part of it.
    end = begin
    offset = begin
    for line in template[begin:].splitlines(keepends=True):
        if line.strip() and not line.startswith(INDENT):
            break
        offset += len(line)
        if line.strip():
            end = offset
    block = "".join(INDENT + line if line.strip() else "\n" for line in body.splitlines(keepends=True))
    updated = template[:begin] + block + template[end:]
    if updated == template:
        print("template.yaml: dashboard body already up to date")
        return 0
    if check_only:
        print("template.yaml: dashboard body differs from infra/dashboard.json; run python3 infra/sync-dashboard.py")
        return 1
    TEMPLATE.write_text(updated)
    print("template.yaml: dashboard body updated from infra/dashboard.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
