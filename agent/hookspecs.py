"""Hook specifications for channel, freshness-source, inventory-source and secret-store
plugins.

A plugin is a module (or object) listed under the ``channel_agent`` entry-point group that
implements one or more of these hooks with ``@hookimpl``. Hooks only *register* things; the
core calls what was registered itself, each call inside its own error handling, so one broken
plugin never silences another.
"""

from __future__ import annotations

from collections.abc import Callable

import click
import pluggy

PROJECT = "channel_agent"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_channels(register: Callable[[type], None]) -> None:
    """Register channel classes.

    :param register: call ``register(ChannelSubclass)`` once per channel the plugin provides.
        The core owns the registry: a second channel with an already registered ``name`` is
        reported as a plugin error and ignored.
    :returns: nothing; all hook implementations are called.
    """


@hookspec
def register_freshness_sources(register: Callable[[type], None]) -> None:
    """Register freshness source types (``type:`` values under ``freshness_sources:``).

    :param register: call ``register(FreshnessSourceSubclass)`` once per source type (a
        subclass of :class:`agent.freshness.FreshnessSource`). The built-in types
        ``heartbeat``, ``sql`` and ``file`` are registered the same way; a second type with an
        already registered ``type`` is reported as a plugin error and ignored.
    :returns: nothing; all hook implementations are called.
    """


@hookspec
def register_secret_stores(register: Callable[[type], None]) -> None:
    """Register secret store types (``type:`` values under ``secret_stores:``).

    :param register: call ``register(SecretStoreSubclass)`` once per store type (a subclass
        of :class:`agent.secrets.base.SecretStore` with a ``type`` and a pydantic ``Settings``
        model). The built-in types ``file``, ``exec``, ``vault``, ``sql`` and
        ``aws_secrets_manager`` are registered the same way; a second type with an already
        registered ``type`` is reported as a plugin error and ignored.
    :returns: nothing; all hook implementations are called.
    """


@hookspec
def register_inventory_sources(register: Callable[[type], None]) -> None:
    """Register inventory source types (``type:`` values under ``inventory_sources:``).

    :param register: call ``register(InventorySourceSubclass)`` once per source type (a
        subclass of :class:`agent.inventory.InventorySource` with a ``type``, its ``options``
        and an async ``fetch()`` returning the rows, one per account). The built-in types
        ``sql``, ``http`` and ``file`` are registered the same way; a second type with an
        already registered ``type`` is reported as a plugin error and ignored.
    :returns: nothing; all hook implementations are called.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``channel-agent`` command line.

    :param cli: the root click group; call ``cli.add_command(...)`` or use ``@cli.command()``.
        Called when a command that is not built in is run or the commands are listed; a
        command named like a built-in one is ignored, with a warning.
    :returns: nothing; all hook implementations are called.
    """
