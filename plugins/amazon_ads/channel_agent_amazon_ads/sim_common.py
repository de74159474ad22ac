"""What every part of the simulator shares: scenarios, accounts, tokens, error answers."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

SCENARIOS = (
    "healthy",
    "revoked",
    "client_rotated",
    "profile_removed",
    "forbidden",
    "throttled",
    "throttled_no_retry_after",
    "server_error",
    "slow",
    "malformed_json",
    "html_gateway",
    "transient_401",
    "unauthorized",
    "server_error_burst",
    "connection_reset",
    "truncated_body",
    "trickle",
    "leaky_errors",
)
# Scenarios that break the connection carrying the answer, whatever the answer is.
CONNECTION_FAULTS = frozenset({"connection_reset", "truncated_body", "trickle"})
NO_ANSWER = 444  # the status counted for a reset connection (nginx's "closed, no answer")
REGIONS = ("na", "eu", "fe")
ADS_SCOPE = "advertising::campaign_management"
SP_CAMPAIGN_MEDIA_TYPE = "application/vnd.spCampaign.v3+json"
ACCESS_TOKEN_TTL = 3600
CODE_TTL = 300
# Expired access tokens are dropped at most this often (not at every issue: 10,000 accounts).
PRUNE_INTERVAL = 60.0

# (countryCode, currencyCode, timezone, marketplaceStringId) per region, cycled over profiles
MARKETPLACES = {
    "na": [
        ("US", "USD", "America/Los_Angeles", "ATVPDKIKX0DER"),
        ("CA", "CAD", "America/Los_Angeles", "A2EUQ1WTGCTBG2"),
        ("MX", "MXN", "America/Los_Angeles", "A1AM78C64UM0Y8"),
    ],
    "eu": [
        ("UK", "GBP", "Europe/London", "A1F83G8C2ARO7P"),
        ("DE", "EUR", "Europe/Paris", "A1PA6795UKMFR9"),
        ("FR", "EUR", "Europe/Paris", "A13V1IB3VIYZZH"),
    ],
    "fe": [
        ("JP", "JPY", "Asia/Tokyo", "A1VC38T7YXB528"),
        ("AU", "AUD", "Australia/Sydney", "A39IBJ37TRP1C6"),
    ],
}

# the account a request turned out to be about, for the request counts
current_account: ContextVar[str | None] = ContextVar("sim_account", default=None)
GATEWAY_SCENARIOS = frozenset(
    {"throttled", "throttled_no_retry_after", "server_error", "malformed_json", "html_gateway"}
)
BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)
INVALID_GRANT_REFRESH = (
    "The request has an invalid grant parameter : refresh_token. "
    "User may have revoked or didn't grant the permission."
)


@dataclass
class SimAccount:
    """An advertiser who consented to the simulated app. All profiles live in ``region``."""

    name: str
    refresh_token: str
    region: str = "na"
    profiles: list[int] = field(default_factory=list)
    scenario: str = "healthy"

    def __post_init__(self) -> None:
        if self.region not in REGIONS:
            raise ValueError(f"unknown region {self.region!r} (one of {', '.join(REGIONS)})")
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}")
        self.profiles = [int(p) for p in self.profiles]

    @classmethod
    def create(
        cls, name: str, region: str = "na", profiles: list[int] | None = None,
        scenario: str = "healthy",
    ) -> SimAccount:
        """An account with a fresh random refresh token."""
        return cls(name, new_refresh_token(name), region, list(profiles or []), scenario)

    def public(self) -> dict[str, Any]:
        """What the control API shows: everything but the refresh token."""
        return {"name": self.name, "region": self.region, "scenario": self.scenario,
                "profiles": list(self.profiles)}


def new_refresh_token(name: str) -> str:
    return f"Atzr|sim-{name}-{secrets.token_urlsafe(32)}"


@dataclass
class AccessToken:
    account: str
    expires_at: float
    # transient_401: the first profiles call with this token fails
    fails_once: bool = True


@dataclass
class AuthCode:
    account: str
    redirect_uri: str
    code_challenge: str | None
    expires_at: float


def request_id() -> str:
    return secrets.token_hex(10).upper()


def json_response(status: int, body: Any, headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> web.Response:
    return web.Response(status=status, text=json.dumps(body, separators=(",", ":")),
                        content_type=content_type,
                        charset="UTF-8", headers=headers)


def lwa_error(status: int, error: str, description: str) -> web.Response:
    return json_response(status, {"error": error, "error_description": description})


def ads_error(status: int, details: str) -> web.Response:
    rid = request_id()
    return json_response(status, {"code": str(status), "details": details, "requestId": rid},
                         headers={"x-amzn-RequestId": rid})


def invalid_client() -> web.Response:
    return lwa_error(401, "invalid_client", "Client authentication failed")


def missing_param(param: str) -> web.Response:
    return lwa_error(400, "invalid_request",
                     f"The request is missing a required parameter : {param}")


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

