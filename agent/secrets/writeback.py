"""Writing a rotated refresh token back to its store, without ever losing it.

When a provider hands back a new refresh token during a check (owner mode), the channel keeps
it in memory and the core writes it to the account's store. A write that fails stays pending:
retried with exponential backoff, counted in ``channel_secret_store_write_failures_total``,
exported as ``channel_secret_store_pending_writes`` (ChannelTokenWriteBackFailing pages when
it lasts). A compare-and-set conflict means the platform wrote a newer token meanwhile: the
store's token wins, the agent's is dropped (the channel reads the store's at its next check).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from agent.channel import Secret, SecretRef
from agent.redact import redact
from agent.secrets.base import OBSERVER, Fetched, WriteConflict
from agent.secrets.metrics import StoreMetrics
from agent.secrets.registry import SecretStores

log = logging.getLogger(__name__)

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 300.0


class WriteBack:
    def __init__(self, stores: SecretStores, metrics: StoreMetrics, *,
                 initial_backoff: float = INITIAL_BACKOFF,
                 max_backoff: float = MAX_BACKOFF) -> None:
        self.stores = stores  # replaced on reload; pending writes use the newest
        self.metrics = metrics
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._pending: dict[tuple[str, str], tuple[str, SecretRef, Secret, Fetched | None]] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task] = {}

    def submit(self, label: str, ref: SecretRef, value: Secret) -> None:
        """Write ``value`` (the new token of account ``label``) to ``ref``'s store, in the
        background, compare-and-set against what the agent read."""
        assert ref.store is not None and ref.key is not None
        if self.stores.mode(ref) == OBSERVER:
            log.warning("%s: the provider returned a new refresh token (fingerprint %s), but "
                        "secret store %s is in observer mode: kept in memory only, the "
                        "platform owns the stored token", label, value.fingerprint(), ref.store)
            return
        slot = (ref.store, ref.key)
        self._pending[slot] = (label, ref, value, self.stores.cached_entry(ref))
        self._gauge(ref.store)
        if slot not in self._tasks:
            task = asyncio.create_task(self._run(slot), name=f"write-back {label}")
            self._tasks[slot] = task
            task.add_done_callback(lambda _t, slot=slot: self._tasks.pop(slot, None))

    def pending(self) -> int:
        return len(self._pending)

    async def _run(self, slot: tuple[str, str]) -> None:
        delay = self.initial_backoff
        while slot in self._pending:
            label, ref, value, expected = self._pending[slot]
            try:
                await self.stores.write(ref, value, expected=expected)
            except WriteConflict:
                log.warning("%s: not writing the new refresh token (fingerprint %s) to secret "
                            "store %s: the token there changed since the agent read it (a "
                            "pipeline rotated it?); the store's token is kept", label,
                            value.fingerprint(), ref.store)
                self._done(slot, value)
                continue
            except Exception as exc:  # any failure: keep it, retry
                self.metrics.write_failures.labels(ref.store).inc()
                log.error("%s: writing the new refresh token (fingerprint %s) to secret store "
                          "%s failed, kept in memory, retrying in %gs: %s", label,
                          value.fingerprint(), ref.store, delay,
                          redact(f"{type(exc).__name__}: {exc}", [value.reveal()]))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            log.info("%s: stored the new refresh token (fingerprint %s) in secret store %s",
                     label, value.fingerprint(), ref.store)
            self._done(slot, value)

    def _done(self, slot: tuple[str, str], value: Secret) -> None:
        if slot in self._pending and self._pending[slot][2] is value:  # not replaced meanwhile
            del self._pending[slot]
        self._gauge(slot[0])

    def _gauge(self, store: str) -> None:
        self.metrics.pending_writes.labels(store).set(
            sum(1 for s, _ in self._pending if s == store))

    async def stop(self) -> None:
        for label, ref, value, _ in self._pending.values():
            log.error("%s: stopping with the new refresh token (fingerprint %s) not written to "
                      "secret store %s: reconnect the account if the stored token stops "
                      "working", label, value.fingerprint(), ref.store)
        for task in list(self._tasks.values()):
            task.cancel()
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
