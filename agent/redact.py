"""Keeping secrets inside the process: masking for anything that leaves it as text."""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from collections.abc import Iterable

# Login with Amazon tokens (Atza| access, Atzr| refresh), LwA client secrets
# (amzn1.oa2-cs.v1.…) and bearer headers: masked by their shape even before anything
# registered them (a secret echoed in an error body, a token in an exception).
_TOKEN_SHAPED = re.compile(
    r"(Atz[a-z]\||amzn1\.oa2-cs\.v1\.)[^\s\"',;&]+|(?i:(bearer\s+))[^\s\"',;&]+"
)
_known: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Mask this exact value wherever :func:`redact` runs.

    Token-shaped values are masked by their shape already and are not kept, so the registry
    holds only the few odd-shaped secrets (client secrets) however many tokens pass through.

    Any other value of 6 characters or more is masked everywhere, even an ordinary word or a
    config key name ("refresh_token" as a placeholder client secret): an SRE must never see a
    secret, and a mangled message ("***_file") is the visible sign of a placeholder secret.
    Shorter values would mask parts of every message; no real credential is that short.
    """
    if len(value) >= 6 and not _TOKEN_SHAPED.fullmatch(value):
        with _lock:
            _known.add(value)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """Mask token-shaped strings, registered secrets and ``extra`` values in ``text``."""
    for value in sorted({*_known, *(e for e in extra if e)}, key=len, reverse=True):
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
