"""What the three plugin demos share: a simulator on loopback and its secret files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.channel import Demo, Secret
from agent.storage.secretfile import write_secret_file


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
