"""A scripted channel for testing the core without any real provider."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agent.channel import Account, Channel, CheckContext, CheckResult, MissingSecret, Option
from agent.hookspecs import hookimpl


class FakeChannel(Channel):
    """Returns whatever ``script[account name]`` holds (a CheckResult or an exception)."""

    name = "fake"
    title = "Fake channel"
    regions = ("na", "eu")
    channel_options = {"refresh_token_max_age": Option("duration", default=86400.0)}
    account_options = {"note": Option("str", default=""),
                       "refresh_token": Option("secret_ref", default=None)}

    script: dict[str, CheckResult | BaseException | Callable[[], CheckResult]] = {}
    delay: float = 0.0
    calls: list[str] = []
    seen: dict[str, Account] = {}  # the Account object each account was last checked with
    tokens: dict[str, str] = {}  # the refresh token each account was last checked with
    finished: list[str] = []  # checks that ran to their end (not cancelled)
    running: set[str] = set()
    max_parallel_same_account = 0

    async def check(self, account: Account, ctx: CheckContext) -> CheckResult:
        cls = type(self)
        cls.calls.append(account.name)
        cls.seen[account.name] = account
        ref = account.settings.get("refresh_token")
        if ref is not None:
            try:
                cls.tokens[account.name] = ref.read().reveal()
            except MissingSecret as exc:
                return CheckResult(valid=False, reason="missing_credential", detail=str(exc))
        if account.name in cls.running:
            cls.max_parallel_same_account += 1
        cls.running.add(account.name)
        try:
            if cls.delay:
                await asyncio.sleep(cls.delay)
            cls.finished.append(account.name)
            outcome = cls.script.get(account.name, CheckResult(valid=True))
            if isinstance(outcome, BaseException):
                raise outcome
            if callable(outcome):
                return outcome()
            return outcome
        finally:
            cls.running.discard(account.name)

    @classmethod
    def reset(cls) -> None:
        cls.script = {}
        cls.delay = 0.0
        cls.calls = []
        cls.seen = {}
        cls.tokens = {}
        cls.finished = []
        cls.running = set()
        cls.max_parallel_same_account = 0


class FakePlugin:
    """A plugin object, as an entry point would provide."""

    @hookimpl
    def register_channels(self, register):
        register(FakeChannel)
