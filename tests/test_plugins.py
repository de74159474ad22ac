import inspect
from pathlib import Path

import pytest

from agent import hookspecs
from agent.hookspecs import hookimpl
from agent.plugins import load_plugins
from tests.fakes import FakeChannel, FakePlugin


def test_registers_channels_from_plugins():
    plugins = load_plugins([FakePlugin()], entry_points=False)
    assert plugins.channels == {"fake": FakeChannel}
    assert plugins.errors == []


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


@pytest.mark.parametrize("name", ["register_channels", "register_commands"])
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
