"""Keeping secrets inside the process: masking for anything that leaves it as text."""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from collections import deque
from collections.abc import Iterable

# Login with Amazon tokens (Atza| access, Atzr| refresh), LwA client secrets
# (amzn1.oa2-cs.v1.…) and bearer headers: masked by their shape even before anything
# registered them (a secret echoed in an error body, a token in an exception).
_TOKEN_SHAPED = re.compile(
    r"(Atz[a-z]\||amzn1\.oa2-cs\.v1\.)[^\s\"',;&]+|(?i:(bearer\s+))[^\s\"',;&]+"
)
# The registry: each value Secret objects hold (with how many hold it), and the last
# RETIRED_KEPT values whose last holder went away (a rotated token may still be in a message
# on its way out). A Secret's finaliser only queues its value (_released): it may run inside
# the garbage collector, while this thread holds _lock; the queue is drained under the lock.
RETIRED_KEPT = 256
_live: dict[str, int] = {}
_retired: dict[str, None] = {}  # insertion-ordered: the oldest first
_released: deque[str] = deque()
_ordered: tuple[str, ...] | None = None  # live and retired values, longest first
_lock = threading.Lock()


def register_secret(value: str) -> bool:
    """Mask this exact value wherever :func:`redact` runs, as long as an object holding it
    lives (then among the last :data:`RETIRED_KEPT` such values); :func:`release_secret` when
    that object goes, if this returned True (the value was registered).

    Token-shaped values are masked by their shape already and are not kept, so the registry
    holds only the odd-shaped secrets (client secrets, Shopify tokens...).

    Any other value of 6 characters or more is masked everywhere, even an ordinary word or a
    config key name ("refresh_token" as a placeholder client secret): an SRE must never see a
    secret, and a mangled message ("***_file") is the visible sign of a placeholder secret.
    Shorter values would mask parts of every message; no real credential is that short.
    """
    global _ordered
    if _kept(value):
        with _lock:
            _drain()
            if value not in _live:
                _ordered = None
                _retired.pop(value, None)
            _live[value] = _live.get(value, 0) + 1
        return True
    return False


def release_secret(value: str) -> None:
    """One holder of a registered ``value`` went away (called by a finaliser: takes no lock)."""
    _released.append(value)


def _kept(value: str) -> bool:
    return len(value) >= 6 and not _TOKEN_SHAPED.fullmatch(value)


def _drain() -> None:
    """Count the queued releases (under ``_lock``): a value nothing holds any more retires."""
    global _ordered
    while _released:
        value = _released.popleft()
        holders = _live.get(value)
        if holders is None:  # not registered (token-shaped, short), or restored away
            continue
        if holders > 1:
            _live[value] = holders - 1
            continue
        del _live[value]
        _retired[value] = None
        if len(_retired) > RETIRED_KEPT:
            del _retired[next(iter(_retired))]
        _ordered = None


def _masked() -> tuple[str, ...]:
    global _ordered
    ordered = _ordered
    if ordered is None or _released:
        with _lock:
            _drain()
            if _ordered is None:
                _ordered = tuple(sorted({*_live, *_retired}, key=len, reverse=True))
            ordered = _ordered
    return ordered


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """Mask token-shaped strings, registered secrets and ``extra`` values in ``text``."""
    values: Iterable[str] = _masked()
    extra = [e for e in extra if e]
    if extra:
        values = sorted({*values, *extra}, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, "***")
    return _TOKEN_SHAPED.sub(lambda m: (m.group(1) or m.group(2) or "") + "***", text)


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the rendered message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


def setup_logging(level: str = "info") -> None:
    """Log to stderr through :class:`RedactingFilter`; uncaught exceptions are masked too."""
    sys.excepthook = _redacting_excepthook
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)r")
    )
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _redacting_excepthook(exc_type, exc, tb) -> None:  # noqa: ANN001 - sys.excepthook's
    text = "".join(traceback.format_exception(exc_type, exc, tb))
    sys.stderr.write(redact(text))
