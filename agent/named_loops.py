"""One background task per named source, kept in step with the configuration: the freshness
poller's and the inventory runner's loops."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any


class NamedLoops:
    """The running loops, one per name; ``kind`` prefixes the tasks' names (for debugging)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._tasks: dict[str, asyncio.Task] = {}

    def reconcile(self, wanted: Iterable[str],
                  loop: Callable[[str], Coroutine[Any, Any, None]]) -> None:
        """Cancel the loops of names no longer ``wanted``; start ``loop(name)`` for each wanted
        name without a running one (new, or its loop ended)."""
        wanted = list(wanted)
        for name in [name for name in self._tasks if name not in wanted]:
            self._tasks.pop(name).cancel()
        for name in wanted:
            task = self._tasks.get(name)
            if task is None or task.done():
                self._tasks[name] = asyncio.create_task(loop(name), name=f"{self.kind} {name}")

    def names(self) -> set[str]:
        """The names with a loop started and not cancelled."""
        return set(self._tasks)

    async def stop(self) -> None:
        """Cancel every loop and wait until they have ended."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
