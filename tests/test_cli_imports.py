"""What a command imports: its own module and what that needs, not every command's.

Each ``channel-agent`` command is a process; what it imports before doing anything is paid
at every start, the agent's ``run`` included (start to ``/-/ready``). These tests fail when
an eager import comes back; each runs a fresh interpreter, so that nothing imported by the
test process counts."""

import json
import subprocess
import sys

import click
import pytest

from agent.cli import COMMANDS, AgentGroup
from agent.hookspecs import hookimpl
from agent.plugins import load_plugins

HEAVY = ("aiohttp", "sqlalchemy", "pydantic", "httpx", "prometheus_client")


def imported_by(*args: str, cwd=None) -> set[str]:
    """The modules a fresh interpreter holds after ``channel-agent ARGS`` (or after
    ``import agent.cli`` alone, without ARGS); the command must succeed."""
    run = (f"\ntry:\n    cli.main({list(args)!r}, standalone_mode=False)\n"
           "except SystemExit as exc:\n    assert not exc.code, exc.code\n") if args else "\n"
    code = ("import json, sys\nfrom agent.cli import cli" + run +
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=cwd, timeout=120, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_importing_the_cli_imports_no_command():
    modules = imported_by()
    assert not {m for m in modules if m.split(".")[0] in HEAVY}
    assert not {module.split(":")[0] for module in COMMANDS.values()} & modules
    assert "agent.plugins" not in modules


def test_status_loads_neither_the_configuration_nor_the_plugins():
    modules = imported_by("status", "--help")
    assert "agent.cli.status" in modules and "httpx" in modules
    assert not {"agent.config.loader", "agent.plugins", "aiohttp", "pydantic",
                "importlib.metadata"} & modules


def _config(tmp_path, inventory: str = "") -> str:
    path = tmp_path / "config.yaml"
    path.write_text(f"""\
agent:
  state_path: {tmp_path / "agent.db"}
channels:
  amazon_ads:
    client_id: x
    client_secret: y
    accounts:
      - name: acme
        region: na
        refresh_token: z
{inventory}""")
    return str(path)


def test_sqlalchemy_is_imported_only_for_a_sql_source(tmp_path):
    plain = imported_by("config", "check", _config(tmp_path))
    assert "agent.config.loader" in plain
    assert "sqlalchemy" not in plain
    assert "aiohttp" not in plain  # the http inventory source's client: when it fetches
    with_sql = imported_by("config", "check", _config(tmp_path, f"""\
inventory_sources:
  platform:
    type: sql
    url: sqlite:///{tmp_path / "platform.db"}
    query: SELECT 'amazon_ads' AS channel, 'x' AS account
    channels: [amazon_ads]
"""))
    assert "sqlalchemy" in with_sql  # its query and URL are checked with the configuration


class _Commands:
    @hookimpl
    def register_commands(self, cli):
        @cli.command("hello")
        def hello():
            """Say hi."""
            click.echo("hi")

        @cli.command("run")
        def not_run():
            click.echo("a plugin's run")


def test_plugin_commands_are_listed_and_cannot_replace_a_built_in(capsys):
    group = AgentGroup(help="test")
    group.add_plugin_commands(load_plugins([_Commands()], entry_points=False))
    ctx = click.Context(group)
    assert "hello" in group.list_commands(ctx)
    assert set(COMMANDS) <= set(group.list_commands(ctx))
    assert "which is built in; ignored" in capsys.readouterr().err
    run = group.get_command(ctx, "run")
    assert run is not None and run.callback.__module__ == "agent.cli.run"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_built_in_command_is_where_the_table_says(name):
    group = AgentGroup(help="test")
    group.add_plugin_commands(load_plugins(entry_points=False))
    command = group.get_command(click.Context(group), name)
    assert isinstance(command, click.Command) and command.name == name


def test_a_command_is_imported_without_a_garbage_collection():
    """What a command imports lives as long as the process: collecting during the import
    (~120 collections for ``run``'s) is wasted CPU before ready, and so is walking it at every
    later collection. The collector is on again after, with nothing of it to walk."""
    code = ("import gc, json, click\nfrom agent.cli import cli\n"
            "seen = []\n"
            "gc.callbacks.append(lambda phase, info: seen.append(info['generation'])"
            " if phase == 'start' else None)\n"
            "assert cli.get_command(click.Context(cli), 'run') is not None\n"
            "print(json.dumps({'collections': len(seen), 'enabled': gc.isenabled(),"
            " 'walked': len(gc.get_objects())}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    found = json.loads(out.stdout.splitlines()[-1])
    assert found["collections"] == 0 and found["enabled"]
    assert found["walked"] < 5_000  # about 60,000 objects without the freeze
