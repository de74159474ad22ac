"""Entry point of the Amazon Selling Partner API plugin: registers the channel with the core."""

from collections.abc import Callable

from agent.hookspecs import hookimpl


@hookimpl
def register_channels(register: Callable[[type], None]) -> None:
    from channel_agent_amazon_sp.channel import AmazonSpChannel

    register(AmazonSpChannel)
