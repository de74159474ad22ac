"""The secret stores' Prometheus metrics: a handful of series per store, none per account."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OPS = ("read", "write", "probe")
OUTCOMES = ("ok", "error", "conflict")


class StoreMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "channel_secret_store_requests",
            "Calls to a secret store (one batch of keys is one read), by operation and "
            "outcome: ok, error (no answer: down, timeout, denied, garbage) or conflict "
            "(compare-and-set: the secret changed in the store meanwhile).",
            ["store", "op", "outcome"], registry=registry)
        self.duration = Histogram(
            "channel_secret_store_request_duration_seconds",
            "Time one call to a secret store took.", ["store", "op"],
            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=registry)
        self.up = Gauge(
            "channel_secret_store_up",
            "1 if the store's last call got an answer, 0 if it did not.", ["store"],
            registry=registry)
        self.write_failures = Counter(
            "channel_secret_store_write_failures",
            "Write-backs of a rotated or reconnected token that failed; the token is kept in "
            "memory and the write retried with backoff.", ["store"], registry=registry)
        self.pending_writes = Gauge(
            "channel_secret_store_pending_writes",
            "New tokens that exist only in the agent's memory because writing them to their "
            "store failed (retried with backoff). Any for long pages "
            "ChannelTokenWriteBackFailing.", ["store"], registry=registry)
        self.last_up: dict[str, bool] = {}  # store -> did its last call get an answer

    def set_stores(self, names: list[str]) -> None:
        """Series for every configured store from the start (a rate needs a 0 first)."""
        for name in names:
            for op in OPS:
                for outcome in OUTCOMES:
                    self.requests.labels(name, op, outcome)
            self.write_failures.labels(name)
            self.pending_writes.labels(name)

    @contextmanager
    def call(self, store: str, op: str) -> Iterator[dict[str, str]]:
        """Time one call; the body sets ``outcome`` (default ok, error on an exception)."""
        result = {"outcome": "ok"}
        started = time.monotonic()
        try:
            yield result
        except BaseException:
            if result["outcome"] == "ok":
                result["outcome"] = "error"
            raise
        finally:
            self.duration.labels(store, op).observe(time.monotonic() - started)
            self.requests.labels(store, op, result["outcome"]).inc()
            self.last_up[store] = result["outcome"] != "error"
            self.up.labels(store).set(1 if self.last_up[store] else 0)
