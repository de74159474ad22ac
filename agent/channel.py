"""The contract between the core and a channel plugin (README "Write a channel plugin").

A channel is a class with a ``name``, the models of its configuration (``Settings`` and
``AccountSettings``, pydantic models built from :mod:`agent.config.types`) and one coroutine,
:meth:`Channel.check`, that looks at one account's credential and returns a
:class:`CheckResult`. The core owns
everything else: parsing and validating configuration, scheduling, timeouts, retries
(:meth:`CheckContext.send`), state, metrics and the HTTP server.

What a channel has beyond that, it declares, and the core exports only what is declared:

- ``regions``: the account's ``region`` (and the ``region`` label); none, no label;
- ``target_kind``: what a consent reaches, in the channel's words (Ads ``profile``, SP-API
  ``marketplace``, Shopify ``scope``): ``CheckResult.targets``, one metric family for all;
- ``refresh_tokens`` (:class:`RefreshTokens`): accounts hold a refresh token the core may
  write back, with a known lifetime;
- ``application_client`` (:class:`ApplicationClient`): accounts share one application
  client whose validity (and secret expiry) is a fact about the channel, not an account;
- ``reasons``: failure reasons of its own, each in one of the core classes
  (:mod:`agent.reasons`);
- :meth:`Channel.reconnector`: the provider-specific steps of re-authorising an account
  (``channel-agent reconnect`` drives them: state, PKCE, the redirect, storing the token), or
  :attr:`Channel.fix_instruction` where there is no such flow.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import httpx
from prometheus_client.core import Metric
from pydantic import AfterValidator, Field

from agent.capabilities import ApplicationClient, RefreshTokens, parse_date
from agent.checks.httpretry import RetryPolicy, TransientError, send_with_retries
from agent.config.types import ConfigModel, Duration, Url, problem
from agent.demo import Demo
from agent.reasons import (
    CONCLUSIVE_REASONS,
    CORE,
    REASONS,
    TRANSIENT_REASONS,
    Reason,
    reason_table,
)
from agent.reconnector import (
    ProfileInfo,
    ReconnectError,
    Reconnector,
    TargetInfo,
    VerifyResult,
)
from agent.secret import MissingSecret, Secret, SecretRef, fingerprint

__all__ = [
    "CONCLUSIVE_REASONS", "DEFAULT_REDIRECT_URI", "REASONS", "TRANSIENT_REASONS", "Account",
    "AccountSettings", "ApplicationClient", "Channel", "ChannelSettings", "CheckContext",
    "CheckResult", "Demo", "MissingSecret", "ProfileInfo", "Reason", "ReconnectError",
    "ReconnectSettings", "Reconnector", "RefreshTokens", "RetrySettings", "Secret", "SecretRef",
    "TargetInfo", "TransientError", "VerifyResult", "fingerprint", "parse_date", "status_result",
]


DEFAULT_REDIRECT_URI = "http://127.0.0.1:8765/oauth/callback"


def _not_negative(value: float) -> float:
    if value < 0:
        raise problem("must be 0 (no limit) or more")
    return value


class RetrySettings(ConfigModel):
    """Backoff on 429/5xx/network errors when the provider sends no Retry-After."""

    initial_backoff: Duration = "2s"
    max_backoff: Duration = "30s"


class ChannelSettings(ConfigModel):
    """A channel's settings: a plugin subclasses this (``Channel.Settings``) with its own fields.

    The fields here are the core's, which every channel has: the rate limit
    (:mod:`agent.checks.ratelimit`) and the policy of :meth:`CheckContext.send`.
    """

    core_keys = ("accounts", "datasets")

    max_requests_per_second: Annotated[float, AfterValidator(_not_negative)] = Field(
        0.0, description="Requests per second to each of the channel's hosts, at most; "
                         "0 = no limit.")
    pause_host_on_429: bool = Field(
        True, description="A 429 pauses every request to that host (Retry-After, else 1s "
                          "doubling to 60s).")
    request_timeout: Duration = Field("10s", description="Timeout of one HTTP request")
    retry: RetrySettings = Field(default_factory=dict)


class ReconnectSettings(ChannelSettings):
    """The settings of a channel with a reconnect flow (subclass it instead of ChannelSettings)."""

    redirect_uri: Url = Field(
        DEFAULT_REDIRECT_URI,
        description="Where the provider sends the browser after consent (one of the app's "
        "allowed return URLs): a loopback URL for the local flow, the agent's /oauth/callback "
        "for links")
    reconnect_link_expiry: Duration = Field(
        "1d", description="How long a `reconnect --link` consent link works")


class AccountSettings(ConfigModel):
    """An account's settings: a plugin subclasses this (``Channel.AccountSettings``). The core
    adds ``name``, ``region`` and ``datasets`` (:class:`agent.config.models.AccountCore`)."""


@dataclass(slots=True)
class Account:
    """One configured account of one channel. ``settings`` holds its validated
    ``AccountSettings`` (as a dict); ``region`` is "" for a channel without regions; ``labels``
    are exported once, on ``channel_account_info``; ``source`` is "config" or the name of the
    inventory source that discovered the account.

    An agent holds tens of thousands: slots, and the loaders intern the strings accounts share
    (channel, region, source, label names and values)."""

    channel: str
    name: str
    region: str
    settings: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    source: str = "config"

    @property
    def key(self) -> tuple[str, str]:
        return (self.channel, self.name)


# The longest CheckResult.detail kept: it is shown on pages, in the status API and in logs.
DETAIL_LIMIT = 500


@dataclass
class CheckResult:
    """What one check of one account found.

    ``valid``: True (credential works), False (conclusively rejected: ``reason`` is a
    conclusive reason, core or declared by the channel) or None (no conclusion: ``reason`` is a
    transient one). ``detail`` is a short human explanation; it must never contain a secret.

    ``targets``: what the consent must reach (the channel's ``target_kind``: profiles,
    marketplaces, scopes), id -> reached; the expected ones, or every one seen when none are
    expected. ``targets_reached``: how many the consent reaches in all (0 = a useless
    consent), None when the check did not learn it.

    The rest is for channels that declare the matching capability, and ignored otherwise:
    ``access_token_*`` and ``refresh_token_fingerprint`` (:class:`RefreshTokens`);
    ``client_valid`` (:class:`ApplicationClient`): False when the application's client was
    rejected, True when accepted, None when this check learnt nothing about it.
    """

    valid: bool | None
    reason: str | None = None
    detail: str = ""
    targets: dict[str, bool] = field(default_factory=dict)
    targets_reached: int | None = None
    access_token_issued_at: float | None = None
    access_token_expires_at: float | None = None
    refresh_token_fingerprint: str | None = None
    client_valid: bool | None = None

    def __post_init__(self) -> None:
        if len(self.detail) > DETAIL_LIMIT:  # a provider's error body can be any length
            self.detail = self.detail[: DETAIL_LIMIT - 1] + "…"
        if self.valid is True:
            if self.reason is not None:
                raise ValueError("a valid result carries no failure reason")
            return
        if not isinstance(self.reason, str) or not self.reason.isidentifier():
            raise ValueError(f"{self.reason!r} is not a failure reason")
        core = CORE.get(self.reason)
        if core is not None and core.conclusive != (self.valid is False):
            kind = "conclusive" if self.valid is False else "transient"
            raise ValueError(f"{self.reason!r} is not a {kind} reason")

    @property
    def conclusive(self) -> bool:
        return self.valid is not None


def status_result(response: httpx.Response, detail: str = "") -> CheckResult:
    """What a non-2xx answer means when the provider documents nothing more specific:
    401 ``unauthorized``, 403 ``forbidden`` (conclusive); 429 ``throttled``, 5xx
    ``server_error``, anything else ``bad_response`` (transient). A 2xx is valid."""
    status = response.status_code
    detail = detail or f"HTTP {status}"
    if response.is_success:
        return CheckResult(valid=True)
    if status in (401, 403):
        return CheckResult(valid=False, reason="unauthorized" if status == 401 else "forbidden",
                           detail=detail)
    reason = "throttled" if status == 429 else "server_error" if status >= 500 else "bad_response"
    return CheckResult(valid=None, reason=reason, detail=detail)


@dataclass
class CheckContext:
    """What the core hands a channel for one check (or one reconnect step).

    ``http`` is the channel's shared client (its transport is chosen by the core: rate limit,
    connection pool; tests pass ``httpx.MockTransport`` or a loopback server); ``deadline``
    is a ``retry.monotonic()`` value by which the whole check, retries included, must end;
    ``retry`` is the channel's retry policy (its ``retry`` and ``request_timeout`` settings);
    ``record_request(endpoint, code)`` counts one request (``code``: the HTTP status, or
    ``timeout``/``network``); ``persist_refresh_token(account, secret)`` stores a refresh
    token the provider handed back (channels with :class:`RefreshTokens`); ``token_owner``
    is False when the account's token belongs to the platform (its secret store is in
    observer mode): a channel whose provider rotates refresh tokens on use must then not
    exchange it, and check with what it may use without consuming it.

    Send requests with :meth:`send`: it does the retries, the deadline and the counting.
    """

    http: httpx.AsyncClient
    deadline: float
    record_request: Callable[[str, str], None] = lambda endpoint, code: None
    persist_refresh_token: Callable[[Account, Secret], None] | None = None
    clock: Callable[[], float] = time.time
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    token_owner: bool = True

    def remaining(self) -> float:
        return self.deadline - self.retry.monotonic()

    async def send(self, request: httpx.Request | Callable[[], httpx.Request], *,
                   endpoint: str) -> httpx.Response:
        """Send ``request`` (or the request a factory builds, once per attempt) and return
        the final response, which may still be a 429 or 5xx when retries ran out.

        Retries 429, 500, 502, 503, 504, timeouts and network errors, waiting
        ``Retry-After`` or a backoff, never past the deadline; every attempt is counted in
        ``channel_agent_api_requests_total{endpoint=...}``. Raises :class:`TransientError`
        (``reason`` ``timeout``, ``network`` or ``throttled``) when the last attempt got no
        response: the core turns one that escapes :meth:`Channel.check` into a transient
        result with that reason.
        """
        factory = request if callable(request) else (lambda: request)
        return await send_with_retries(self.http, factory, deadline=self.deadline,
                                       endpoint=endpoint, record=self.record_request,
                                       policy=self.retry)


class Channel(ABC):
    """Base class for a channel plugin. Subclasses set ``name`` and implement :meth:`check`;
    everything else is optional (module docstring).

    The core builds one instance per configured channel with the validated channel-level
    settings (``Settings``, as a dict) and the list of :class:`Account`.
    """

    name: ClassVar[str]
    title: ClassVar[str] = ""
    regions: ClassVar[tuple[str, ...]] = ()
    # what CheckResult.targets are, in the channel's words ("profile", "marketplace", "scope")
    target_kind: ClassVar[str] = ""
    refresh_tokens: ClassVar[RefreshTokens | None] = None
    application_client: ClassVar[ApplicationClient | None] = None
    reasons: ClassVar[tuple[Reason, ...]] = ()
    # the `endpoint` label values this channel passes to ctx.send
    request_endpoints: ClassVar[tuple[str, ...]] = ()
    # How to fix an account whose credential is rejected, for a channel without a
    # reconnector: shown by `reconnect --list` and the status API ({channel}, {account} are
    # filled in). Ignored when reconnector() returns a flow: then it is `channel-agent reconnect`.
    fix_instruction: ClassVar[str] = ""
    # the models of the channel's settings and of each account's (see ChannelSettings)
    Settings: ClassVar[type[ChannelSettings]] = ChannelSettings
    AccountSettings: ClassVar[type[AccountSettings]] = AccountSettings
    def __init__(self, settings: dict[str, Any], accounts: list[Account]) -> None:
        self.settings = settings
        self.accounts = accounts

    @abstractmethod
    async def check(self, account: Account, ctx: CheckContext) -> CheckResult:
        """Check one account's credential; never raise for anything the provider says
        (a :class:`TransientError` from :meth:`CheckContext.send` may escape)."""

    def carry_over(self, previous: Channel) -> None:
        """On a configuration reload, take over what ``previous`` (the instance this one
        replaces) holds in memory and must not lose, such as cached access tokens or a rotated
        refresh token not yet stored. The default keeps nothing."""
        return None

    @classmethod
    def reason_table(cls) -> dict[str, Reason]:
        """Every reason this channel may report: the core ones and its own."""
        return reason_table(cls.reasons)

    def retry_policy(self) -> RetryPolicy:
        """The policy of :meth:`CheckContext.send`, from the core settings ``retry`` and
        ``request_timeout`` every channel has (:class:`ChannelSettings`)."""
        retry = self.settings.get("retry") or {}
        return RetryPolicy(initial_backoff=float(retry.get("initial_backoff", 2.0)),
                           max_backoff=float(retry.get("max_backoff", 30.0)),
                           request_timeout=float(self.settings.get("request_timeout") or 10.0))

    def refresh_token_max_age(self) -> float:
        """Seconds a refresh token lives after it is granted; 0 means it never expires (or the
        channel has no refresh tokens)."""
        tokens = self.refresh_tokens
        if tokens is None or tokens.max_age_setting is None:
            return 0.0
        return float(self.settings.get(tokens.max_age_setting) or 0)

    def refresh_token_expiry(self, account: str, issued: float) -> float | None:
        """When the long-lived credential of the account named ``account``, granted (or first
        seen) at ``issued``, stops working; None when it does not expire. Default:
        ``refresh_token_max_age`` after ``issued``."""
        max_age = self.refresh_token_max_age()
        return issued + max_age if max_age > 0 else None

    def metrics(self) -> Iterable[Metric]:
        """Channel-level metric families (a few series, never one per account), rendered at
        every scrape from what the channel holds in memory. Default: none."""
        return ()

    def backpressure(self, response: httpx.Response) -> float | None:
        """Seconds to hold back further requests to this response's host, from what the
        provider says about its rate limit in a successful answer (a 429 is handled by the
        core). Default: None."""
        return None

    def refresh_token_ref(self, account: Account) -> SecretRef | None:
        """Where the account's refresh token is configured (a file, or inline/environment)."""
        if self.refresh_tokens is None:
            return None
        ref = account.settings.get(self.refresh_tokens.option)
        return ref if isinstance(ref, SecretRef) else None

    def client_secret_expiry(self) -> float | None:
        """Unix time the application's client secret expires, when the channel declares one
        that does and its last rotation is configured."""
        client = self.application_client
        if client is None or not client.secret_rotated_setting:
            return None
        rotated = self.settings.get(client.secret_rotated_setting)
        max_age = self.settings.get(client.secret_max_age_setting or "")
        if not rotated or not max_age:
            return None
        return parse_date(str(rotated)) + float(max_age)

    def reconnector(self) -> Reconnector | None:
        """The channel's re-authorisation flow (``channel-agent reconnect``), if it has one."""
        return None

    def fix_command(self, account: Account) -> str:
        """What to do about a rejected credential of ``account``: the reconnect command, the
        channel's own :attr:`fix_instruction`, or "" when the channel gives none."""
        if self.reconnector() is not None:
            return f"channel-agent reconnect {self.name} --account {account.name}"
        return self.fix_instruction.format(channel=self.name, account=account.name)

    @classmethod
    def demo(cls) -> Demo | None:
        """An optional built-in simulator setup for ``channel-agent demo``."""
        return None
