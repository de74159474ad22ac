"""What a channel offers to re-authorise an account (``channel-agent reconnect``): the consent
URL, the code exchange and the verification. The core drives them (:mod:`agent.reconnect`).

Plugins import these names from :mod:`agent.channel`, the plugin-facing module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from typing import TYPE_CHECKING, ClassVar

from agent.secret import Secret

if TYPE_CHECKING:
    from agent.channel import Account, CheckContext


class ReconnectError(Exception):
    """A reconnect step failed and nothing was stored. ``message`` is for humans (no secret);
    ``reason`` is for scripts: declined, state_mismatch, code_rejected, expired, timeout,
    unavailable (the provider did not answer), rejected, targets_missing, store_failed,
    interrupted, unsupported (the account cannot be reconnected as asked)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class TargetInfo:
    """One target a new consent can reach (the channel's ``target_kind``: an Ads profile, an
    SP-API marketplace, a scope), as shown to the user. ``kind`` is its sub-type, if any
    (an Ads profile's seller/vendor/agency)."""

    id: str
    name: str = ""
    country: str = ""
    kind: str = ""


ProfileInfo = TargetInfo  # deprecated name, kept for plugins written before targets


@dataclass
class VerifyResult:
    """What the new refresh token can reach.

    ``refresh_token`` is the token to store (the verifying refresh may have handed back a
    rotated one); ``targets`` what it reaches; ``expected`` the account's expected targets
    and ``missing`` those of them it does not reach. ``profiles=`` is the deprecated name of
    ``targets=``."""

    refresh_token: Secret
    targets: list[TargetInfo] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)
    profiles: InitVar[list[TargetInfo] | None] = None

    def __post_init__(self, profiles: list[TargetInfo] | None) -> None:
        if profiles is not None:
            self.targets = list(profiles)


class Reconnector(ABC):
    """A channel's re-authorisation (OAuth authorization-code grant with PKCE S256).

    The core generates ``state`` and the PKCE pair, receives the redirect, checks ``state``,
    stores the token and records the grant; the channel builds the consent URL, exchanges the
    code and verifies the new token. Provider answers become :class:`ReconnectError`.
    """

    # Told to the user after a reconnect, e.g. how long until data catches up.
    after_reconnect_note: ClassVar[str] = ""
    # The redirect's query parameter holding the authorisation code (SP-API's Seller Central
    # sends spapi_oauth_code).
    code_param: ClassVar[str] = "code"

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

    def check_redirect(self, params: Mapping[str, str]) -> None:
        """Refuse a redirect the provider did not send (raise :class:`ReconnectError`), for
        providers that sign it (Shopify's ``hmac``); called after ``state`` matched, before
        the code is used. Default: nothing beyond ``state``."""
        return None

    def redirect_error(self, error: str, description: str) -> ReconnectError:
        """What an ``error=`` redirect from the consent page means."""
        if error == "access_denied":
            return ReconnectError("declined", "the consent was declined (access_denied)")
        text = f"{error}: {description}" if description else error
        return ReconnectError("rejected", f"the consent page returned an error ({text})")
