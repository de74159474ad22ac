"""The real agent process against the Amazon simulator on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from channel_agent_amazon_ads.simulator import SimAccount, Simulator, SimulatorThread
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
CLIENT_SECRET = "PLANTED-client-secret-5f0c1d"
SCENARIOS = {
    "healthy-na": ("na", "healthy"),
    "revoked-eu": ("eu", "revoked"),
    "forbidden-fe": ("fe", "forbidden"),
    "throttled-na": ("na", "throttled"),
    "broken-eu": ("eu", "server_error"),
    "html-fe": ("fe", "html_gateway"),
    "leaky-na": ("na", "leaky_errors"),  # a provider echoing the secrets it was sent
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent:
    """One `channel-agent run` process; logs go to a file the tests read.

    ``args`` are more command-line flags; ``client`` are httpx options for talking to it
    (``verify``, ``auth``) and ``scheme`` is https when a web config turns TLS on.
    """

    def __init__(self, config: Path, port: int, log: Path, args: tuple[str, ...] = (),
                 scheme: str = "http", **client) -> None:
        self.config, self.port, self.log, self.args = config, port, log, args
        self.url = f"{scheme}://127.0.0.1:{port}"
        self.client = client
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                [BIN / "channel-agent", "run", "--config", self.config,
                 "--web.listen-address", f"127.0.0.1:{self.port}", *self.args],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if self.get("/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.1)
        raise AssertionError("agent never became ready:\n" + self.log.read_text())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.url + path, **{"timeout": 5, **self.client, **kwargs})

    def post(self, path: str, **kwargs) -> httpx.Response:
        return httpx.post(self.url + path, **{"timeout": 30, **self.client, **kwargs})

    def recheck(self, account: str) -> dict:
        response = self.post("/api/v1/recheck", json={"channel": "amazon_ads", "account": account})
        response.raise_for_status()
        return response.json()

    def metrics(self) -> str:
        return self.get("/metrics").text

    def sample(self, name: str, account: str, **labels: str) -> float | None:
        for family in text_string_to_metric_families(self.metrics()):
            for s in family.samples:
                if s.name == name and s.labels.get("account") == account and all(
                    s.labels.get(k) == v for k, v in labels.items()
                ):
                    return s.value
        return None


def simulated_accounts(sim: Simulator, directory: Path,
                       scenarios: dict[str, tuple[str, str]]) -> list[dict]:
    """Add one simulator account per scenario; their config entries (token files under
    ``directory/secrets``, relative to a config file in ``directory``)."""
    secrets_dir = directory / "secrets"
    secrets_dir.mkdir(exist_ok=True)
    (secrets_dir / "client_secret").write_text(sim.client_secret + "\n")
    accounts = []
    for name, (region, scenario) in scenarios.items():
        profile = 1000 + len(sim.accounts)
        account = SimAccount.create(name, region, [profile], scenario)
        sim.add_account(account)
        (secrets_dir / f"{name}.token").write_text(account.refresh_token + "\n")
        accounts.append({"name": name, "region": region, "expected_profiles": [profile],
                         "refresh_token_file": f"secrets/{name}.token"})
    return accounts


def write_agent_config(path: Path, sim: Simulator, accounts: list[dict], **agent) -> Path:
    """A configuration file checking ``accounts`` against the simulator ``sim``."""
    config = {
        "agent": {"state_path": "var/agent.db", "check_interval": "1h", "check_timeout": "4s",
                  **agent},
        "channels": {"amazon_ads": {
            "client_id": sim.client_id, "client_secret_file": "secrets/client_secret",
            "endpoints": sim.endpoints(),
            "retry": {"initial_backoff": "200ms", "max_backoff": "1s"},
            "accounts": accounts,
        }},
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("world")
    sim = Simulator(client_secret=CLIENT_SECRET, slow_seconds=2, retry_after=1)
    accounts = simulated_accounts(sim, tmp, SCENARIOS)
    thread = SimulatorThread(sim)
    thread.start()
    config_path = write_agent_config(tmp / "config.yaml", sim, accounts)
    agent = Agent(config_path, free_port(), tmp / "agent.log")
    agent.start()
    for name in SCENARIOS:
        agent.recheck(name)
    yield {"sim": sim, "agent": agent, "tmp": tmp, "config": config_path}
    agent.stop()
    thread.stop()


def test_each_scenario_is_classified(world):
    agent = world["agent"]
    assert agent.sample("channel_credential_valid", "healthy-na") == 1
    assert agent.sample("channel_credential_valid", "revoked-eu") == 0
    assert agent.sample("channel_credential_failure_reason", "revoked-eu",
                        reason="invalid_grant") == 1
    assert agent.sample("channel_credential_valid", "forbidden-fe") == 0
    assert agent.sample("channel_profile_accessible", "forbidden-fe", profile_id="1002") == 0
    for name, reason in (("throttled-na", "throttled"), ("broken-eu", "server_error"),
                         ("html-fe", "server_error")):
        assert agent.sample("channel_credential_check_success", name) == 0
        assert agent.sample("channel_credential_valid", name) is None  # never concluded
        assert agent.sample("channel_credential_failure_reason", name, reason=reason) == 1


def test_transient_failure_keeps_last_conclusive_value(world):
    agent, sim = world["agent"], world["sim"]
    sim.set_scenario("healthy-na", "server_error")
    try:
        after = agent.recheck("healthy-na")["after"]
        assert after["state"] == "unverified" and after["reason"] == "server_error"
        assert agent.sample("channel_credential_valid", "healthy-na") == 1
        assert agent.sample("channel_credential_check_success", "healthy-na") == 0
    finally:
        sim.set_scenario("healthy-na", "healthy")
    assert agent.recheck("healthy-na")["after"]["state"] == "valid"


def test_revocation_flips_a_valid_account(world):
    agent, sim = world["agent"], world["sim"]
    sim.set_scenario("throttled-na", "healthy")
    assert agent.recheck("throttled-na")["after"]["valid"] is True
    sim.set_scenario("throttled-na", "revoked")
    result = agent.recheck("throttled-na")
    assert result["before"]["valid"] is True
    assert result["after"]["valid"] is False and result["after"]["reason"] == "invalid_grant"
    assert agent.sample("channel_credential_valid", "throttled-na") == 0


def test_metrics_pass_promtool(world):
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI (make test installs it)")
        pytest.skip("promtool not installed (make test installs it)")
    result = subprocess.run([promtool, "check", "metrics"], input=world["agent"].metrics(),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_endpoints(world):
    url = world["agent"].url
    assert httpx.get(url + "/-/healthy").status_code == 200
    page = httpx.get(url + "/").text
    assert "revoked-eu" in page and "invalid_grant" in page and "/metrics" in page
    status = httpx.get(url + "/api/v1/status").json()
    assert {a["account"] for a in status["accounts"]} == set(SCENARIOS)
    bad = httpx.post(url + "/api/v1/recheck", json={"channel": "amazon_ads"})
    assert bad.status_code == 400 and bad.json()["field"] == "account"
    assert httpx.post(url + "/api/v1/recheck",
                      json={"channel": "amazon_ads", "account": "nope"}).status_code == 404
    requests = {
        (s.labels["endpoint"], s.labels["code"])
        for f in text_string_to_metric_families(world["agent"].metrics())
        for s in f.samples if s.name == "channel_agent_api_requests_total"
    }
    assert ("token", "200") in requests and ("token", "400") in requests


def test_restart_serves_restored_state_at_once(world):
    agent = world["agent"]
    before = httpx.get(agent.url + "/api/v1/status").json()["accounts"]
    agent.stop()
    agent.start()  # check_interval is 1h: nothing is checked again before we look
    after = httpx.get(agent.url + "/api/v1/status").json()["accounts"]
    key = ("account", "valid", "reason", "last_check", "last_valid", "refresh_token_issued")
    assert [{k: a[k] for k in key} for a in after] == [{k: a[k] for k in key} for a in before]
    assert agent.sample("channel_credential_valid", "revoked-eu") == 0
    assert agent.sample("channel_credential_last_valid_timestamp_seconds", "healthy-na") > 0


# Every endpoint, with the requests the secret test sends to it. A new route must be added
# here (test_no_secret_leaves_the_process fails until it is).
def _endpoint_requests(accounts) -> dict[tuple[str, str], list[dict]]:
    return {
        ("GET", "/"): [{}],
        ("GET", "/metrics"): [{}],
        ("GET", "/api/v1/status"): [{}],
        ("GET", "/-/healthy"): [{}],
        ("GET", "/-/ready"): [{}],
        ("POST", "/api/v1/recheck"): [
            *({"json": {"channel": "amazon_ads", "account": name}} for name in accounts),
            {"json": {"channel": "amazon_ads", "account": CLIENT_SECRET}},
            {"content": b"{not json " + CLIENT_SECRET.encode()},
            {"content": b"[" * 5000},
        ],
        ("POST", "/-/reload"): [{}],
    }


def _command_args(config: Path, url: str, broken: Path) -> dict[str, list[list[str]]]:
    """Every command and how the secret test runs it (``run`` is the agent itself)."""
    return {
        "check": [["--config", str(config), "--json"],
                  ["--config", str(config), "--account", "leaky-na"],
                  ["--config", str(broken)]],
        "status": [["--url", url], ["--url", url, "--json"]],
        "plugins": [[], ["--json"]],
        "config check": [[str(config)], [str(broken)]],
        "run": [["--config", str(broken)]],
        "demo": [],  # test_no_secret_leaves_the_demo
    }


def _commands(group, prefix="") -> set[str]:
    import click

    names = set()
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        names |= _commands(command, f"{path} ") if isinstance(command, click.Group) else {path}
    return names


def test_no_secret_leaves_the_process(world):
    from agent.cli import build_cli
    from agent.web import make_app

    agent, sim, tmp, config = world["agent"], world["sim"], world["tmp"], world["config"]
    outputs: dict[str, str] = {}

    requests = _endpoint_requests(("healthy-na", "revoked-eu", "leaky-na"))
    routes = {(r.method, r.resource.canonical) for r in make_app(None).router.routes()
              if r.method != "HEAD"}
    assert routes == set(requests), "add the new endpoint to _endpoint_requests"
    for (method, path), variants in requests.items():
        for i, kwargs in enumerate(variants):
            response = httpx.request(method, agent.url + path, timeout=30, **kwargs)
            outputs[f"{method} {path} #{i}"] = str(response.headers) + response.text
    for path in ("/nope", "/api/v1/recheck"):  # a 404 and a 405
        outputs[f"GET {path}"] = httpx.get(agent.url + path).text

    original = config.read_text()
    data = json.loads(original)
    section = data["channels"]["amazon_ads"]
    section["client_secret"] = CLIENT_SECRET  # given both ways: a problem, never its value
    section["client_secrett"] = CLIENT_SECRET
    broken = tmp / "broken-with-secrets.yaml"
    broken.write_text(json.dumps(data))
    try:
        config.write_text(json.dumps(data))
        outputs["POST /-/reload (bad config)"] = httpx.post(agent.url + "/-/reload").text
        agent.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
    finally:
        config.write_text(original)
    assert httpx.post(agent.url + "/-/reload").status_code == 200

    commands = _command_args(config, agent.url, broken)
    assert _commands(build_cli()) == set(commands), "add the new command to _command_args"
    for command, variants in commands.items():
        for args in variants:
            result = subprocess.run([BIN / "channel-agent", *command.split(), *args],
                                    capture_output=True, text=True, timeout=60)
            outputs[f"{command} {' '.join(args)}"] = result.stdout + result.stderr
    outputs["log"] = agent.log.read_text()
    outputs["state"] = (tmp / "var" / "agent.db").read_bytes().decode("latin-1")

    planted = [CLIENT_SECRET, *(a.refresh_token for a in sim.accounts), *sim._tokens]
    assert "revoked-eu" in outputs["check --config " + str(config) + " --json"]
    assert "client_secrett" in outputs["POST /-/reload (bad config)"]
    assert "configuration reload failed" in outputs["log"]
    for name, text in outputs.items():
        for secret in planted:
            assert secret not in text, f"a secret leaked into {name}"
        assert "Atza|" not in text.replace("Atza|***", ""), f"an access token leaked into {name}"


def test_no_secret_leaves_the_demo(tmp_path):
    port = free_port()
    demo = subprocess.Popen(
        [BIN / "channel-agent", "demo", "--web.listen-address", f"127.0.0.1:{port}",
         "--check-interval", "2s", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    pages = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(pages) < 3:
            time.sleep(0.5)
            try:
                status = httpx.get(url + "/api/v1/status").json()
            except httpx.HTTPError:
                continue
            if all(a["last_check"] for a in status["accounts"]):
                pages = [httpx.get(url + path).text for path in ("/", "/metrics")]
                pages.append(httpx.post(url + "/api/v1/recheck", timeout=30, json={
                    "channel": "amazon_ads", "account": "acme-us"}).text)
    finally:
        demo.send_signal(signal.SIGINT)
        output = demo.communicate(timeout=15)[0]
    assert len(pages) == 3, output
    secrets_dir = tmp_path / "amazon_ads" / "secrets"
    planted = [p.read_text().strip() for p in secrets_dir.iterdir()]
    assert len(planted) >= 10
    for text in [output, *pages, (tmp_path / "agent.db").read_bytes().decode("latin-1")]:
        for secret in planted:
            assert secret not in text


def test_check_exit_codes(world):
    config = str(world["config"])
    ok = subprocess.run([BIN / "channel-agent", "check", "--config", config,
                         "--account", "healthy-na"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run([BIN / "channel-agent", "check", "--config", config,
                          "--account", "revoked-eu"], capture_output=True, text=True)
    assert bad.returncode == 1 and "invalid_grant" in bad.stdout
    broken = world["tmp"] / "broken.yaml"
    broken.write_text("agent:\n  check_intervall: 5m\nchannels: {}\n")
    err = subprocess.run([BIN / "channel-agent", "check", "--config", str(broken)],
                         capture_output=True, text=True)
    assert err.returncode == 2 and "check_intervall" in err.stderr
