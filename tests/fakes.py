"""A scripted channel for testing the core without any real provider."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agent.channel import (
    Account,
    AccountSettings,
    ApplicationClient,
    Channel,
    ChannelSettings,
    CheckContext,
    CheckResult,
    MissingSecret,
    RefreshTokens,
)
from agent.config.types import Duration, SecretReference
from agent.hookspecs import hookimpl


class FakeSettings(ChannelSettings):
    refresh_token_max_age: Duration = "1d"


class FakeAccountSettings(AccountSettings):
    note: str = ""
    refresh_token: SecretReference | None = None


class FakeChannel(Channel):
    """Returns whatever ``script[account name]`` holds (a CheckResult or an exception)."""

    name = "fake"
    title = "Fake channel"
    regions = ("na", "eu")
    target_kind = "profile"
    refresh_tokens = RefreshTokens()
    application_client = ApplicationClient()
    Settings = FakeSettings
    AccountSettings = FakeAccountSettings

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
