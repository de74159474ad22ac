"""The scheduler: checks every account every ``check_interval``.

Each account runs on its own fixed grid, shifted by a deterministic per-account offset so a
start (or restart) does not send every check at once. A semaphore bounds concurrency, every
check has a hard timeout, and one account is never checked twice at the same time (a recheck
that arrives during a check waits for that check).

When each account is next due is one heap for the fleet (agent.checks.timetable); accounts
whose time has come are queued for ``max_concurrency`` workers, which run the checks and plan
each account's next slot. A reload never cancels a worker, so it never cancels a running
check; the fleet holds a heap entry per account, not a sleeping task, lock and timer each.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Container, Mapping
from typing import Any

import httpx

from agent import steps
from agent.channel import Account, Channel, CheckContext, CheckResult, Secret, TransientError
from agent.checks.timetable import Key, Timetable
from agent.config.loader import AgentSettings
from agent.metrics.collector import AgentMetrics
from agent.redact import redact
from agent.secret import SecretRef
from agent.secrets.base import OBSERVER, StoreUnavailable
from agent.secrets.registry import SecretStores, store_refs
from agent.secrets.writeback import WriteBack
from agent.steps import Steps
from agent.storage.fleet import Fleet
from agent.storage.secretfile import write_secret_file
from agent.storage.state import AccountState

log = logging.getLogger(__name__)

# Slack beyond check_timeout before the scheduler cancels a check that ignores its deadline.
HARD_TIMEOUT_GRACE = 1.0


def offset(account: Account, interval: float) -> float:
    """A stable offset in [0, interval) from the account's identity."""
    return fraction(account) * interval


def fraction(account: Account) -> float:
    """Where in the interval the account's checks fall, in [0, 1): :func:`offset`'s hash."""
    digest = hashlib.sha256(f"{account.channel}/{account.name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def fractions(accounts: Mapping[Key, Account], skip: Container[Key] = ()) -> Steps[
        dict[Key, float]]:
    """Each account's :func:`offset` as a fraction of the interval (the same floats once
    multiplied), ``skip``'s left out, in steps (:mod:`agent.steps`): a SHA-256 each, 50,000
    of them for a first list, made before the list is put in place (:meth:`Scheduler.start`)."""
    made: dict[Key, float] = {}
    step = steps.STEP
    for n, (key, account) in enumerate(accounts.items(), 1):
        if key not in skip:
            made[key] = fraction(account)
        if n % step == 0:
            yield
    return made


class Scheduler:
    def __init__(
        self,
        fleet: Fleet,
        channels: dict[str, Channel],
        metrics: AgentMetrics,
        settings: AgentSettings,
        http: dict[str, httpx.AsyncClient],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        writeback: WriteBack | None = None,
    ) -> None:
        self.fleet = fleet
        self.writeback = writeback  # where rotated tokens of store references go
        self.channels = channels
        self.metrics = metrics
        self.settings = settings
        self.http = http
        self.monotonic = monotonic
        self._semaphore = asyncio.Semaphore(settings.max_concurrency)
        self._timetable = Timetable(monotonic, self._due)
        self._queue: asyncio.Queue[tuple[Key, float]] = asyncio.Queue()
        self._taken: set[Key] = set()  # out of the timetable: queued or being checked
        self._workers: set[asyncio.Task] = set()
        self._running: dict[Key, asyncio.Event] = {}  # checks in flight; set when done
        self._checks: set[asyncio.Task] = set()  # rechecks running now
        # per channel, built once per configuration: what every check of it uses
        self._per_channel: dict[str, _ChannelParts] = {}
        self._started = False
        self.last_cycle_check: float | None = None

    def start(self, *, replan: bool = False, made: Mapping[Key, float] | None = None) -> None:
        """Plan every configured account (or, after a reconfigure, reconcile: removed ones
        leave the timetable, new ones join it at their offset); ``replan`` plans every
        account afresh (a new check_interval). ``made``: offsets already computed, as
        :func:`fractions` of the interval."""
        self._started = True
        wanted = self.fleet.accounts
        if replan:
            self._timetable.clear()
        for key in self._timetable.keys() - wanted.keys():
            self._timetable.drop(key)
        interval, now = self.settings.check_interval, self.monotonic()
        made = made or {}
        self._timetable.plan_many(
            (key, now + (made[key] * interval if key in made else offset(account, interval)))
            for key, account in wanted.items()
            if key not in self._timetable and (replan or key not in self._taken))
        while len(self._workers) < self.settings.max_concurrency:
            worker = asyncio.create_task(self._work(), name="scheduled checks")
            self._workers.add(worker)

    def scheduled(self) -> set[Key]:
        """The accounts on the schedule: planned, or taken for their check."""
        return self._timetable.keys() | self._taken

    def reconfigure(self, channels: dict[str, Channel], settings: AgentSettings,
                    made: Mapping[Key, float] | None = None) -> None:
        """Adopt a reloaded configuration. Removed accounts leave the schedule and new ones
        join it; a check already running finishes (nothing running is cancelled). Changed
        account settings apply from each account's next check. ``made``: as
        :meth:`start`'s."""
        replan = settings.check_interval != self.settings.check_interval
        if settings.max_concurrency != self.settings.max_concurrency:
            self._semaphore = asyncio.Semaphore(settings.max_concurrency)
        self.channels, self.settings = channels, settings
        self._per_channel.clear()
        if self._started:
            self.start(replan=replan, made=made)

    async def stop(self) -> None:
        self._started = False
        self._timetable.clear()
        pending = {*self._workers, *self._checks}
        while pending:
            # Python 3.11's wait_for can swallow a cancellation that arrives as its inner
            # call completes, and the task then goes on: cancel again until every one ended.
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.1)
        self._workers.clear()
        self._queue = asyncio.Queue()
        self._taken.clear()

    def _due(self, key: Key, slot: float) -> None:
        self._taken.add(key)
        self._queue.put_nowait((key, slot))

    async def _work(self) -> None:
        """A worker: the next account whose time has come, its check, its next slot. One
        fewer when max_concurrency went down (after the check it had)."""
        me = asyncio.current_task()
        while len(self._workers) <= self.settings.max_concurrency:
            key, slot = await self._queue.get()
            try:
                account = self.fleet.accounts.get(key)
                if account is not None and not self.withheld(account):
                    await self.check_now(account)
            except Exception:  # check_now contains the plugin's; this is the core's own
                log.exception("scheduled check of %s/%s failed", *key)
            finally:
                self._taken.discard(key)
                self._plan_next(key, slot)
        self._workers.discard(me)

    def _plan_next(self, key: Key, slot: float) -> None:
        """The account's next slot on its grid; slots that passed meanwhile (the fleet is
        more than the agent checks in an interval) are skipped and counted."""
        if not self._started or key in self._timetable or key not in self.fleet.accounts:
            return
        interval = self.settings.check_interval
        next_run, now = slot + interval, self.monotonic()
        if next_run < now:
            missed = (now - next_run) // interval + 1
            next_run += missed * interval
            self.metrics.missed_schedule.labels(key[0]).inc(missed)
        self._timetable.plan(key, next_run)

    def withheld(self, account: Account) -> bool:
        """The account's token is not known yet (agent.inventory.credentials): checking it
        would report a missing credential that is not missing; it keeps its last state."""
        channel = self.channels.get(account.channel)
        ref = channel.refresh_token_ref(account) if channel else None
        return ref is not None and ref.withheld

    def recheck(self, keys: list[tuple[str, str]], within: float) -> None:
        """Check these accounts once more, spread over ``within`` seconds (accounts whose
        settings changed); their regular schedule goes on."""
        if keys and self._started:
            task = asyncio.create_task(self._recheck(sorted(keys), within), name="recheck")
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)

    async def _recheck(self, keys: list[tuple[str, str]], within: float) -> None:
        step = within / len(keys)
        for i, key in enumerate(keys):
            if i:
                await asyncio.sleep(step)
            account = self.fleet.accounts.get(key)
            if account is not None and not self.withheld(account):
                check = asyncio.ensure_future(self.check_now(account))
                self._checks.add(check)
                check.add_done_callback(self._checks.discard)

    async def check_now(self, account: Account) -> AccountState:
        """Check one account now, or wait for the check already running for it."""
        key = account.key
        running = self._running.get(key)
        if running is not None:
            await running.wait()
            return self.fleet.states.get(key) or AccountState(
                account.channel, account.name, account.region)
        done = self._running[key] = asyncio.Event()
        try:
            async with self._semaphore:
                started = self.monotonic()
                result = await self._run_check(account)
                duration = self.monotonic() - started
        finally:
            del self._running[key]
            done.set()
        before = self.fleet.states.get(key)
        was = (before.valid, before.reason) if before else (None, None)
        state = self.fleet.record(account, result)
        self.last_cycle_check = time.time()
        self._parts(account.channel).duration.observe(duration)
        if result.reason is not None:
            self.metrics.check_failures.labels(account.channel, result.reason).inc()
        if (state.valid, state.reason) != was:
            _log_transition(account, result)
        return state

    async def _run_check(self, account: Account) -> CheckResult:
        """The channel's check, after its secret-store references are read (a store that
        does not answer: transient ``secret_unavailable``). A rejection is confirmed against
        the store first: if the platform replaced the token meanwhile, check again with it."""
        refs = store_refs(account.settings)
        if not refs:
            return await self._channel_check(account, refs)
        stores: SecretStores = refs[0].registry
        try:
            await stores.prefetch(refs)
        except StoreUnavailable as exc:
            return CheckResult(valid=None, reason="secret_unavailable", detail=redact(str(exc)))
        result = await self._channel_check(account, refs)
        if result.valid is not False or result.reason == "missing_credential":
            return result
        before = [stores.cached_entry(ref) for ref in refs]
        try:
            after = [await stores.get(ref.store, ref.key, fresh=True) for ref in refs]
        except StoreUnavailable:
            return result
        if [e.value if e else None for e in before] != [e.value if e else None for e in after]:
            log.info("%s/%s: rejected, but the store holds a new token: checking again",
                     account.channel, account.name)
            return await self._channel_check(account, refs)
        return result

    def _parts(self, name: str) -> _ChannelParts:
        parts = self._per_channel.get(name)
        if parts is None:
            parts = self._per_channel[name] = _ChannelParts(name, self.channels[name],
                                                            self.metrics)
        return parts

    async def _channel_check(self, account: Account, refs: list[SecretRef]) -> CheckResult:
        channel = self.channels[account.channel]
        parts = self._parts(account.channel)
        timeout = self.settings.check_timeout
        ctx = CheckContext(
            http=self.http[account.channel],
            deadline=self.monotonic() + timeout,
            record_request=parts.record_request,
            # bound to this channel: a reload while the check runs must not lose a new token
            persist_refresh_token=lambda acct, secret: self._persist_refresh_token(
                channel, acct, secret
            ),
            retry=parts.retry,
            token_owner=all(ref.registry.mode(ref) != OBSERVER for ref in refs),
        )
        try:
            async with asyncio.timeout(timeout + HARD_TIMEOUT_GRACE):
                result = await channel.check(account, ctx)
        except TimeoutError:
            return CheckResult(valid=None, reason="timeout",
                               detail=f"check did not finish within {timeout:g}s")
        except TransientError as exc:  # ctx.send got no response at all
            return CheckResult(valid=None, reason=exc.reason, detail=redact(exc.detail))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("channel %s: check of %s raised %s: %s", account.channel, account.name,
                      type(exc).__name__, redact(str(exc)))
            return CheckResult(valid=None, reason="plugin_error",
                               detail=f"the plugin raised {type(exc).__name__}")
        return accepted_result(channel, account, result)

    def _persist_refresh_token(self, channel: Channel, account: Account, secret: Secret) -> None:
        """Write a refresh token the provider handed back, keeping the previous one."""
        ref = channel.refresh_token_ref(account)
        if ref is not None and ref.store is not None and self.writeback is not None:
            self.writeback.submit(f"{account.channel}/{account.name}", ref, secret)
            return
        if ref is None or ref.path is None:
            log.warning(
                "channel %s account %s: the provider returned a new refresh token, but the "
                "account's token comes from the config/environment; it is kept in memory only. "
                "Run 'channel-agent reconnect' or update the variable.",
                account.channel, account.name,
            )
            return
        write_secret_file(ref.path, secret)
        log.info("channel %s account %s: stored the new refresh token in %s (old one backed up)",
                 account.channel, account.name, ref.path)


class _ChannelParts:
    """What every check of one channel shares: its retry policy and the children of the
    metrics it updates (a ``labels()`` lookup takes a lock and builds a tuple each time)."""

    def __init__(self, name: str, channel: Channel, metrics: AgentMetrics) -> None:
        self.retry = channel.retry_policy()
        self.duration = metrics.check_duration.labels(name)
        self._requests = metrics.api_requests
        self._name = name
        self._counters: dict[tuple[str, Any], Any] = {}

    def record_request(self, endpoint: str, code: Any) -> None:
        counter = self._counters.get((endpoint, code))
        if counter is None:
            counter = self._counters[endpoint, code] = self._requests.labels(
                self._name, endpoint, code)
        counter.inc()


def accepted_result(channel: Channel, account: Account, result: object) -> CheckResult:
    """``result`` as the core records it: a CheckResult whose reason the channel may report
    (else ``plugin_error``), without the facts of capabilities the channel does not declare
    (targets, refresh token, application client), and with its detail masked."""
    if not isinstance(result, CheckResult):
        log.error("channel %s: check returned %r, not a CheckResult",
                  account.channel, type(result).__name__)
        return CheckResult(valid=None, reason="plugin_error",
                           detail="the plugin returned no CheckResult")
    if result.reason is not None:
        reason = channel.reason_table().get(result.reason)
        if reason is None or reason.conclusive != (result.valid is False):
            log.error("channel %s: check of %s returned reason %r, which the channel does not "
                      "declare as %s", account.channel, account.name, result.reason,
                      "conclusive" if result.valid is False else "transient")
            return CheckResult(valid=None, reason="plugin_error",
                               detail=f"the plugin reported an undeclared reason {result.reason!r}")
    if channel.application_client is None:
        result.client_valid = None
    if channel.refresh_tokens is None:
        result.refresh_token_fingerprint = None
    if not channel.target_kind:
        result.targets, result.targets_reached = {}, None
    # shown on the status page, stored and logged: never trust a plugin to have masked it
    result.detail = redact(str(result.detail)) if result.detail else ""  # valid: usually ""
    return result


def _log_transition(account: Account, result: CheckResult) -> None:
    if result.valid is True:
        log.info("%s/%s: credential valid", account.channel, account.name)
    elif result.valid is False:
        log.warning("%s/%s: credential INVALID (%s): %s", account.channel, account.name,
                    result.reason, result.detail)
    else:
        log.info("%s/%s: check inconclusive (%s): %s", account.channel, account.name,
                 result.reason, result.detail)
