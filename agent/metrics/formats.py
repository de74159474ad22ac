"""The exposition formats /metrics serves: the Prometheus text format and OpenMetrics.

The format is negotiated from the scraper's ``Accept`` header as prometheus_client's own
handlers do (``choose_encoder``); Prometheus asks for OpenMetrics first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder
from prometheus_client.openmetrics import exposition as openmetrics

_EOF = b"# EOF\n"  # the end of an OpenMetrics exposition


@dataclass(frozen=True)
class Format:
    """An exposition format: prometheus_client's encoder for it and its content type."""

    encoder: Callable[[Any], bytes]
    content_type: str

    @property
    def openmetrics(self) -> bool:
        return self.content_type.startswith("application/openmetrics-text")

    def encode(self, collector: Any) -> bytes:
        """``collector``'s text in this format, as a piece of a larger exposition (an
        OpenMetrics encoder's ``# EOF`` comes off: it is written once, at the end)."""
        text = self.encoder(collector)
        return text[:-len(_EOF)] if self.openmetrics and text.endswith(_EOF) else text

    @property
    def end(self) -> bytes:
        return _EOF if self.openmetrics else b""


TEXT = Format(generate_latest, CONTENT_TYPE_PLAIN_0_0_4)
OPENMETRICS = Format(openmetrics.generate_latest, openmetrics.CONTENT_TYPE_LATEST)


def negotiate(accept: str | None) -> Format:
    """The format for an ``Accept`` header, chosen as prometheus_client's handlers choose it.
    The cached families use the canonical text or OpenMetrics 1.0 encoder: the versions and
    name escapings a scraper may ask for differ only for names outside the legacy character
    set, which the cached families do not use."""
    return Format(*choose_encoder(accept or ""))
