import click
import pytest
from click.testing import CliRunner

from agent.cli import cli


def _commands(group: click.Group, prefix=()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        yield (*prefix, name)
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


@pytest.mark.parametrize("path", list(_commands(cli)), ids=" ".join)
def test_every_command_has_help_with_an_example(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output and "channel-agent" in result.output


def test_config_check_reports_problems_and_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent:\n  check_interval: soon\nchannels: {}\n")
    result = CliRunner().invoke(cli, ["config", "check", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:2: agent.check_interval" in result.output


def test_run_leaves_the_garbage_collector_on_when_it_stops_before_ready(tmp_path):
    """`run` loads with the collector off (a start-up cost); a run that ends early, as
    with a configuration problem, must not leave it off in the calling process."""
    import gc

    from click.testing import CliRunner

    from agent.cli import cli

    result = CliRunner().invoke(cli, ["run", "--config", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2
    assert gc.isenabled()
