"""What the process-level tests share: free ports, a real agent process, simulator configs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from channel_agent_amazon_ads.simulator import SimAccount, Simulator, SimulatorThread
from prometheus_client.parser import text_string_to_metric_families

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def without_venv_on_path() -> dict[str, str]:
    """The environment of a fresh shell in which the virtualenv is not activated."""
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and Path(p).resolve() != BIN.resolve()]
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return env | {"PATH": os.pathsep.join(path or ["/usr/bin", "/bin"])}


def require_program(*names: str) -> str:
    """The path of the first of ``names`` installed (the venv's bin first). Missing: a failure
    in CI (`make test` installs it there, so a skip would hide a broken set-up), a skip
    elsewhere."""
    search = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    for name in names:
        path = shutil.which(name, path=search)
        if path:
            return path
    message = (f"{' or '.join(names)} is not installed "
               "(make test installs it: scripts/system-deps.sh)")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def write_sim_config(tmp: Path, sim: Simulator, client_secret: str,
                     accounts: dict[str, tuple[str, str]], freshness: dict | None = None,
                     channels: dict[str, Any] | None = None, **agent: Any) -> Path:
    """Add ``accounts`` (name -> (region, scenario)) to ``sim``, one profile each, write
    their tokens and the client secret under ``tmp/secrets`` and a config pointing at
    ``sim`` (which must be started) to ``tmp/config.yaml``; ``agent`` overrides settings,
    ``freshness`` (``{"freshness_sources": ..., "datasets": ...}``) adds data sets and
    ``channels`` more channels next to amazon_ads."""
    secrets_dir = tmp / "secrets"
    secrets_dir.mkdir(exist_ok=True)
    (secrets_dir / "client_secret").write_text(client_secret + "\n")
    configured = []
    for i, (name, (region, scenario)) in enumerate(accounts.items()):
        account = SimAccount.create(name, region, [1000 + i], scenario)
        sim.add_account(account)
        (secrets_dir / f"{name}.token").write_text(account.refresh_token + "\n")
        configured.append({"name": name, "region": region, "expected_profiles": [1000 + i],
                           "refresh_token_file": f"secrets/{name}.token",
                           "labels": {"merchant": name.split("-")[0]}})
    freshness = freshness or {}
    config = {
        "agent": {"state_path": "var/agent.db", "check_interval": "1h", "check_timeout": "4s",
                  **agent},
        "freshness_sources": freshness.get("freshness_sources", {}),
        "channels": {"amazon_ads": {
            "client_id": sim.client_id, "client_secret_file": "secrets/client_secret",
            "endpoints": sim.endpoints(),
            "retry": {"initial_backoff": "200ms", "max_backoff": "1s"},
            "datasets": freshness.get("datasets", {}),
            "accounts": configured,
        }, **(channels or {})},
    }
    path = tmp / "config.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


class Agent:
    """One `channel-agent run` process; logs go to a file the tests read.

    ``args`` are more command-line flags; ``client`` are httpx options for talking to it
    (``verify``, ``auth``) and ``scheme`` is https when a web config turns TLS on.
    """

    def __init__(self, config: Path, port: int, log: Path, args: tuple[str, ...] = (),
                 scheme: str = "http", **client: Any) -> None:
        self.config, self.port, self.log, self.args = config, port, log, args
        self.url = f"{scheme}://127.0.0.1:{port}"
        self.client = client
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.spawn()
        try:
            self.wait_ready()
        except BaseException:  # no fixture teardown stops it: it would run (and check) for good
            self.proc.kill()
            self.proc.wait()
            raise

    def spawn(self) -> None:
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                [BIN / "channel-agent", "run", "--config", self.config,
                 "--web.listen-address", f"127.0.0.1:{self.port}", *self.args],
                stdout=log, stderr=subprocess.STDOUT,
            )

    def wait_ready(self) -> None:
        # A crashed agent fails at once (poll below); the deadline only catches a hang. Its
        # start costs 2-4 s of CPU (the secret stores' imports), which took over 15 s with
        # two pytest workers on 2 cores shared with other work (load average 9).
        deadline = time.monotonic() + 60
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

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, **{"timeout": 5, **self.client, **kwargs})

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + path, **{"timeout": 30, **self.client, **kwargs})

    def recheck(self, account: str, channel: str = "amazon_ads") -> dict:
        response = self.post("/api/v1/recheck", json={"channel": channel, "account": account})
        response.raise_for_status()
        return response.json()

    def post_heartbeat(self, account: str, dataset: str, last_updated: str | float) -> None:
        """Report a sync of ``dataset`` as the pipeline would (``POST /api/v1/freshness``)."""
        response = httpx.post(self.url + "/api/v1/freshness", json={
            "channel": "amazon_ads", "account": account, "dataset": dataset,
            "last_updated": last_updated}, timeout=5)
        assert response.status_code == 204, response.text

    def status(self) -> dict:
        return self.get("/api/v1/status").json()

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


def start_agent(tmp: Path, sections: dict[str, Any], **agent: Any) -> Agent:
    """`channel-agent run` on a free loopback port with ``sections`` (channels, secret
    stores...) written to ``tmp/config.yaml`` (state in ``tmp/agent.db``, checks every hour,
    ``agent`` overrides those settings), ready."""
    port = free_port()
    config = {"agent": {"listen_address": f"127.0.0.1:{port}", "state_path": "agent.db",
                        "check_interval": "1h", "check_timeout": "4s", **agent}, **sections}
    path = tmp / "config.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    running = Agent(path, port, tmp / "agent.log")
    running.start()
    return running


@contextmanager
def simulated_fleet(tmp: Path, scenarios: dict[str, tuple[str, str]], client_secret: str,
                    freshness: dict | None = None, channels: dict[str, Any] | None = None,
                    **agent_settings: Any) -> Iterator[SimpleNamespace]:
    """The simulator with one account per ``{name: (region, scenario)}`` and a running agent
    checking them (see :func:`write_sim_config`); yields ``sim``, ``agent`` and ``config``."""
    sim = Simulator(client_secret=client_secret, slow_seconds=2, retry_after=1)
    thread = SimulatorThread(sim)
    thread.start()
    config = write_sim_config(tmp, sim, client_secret, scenarios, freshness, channels,
                              **agent_settings)
    agent = Agent(config, free_port(), tmp / "agent.log")
    try:
        agent.start()
        yield SimpleNamespace(sim=sim, agent=agent, config=config)
    finally:
        agent.stop()
        thread.stop()
