"""``channel-agent demo``: what a channel's demo is (:class:`Demo`, from
``Channel.demo()``), and what the three plugin demos share: a simulator on loopback and its
secret files (:class:`SimulatorDemo`). Plugins import :class:`Demo` from :mod:`agent.channel`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from agent.secret import Secret
from agent.storage.secretfile import write_secret_file


class Demo(ABC):
    """A running simulator plus the channel configuration that points at it.

    The demo's channel section may declare ``datasets`` read from two freshness sources the
    core provides: ``demo_warehouse`` (a ``sql`` source over a SQLite file seeded from
    :meth:`data_syncs`) and ``demo_pipeline`` (``heartbeat``: ``channel-agent mark-synced``).
    """

    WAREHOUSE_SOURCE: ClassVar[str] = "demo_warehouse"
    HEARTBEAT_SOURCE: ClassVar[str] = "demo_pipeline"

    @abstractmethod
    async def start(self, workdir: Path) -> dict[str, Any]:
        """Start the simulator on loopback; return this channel's config section (plain data)."""

    @abstractmethod
    async def stop(self) -> None: ...

    def describe(self) -> list[str]:
        """Lines printed by ``channel-agent demo`` (URLs, scenario per account)."""
        return []

    def data_syncs(self) -> list[tuple[str, str, float]]:
        """(account, dataset, hours ago) of each last successful data sync, seeded into the
        demo warehouse when the demo starts."""
        return []


class SimulatorDemo(Demo):
    """A :class:`Demo` around a simulator with ``async start(host, port)`` and ``stop()``."""

    simulator: Any
    _started = False

    @staticmethod
    def secrets_dir(workdir: Path) -> Path:
        path = Path(workdir).resolve() / "secrets"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    @staticmethod
    def write_secret(path: Path, value: str) -> str:
        """Write a demo secret file (mode 0600); return its path for the config section."""
        write_secret_file(path, Secret(value))
        return str(path)

    async def start_simulator(self) -> None:
        await self.simulator.start("127.0.0.1", 0)
        self._started = True

    async def stop(self) -> None:
        if self._started:
            await self.simulator.stop()
            self._started = False
