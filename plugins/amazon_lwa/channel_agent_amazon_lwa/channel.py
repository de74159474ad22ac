"""What every Login with Amazon channel is: regions na/eu/fe, a refresh token per account, one
application client whose secret may expire, and an access-token cache kept across reloads."""

from __future__ import annotations

from typing import Any

from agent.channel import Account, Channel, CheckContext, RefreshTokens, Secret
from channel_agent_amazon_lwa.session import LwaSession, LwaTokens
from channel_agent_amazon_lwa.settings import LWA_APPLICATION

# settings whose change makes cached access tokens useless
CLIENT_KEYS = ("client_id", "client_secret", "endpoints")


class LwaChannel(Channel):
    """Base of the Amazon channels; their ``Settings`` subclass
    :class:`channel_agent_amazon_lwa.settings.LwaSettings` with an ``endpoints.token_url``."""

    regions = ("na", "eu", "fe")
    refresh_tokens = RefreshTokens()
    application_client = LWA_APPLICATION

    def __init__(self, settings: dict[str, Any], accounts: list[Account]) -> None:
        super().__init__(settings, accounts)
        self.tokens = LwaTokens()

    def session(self, account: Account, ctx: CheckContext, refresh_token: Secret) -> LwaSession:
        """One check's (or one reconnect verification's) Login with Amazon side."""
        return LwaSession(self.tokens, account, ctx, refresh_token, self.settings,
                          self.settings["endpoints"]["token_url"][account.region], self.name)

    def carry_over(self, previous: Channel) -> None:
        if not isinstance(previous, type(self)):
            return
        same_client = all(previous.settings.get(key) == self.settings.get(key)
                          for key in CLIENT_KEYS)
        self.tokens.carry_over(previous.tokens, same_client,
                               [account.name for account in self.accounts])
