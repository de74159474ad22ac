"""Account inventory: the accounts the platform has, from its own database, an HTTP endpoint
or files (like Prometheus service discovery), kept in step with the running agent."""

from __future__ import annotations

from typing import Any

__all__ = ["Answer", "InventoryError", "InventorySource", "InventorySourceSettings", "Row"]


def __getattr__(name: str) -> Any:
    # imported when used: agent.config imports agent.inventory.labels, and the source contract
    # imports agent.config
    if name in __all__:
        from agent.inventory import source

        return getattr(source, name)
    raise AttributeError(name)
