import inspect
from pathlib import Path

import pytest

from agent import hookspecs
from agent.channel import Secret
from agent.cli.loading import load_with
from agent.config.loader import build_config
from agent.config.types import Duration
from agent.freshness import FreshnessSource
from agent.freshness.source import PolledSourceSettings
from agent.freshness.sql import SqlSource
from agent.hookspecs import hookimpl
from agent.inventory import InventorySource, InventorySourceSettings
from agent.inventory.sql import SqlInventory
from agent.plugins import BUILT_IN, DEFAULT_PLUGINS, load_plugins
from agent.secrets.base import Fetched, SecretStore, StoreSettings
from agent.secrets.exec import ExecStore
from agent.service import AgentService
from tests.fakes import FakeChannel, FakePlugin


def test_registers_channels_from_plugins():
    plugins = load_plugins([FakePlugin()], entry_points=False)
    assert plugins.channels == {"fake": FakeChannel}
    assert plugins.errors == []


def test_built_in_freshness_sources_are_ordinary_plugins():
    plugins = load_plugins(entry_points=False)
    assert sorted(plugins.freshness_sources) == ["file", "heartbeat", "sql"]
    assert set(plugins.source_origins.values()) == {BUILT_IN}
    for module in DEFAULT_PLUGINS:
        assert plugins.manager.get_plugin(module) is not None


class CountingSettings(PolledSourceSettings):
    age: Duration


class Counting(FreshnessSource):
    """A source type from a plugin: every data set's newest data is ``value`` seconds old."""

    type = "counting"
    Settings = CountingSettings

    async def latest(self, dataset):
        return 1_700_000_000.0 - self.settings["age"]


async def test_register_freshness_sources_adds_a_type_the_config_and_poller_use(tmp_path):
    class SourcePlugin:
        @hookimpl
        def register_freshness_sources(self, register):
            register(Counting)

    plugins = load_plugins([FakePlugin(), SourcePlugin()], entry_points=False)
    assert plugins.freshness_sources["counting"] is Counting
    config = build_config(
        {"agent": {"state_path": ":memory:"},
         "freshness_sources": {"counter": {"type": "counting", "age": "1h", "interval": "1m"}},
         "channels": {"fake": {"datasets": {"orders": {"source": "counter", "max_age": "2h"}},
                               "accounts": [{"name": "a1", "region": "na"}]}}},
        plugins.channels, base_dir=tmp_path, sources=plugins.freshness_sources)
    service = AgentService(config, plugins)
    await service.poller.poll_all()
    labels = {"channel": "fake", "account": "a1", "region": "na", "dataset": "orders",
              "source": "counter"}
    assert service.metrics.registry.get_sample_value(
        "channel_data_last_updated_timestamp_seconds", labels) == 1_700_000_000.0 - 3600
    await service.stop()


def test_a_plugins_freshness_source_type_is_accepted_by_the_commands_loader(tmp_path):
    """`run`, `config check` and a reload read the file through load_with: a type a plugin
    registered must be accepted there too, not only in the schema."""
    class SourcePlugin:
        @hookimpl
        def register_freshness_sources(self, register):
            register(Counting)

    plugins = load_plugins([FakePlugin(), SourcePlugin()], entry_points=False)
    path = tmp_path / "agent.yaml"
    path.write_text(
        "agent: {state_path: ':memory:'}\n"
        "freshness_sources: {counter: {type: counting, age: 1h, interval: 1m}}\n"
        "channels:\n"
        "  fake:\n"
        "    datasets: {orders: {source: counter, max_age: 2h}}\n"
        "    accounts: [{name: a1, region: na}]\n")
    config = load_with(path, plugins)
    assert type(config.freshness_sources["counter"]) is Counting


def test_bad_and_duplicate_source_types_are_refused():
    class Again:
        @hookimpl
        def register_freshness_sources(self, register):
            register(SqlSource)
            register(FakeChannel)

    plugins = load_plugins([Again()], entry_points=False)
    assert plugins.freshness_sources["sql"] is SqlSource
    assert plugins.source_origins["sql"] == BUILT_IN
    messages = " ".join(e.error for e in plugins.errors)
    assert "freshness source type 'sql' is already registered" in messages
    assert "not a FreshnessSource subclass" in messages


def test_amazon_ads_is_found_through_its_entry_point():
    plugins = load_plugins()
    assert "amazon_ads" in plugins.channels
    assert plugins.origins["amazon_ads"].startswith("channel-agent-amazon-ads")


def test_a_broken_plugin_is_recorded_and_the_others_still_register():
    class Broken:
        @hookimpl
        def register_channels(self, register):
            raise RuntimeError("boom")

    plugins = load_plugins([Broken(), FakePlugin()], entry_points=False)
    assert plugins.channels == {"fake": FakeChannel}
    assert len(plugins.errors) == 1 and "boom" in plugins.errors[0].error


def test_duplicate_and_bogus_registrations_are_refused():
    class Again:
        @hookimpl
        def register_channels(self, register):
            register(FakeChannel)
            register(object)

    plugins = load_plugins([FakePlugin(), Again()], entry_points=False)
    assert list(plugins.channels) == ["fake"]
    messages = " ".join(e.error for e in plugins.errors)
    assert "already registered" in messages and "not a Channel subclass" in messages


def test_import_error_in_an_entry_point_is_recorded(monkeypatch):
    import importlib.metadata

    class EP:
        name = "exploding"
        dist = None

        def load(self):
            raise ImportError("no module named nowhere")

    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [EP(), *real(group=group)])
    plugins = load_plugins()
    assert "amazon_ads" in plugins.channels
    assert any(e.plugin == "exploding" and "nowhere" in e.error for e in plugins.errors)


class MemoryStore(SecretStore):
    """A store type from a plugin: secrets in a dict, ``prefix`` put before each."""

    class Settings(StoreSettings):
        prefix: str = ""

    type = "memory"
    data: dict[str, str] = {}

    async def read(self, keys):
        return {key: Fetched(Secret(self.settings.prefix + self.data[key]))
                if key in self.data else None for key in keys}


async def test_register_secret_stores_adds_a_type_references_use(tmp_path):
    class StorePlugin:
        @hookimpl
        def register_secret_stores(self, register):
            register(MemoryStore)

    plugins = load_plugins([FakePlugin(), StorePlugin()], entry_points=False)
    assert plugins.secret_stores["memory"] is MemoryStore
    assert {"file", "exec", "vault", "sql", "aws_secrets_manager"} <= set(plugins.secret_stores)
    MemoryStore.data = {"a1": "tok-from-plugin"}
    config = build_config(
        {"agent": {"state_path": ":memory:"},
         "secret_stores": {"mem": {"type": "memory", "prefix": "p-"}},
         "channels": {"fake": {"accounts": [{"name": "a1", "region": "na",
                                             "refresh_token": "mem:a1"}]}}},
        plugins.channels, base_dir=tmp_path, stores=plugins.secret_stores)
    service = AgentService(config, plugins)
    state = await service.scheduler.check_now(service.find_account("fake", "a1"))
    assert state.valid is True
    assert FakeChannel.tokens["a1"] == "p-tok-from-plugin"
    await service.stop()


def test_bad_and_duplicate_store_types_are_refused():
    class Again:
        @hookimpl
        def register_secret_stores(self, register):
            register(ExecStore)
            register(FakeChannel)

    plugins = load_plugins([Again()], entry_points=False)
    assert plugins.secret_stores["exec"] is ExecStore
    messages = " ".join(e.error for e in plugins.errors)
    assert "secret store type 'exec' is already registered" in messages
    assert "not a SecretStore subclass" in messages


class NumberedSettings(InventorySourceSettings):
    count: int


class Numbered(InventorySource):
    """An inventory type from a plugin: accounts shop-0 ... shop-<count - 1>."""

    type = "numbered"
    Settings = NumberedSettings

    async def fetch(self):
        return [{"channel": "fake", "account": f"shop-{i}", "region": "eu",
                 "label_tenant": f"t{i % 2}"} for i in range(self.settings["count"])]


async def test_register_inventory_sources_adds_a_type_the_config_and_agent_use(tmp_path):
    class InventoryPlugin:
        @hookimpl
        def register_inventory_sources(self, register):
            register(Numbered)

    plugins = load_plugins([FakePlugin(), InventoryPlugin()], entry_points=False)
    assert plugins.inventory_sources["numbered"] is Numbered
    assert sorted(plugins.inventory_sources) == ["file", "http", "numbered", "sql"]
    config = build_config(
        {"agent": {"state_path": ":memory:"},
         "inventory_sources": {"shops": {"type": "numbered", "count": 3, "channels": ["fake"],
                                         "interval": "1m", "timeout": "5s"}},
         "channels": {"fake": {}}},
        plugins.channels, base_dir=tmp_path, inventory_types=plugins.inventory_sources)
    service = AgentService(config, plugins)
    assert await service.inventory.refresh_all()
    service.apply_inventory()
    assert sorted(service.fleet.accounts) == [("fake", "shop-0"), ("fake", "shop-1"),
                                              ("fake", "shop-2")]
    assert service.fleet.accounts["fake", "shop-1"].labels == {"tenant": "t1"}
    assert service.metrics.registry.get_sample_value(
        "channel_inventory_accounts", {"source": "shops", "channel": "fake"}) == 3
    await service.stop()


def test_bad_and_duplicate_inventory_types_are_refused():
    class Again:
        @hookimpl
        def register_inventory_sources(self, register):
            register(SqlInventory)
            register(SqlSource)

    plugins = load_plugins([Again()], entry_points=False)
    assert plugins.inventory_sources["sql"] is SqlInventory
    assert plugins.inventory_origins["sql"] == BUILT_IN
    messages = " ".join(e.error for e in plugins.errors)
    assert "inventory source type 'sql' is already registered" in messages
    assert "not a InventorySource subclass" in messages


@pytest.mark.parametrize("name", ["register_channels", "register_freshness_sources",
                                  "register_inventory_sources", "register_secret_stores",
                                  "register_commands"])
def test_every_hook_is_documented_with_params_and_returns(name):
    doc = inspect.getdoc(getattr(hookspecs, name))
    assert doc and ":param" in doc and ":returns:" in doc


def test_every_hookspec_has_a_test():
    specs = [n for n, f in vars(hookspecs).items()
             if callable(f) and hasattr(f, "channel_agent_spec")]
    source = Path(__file__).read_text()
    assert specs, "no hookspecs found"
    for name in specs:
        assert source.count(name) >= 2, f"hook {name} has no test"


def test_register_commands_adds_a_cli_command():
    import click

    class Commands:
        @hookimpl
        def register_commands(self, cli):
            @cli.command("hello")
            def hello():
                click.echo("hi")

    plugins = load_plugins([Commands()], entry_points=False)
    group = click.Group()
    plugins.manager.hook.register_commands(cli=group)
    assert "hello" in group.commands
