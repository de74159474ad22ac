"""Entry point of the Shopify plugin: registers the channel with the core."""

from collections.abc import Callable

from agent.hookspecs import hookimpl


@hookimpl
def register_channels(register: Callable[[type], None]) -> None:
    from channel_agent_shopify.channel import ShopifyChannel

    register(ShopifyChannel)
