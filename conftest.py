"""Fixtures for every test of the repository (tests/ and each plugin's tests/)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent import redact


@pytest.fixture(autouse=True)
def _isolated_secret_registry() -> Iterator[None]:
    """Each test starts with the process-wide registry of secrets it found.

    Every ``Secret(...)`` registers its value for masking for the life of the process. Without
    this, a value one test makes a secret (hypothesis drew the config word "refresh_token" as
    a client secret) is masked in every later test's messages: "accounts[0].***_file".
    """
    with redact._lock:
        saved = set(redact._known)
    yield
    with redact._lock:
        redact._known.clear()
        redact._known.update(saved)
