"""Account labels: what a label name may be, and how many an account may carry.

Labels are exported once per account, on ``channel_account_info{channel, account, <labels>}``,
so their names become Prometheus label names next to ``channel`` and ``account``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

MAX_LABELS = 10
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
RESERVED = ("channel", "account")  # the info metric's own labels
MAX_VALUE_LENGTH = 256


def name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a label name; None when nothing is."""
    if not LABEL_NAME.fullmatch(name) or name.startswith("__"):
        return "is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
    if name in RESERVED:
        return f"is reserved: {' and '.join(RESERVED)} are channel_account_info's own"
    return None


def _mapping(value: Any) -> Any:
    from agent.config.modelbase import problem

    if not isinstance(value, dict):
        raise problem("must be a mapping of label name to value")
    if len(value) > MAX_LABELS:
        raise problem(f"has {len(value)} labels; at most {MAX_LABELS} are allowed per account")
    return value


def _name(name: str) -> str:
    from agent.config.modelbase import problem

    message = name_problem(name)
    if message is not None:
        raise problem(message)
    return name


def _value(value: str) -> str:
    from agent.config.modelbase import problem

    if len(value) > MAX_VALUE_LENGTH:
        raise problem(f"must be at most {MAX_VALUE_LENGTH} characters")
    return value


def _set(labels: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in labels.items() if value != ""}


# The ``labels:`` of an account or an inventory source (a model field's type). Each name and
# value is validated on its own, so every bad label is reported (name and reason, never the
# value), not only the first.
LabelName = Annotated[str, AfterValidator(_name)]
LabelValue = Annotated[str, AfterValidator(_value)]
Labels = Annotated[dict[LabelName, LabelValue], BeforeValidator(_mapping), AfterValidator(_set)]
