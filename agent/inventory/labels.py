"""Account labels: what a label name may be, and how many an account may carry.

Labels are exported once per account, on ``channel_account_info{channel, account, <labels>}``,
so their names become Prometheus label names next to ``channel`` and ``account``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

MAX_LABELS = 10
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
RESERVED = ("channel", "account")  # the info metric's own labels
MAX_VALUE_LENGTH = 256


def label_problems(labels: Mapping[str, object]) -> Iterator[tuple[str, str]]:
    """(label name or "" for the whole map, message) for every rule ``labels`` breaks."""
    if len(labels) > MAX_LABELS:
        yield "", f"has {len(labels)} labels; at most {MAX_LABELS} are allowed per account"
    for name, value in labels.items():
        if not LABEL_NAME.fullmatch(name) or name.startswith("__"):
            yield name, ("is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not "
                         "starting with __)")
        elif name in RESERVED:
            yield name, f"is reserved: {' and '.join(RESERVED)} are channel_account_info's own"
        elif not isinstance(value, str):
            yield name, "must be a string"
        elif len(value) > MAX_VALUE_LENGTH:
            yield name, f"must be at most {MAX_VALUE_LENGTH} characters"


def _mapping(value: Any) -> Any:
    from agent.config.modelbase import problem

    if not isinstance(value, dict):
        raise problem("must be a mapping of label name to value")
    return value


def _valid(labels: dict[str, str]) -> dict[str, str]:
    from agent.config.modelbase import problem

    for key, message in label_problems(labels):
        raise problem(message, at=key)
    return {key: value for key, value in labels.items() if value != ""}


# The ``labels:`` of an account or an inventory source (a model field's type).
Labels = Annotated[dict[str, str], BeforeValidator(_mapping), AfterValidator(_valid)]
