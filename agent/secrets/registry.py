"""The configured secret stores: the read cache, batching, and references.

Reading happens at check time, as for a token file. The scheduler calls :meth:`prefetch` for
an account's store references before its check; a miss fetches the key *and the next keys of
the same store in check order* (up to ``batch_size``) in one call, so with accounts checked
spread over the interval, a store is asked about ``accounts / batch_size`` times per cycle,
not once per account. Entries live ``cache_ttl`` (5m by default). One fetch per store runs at a
time: checks that miss while it runs wait for it and usually find their key in it.

The channel then reads its :class:`~agent.channel.SecretRef` synchronously as before; a store
reference answers from this cache (:meth:`cached`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from agent.channel import MissingSecret, Secret, SecretRef
from agent.redact import redact
from agent.secrets.base import (
    OBSERVER,
    Fetched,
    SecretStore,
    StoreUnavailable,
    WriteConflict,
)
from agent.secrets.metrics import StoreMetrics

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    fetched: Fetched | None  # None: the store says the key does not exist
    expires: float


def store_refs(settings: Mapping[str, object]) -> list[SecretRef]:
    """The secret-store references among an account's settings."""
    return [value for value in settings.values()
            if isinstance(value, SecretRef) and value.store is not None]


class SecretStores:
    """Named stores plus their shared cache; one per loaded configuration."""

    def __init__(self, stores: Mapping[str, SecretStore],
                 metrics: StoreMetrics | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.stores = dict(stores)
        self.metrics = metrics or StoreMetrics()
        self.monotonic = monotonic
        self._cache: dict[tuple[str, str], _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._order: dict[str, list[str]] = {}  # store -> its keys in check order
        self._position: dict[str, dict[str, int]] = {}

    def __bool__(self) -> bool:
        return bool(self.stores)

    def bind(self, metrics: StoreMetrics) -> None:
        """Report to the running agent's metrics (a reload's new stores keep the old cache
        through :meth:`carry_over`)."""
        self.metrics = metrics
        metrics.set_stores(sorted(self.stores))

    def carry_over(self, previous: SecretStores) -> None:
        """Keep what the previous configuration's stores read, for stores that did not change."""
        same = {name for name, store in self.stores.items()
                if name in previous.stores
                and previous.stores[name].settings == store.settings}
        self._cache = {key: entry for key, entry in previous._cache.items() if key[0] in same}

    def ref(self, store: str, key: str, source: str, mode: str | None = None) -> SecretRef:
        """A reference the channel reads like any other :class:`SecretRef`; its ``mode`` is
        the reference's own, else its store's (a channel may read ``ref.mode``)."""
        if mode is None and store in self.stores:
            mode = self.stores[store].mode
        return SecretRef(store=store, key=key, source=source, mode=mode, registry=self)

    def adopt(self, ref: SecretRef) -> SecretRef:
        """``ref`` reading from these stores (after a reload, accounts kept are re-pointed)."""
        return ref.replace(registry=self) if ref.store else ref

    def plan(self, refs: Iterable[SecretRef]) -> None:
        """The order in which the store references will be needed (the scheduler's check
        order); a miss reads ahead along it."""
        order: dict[str, list[str]] = {}
        seen: set[tuple[str, str]] = set()
        for ref in refs:
            if ref.store is None or ref.key is None or (ref.store, ref.key) in seen:
                continue
            seen.add((ref.store, ref.key))
            order.setdefault(ref.store, []).append(ref.key)
        self._order = order
        self._position = {name: {key: i for i, key in enumerate(keys)}
                          for name, keys in order.items()}

    # --- reading ------------------------------------------------------------------------

    def cached(self, ref: SecretRef) -> Secret:
        """The value :meth:`prefetch` brought in; MissingSecret when the store has no such key
        (``missing_credential``)."""
        assert ref.store is not None and ref.key is not None
        entry = self._cache.get((ref.store, ref.key))
        if entry is None:
            raise StoreUnavailable(f"secret store {ref.store} was not read for this check")
        if entry.fetched is None:
            raise MissingSecret(ref.source, f"secret store {ref.store} has no key {ref.key}")
        return entry.fetched.value

    async def prefetch(self, refs: Iterable[SecretRef]) -> None:
        """Make sure every store reference in ``refs`` is in the cache;
        :class:`StoreUnavailable` (naming the store) when one could not be read."""
        for ref in refs:
            if ref.store is not None and ref.key is not None:
                await self.get(ref.store, ref.key)

    async def get(self, name: str, key: str, *, fresh: bool = False) -> Fetched | None:
        """The key's value (``None``: absent), from the cache unless expired or ``fresh``."""
        if not fresh:
            entry = self._fresh(name, key)
            if entry is not None:
                return entry.fetched
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if not fresh:
                entry = self._fresh(name, key)  # the fetch we waited for may have brought it
                if entry is not None:
                    return entry.fetched
            store = self.stores[name]
            keys = [key] if fresh else self._batch(name, key, store.settings.batch_size)
            with self.metrics.call(name, "read"):
                try:
                    answers = await store.read(keys)
                except StoreUnavailable as exc:
                    raise StoreUnavailable(f"secret store {name}: {exc}") from None
            expires = self.monotonic() + store.settings.cache_ttl
            for k in keys:
                answer = answers.get(k)
                if not isinstance(answer, StoreUnavailable):
                    self._cache[(name, k)] = _Entry(answer, expires)
            answer = answers.get(key)
            if isinstance(answer, StoreUnavailable):
                raise StoreUnavailable(f"secret store {name}, key {key}: {answer}")
            return answer

    def forget(self, name: str, key: str) -> None:
        """Drop a cached value: the next check reads the store again."""
        self._cache.pop((name, key), None)

    def _fresh(self, name: str, key: str) -> _Entry | None:
        entry = self._cache.get((name, key))
        return entry if entry is not None and entry.expires > self.monotonic() else None

    def _batch(self, name: str, key: str, size: int) -> list[str]:
        """``key`` and the stale keys that follow it in check order, ``size`` at most."""
        keys = self._order.get(name, [])
        start = self._position.get(name, {}).get(key)
        batch = [key]
        if start is None:
            return batch
        now = self.monotonic()
        for step in range(1, len(keys)):
            if len(batch) >= size:
                break
            other = keys[(start + step) % len(keys)]
            entry = self._cache.get((name, other))
            if entry is None or entry.expires <= now:
                batch.append(other)
        return batch

    # --- writing ------------------------------------------------------------------------

    def mode(self, ref: SecretRef) -> str:
        store = self.stores.get(ref.store or "")
        return ref.mode or (store.mode if store else "owner")

    async def write(self, ref: SecretRef, value: Secret, *, expected: Fetched | None = None,
                    read_first: bool = False) -> None:
        """Write ``value`` to the reference's key, compare-and-set against ``expected`` (the
        value the agent read), or against the store's current value when ``read_first``
        (a reconnect replaces whatever is there). Raises StoreUnavailable or WriteConflict."""
        assert ref.store is not None and ref.key is not None
        store = self.stores[ref.store]
        if self.mode(ref) == OBSERVER:
            raise StoreUnavailable(f"secret store {ref.store} is in observer mode: the "
                                   f"platform writes its tokens, the agent never does")
        if not store.writable:
            raise StoreUnavailable(f"secret store {ref.store} cannot write secrets")
        if read_first:
            expected = await self.get(ref.store, ref.key, fresh=True)
        elif expected is None:
            entry = self._cache.get((ref.store, ref.key))
            expected = entry.fetched if entry else None
        with self.metrics.call(ref.store, "write") as outcome:
            try:
                await store.write(ref.key, value, expected)
            except WriteConflict:
                outcome["outcome"] = "conflict"
                self.forget(ref.store, ref.key)
                raise
        # what the store now holds; its new version is unknown until read again, so the
        # entry expires at once and the next check reads it (and its version) back
        self._cache[(ref.store, ref.key)] = _Entry(Fetched(value), self.monotonic())

    def cached_entry(self, ref: SecretRef) -> Fetched | None:
        entry = self._cache.get((ref.store or "", ref.key or ""))
        return entry.fetched if entry else None

    async def probe(self, names: Sequence[str] | None = None) -> dict[str, str | None]:
        """Try each store once (``config check --connect``): name -> problem or None."""
        results: dict[str, str | None] = {}
        for name in names or sorted(self.stores):
            try:
                with self.metrics.call(name, "probe"):
                    await self.stores[name].probe()
                results[name] = None
            except Exception as exc:  # reported, never raised
                results[name] = redact(f"{type(exc).__name__}: {exc}")
        return results

    async def close(self) -> None:
        await asyncio.gather(*(store.close() for store in self.stores.values()),
                             return_exceptions=True)
