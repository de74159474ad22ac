"""A click group whose commands are imported when they are used, not when the program starts.

Each command module pulls what it needs (the configuration models, the service, aiohttp...);
importing all of them for every ``channel-agent status`` cost ~1 s of the 2-core machine's CPU.
Listing the commands (``--help``) imports them all, so help pages are what they were.
"""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Callable, Mapping

import click


class LazyGroup(click.Group):
    """``lazy_commands`` maps a command's name to ``"module:attribute"``; the module is
    imported the first time the command is looked up, and ``loaded`` (if given) is called with
    each command so imported."""

    def __init__(self, *args: object, lazy_commands: Mapping[str, str],
                 loaded: Callable[[click.Command], None] | None = None,
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy_commands = dict(lazy_commands)
        self._loaded = loaded

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands and cmd_name not in self.commands:
            self.add_command(self._import(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def _import(self, name: str) -> click.Command:
        module, _, attribute = self.lazy_commands[name].partition(":")
        command = getattr(_import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy_commands[name]} is not a click command")
        if self._loaded is not None:
            self._loaded(command)
        return command


def _import_module(name: str) -> object:
    """``importlib.import_module(name)`` without the garbage collector walking what it
    imports: the modules, classes and pydantic's validators live as long as the process, so
    the collections during the import free nothing, and neither would the later ones that
    walk them again. It is off meanwhile, and what the import made is frozen (``gc.freeze``,
    as ``run`` does with everything at ready): ~0.035 s of CPU of ``run``'s ~0.35 s import
    before ``/-/ready``."""
    if name in sys.modules:
        return sys.modules[name]
    collecting = gc.isenabled()
    gc.disable()
    try:
        return importlib.import_module(name)
    finally:
        gc.freeze()
        if collecting:
            gc.enable()
