"""The query string of the account list, shared by the landing page and the JSON API.

``channel``, ``state``, ``reason``, ``stale`` (yes/no), ``label`` (name=value), ``source_down``
(yes: fed by an inventory source, or with a data set whose freshness source, is down now) and
``q`` (part of the account's name) filter; ``limit`` (1-1000, default 100) sizes a page;
``cursor`` (the ``next`` of a page) or ``before`` (its ``prev``) moves. A cursor is the
position of a row in the list's order, so a URL keeps meaning the same slice of the list when
it is pasted into a ticket. Anything else, or a bad value, is a :class:`QueryError` naming the
parameter.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from agent.web.fleet_index import STATES, Filters, SortKey

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
FILTER_PARAMS = ("channel", "state", "reason", "stale", "label", "source_down", "q")
PARAMS = (*FILTER_PARAMS, "limit", "cursor", "before")


class QueryError(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"query parameter '{param}': {message}")
        self.param = param


@dataclass(frozen=True)
class ListQuery:
    filters: Filters
    limit: int = DEFAULT_LIMIT
    after: SortKey | None = None
    before: SortKey | None = None


def parse_query(params: Mapping[str, str]) -> ListQuery:
    for name in params:
        if name not in PARAMS:
            raise QueryError(name, f"unknown (known: {', '.join(PARAMS)})")
    value = {name: params[name].strip() for name in PARAMS if params.get(name, "").strip()}
    state = value.get("state")
    if state is not None and state not in STATES:
        raise QueryError("state", f"{state!r} is not one of {', '.join(STATES)}")
    stale = value.get("stale")
    if stale is not None and stale not in ("yes", "no"):
        raise QueryError("stale", f"{stale!r} is not yes or no")
    source_down = value.get("source_down")
    if source_down is not None and source_down != "yes":
        raise QueryError("source_down", f"{source_down!r} is not yes (leave it out for any)")
    label = None
    if "label" in value:
        name, sep, label_value = value["label"].partition("=")
        if not sep or not name.strip():
            raise QueryError("label", f"{value['label']!r} is not NAME=VALUE (e.g. merchant=acme)")
        label = (name.strip(), label_value.strip())
    if "cursor" in value and "before" in value:
        raise QueryError("before", "give cursor or before, not both")
    return ListQuery(
        filters=Filters(channel=value.get("channel"), state=state, reason=value.get("reason"),
                        stale=None if stale is None else stale == "yes", label=label,
                        name=value.get("q", ""), source_down=source_down == "yes"),
        limit=_limit(value.get("limit")),
        after=decode_cursor("cursor", value["cursor"]) if "cursor" in value else None,
        before=decode_cursor("before", value["before"]) if "before" in value else None,
    )


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise QueryError("limit", f"{text!r} is not a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def encode_cursor(sort: SortKey) -> str:
    raw = json.dumps(list(sort), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(param: str, text: str) -> SortKey:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        rank, since, channel, account = json.loads(raw)
        if not (isinstance(rank, int) and isinstance(since, int | float)
                and isinstance(channel, str) and isinstance(account, str)):
            raise TypeError
    except (binascii.Error, ValueError, TypeError, RecursionError):
        raise QueryError(param, "is not a cursor of this list (take the next/prev of a "
                                "page)") from None
    return (rank, float(since), channel, account)


def filter_params(filters: Filters) -> dict[str, str]:
    """The query parameters that select ``filters``."""
    params = {"channel": filters.channel, "state": filters.state, "reason": filters.reason,
              "stale": None if filters.stale is None else "yes" if filters.stale else "no",
              "label": "=".join(filters.label) if filters.label else None,
              "source_down": "yes" if filters.source_down else None,
              "q": filters.name or None}
    return {name: value for name, value in params.items() if value is not None}


def list_url(filters: Filters, *, limit: int = DEFAULT_LIMIT, cursor: SortKey | None = None,
             before: SortKey | None = None, path: str = "/") -> str:
    params = filter_params(filters)
    if limit != DEFAULT_LIMIT:
        params["limit"] = str(limit)
    if cursor is not None:
        params["cursor"] = encode_cursor(cursor)
    if before is not None:
        params["before"] = encode_cursor(before)
    return f"{path}?{urlencode(params)}" if params else path
