"""Run ``channel-agent`` with every garbage collection logged: which generation, its wall and
CPU time, and how many objects it collected; and every event-loop callback that held the loop
longer than SLOW_CALLBACK (with its task's coroutine). At exit (SIGTERM or SIGINT, as
``benchmarks/run.py`` stops the agent) one JSON line per collection or slow callback is in
``--out``.

    .venv/bin/python benchmarks/gcwatch.py --out gc.jsonl -- run --config config.yaml

``benchmarks/heartbeats.py --gc-log`` starts the agent this way.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# seconds; GCWATCH_SLOW_MS=20 shows the shorter holds (a state commit's fsync, say)
SLOW_CALLBACK = float(os.environ.get("GCWATCH_SLOW_MS", "50")) / 1000


class SlowCallbacks:
    """Event-loop callbacks that ran longer than SLOW_CALLBACK: when, how long, what."""

    def __init__(self) -> None:
        self.slow: list[tuple[float, float, float, str]] = []

    def install(self) -> None:
        import asyncio.events

        run = asyncio.events.Handle._run
        slow = self.slow

        def timed(handle: asyncio.events.Handle) -> None:
            # taken before it runs: a callback that cancels its own handle (StateStore.flush
            # does) leaves none
            callback = handle._callback
            wall, cpu = time.perf_counter(), time.process_time()
            run(handle)
            took = time.perf_counter() - wall
            if took > SLOW_CALLBACK:
                slow.append((time.time(), took * 1000, (time.process_time() - cpu) * 1000,
                             _what(callback)))

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]

    def write(self, out: Any) -> None:
        for at, wall_ms, cpu_ms, what in self.slow:
            out.write(json.dumps({"at": at, "slow": what, "wall_ms": wall_ms,
                                  "cpu_ms": cpu_ms}) + "\n")


def _what(callback: Any) -> str:
    task = getattr(callback, "__self__", None)
    coro = getattr(task, "get_coro", lambda: None)()
    if coro is not None:
        return f"{task.get_name()}: {getattr(coro, '__qualname__', coro)}"
    return repr(callback)[:200]


class GcLog:
    """Collections as they happen (gc.callbacks), kept in memory until :meth:`write`."""

    def __init__(self) -> None:
        self.passes: list[tuple[float, int, float, float, int, int]] = []
        self._start: tuple[float, float] = (0.0, 0.0)

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = (time.perf_counter(), time.process_time())
            return
        wall, cpu = self._start
        self.passes.append((time.time(), info["generation"],
                            (time.perf_counter() - wall) * 1000,
                            (time.process_time() - cpu) * 1000,
                            info["collected"], info.get("uncollectable", 0)))

    def write(self, out: Any) -> None:
        for at, generation, wall_ms, cpu_ms, collected, _ in self.passes:
            out.write(json.dumps({"at": at, "gen": generation, "wall_ms": wall_ms,
                                  "cpu_ms": cpu_ms, "collected": collected}) + "\n")


def main() -> None:
    args = sys.argv[1:]
    if len(args) < 3 or args[0] != "--out" or args[2] != "--":
        raise SystemExit(__doc__)
    out, command = Path(args[1]), args[3:]
    watcher, slow = GcLog(), SlowCallbacks()
    gc.callbacks.append(watcher)
    slow.install()
    from agent.cli import main as agent_main

    sys.argv = ["channel-agent", *command]
    try:
        agent_main()
    finally:
        with out.open("w") as file:
            watcher.write(file)
            slow.write(file)


if __name__ == "__main__":
    main()
