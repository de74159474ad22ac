"""Entry point of the Amazon Ads plugin: registers the channel with the core."""

from collections.abc import Callable

from agent.hookspecs import hookimpl


@hookimpl
def register_channels(register: Callable[[type], None]) -> None:
    from channel_agent_amazon_ads.channel import AmazonAdsChannel

    register(AmazonAdsChannel)
