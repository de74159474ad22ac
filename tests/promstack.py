"""The real Prometheus, Alertmanager, promtool and amtool, for the alerting tests.

The servers run on loopback ports of their own with storage in a temporary directory, so a
system service installed by the Debian packages never gets in the way. Nothing they do leaves
the machine: :func:`offline_alertmanager_config` strips the receivers' integrations.
"""

from __future__ import annotations

import copy
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from agent.config.durations import format_duration, parse_duration
from tests.helpers import REPO, free_port, require_program

RULES = REPO / "deploy" / "prometheus" / "channel-agent.rules.yml"
RULE_TESTS = sorted((REPO / "deploy" / "prometheus" / "tests").glob("*.yml"))
ALERTMANAGER_EXAMPLE = REPO / "deploy" / "alertmanager" / "alertmanager.example.yml"
DASHBOARD = REPO / "grafana" / "dashboards" / "channel-health.json"
RUNBOOKS = REPO / "docs" / "runbooks"


def run(*args: str | Path, **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60,
                          **kwargs)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def job_selectors(path: Path = RULES) -> set[str]:
    """The scrape jobs the rules select by name. ``job="%s"`` is not one: a description's
    template lookup filling in the alert's own job."""
    return set(re.findall(r'job="([^"]+)"', path.read_text())) - {"%s"}


def shorten_for(rules: dict, factor: int = 60) -> dict:
    """A copy of a rule file with every ``for:`` divided by ``factor`` (60: minutes become
    seconds), so an end-to-end test sees alerts fire without waiting for real durations.
    Expressions are left alone: their windows and thresholds stay the shipped ones."""
    rules = copy.deepcopy(rules)
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = format_duration(parse_duration(rule["for"]) / factor)
    return rules


def offline_alertmanager_config(path: Path = ALERTMANAGER_EXAMPLE) -> dict:
    """The example configuration with every receiver reduced to its name: the routes and the
    inhibit rules are the shipped ones, and no notification can leave the machine."""
    config = load_yaml(path)
    config["receivers"] = [{"name": r["name"]} for r in config["receivers"]]
    config.pop("global", None)
    return config


class Server:
    """One server process on a loopback port, ready once ``/-/ready`` answers 200."""

    name = "server"

    def __init__(self, binary: str, workdir: Path, args: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.log = workdir / f"{self.name}.log"
        self.command = [binary, *args, f"--web.listen-address=127.0.0.1:{self.port}"]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.workdir)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"{self.name} exited:\n{self.log.read_text()}"
            try:
                if httpx.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} never became ready:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Alertmanager(Server):
    name = "alertmanager"

    def __init__(self, workdir: Path, config: dict) -> None:
        binary = require_program("prometheus-alertmanager", "alertmanager")
        (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
        (workdir / "am-data").mkdir()
        super().__init__(binary, workdir, [
            "--config.file=alertmanager.yml", "--storage.path=am-data",
            "--cluster.listen-address=",  # no gossip port: a single, private instance
        ])

    def post(self, alerts: list[dict]) -> None:
        response = httpx.post(self.url + "/api/v2/alerts", json=alerts, timeout=5)
        assert response.status_code == 200, response.text

    def alerts(self) -> list[dict]:
        """Every alert Alertmanager holds, active, inhibited or silenced."""
        response = httpx.get(self.url + "/api/v2/alerts", timeout=5)
        response.raise_for_status()
        return response.json()


class Prometheus(Server):
    name = "prometheus"

    def __init__(self, workdir: Path, rules: dict, targets: list[str],
                 alertmanager: str | None = None, interval: str = "1s") -> None:
        binary = require_program("prometheus")
        (workdir / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
        config: dict[str, Any] = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval,
                       "evaluation_interval": interval},
            "rule_files": ["rules.yml"],
            "scrape_configs": [{"job_name": "channel-agent",
                                "static_configs": [{"targets": targets}]}],
        }
        if alertmanager:
            config["alerting"] = {"alertmanagers": [
                {"static_configs": [{"targets": [alertmanager.removeprefix("http://")]}]}]}
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        (workdir / "prom-data").mkdir()
        super().__init__(binary, workdir, [
            "--config.file=prometheus.yml", "--storage.tsdb.path=prom-data",
        ])

    def api(self, path: str, **params: Any) -> Any:
        """The ``data`` of a successful API answer; an AssertionError with Prometheus's own
        message otherwise (a bad query is a 400 with ``error``)."""
        response = httpx.get(self.url + "/api/v1/" + path, params=params, timeout=10)
        body = response.json()
        assert body.get("status") == "success", f"{path} {params}: {body.get('error', body)}"
        return body["data"]

    def alerts(self) -> list[dict]:
        """Pending and firing alerts."""
        return self.api("alerts")["alerts"]
