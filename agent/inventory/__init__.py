"""Account inventory: the accounts the platform has, from its own database, an HTTP endpoint
or files (like Prometheus service discovery), kept in step with the running agent."""

from agent.inventory.source import InventoryError, InventorySource, Row

__all__ = ["InventoryError", "InventorySource", "Row"]
