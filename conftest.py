"""Fixtures for every test of the repository (tests/ and each plugin's tests/)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent import redact


@pytest.fixture(autouse=True)
def _isolated_secret_registry() -> Iterator[None]:
    """Each test starts with the process-wide registry of secrets it found.

    Every ``Secret(...)`` registers its value for masking while it lives, and for a while
    after (among the last ``RETIRED_KEPT``). Without this, a value one test makes a secret
    (hypothesis drew the config word "refresh_token" as a client secret) is masked in later
    tests' messages: "accounts[0].***_file".
    """
    with redact._lock:
        redact._drain()
        live, retired = dict(redact._live), dict(redact._retired)
    yield
    with redact._lock:
        redact._drain()
        redact._live.clear()
        redact._live.update(live)
        redact._retired.clear()
        redact._retired.update(retired)
        redact._ordered = None
