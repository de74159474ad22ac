"""Work done in steps: a generator that yields between two steps and returns its result.

Work over every account (50,000 of them) takes a loop callback of a second or more when done
at once; written as a generator that yields every :data:`STEP` items or so, the same code runs
at once where nothing else may come in between (:func:`drain`: the start, a reload) or with the
event loop served between two steps (:func:`stepped`: an inventory's new list), so that
scrapes, heartbeats and pages are answered meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import TypeVar

T = TypeVar("T")
Steps = Generator[None, None, T]
STEP = 5_000  # items between two yields: a few milliseconds of work each


def drain(steps: Steps[T]) -> T:
    """Run ``steps`` to the end at once; their result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


async def stepped(steps: Steps[T]) -> T:
    """Run ``steps`` with the event loop served between two of them; their result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
        await asyncio.sleep(0)
