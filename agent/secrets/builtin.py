"""The built-in secret store types, registered through the same hook a plugin uses."""

from __future__ import annotations

from collections.abc import Callable

from agent.hookspecs import hookimpl
from agent.secrets.aws import AwsSecretsManagerStore
from agent.secrets.exec import ExecStore
from agent.secrets.file import FileStore
from agent.secrets.sql import SqlStore
from agent.secrets.vault import VaultStore

BUILT_IN_TYPES = (FileStore, ExecStore, VaultStore, SqlStore, AwsSecretsManagerStore)


@hookimpl
def register_secret_stores(register: Callable[[type], None]) -> None:
    for cls in BUILT_IN_TYPES:
        register(cls)
