"""Failure reasons: a small core set every alert understands, plus the reasons a channel declares.

Every reason belongs to one class, and the class, not the reason, is what alert rules and
``channel-agent reconnect --list`` act on (README "Failure reasons"):

    class        conclusive  who fixes it
    -----------  ----------  ---------------------------------------------------------------
    credential   yes         the account holder: reconnect (a new consent)
    permission   yes         the account holder: grant the access the consent lost (or
                             reconnect with a user who has it)
    application  yes         the platform: the application's client id/secret or its approval;
                             every account of the channel at once, reconnecting does not help
    merchant     yes         the merchant (or the provider): the merchant's own account there
                             is unusable (a Shopify shop frozen, locked, closed); the
                             credential is fine, reconnecting does not help
    transient    no          nobody: the check reached no conclusion, the credential's state
                             is unchanged

A channel declares its own reasons (:attr:`agent.channel.Channel.reasons`) within these
classes, e.g. Amazon Ads' ``profile_missing`` (permission); they are exported for that channel
only. A declared reason may not reuse a core name.
"""

from __future__ import annotations

from dataclasses import dataclass

CREDENTIAL = "credential"
PERMISSION = "permission"
APPLICATION = "application"
MERCHANT = "merchant"
TRANSIENT = "transient"
REASON_CLASSES: tuple[str, ...] = (CREDENTIAL, PERMISSION, APPLICATION, MERCHANT, TRANSIENT)


@dataclass(frozen=True)
class Reason:
    """One failure reason: its name (the ``reason`` label), its class and what it means."""

    name: str
    cls: str
    doc: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"reason {self.name!r} is not an identifier")
        if self.cls not in REASON_CLASSES:
            raise ValueError(f"reason {self.name!r}: class {self.cls!r} is not one of "
                             f"{', '.join(REASON_CLASSES)}")

    @property
    def conclusive(self) -> bool:
        return self.cls != TRANSIENT


CORE_REASONS: tuple[Reason, ...] = (
    Reason("invalid_grant", CREDENTIAL,
           "the provider refuses the refresh token: revoked, expired or never granted"),
    Reason("unauthorized", CREDENTIAL,
           "the API answers 401 although a fresh access token was used"),
    Reason("missing_credential", CREDENTIAL,
           "the credential file is absent or empty, or its secret store has no such key"),
    Reason("forbidden", PERMISSION,
           "the API answers 403: the consenting user lacks access to what was asked"),
    Reason("target_missing", PERMISSION,
           "something the consent must reach (a profile, a marketplace, a scope) is not "
           "reached any more"),
    Reason("invalid_client", APPLICATION,
           "the application's client id/secret is rejected (or its secret expired)"),
    Reason("unauthorized_client", APPLICATION, "the application is not allowed this grant"),
    Reason("invalid_scope", APPLICATION, "the scope is not approved for the application"),
    Reason("throttled", TRANSIENT,
           "429 until the check's time budget ran out, or the agent held the request back"),
    Reason("timeout", TRANSIENT, "no answer within the request or check timeout"),
    Reason("network", TRANSIENT, "connection refused or reset, DNS failure"),
    Reason("server_error", TRANSIENT, "5xx, or the provider said it is unavailable"),
    Reason("bad_response", TRANSIENT,
           "an answer the channel cannot read: malformed JSON, an unknown shape or error code"),
    Reason("plugin_error", TRANSIENT, "the channel plugin raised or returned garbage"),
    Reason("secret_unavailable", TRANSIENT,
           "the secret store holding the credential did not answer (down, timeout, denied, "
           "garbage); the credential was not tried"),
)
CORE: dict[str, Reason] = {reason.name: reason for reason in CORE_REASONS}

CONCLUSIVE_REASONS: tuple[str, ...] = tuple(r.name for r in CORE_REASONS if r.conclusive)
TRANSIENT_REASONS: tuple[str, ...] = tuple(r.name for r in CORE_REASONS if not r.conclusive)
REASONS: tuple[str, ...] = CONCLUSIVE_REASONS + TRANSIENT_REASONS


def reason_table(declared: tuple[Reason, ...]) -> dict[str, Reason]:
    """The core reasons plus a channel's declared ones; ValueError when one clashes."""
    table = dict(CORE)
    for reason in declared:
        if not isinstance(reason, Reason):
            raise ValueError(f"{reason!r} is not an agent.reasons.Reason")
        if reason.name in table:
            raise ValueError(f"reason {reason.name!r} is already a core or declared reason")
        table[reason.name] = reason
    return table
