"""The JSON Schema of the configuration file, built from the same models that validate it.

Editors use it for completion and checking as you type (yaml-language-server's
``# yaml-language-server: $schema=...`` comment). It describes the file's shape; what only
the agent can know (that a ``*_file`` exists, that a data set names a configured source)
is still for ``channel-agent config check``. A ``${VAR}`` reference in a number or boolean
field shows as a schema warning in the editor (durations and URLs accept one); the agent
accepts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from agent.channel import Channel
from agent.config.loader import account_model
from agent.config.models import ACCOUNT_NAME, AgentModel, DatasetEntry
from agent.freshness.source import FreshnessSource
from agent.inventory.source import InventorySource
from agent.secrets.base import SecretStore
from agent.secrets.config import reference_fields

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_NAME = {"pattern": f"^{ACCOUNT_NAME.pattern}$"}
# a credential in a secret store (agent.secrets.config.parse_reference); NAME:KEY is a string
_REFERENCE = {"type": "object", "additionalProperties": False, "required": ["store"],
              "properties": {"store": {"type": "string"}, "key": {"type": "string"},
                             "mode": {"enum": ["owner", "observer"]}},
              "description": "A secret store reference (or the string NAME:KEY)"}


def config_schema(channels: Mapping[str, type[Channel]],
                  sources: Mapping[str, type[FreshnessSource]],
                  inventory: Mapping[str, type[InventorySource]] | None = None,
                  stores: Mapping[str, type[SecretStore]] | None = None,
                  ) -> dict[str, Any]:
    """The JSON Schema of a configuration file for these channels, freshness source types,
    inventory source types and secret store types."""
    inventory = inventory or {}
    stores = stores or {}
    models: list[type[BaseModel]] = [AgentModel, DatasetEntry]
    for cls in channels.values():
        models += [cls.Settings, account_model(cls)]
    models += [source.Settings for source in sources.values()]
    models += [source.Settings for source in inventory.values()]
    models += [store.Settings for store in stores.values()]
    refs, top = models_json_schema([(model, "validation") for model in dict.fromkeys(models)],
                                   ref_template="#/$defs/{model}")
    defs: dict[str, Any] = top.get("$defs", {})

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return dict(refs[(model, "validation")])

    def definition(model: type[BaseModel]) -> dict[str, Any]:
        return defs[ref(model)["$ref"].rsplit("/", 1)[1]]

    datasets = {"type": "object", "propertyNames": _NAME,
                "additionalProperties": ref(DatasetEntry),
                "description": "data set name -> {source, max_age}"}
    channel_schemas = {}
    for name, cls in sorted(channels.items()):
        account = definition(account_model(cls))
        account["properties"]["datasets"] = datasets
        account["properties"]["name"].update(_NAME)
        for field in reference_fields(cls):
            account["properties"][field] = {"anyOf": [account["properties"][field], _REFERENCE]}
        if cls.regions:
            account["properties"]["region"] = {"enum": list(cls.regions),
                                               "description": "The account's region"}
            account.setdefault("required", []).append("region")
        else:
            account["properties"].pop("region", None)
        channel_schemas[name] = {
            "allOf": [ref(cls.Settings)],
            "title": cls.title or name,
            # no account is required: an inventory source may feed the channel
            "properties": {"accounts": {"type": "array", "items": ref(account_model(cls))},
                           "datasets": datasets},
        }
    source_schemas = [
        {"allOf": [ref(source.Settings)], "title": source.title or type_name,
         "properties": {"type": {"const": type_name}}, "required": ["type"]}
        for type_name, source in sorted(sources.items())]
    inventory_schemas = [
        {"allOf": [ref(source.Settings)], "title": source.title or type_name,
         "properties": {"type": {"const": type_name}}, "required": ["type"]}
        for type_name, source in sorted(inventory.items())]
    store_schemas = [
        {"allOf": [ref(store.Settings)], "title": type_name,
         "properties": {"type": {"const": type_name}}, "required": ["type"]}
        for type_name, store in sorted(stores.items())]
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "Channel Health Agent configuration",
        "type": "object",
        "additionalProperties": False,
        "required": ["channels"],
        "properties": {
            "agent": ref(AgentModel),
            "freshness_sources": {"type": "object", "propertyNames": _NAME,
                                  "additionalProperties": {"anyOf": source_schemas}},
            "inventory_sources": {"type": "object", "propertyNames": _NAME,
                                  "additionalProperties": {"anyOf": inventory_schemas}},
            "secret_stores": {"type": "object", "propertyNames": _NAME,
                              "additionalProperties": {"anyOf": store_schemas}},
            "channels": {"type": "object", "minProperties": 1, "additionalProperties": False,
                         "properties": channel_schemas},
        },
        "$defs": defs,
    }
