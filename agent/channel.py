"""The contract between the core and a channel plugin.

A channel is a class with a ``name``, the models of its configuration (``Settings`` and
``AccountSettings``, pydantic models built from :mod:`agent.config.types`) and one coroutine,
:meth:`Channel.check`, that looks at one account's credential and returns a
:class:`CheckResult`. The core owns everything else: parsing and validating configuration,
scheduling, timeouts, state, metrics and the HTTP server.

A channel may also offer a :class:`Reconnector` (:meth:`Channel.reconnector`): the three
provider-specific steps of re-authorising an account. ``channel-agent reconnect`` drives them
(state, PKCE, receiving the redirect, storing the token, telling the agent).
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import httpx
from pydantic import AfterValidator, Field

from agent.config.types import ConfigModel, Duration, Url, problem
from agent.redact import register_secret

# The fixed, documented set of failure reasons (docs: README "Failure reasons").
# Conclusive reasons mean the credential was rejected: channel_credential_valid becomes 0.
CONCLUSIVE_REASONS: tuple[str, ...] = (
    "invalid_grant",
    "invalid_client",
    "unauthorized_client",
    "invalid_scope",
    "unauthorized",
    "forbidden",
    "profile_missing",
    "missing_credential",
)
# Transient reasons mean the check reached no conclusion: the credential state is unchanged.
TRANSIENT_REASONS: tuple[str, ...] = (
    "throttled",
    "timeout",
    "network",
    "server_error",
    "bad_response",
    "plugin_error",
    "secret_unavailable",  # the secret store holding the credential did not answer
)
REASONS: tuple[str, ...] = CONCLUSIVE_REASONS + TRANSIENT_REASONS


class Secret:
    """A secret string that never shows itself in repr, str, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        return self._value

    def fingerprint(self) -> str:
        """A short, non-reversible identifier, safe to store and show."""
        return fingerprint(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


class MissingSecret(Exception):
    """A secret is absent or empty. ``problem`` says what is wrong ("file X is empty");
    the message also names where the secret was configured."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}" if source else problem)
        self.problem = problem


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: read it at use time, so an updated file is picked up without reload.

    Exactly one of ``path``, ``value`` and ``store`` is set (``value`` comes from the config
    file itself, usually through ``${VAR}`` expansion; ``store``/``key`` name a secret store's
    entry, read from ``registry``, the :class:`agent.secrets.registry.SecretStores` whose
    cache the core fills before each check).
    """

    path: Path | None = None
    value: Secret | None = None
    source: str = ""  # e.g. "accounts[0].refresh_token_file"; never the secret itself
    store: str | None = None
    key: str | None = None
    mode: str | None = None  # owner / observer for this account; None: the store's
    registry: Any = field(default=None, compare=False, repr=False)

    @property
    def withheld(self) -> bool:
        """Neither a value nor a file: an inventory account restored from the state file,
        whose token (held by its source only) comes back with the source's next answer."""
        return self.path is None and self.value is None and self.store is None

    def read(self) -> Secret:
        if self.store is not None:
            return self.registry.cached(self)
        if self.withheld:
            raise MissingSecret(self.source, "is not known yet (withheld)")
        if self.value is not None:
            if not self.value.reveal():
                raise MissingSecret(self.source, "is empty")
            return self.value
        assert self.path is not None
        try:
            text = _read_small_file(self.path).decode("utf-8").strip()
        except FileNotFoundError:
            raise MissingSecret(self.source, f"file {self.path} does not exist") from None
        except OSError as exc:
            problem = f"cannot read file {self.path}: {exc.strerror}"
            raise MissingSecret(self.source, problem) from None
        except UnicodeDecodeError:
            raise MissingSecret(self.source, f"file {self.path} is not UTF-8 text") from None
        except ValueError as exc:
            raise MissingSecret(self.source, f"file {self.path} {exc}") from None
        if not text:
            raise MissingSecret(self.source, f"file {self.path} is empty")
        return Secret(text)


MAX_SECRET_FILE = 64 * 1024


def _read_small_file(path: Path) -> bytes:
    """A regular file's bytes. A FIFO or device (``/dev/zero``) would block or never end:
    ValueError, as for a file too large to be a secret."""
    if not path.is_file():
        if not path.exists():
            raise FileNotFoundError(path)
        raise ValueError("is not a regular file")
    with path.open("rb") as f:
        data = f.read(MAX_SECRET_FILE + 1)
    if len(data) > MAX_SECRET_FILE:
        raise ValueError(f"is larger than {MAX_SECRET_FILE // 1024} KiB: not a secret")
    return data


@dataclass
class Account:
    """One configured account of one channel. ``settings`` holds its validated
    ``AccountSettings`` (as a dict); ``labels`` are exported once, on
    ``channel_account_info``; ``source`` is "config" or the name of the inventory source that
    discovered the account."""

    channel: str
    name: str
    region: str
    settings: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    source: str = "config"

    @property
    def key(self) -> tuple[str, str]:
        return (self.channel, self.name)


@dataclass
class CheckResult:
    """What one check of one account found.

    ``valid``: True (credential works), False (conclusively rejected: ``reason`` is one of
    CONCLUSIVE_REASONS) or None (no conclusion: ``reason`` is one of TRANSIENT_REASONS).
    ``detail`` is a short human explanation; it must never contain a secret.
    """

    valid: bool | None
    reason: str | None = None
    detail: str = ""
    # profile id -> accessible; expected profiles and those seen
    profiles: dict[str, bool] = field(default_factory=dict)
    access_token_issued_at: float | None = None
    access_token_expires_at: float | None = None
    refresh_token_fingerprint: str | None = None
    # False when the application's client id/secret was rejected, True when accepted,
    # None when this check did not learn anything about the client.
    client_valid: bool | None = None

    def __post_init__(self) -> None:
        if self.valid is True and self.reason is not None:
            raise ValueError("a valid result carries no failure reason")
        if self.valid is False and self.reason not in CONCLUSIVE_REASONS:
            raise ValueError(f"{self.reason!r} is not a conclusive reason")
        if self.valid is None and self.reason not in TRANSIENT_REASONS:
            raise ValueError(f"{self.reason!r} is not a transient reason")

    @property
    def conclusive(self) -> bool:
        return self.valid is not None


@dataclass
class CheckContext:
    """What the core hands a channel for one check.

    ``http`` is the channel's shared client (its transport is chosen by the core, tests pass
    ``httpx.MockTransport``); ``deadline`` is a ``time.monotonic()`` value by which the whole
    check, retries included, must end; ``record_request(endpoint, code)`` counts a request made
    to the channel's API (``code`` is the HTTP status, or a transient reason when no response);
    ``persist_refresh_token(secret)`` stores a refresh token the provider handed back;
    ``token_owner`` is False when the account's token belongs to the platform (its secret store
    is in observer mode): a channel whose provider rotates refresh tokens on use must then not
    exchange it, and check with what it may use without consuming it.
    """

    http: httpx.AsyncClient
    deadline: float
    record_request: Callable[[str, str], None] = lambda endpoint, code: None
    persist_refresh_token: Callable[[Account, Secret], None] | None = None
    clock: Callable[[], float] = time.time
    token_owner: bool = True

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


DEFAULT_REDIRECT_URI = "http://127.0.0.1:8765/oauth/callback"


def _not_negative(value: float) -> float:
    if value < 0:
        raise problem("must be 0 (no limit) or more")
    return value


class ChannelSettings(ConfigModel):
    """A channel's settings: a plugin subclasses this (``Channel.Settings``) with its own fields.

    The fields here are the core's, which every channel has (:mod:`agent.checks.ratelimit`).
    """

    core_keys = ("accounts", "datasets")

    max_requests_per_second: Annotated[float, AfterValidator(_not_negative)] = Field(
        0.0, description="Requests per second to each of the channel's hosts, at most; "
                         "0 = no limit.")
    pause_host_on_429: bool = Field(
        True, description="A 429 pauses every request to that host (Retry-After, else 1s "
                          "doubling to 60s).")


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


class ReconnectError(Exception):
    """A reconnect step failed and nothing was stored. ``message`` is for humans (no secret);
    ``reason`` is for scripts: declined, state_mismatch, code_rejected, expired, timeout,
    unavailable (the provider did not answer), rejected, profiles_missing, store_failed,
    interrupted, unsupported (the account cannot be reconnected as asked)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ProfileInfo:
    """One profile (advertiser, shop, ...) a new consent can reach, as shown to the user."""

    id: str
    name: str = ""
    country: str = ""
    kind: str = ""


@dataclass
class VerifyResult:
    """What the new refresh token can reach.

    ``refresh_token`` is the token to store (the verifying refresh may have handed back a
    rotated one); ``missing`` lists the account's expected profiles it does not reach."""

    refresh_token: Secret
    profiles: list[ProfileInfo]
    missing: list[str] = field(default_factory=list)


class Reconnector(ABC):
    """A channel's re-authorisation (OAuth authorization-code grant with PKCE S256).

    The core generates ``state`` and the PKCE pair, receives the redirect, checks ``state``,
    stores the token and records the grant; the channel builds the consent URL, exchanges the
    code and verifies the new token. Provider answers become :class:`ReconnectError`.
    """

    # Told to the user after a reconnect, e.g. how long until data catches up.
    after_reconnect_note: ClassVar[str] = ""

    @abstractmethod
    def consent_url(self, account: Account, state: str, code_challenge: str,
                    redirect_uri: str) -> str:
        """The provider's consent page for this account (its region), PKCE method S256."""

    @abstractmethod
    async def exchange(self, account: Account, code: str, code_verifier: str,
                       redirect_uri: str, ctx: CheckContext) -> Secret:
        """Trade the authorization code for a new refresh token."""

    @abstractmethod
    async def verify(self, account: Account, refresh_token: Secret,
                     ctx: CheckContext) -> VerifyResult:
        """Use the new token once (refresh, list profiles) and compare with what is expected."""

    def redirect_error(self, error: str, description: str) -> ReconnectError:
        """What an ``error=`` redirect from the consent page means."""
        if error == "access_denied":
            return ReconnectError("declined", "the consent was declined (access_denied)")
        text = f"{error}: {description}" if description else error
        return ReconnectError("rejected", f"the consent page returned an error ({text})")


class Channel(ABC):
    """Base class for a channel plugin. Subclasses set ``name`` and implement :meth:`check`.

    The core builds one instance per configured channel with the validated channel-level
    settings (``Settings``, as a dict) and the list of :class:`Account`.
    """

    name: ClassVar[str]
    title: ClassVar[str] = ""
    # the account setting (a SecretReference) holding the refresh token; the core writes a
    # rotated or reconnected token back to its file
    refresh_token_option: ClassVar[str] = "refresh_token"
    regions: ClassVar[tuple[str, ...]] = ()
    # the `endpoint` label values this channel reports through record_request
    request_endpoints: ClassVar[tuple[str, ...]] = ()
    # the models of the channel's settings and of each account's (see ChannelSettings)
    Settings: ClassVar[type[ChannelSettings]] = ChannelSettings
    AccountSettings: ClassVar[type[AccountSettings]] = AccountSettings

    def __init__(self, settings: dict[str, Any], accounts: list[Account]) -> None:
        self.settings = settings
        self.accounts = accounts

    @abstractmethod
    async def check(self, account: Account, ctx: CheckContext) -> CheckResult:
        """Check one account's credential; never raise for anything the provider says."""

    def carry_over(self, previous: Channel) -> None:
        """On a configuration reload, take over what ``previous`` (the instance this one
        replaces) holds in memory and must not lose, such as cached access tokens or a rotated
        refresh token not yet stored. The default keeps nothing."""
        return None

    def refresh_token_max_age(self) -> float:
        """Seconds a refresh token lives after it is granted; 0 means it never expires."""
        return float(self.settings.get("refresh_token_max_age") or 0)

    def refresh_token_ref(self, account: Account) -> SecretRef | None:
        """Where the account's refresh token is configured (a file, or inline/environment)."""
        ref = account.settings.get(self.refresh_token_option)
        return ref if isinstance(ref, SecretRef) else None

    def reconnector(self) -> Reconnector | None:
        """The channel's re-authorisation flow (``channel-agent reconnect``), if it has one."""
        return None

    @classmethod
    def demo(cls) -> Demo | None:
        """An optional built-in simulator setup for ``channel-agent demo``."""
        return None


class Demo(ABC):
    """A running simulator plus the channel configuration that points at it.

    The demo's channel section may declare ``datasets`` read from two freshness sources the
    core provides: ``demo_warehouse`` (a ``sql`` source over a SQLite file seeded from
    :meth:`data_syncs`) and ``demo_pipeline`` (``heartbeat``: ``channel-agent mark-synced``).
    """

    WAREHOUSE_SOURCE: ClassVar[str] = "demo_warehouse"
    HEARTBEAT_SOURCE: ClassVar[str] = "demo_pipeline"

    @abstractmethod
    async def start(self, workdir: Path) -> dict[str, Any]:
        """Start the simulator on loopback; return this channel's config section (plain data)."""

    @abstractmethod
    async def stop(self) -> None: ...

    def describe(self) -> list[str]:
        """Lines printed by ``channel-agent demo`` (URLs, scenario per account)."""
        return []

    def data_syncs(self) -> list[tuple[str, str, float]]:
        """(account, dataset, hours ago) of each last successful data sync, seeded into the
        demo warehouse when the demo starts."""
        return []
