#!/usr/bin/env python3
"""Write deploy/kubernetes/base/prometheusrule.yaml from deploy/prometheus/channel-agent.rules.yml.

The Prometheus Operator takes alerting rules as a PrometheusRule object; plain Prometheus
takes the rules file. Both must say the same, so the PrometheusRule is generated from the
rules file (the whole file, comments included, as its spec) and a test keeps them
identical. Run it after every change to the rules file:

    .venv/bin/python scripts/gen-prometheusrule.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "deploy" / "prometheus" / "channel-agent.rules.yml"
OUTPUT = REPO / "deploy" / "kubernetes" / "base" / "prometheusrule.yaml"


_HEAD = """\
# Generated from {source} by scripts/gen-prometheusrule.py: do not edit.
# Set in an overlay (deploy/kubernetes/example/ does both):
# - the label your Prometheus's ruleSelector wants;
# - the runbook base URL: the label base_url of the record channel_alerts_runbook_info (the
#   first rule of the first group) is a placeholder, https://git.example.com/...; point it at
#   where docs/runbooks/ of your copy is browsable, or every alert's runbook link is dead.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: channel-agent
  labels:
    app.kubernetes.io/name: channel-agent
spec:
"""


def render(rules_text: str, source: str) -> str:
    """The rules file, comments and layout kept, indented under the PrometheusRule's spec."""
    rules = yaml.safe_load(rules_text)
    if not isinstance(rules, dict) or set(rules) != {"groups"} or not isinstance(
        rules["groups"], list
    ):
        raise ValueError(f"{source}: expected a Prometheus rules file: a 'groups' list only")
    body = "".join(f"  {line}" if line.strip() else line
                   for line in rules_text.splitlines(keepends=True))
    text = _HEAD.format(source=source) + body
    if yaml.safe_load(text)["spec"] != rules:  # e.g. a document marker or a directive
        raise ValueError(f"{source}: cannot be embedded unchanged; write it as one plain "
                         "YAML document")
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=Path, default=RULES)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    try:
        source = args.rules.resolve().relative_to(REPO).as_posix()
    except ValueError:
        source = args.rules.name
    try:
        text = render(args.rules.read_text(encoding="utf-8"), source)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
