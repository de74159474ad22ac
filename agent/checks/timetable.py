"""When each account is next due: one heap and one event-loop timer for the whole fleet.

A sleeping task per account (a coroutine frame, a future and a timer handle each) cost ~2 KB
per account and 50,000 task creations at start; the heap holds a ``(time, key)`` tuple per
account and the loop one timer, armed for the earliest entry. Entries are removed lazily:
an entry counts only while ``_due[key]`` is its time, so dropping or re-planning a key is a
dictionary operation and the stale tuple is discarded when it reaches the top.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Iterable

Key = tuple[str, str]

# The loop runs a timer up to its clock resolution early; what is due within it is due now.
EARLY = 0.001


class Timetable:
    """Keys planned at times of ``monotonic``; ``on_due(key, time)`` is called from the loop
    once ``time`` has come, and the key is no longer planned then."""

    def __init__(self, monotonic: Callable[[], float],
                 on_due: Callable[[Key, float], None]) -> None:
        self.monotonic = monotonic
        self.on_due = on_due
        self._heap: list[tuple[float, Key]] = []
        self._due: dict[Key, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    def __contains__(self, key: Key) -> bool:
        return key in self._due

    def __len__(self) -> int:
        return len(self._due)

    def keys(self) -> set[Key]:
        return set(self._due)

    def plan(self, key: Key, when: float) -> None:
        """Plan ``key`` at ``when`` (replacing a time planned before)."""
        self._due[key] = when
        heapq.heappush(self._heap, (when, key))
        if when < self._timer_at:
            self._arm()

    def plan_many(self, entries: Iterable[tuple[Key, float]]) -> None:
        """Plan many keys at once: one heapify instead of a push each (a start, a replan)."""
        for key, when in entries:
            self._due[key] = when
        self._heap = [(when, key) for key, when in self._due.items()]
        heapq.heapify(self._heap)
        self._arm()

    def drop(self, key: Key) -> None:
        self._due.pop(key, None)

    def clear(self) -> None:
        self._due.clear()
        self._heap.clear()
        self._cancel_timer()

    def next_due(self) -> float | None:
        """The earliest planned time, if anything is planned."""
        self._discard_stale()
        return self._heap[0][0] if self._heap else None

    def _discard_stale(self) -> None:
        heap, due = self._heap, self._due
        while heap and due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = float("inf")

    def _arm(self) -> None:
        self._cancel_timer()
        when = self.next_due()
        if when is None:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, when - self.monotonic()), self._fire)
        self._timer_at = when

    def _fire(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        heap, due = self._heap, self._due
        now = self.monotonic() + EARLY
        while heap and heap[0][0] <= now:
            when, key = heapq.heappop(heap)
            if due.get(key) == when:
                del due[key]
                self.on_due(key, when)
        self._arm()
