"""End to end: the agent checks the Amazon simulator; the real Prometheus scrapes it with the
shipped rules and sends alerts to the real Alertmanager running the shipped example.

Prometheus scrapes and evaluates every second. A rule's ``for:`` cannot be changed by
configuration, so the rules are loaded with every ``for:`` divided by 60 (minutes become
seconds: :func:`tests.promstack.shorten_for`). Everything else is the shipped text:
expressions, labels, annotations, routes and inhibit rules.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import simulated_fleet
from tests.promstack import (
    RULES,
    Alertmanager,
    Prometheus,
    load_yaml,
    offline_alertmanager_config,
    shorten_for,
)
from tests.test_alerting import dashboard, dashboard_panels, runbook_blocks

pytestmark = pytest.mark.integration

SCENARIOS = {
    "healthy-na": ("na", "healthy"),
    "revoked-eu": ("eu", "revoked"),
    "forbidden-fe": ("fe", "forbidden"),
    "throttled-na": ("na", "throttled"),
}
# The dashboard's variables as a user would pick them: one job and channel, every region and
# account ("All" is the regex .*), and what Grafana puts in for its interval macros.
DASHBOARD_VARIABLES = {
    "$__rate_interval": "15s",
    "$__interval": "5s",
    "$channel": "amazon_ads",
    "$account": ".*",
    "$region": ".*",
    "$job": "channel-agent",
}


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def find(alerts: list[dict], alertname: str, account: str | None = None) -> dict | None:
    for alert in alerts:
        labels = alert["labels"]
        if labels["alertname"] == alertname and labels.get("account") == account:
            return alert
    return None


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("alerting")
    for name in ("fleet", "am", "prom"):
        (tmp / name).mkdir()
    with simulated_fleet(tmp / "fleet", SCENARIOS, "e2e-client-secret", check_interval="5s",
                         check_timeout="2s") as fleet:
        am = Alertmanager(tmp / "am", offline_alertmanager_config())
        prom = Prometheus(tmp / "prom", shorten_for(load_yaml(RULES)),
                          [f"127.0.0.1:{fleet.agent.port}"], alertmanager=am.url)
        with am, prom:
            expected = [("ChannelCredentialInvalid", "revoked-eu"),
                        ("ChannelCredentialInvalid", "forbidden-fe"),
                        ("ChannelProfileInaccessible", "forbidden-fe")]
            try:
                wait_for(lambda: all(find(am.alerts(), *e) for e in expected), 60,
                         "the alerts to reach Alertmanager")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; Prometheus has {prom.alerts()}") from None
            yield SimpleNamespace(agent=fleet.agent, am=am, prom=prom)


def test_revoked_account_alert_reaches_alertmanager(stack):
    alert = find(stack.am.alerts(), "ChannelCredentialInvalid", "revoked-eu")
    assert alert["status"]["state"] == "active"
    assert {k: alert["labels"][k] for k in ("severity", "channel", "region", "job")} == {
        "severity": "critical", "channel": "amazon_ads", "region": "eu", "job": "channel-agent"}
    annotations = alert["annotations"]
    assert annotations["summary"] == "amazon_ads rejects the credential of account revoked-eu (eu)"
    assert "reason invalid_grant" in annotations["description"]
    assert "channel-agent reconnect amazon_ads --account revoked-eu" in annotations["description"]
    base = next(r for g in load_yaml(RULES)["groups"] for r in g["rules"]
                if r.get("record") == "channel_alerts_runbook_info")["labels"]["base_url"]
    assert annotations["runbook_url"] == f"{base}/ChannelCredentialInvalid.md"


def test_healthy_and_transient_accounts_raise_nothing(stack):
    pending_or_firing = stack.prom.alerts()
    assert not [a for a in pending_or_firing if a["labels"].get("account") == "healthy-na"]
    assert not find(pending_or_firing, "ChannelCredentialInvalid", "throttled-na")
    accounts = {a["labels"].get("account") for a in stack.am.alerts()} - {None}
    assert accounts == {"revoked-eu", "forbidden-fe"}


def test_lost_profile_is_told_through_the_credential_alert(stack):
    alerts = stack.am.alerts()
    profile = find(alerts, "ChannelProfileInaccessible", "forbidden-fe")
    cause = find(alerts, "ChannelCredentialInvalid", "forbidden-fe")
    assert profile["labels"]["profile_id"] == "1002"
    assert profile["status"]["state"] == "suppressed"
    assert profile["status"]["inhibitedBy"] == [cause["fingerprint"]]
    assert "reason forbidden" in cause["annotations"]["description"]
    assert "Profiles it cannot reach: 1002." in cause["annotations"]["description"]


def fill_in(expr: str) -> str:
    for name, value in DASHBOARD_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown variable in {expr}"
    return expr


def exported_names(agent) -> set[str]:
    return {s.name for f in text_string_to_metric_families(agent.metrics()) for s in f.samples}


def test_every_dashboard_query_runs_and_returns_data(stack):
    """Panels whose metrics the agent does not export (yet: the data-freshness series come
    with data sets and freshness sources) may be empty; every other query must return data."""
    exported = exported_names(stack.agent)
    now = time.time()
    errors, empty, may_be_empty = [], [], []
    for panel in dashboard_panels():
        for target in panel["targets"]:
            name = f"{panel['title']} [{target['refId']}]"
            expr = fill_in(target["expr"])
            try:
                if target["instant"]:
                    result = stack.prom.api("query", query=expr)["result"]
                else:
                    result = stack.prom.api("query_range", query=expr, start=now - 30,
                                            end=now, step=1)["result"]
            except AssertionError as exc:
                errors.append(f"{name}: {exc}")
                continue
            if not result:
                absent = {m for m in re.findall(r"\b(?:channel|process)_\w+", expr)
                          if m not in exported}
                (may_be_empty if absent else empty).append(f"{name}: {sorted(absent)}")
    assert not errors
    assert not empty, "queries over exported metrics returned nothing"
    print("empty because the agent does not export these metrics:", *may_be_empty, sep="\n  ")


def test_dashboard_variables_list_the_fleet(stack):
    """Each variable's label_values() query, as Grafana runs it against Prometheus."""
    expected = {"job": ["channel-agent"], "channel": ["amazon_ads"],
                "region": ["eu", "fe", "na"], "account": sorted(SCENARIOS)}
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
        selector, label = fill_in(match[1]), match[2]
        values = stack.prom.api(f"label/{label}/values", **{"match[]": selector})
        assert sorted(values) == expected[variable["name"]], variable["name"]


@pytest.mark.parametrize("runbook,query", runbook_blocks("promql"),
                         ids=[r for r, _ in runbook_blocks("promql")])
def test_runbook_queries_run(stack, runbook, query):
    stack.prom.api("query", query=query)
