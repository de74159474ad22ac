"""What a provider's answer means for a check, as plugins classify it. Channel-neutral.

A plugin turns every answer (or its absence) into a :class:`Verdict` and raises
:class:`ProviderError` to end the check; its ``detail`` must be free of secrets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Verdict:
    """``valid`` is False for a conclusive rejection and None for a transient failure.
    ``client_valid`` False: the application's own client credential was rejected;
    ``agent_bug``: the provider called the agent's request malformed (logged as an error)."""

    reason: str
    valid: bool | None
    client_valid: bool | None = None
    agent_bug: bool = False


def conclusive(reason: str, client_valid: bool | None = None) -> Verdict:
    return Verdict(reason, False, client_valid)


def transient(reason: str, agent_bug: bool = False) -> Verdict:
    return Verdict(reason, None, agent_bug=agent_bug)


class ProviderError(Exception):
    """The provider's answer (or its absence) ended the check; ``detail`` is free of secrets."""

    def __init__(self, verdict: Verdict, detail: str) -> None:
        super().__init__(detail)
        self.verdict = verdict
        self.detail = detail


def parse_json(response: httpx.Response) -> Any:
    """The JSON body, or None when it is not JSON (an HTML page, garbage, empty)."""
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None


def failure_detail(endpoint: str, response: httpx.Response, body: Any, explanation: str) -> str:
    """``endpoint: HTTP status: explanation``; when the provider explained nothing, what the
    body was instead (not JSON, and its type; or an unexpected shape). Never the body itself:
    it may echo a secret."""
    if not explanation:
        if body is None:
            kind = response.headers.get("Content-Type", "").split(";")[0].strip() or "no type"
            explanation = f"body is not JSON ({kind})"
        else:
            explanation = "unexpected response shape"
    return f"{endpoint}: HTTP {response.status_code}: {explanation}"
