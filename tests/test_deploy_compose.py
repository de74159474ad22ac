"""deploy/compose/: what can be checked without pulling or building an image.

Every file the stack mounts exists; Prometheus's config, laid out as the containers see it,
passes `promtool check config` (rules included); the Alertmanager config passes
`amtool check-config`; the services point at each other by their compose names.
"""

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml

from tests.helpers import REPO, require_program
from tests.promstack import job_selectors

COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def bind_mounts(service: str) -> list[tuple[Path, PurePosixPath]]:
    """(source on this machine, target in the container) of each bind mount."""
    mounts = []
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((COMPOSE_DIR / source).resolve(), PurePosixPath(target)))
    return mounts


def lay_out(service: str, root: Path, under: str) -> None:
    """Copy the service's bind mounts below ``under`` in the container to ``root``."""
    for source, target in bind_mounts(service):
        if PurePosixPath(under) in target.parents:
            destination = root / target.relative_to(under)
            destination.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, destination)
            else:
                shutil.copy(source, destination)


def flag(service: str, name: str) -> str:
    [value] = [c.split("=", 1)[1] for c in SERVICES[service]["command"]
               if c.startswith(f"--{name}=")]
    return value


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_mounted_file_exists(service):
    """Some of these come with the alerting rules and dashboards (issue 5)."""
    missing = [str(source.relative_to(REPO)) for source, _ in bind_mounts(service)
               if not source.exists()]
    assert missing == []


def test_the_agent_is_built_from_this_repository_and_serves_the_demo_on_all_interfaces():
    agent = SERVICES["agent"]
    context = (COMPOSE_DIR / agent["build"]["context"]).resolve()
    assert context == REPO and (context / agent["build"]["dockerfile"]).is_file()
    command = agent["command"]
    assert command[0] == "demo"
    assert command[command.index("--web.listen-address") + 1] == "0.0.0.0:9877"
    workdir = command[command.index("--workdir") + 1]
    assert any(workdir.startswith(v.split(":")[1]) for v in agent["volumes"])


def test_images_are_pinned_and_ports_stay_on_loopback():
    for name, service in SERVICES.items():
        if "build" not in service:
            assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", service["image"]), name
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_prometheus_config_passes_promtool_with_the_rules_mounted(tmp_path):
    promtool = require_program("promtool")
    config = PurePosixPath(flag("prometheus", "config.file"))
    lay_out("prometheus", tmp_path, str(config.parent))
    result = subprocess.run([promtool, "check", "config", str(tmp_path / config.name)],
                            capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SUCCESS: 1 rule files found" in output  # the shipped rules were loaded and checked


def test_prometheus_scrapes_the_agent_and_alerts_to_alertmanager():
    prometheus = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    targets = {job["job_name"]: [t for s in job["static_configs"] for t in s["targets"]]
               for job in prometheus["scrape_configs"]}
    assert targets["channel-agent"] == ["agent:9877"]
    [alerting] = prometheus["alerting"]["alertmanagers"]
    [target] = alerting["static_configs"][0]["targets"]
    assert target.split(":")[0] in SERVICES and target.endswith(":9093")


def test_the_alerts_watch_the_job_that_scrapes_the_agent():
    prometheus = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    [job] = [j["job_name"] for j in prometheus["scrape_configs"]
             if j["static_configs"][0]["targets"] == ["agent:9877"]]
    assert job_selectors() == {job}


def test_alertmanager_config_passes_amtool(tmp_path):
    amtool = require_program("amtool")
    config = PurePosixPath(flag("alertmanager", "config.file"))
    lay_out("alertmanager", tmp_path, str(config.parent))
    result = subprocess.run([amtool, "check-config", str(tmp_path / config.name)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_points_at_the_compose_prometheus_and_dashboards():
    mounts = dict((str(target), source) for source, target in bind_mounts("grafana"))
    provisioning = mounts["/etc/grafana/provisioning"]
    datasources = [d for f in sorted((provisioning / "datasources").glob("*.y*ml"))
                   for d in yaml.safe_load(f.read_text()).get("datasources", [])]
    assert [d["url"] for d in datasources if d["type"] == "prometheus"] == [
        "http://prometheus:9090"]
    providers = [p for f in sorted((provisioning / "dashboards").glob("*.y*ml"))
                 for p in yaml.safe_load(f.read_text()).get("providers", [])]
    assert providers
    for provider in providers:  # each reads a mounted directory holding dashboards
        path = PurePosixPath(provider["options"]["path"])
        [(source, target)] = [(source, target) for source, target in bind_mounts("grafana")
                              if target == path or target in path.parents]
        assert list((source / path.relative_to(target)).rglob("*.json")), path
