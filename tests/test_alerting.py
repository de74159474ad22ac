"""The shipped alert rules, Alertmanager example, runbooks and dashboard, checked by the real
promtool, amtool and Alertmanager (the end-to-end run is in test_alerting_e2e.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from agent.reasons import APPLICATION, MERCHANT, PERMISSION, REASON_CLASSES
from tests.promstack import (
    ALERTMANAGER_EXAMPLE,
    DASHBOARD,
    RULE_TESTS,
    RULES,
    RUNBOOKS,
    Alertmanager,
    load_yaml,
    offline_alertmanager_config,
    require_program,
    run,
)

SEVERITIES = {"critical", "warning", "info"}
DATE_COLUMNS = ("Last check", "Last valid", "Refresh token expires")
RUNBOOK_SECTIONS = ("## Meaning", "## Likely causes", "## Confirm", "## Fix", "## Afterwards")


def alert_rules() -> list[tuple[str, dict]]:
    """(group name, rule) for every alerting rule of the shipped file."""
    return [(group["name"], rule) for group in load_yaml(RULES)["groups"]
            for rule in group["rules"] if "alert" in rule]


ALERTS = sorted({rule["alert"] for _, rule in alert_rules()})


# ------------------------------------------------------------------------- rules, promtool

def test_rules_pass_promtool_check():
    promtool = require_program("promtool")
    result = run(promtool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(g["rules"]) for g in load_yaml(RULES)["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests(test_file):
    promtool = require_program("promtool")
    result = run(promtool, "test", "rules", test_file.name, cwd=test_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_each_alert_group_has_a_test_file_that_fires_and_stays_quiet():
    """tests/<group>.test.yml for group channel-agent.<group>; each of its alerts is seen
    firing and seen quiet at least once."""
    groups = {g for g, _ in alert_rules()}
    by_file = {p.name: load_yaml(p) for p in RULE_TESTS}
    assert sorted(by_file) == sorted(f"{g.removeprefix('channel-agent.')}.test.yml"
                                     for g in groups)
    for group in groups:
        tests = by_file[f"{group.removeprefix('channel-agent.')}.test.yml"]["tests"]
        checks = [c for t in tests for c in t.get("alert_rule_test", [])]
        for alert in {r["alert"] for g, r in alert_rules() if g == group}:
            mine = [c for c in checks if c["alertname"] == alert]
            assert any(c["exp_alerts"] for c in mine), f"{alert} is never seen firing"
            assert any(not c["exp_alerts"] for c in mine), f"{alert} is never seen quiet"
        assert {c["alertname"] for c in checks} <= {r["alert"] for g, r in alert_rules()
                                                   if g == group}


@pytest.mark.parametrize("group,rule", alert_rules(),
                         ids=[f"{r['alert']}-{r['labels']['severity']}" for _, r in alert_rules()])
def test_alert_conventions(group, rule):
    name = rule["alert"]
    assert re.fullmatch(r"Channel(?:[A-Z][a-z0-9]+)+", name), name
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert {"summary", "description", "runbook_url"} <= set(annotations)
    assert annotations["runbook_url"].endswith(f"/{name}.md"), annotations["runbook_url"]
    assert "channel_alerts_runbook_info" in annotations["runbook_url"]
    assert (RUNBOOKS / f"{name}.md").is_file()
    assert "for" in rule, "every alert waits a little: no page for a blip"


def test_every_for_duration_is_listed_in_the_header():
    """The header is where users look for tunables: it must say what the file does."""
    header = RULES.read_text().split("\ngroups:", 1)[0]
    for _, rule in alert_rules():
        rows = [line for line in header.splitlines() if f"{rule['alert']}, for:" in line]
        assert rows, f"{rule['alert']}'s for: is not in the header"
        assert rule["for"] in rows[0].split(), (rule["alert"], rule["for"], rows[0])


def test_credential_alert_leaves_permission_and_application_classes_to_other_alerts():
    """ChannelCredentialInvalid pages for a dead credential only: the classes it leaves out
    are the agent's permission and application classes, each with an alert of its own."""
    rules = {r["alert"]: r for _, r in alert_rules()}
    excluded = re.search(r'class=~"([\w|]+)"', rules["ChannelCredentialInvalid"]["expr"])[1]
    assert sorted(excluded.split("|")) == sorted([PERMISSION, APPLICATION, MERCHANT])
    assert 'class="permission"' in rules["ChannelCredentialPermissionLost"]["expr"]
    assert 'class="application"' in rules["ChannelApplicationRejected"]["expr"]
    assert set(excluded.split("|")) < set(REASON_CLASSES)


def test_runbook_base_url_is_defined_once():
    text = RULES.read_text()
    records = [r for g in load_yaml(RULES)["groups"] for r in g["rules"]
               if r.get("record") == "channel_alerts_runbook_info"]
    assert len(records) == 1 and records[0]["labels"]["base_url"].startswith("https://")
    assert text.count(records[0]["labels"]["base_url"]) == 1


# ------------------------------------------------------------------------- Alertmanager

def test_alertmanager_example_passes_amtool():
    amtool = require_program("amtool")
    result = run(amtool, "check-config", ALERTMANAGER_EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "8 inhibit rules" in result.stdout


@pytest.mark.parametrize("severity,receiver", [("critical", "sre-pager"),
                                               ("warning", "sre-tickets"),
                                               ("info", "blackhole")])
def test_alertmanager_example_routes_by_severity(severity, receiver):
    amtool = require_program("amtool")
    result = run(amtool, "config", "routes", "test",
                 f"--config.file={ALERTMANAGER_EXAMPLE}", "alertname=ChannelCredentialInvalid",
                 f"severity={severity}", "channel=amazon_ads", "account=acme-us")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_alertmanager_example_routes_merchant_account_states_apart():
    """A frozen Shopify shop goes to the people who talk to merchants, not to the pager."""
    amtool = require_program("amtool")
    result = run(amtool, "config", "routes", "test",
                 f"--config.file={ALERTMANAGER_EXAMPLE}",
                 "alertname=ChannelMerchantAccountUnavailable", "severity=warning",
                 "team=merchant-success", "channel=shopify", "account=initech-shop",
                 "reason=shop_frozen")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "merchant-success"


def _alert(name: str, severity: str, **labels: str) -> dict:
    now = datetime.now(UTC)
    return {"labels": {"alertname": name, "severity": severity, **labels},
            "annotations": {"summary": name},
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=10)).isoformat()}


def test_inhibit_rules_mute_symptoms_while_the_cause_fires(tmp_path):
    """The shipped inhibit rules in a real Alertmanager: alerts posted through its API."""
    acme = {"channel": "amazon_ads", "account": "acme-us", "region": "na"}
    globex = {"channel": "amazon_ads", "account": "globex-eu", "region": "eu"}
    walmart = {"channel": "walmart", "account": "w-1", "region": "us"}
    umbrella = {"channel": "amazon_ads", "account": "umbrella-fe", "region": "fe"}
    initech = {"channel": "shopify", "account": "initech-shop"}
    posted = {
        # cause: acme-us's credential is rejected
        "invalid acme": _alert("ChannelCredentialInvalid", "critical", **acme),
        "stale acme": _alert("ChannelDataStale", "warning", dataset="sp_campaigns_daily",
                             **acme),
        "profile acme": _alert("ChannelTargetInaccessible", "warning", target_kind="profile",
                               target="1", **acme),
        "stale globex": _alert("ChannelDataStale", "warning", dataset="sp_campaigns_daily",
                               **globex),
        # cause: umbrella-fe's consent lacks a profile (a permission, not a dead credential)
        "permission umbrella": _alert("ChannelCredentialPermissionLost", "warning",
                                      reason="profile_missing", **umbrella,
                                      **{"class": "permission"}),
        "profile umbrella": _alert("ChannelTargetInaccessible", "warning",
                                   target_kind="profile", target="4", **umbrella),
        "stale umbrella": _alert("ChannelDataStale", "warning", dataset="sp_campaigns_daily",
                                 **umbrella),
        # cause: walmart's client id/secret is rejected
        "client walmart": _alert("ChannelClientCredentialInvalid", "critical",
                                 channel="walmart"),
        "invalid walmart": _alert("ChannelCredentialInvalid", "critical", **walmart),
        "permission walmart": _alert("ChannelCredentialPermissionLost", "warning",
                                     reason="marketplace_missing", **walmart,
                                     **{"class": "permission"}),
        "stale walmart": _alert("ChannelDataStale", "warning", dataset="orders", **walmart),
        # most of shop's accounts fail with one reason (no region label: shop has none)
        "together shop": _alert("ChannelCredentialsFailingTogether", "critical",
                                channel="shop", reason="unauthorized", **{"class": "credential"}),
        "invalid shop": _alert("ChannelCredentialInvalid", "critical", channel="shop",
                               account="s-1"),
        "stale shop": _alert("ChannelDataStale", "warning", channel="shop", account="s-1",
                             dataset="orders"),
        # under 7 days the critical expiry alert replaces the warning one
        "expiry acme warning": _alert("ChannelRefreshTokenExpiringSoon", "warning", **acme),
        "expiry acme critical": _alert("ChannelRefreshTokenExpiringSoon", "critical", **acme),
        "expiry globex warning": _alert("ChannelRefreshTokenExpiringSoon", "warning", **globex),
        # a Shopify shop is frozen: its stale data is the shop's doing
        "frozen initech": _alert("ChannelMerchantAccountUnavailable", "warning",
                                 reason="shop_frozen", **initech),
        "stale initech": _alert("ChannelDataStale", "warning", dataset="orders_daily",
                                **initech),
        # a replica of job channel-agent is down, so its shard is missing too
        "agent down": _alert("ChannelAgentDown", "critical", job="channel-agent",
                             instance="channel-agent-2:9877"),
        "shard missing": _alert("ChannelAgentShardMissing", "critical", job="channel-agent",
                                count="3"),
        "shard missing eu": _alert("ChannelAgentShardMissing", "critical",
                                   job="channel-agent-eu", count="2"),
    }
    muted = {"stale acme", "profile acme", "invalid walmart", "stale walmart", "invalid shop",
             "stale shop", "profile umbrella", "stale umbrella", "permission walmart",
             "expiry acme warning", "shard missing", "stale initech"}
    with Alertmanager(tmp_path, offline_alertmanager_config()) as am:
        am.post(list(posted.values()))
        key = {json.dumps(a["labels"], sort_keys=True): name for name, a in posted.items()}
        deadline = time.monotonic() + 15
        while True:
            got = {key[json.dumps(a["labels"], sort_keys=True)]: a["status"]
                   for a in am.alerts()}
            inhibited = {name for name, status in got.items() if status["inhibitedBy"]}
            if (len(got) == len(posted) and inhibited == muted) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert set(got) == set(posted)
    assert inhibited == muted
    for name in set(posted) - muted:
        assert got[name]["state"] == "active", name


# ------------------------------------------------------------------------- runbooks

@pytest.mark.parametrize("alert", ALERTS)
def test_runbook_answers_the_on_call_questions(alert):
    text = (RUNBOOKS / f"{alert}.md").read_text()
    assert text.startswith(f"# {alert}\n")
    for section in RUNBOOK_SECTIONS:
        assert f"\n{section}\n" in text, f"{alert}.md has no {section}"
    assert "```promql" in text, "how to confirm: the PromQL"
    assert "channel-agent " in text, "how to confirm and fix: the exact commands"


def test_every_runbook_belongs_to_an_alert():
    assert sorted(p.stem for p in RUNBOOKS.glob("*.md") if p.stem != "README") == ALERTS


def runbook_blocks(language: str) -> list[tuple[str, str]]:
    """(runbook, code) for every fenced block of ``language`` in the runbooks."""
    found = []
    for path in sorted(RUNBOOKS.glob("*.md")):
        for block in re.findall(rf"```{language}\n(.*?)```", path.read_text(), re.S):
            found.append((path.stem, block))
    return found


def test_runbook_commands_exist():
    help_text = subprocess.run([Path(sys.executable).parent / "channel-agent", "--help"],
                               capture_output=True, text=True, check=True).stdout
    commands = set(re.findall(r"^  ([a-z][a-z-]*)\s", help_text.split("Commands:")[1], re.M))
    used = {line.split()[1] for _, block in runbook_blocks("sh")
            for line in map(str.strip, block.splitlines()) if line.startswith("channel-agent ")}
    assert used, "the runbooks show no channel-agent command"
    unknown = used - commands
    assert not unknown, f"runbooks use commands that do not exist: {sorted(unknown)}"


# ------------------------------------------------------------------------- dashboard

def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels() -> list[dict]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def test_dashboard_variables():
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert {"datasource", "channel", "region", "account"} <= set(variables)
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("channel", "region", "merchant", "account"):
        assert variables[name]["datasource"]["uid"] == "${datasource}"
        assert variables[name]["multi"] and variables[name]["includeAll"]
    # accounts of the chosen merchants: a label of channel_account_info, joined on
    assert "channel_account_info" in variables["merchant"]["definition"]
    assert 'group_left(merchant) channel_account_info{merchant=~"$merchant"}' in \
        variables["account"]["definition"]


@pytest.mark.parametrize("panel", dashboard_panels(), ids=lambda p: p["title"])
def test_dashboard_panel_structure(panel):
    assert panel["title"].strip()
    assert panel["fieldConfig"]["defaults"].get("unit"), "every panel sets a unit"
    assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert panel["targets"]
    for target in panel["targets"]:
        assert target["datasource"]["uid"] == "${datasource}"
        assert target["expr"].strip()
    for override in panel["fieldConfig"]["overrides"]:
        props = {p["id"]: p["value"] for p in override["properties"]}
        if props.get("displayName") in DATE_COLUMNS:
            assert props.get("unit") == "dateTimeAsIso", "timestamps show as dates"


def test_dashboard_layout_and_rows():
    board = dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == ["Fleet overview", "Accounts", "Refresh tokens", "Data freshness",
                    "Check failures", "API requests and throttling", "Agent health", "Agent load"]
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24
    overview = [p for p in dashboard_panels() if p["type"] == "stat"][:4]
    assert [p["title"] for p in overview] == ["Accounts", "Valid", "Invalid", "Unverified"]
    table = next(p for p in dashboard_panels() if p["title"] == "Every account")
    columns = {prop["value"] for o in table["fieldConfig"]["overrides"]
               for prop in o["properties"] if prop["id"] == "displayName"}
    assert {"State", "Worst data staleness", *DATE_COLUMNS} <= columns


def test_grafana_provisioning_files():
    root = DASHBOARD.parent.parent / "provisioning"
    datasources = yaml.safe_load((root / "datasources" / "prometheus.yml").read_text())
    assert datasources["apiVersion"] == 1
    assert [d["type"] for d in datasources["datasources"]] == ["prometheus"]
    providers = yaml.safe_load((root / "dashboards" / "channel-health.yml").read_text())
    assert providers["apiVersion"] == 1
    assert providers["providers"][0]["type"] == "file"
    assert providers["providers"][0]["options"]["path"].startswith("/")


def test_a_missing_program_fails_in_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name, path=None: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="scripts/system-deps.sh"):
        require_program("promtool")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        require_program("promtool")
