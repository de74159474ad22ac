"""A stand-in for the account holder's browser, for `channel-agent reconnect` tests.

Run as ``BROWSER="python tests/fake_browser.py %s"``: it opens the consent URL as the simulated
account named by $FAKE_BROWSER_ACCOUNT (or declines when it is "-"), then follows Amazon's
redirect to wherever it points (the local callback, or the agent's /oauth/callback), and
writes that final page to $FAKE_BROWSER_PAGE when set.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx


def consent(url: str, account: str | None) -> str:
    """The Location the simulated consent page redirects to."""
    extra = "sim_decline=1" if account is None else f"sim_account={account}"
    response = httpx.get(f"{url}&{extra}", follow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    return response.headers["Location"]


def main() -> None:
    account = os.environ.get("FAKE_BROWSER_ACCOUNT", "-")
    location = consent(sys.argv[1], None if account == "-" else account)
    page = httpx.get(location, timeout=30)
    if os.environ.get("FAKE_BROWSER_PAGE"):
        Path(os.environ["FAKE_BROWSER_PAGE"]).write_text(f"{page.status_code}\n{page.text}")


if __name__ == "__main__":
    main()
