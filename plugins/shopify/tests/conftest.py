from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from channel_agent_shopify.simulator import Simulator
from shopify_helpers import CLIENT_ID, CLIENT_SECRET


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(CLIENT_ID, CLIENT_SECRET)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client
