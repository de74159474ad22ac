"""What an Amazon answer means for the credential (facts: shared/reference/amazon-ads-api.md).

Login with Amazon's answers are classified in :mod:`channel_agent_amazon_lwa.classify`, shared
with the Selling Partner API channel.

Amazon Ads API error bodies: ``{"code", "details", "requestId"}``, gateway ``{"message"}``,
or ``{"detail"}``. A 401 is retried once after a forced token refresh before it counts:

    HTTP                       reason          credential
    -------------------------  --------------  ----------------------------------------
    401 (twice)                unauthorized    the account (or the probed profile)
    403 naming an ad product   ad_product_     the probed profile, for that product (not the
      ("not authorized for     unauthorized    credential: airbytehq/airbyte PR #5023)
      Sponsored Display")
    403                        forbidden       the account (or the probed profile)
    400 "Advertiser ID cannot  (none)          probe not applicable: an agency profile
      be decrypted"                            (airbytehq/airbyte issue #6240)
    429                        throttled       transient
    5xx                        server_error    transient (a 502 HTML gateway page too)
    other 3xx/4xx (404, 425)   bad_response    transient
    2xx of unknown shape       bad_response    transient (a 200 HTML page, profiles not
                                               a list, profileId missing, no campaigns)

An expected profile absent from ``/v2/profiles`` is ``profile_missing`` (conclusive).
No response at all: ``network`` or ``timeout`` (transient, from ``agent.checks.httpretry``).
"""

from __future__ import annotations

import re
from typing import Any

from channel_agent_amazon_lwa.classify import (
    BAD_RESPONSE,
    SERVER_ERROR,
    Verdict,
    conclusive,
    error_text,
    transient,
)

# Ads API statuses, looked up after the 401 retry.
ADS_ERRORS: dict[int, Verdict] = {
    401: conclusive("unauthorized"),
    403: conclusive("forbidden"),
    429: transient("throttled"),
}
AD_PRODUCT_UNAUTHORIZED = conclusive("ad_product_unauthorized")
# "Advertiser is not authorized for Sponsored Display." (airbytehq/airbyte PR #5023)
_NAMES_AN_AD_PRODUCT = re.compile(r"not authorized for sponsored (products|brands|display)",
                                  re.IGNORECASE)
# "The request input is invalid. Advertiser ID cannot be decrypted" (airbytehq/airbyte #6240)
_NOT_APPLICABLE = "advertiser id cannot be decrypted"


def ads_verdict(status: int, body: Any = None) -> Verdict:
    """Classify a non-2xx Ads API status (a 401 only once the retry also got 401)."""
    if status == 403 and _NAMES_AN_AD_PRODUCT.search(error_text(body)):
        return AD_PRODUCT_UNAUTHORIZED
    if status in ADS_ERRORS:
        return ADS_ERRORS[status]
    if status >= 500:
        return SERVER_ERROR
    return BAD_RESPONSE


def probe_not_applicable(status: int, body: Any) -> bool:
    """A campaign call on a profile that cannot be probed (an agency profile)."""
    return status == 400 and _NOT_APPLICABLE in error_text(body).lower()
