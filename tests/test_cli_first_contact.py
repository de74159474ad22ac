"""What a newcomer and an on-call SRE meet first: a taken port, the commands the program
prints, what mark-synced says. The real `channel-agent` program, started as a shell would."""

import os
import socket
import subprocess

import pytest

from agent.channel import Account
from agent.checks.scheduler import HARD_TIMEOUT_GRACE, offset
from agent.cli.run import first_results_line
from agent.config.loader import AgentSettings
from tests.helpers import BIN, without_venv_on_path

PROGRAM = BIN / "channel-agent"
MINIMAL_CONFIG = """\
agent: {state_path: state.db}
channels:
  amazon_ads:
    client_id: amzn1.application-oa2-client.x
    client_secret: not-a-secret
    accounts: [{name: acme-us, region: na, refresh_token: not-a-token}]
"""


@pytest.fixture
def taken_port():
    """A port another program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


@pytest.mark.parametrize("command", ["demo", "run"])
def test_a_taken_port_is_one_line_naming_the_address_and_the_option(command, taken_port,
                                                                     tmp_path):
    args = [PROGRAM, command, "--web.listen-address", f"127.0.0.1:{taken_port}"]
    if command == "run":
        (tmp_path / "config.yaml").write_text(MINIMAL_CONFIG)
        args += ["--config", str(tmp_path / "config.yaml")]
    else:
        args += ["--workdir", str(tmp_path / "demo")]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""  # no banner, no URL: nothing as if it had started
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{taken_port}: the address is "
                           f"already in use")
    assert "--web.listen-address HOST:PORT" in line


def test_an_address_of_no_interface_here_says_why(tmp_path):
    (tmp_path / "config.yaml").write_text(MINIMAL_CONFIG)
    result = subprocess.run(
        [PROGRAM, "run", "--config", str(tmp_path / "config.yaml"), "--web.allow-insecure",
         "--web.listen-address", "192.0.2.1:9877"],  # TEST-NET-1: on no interface
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: cannot listen on 192.0.2.1:9877: cannot assign requested address; choose "
        "another address with --web.listen-address HOST:PORT (or agent.listen_address in the "
        "configuration)"]


@pytest.mark.parametrize("activated", [False, True])
def test_help_shows_the_command_as_this_shell_runs_it(activated):
    env = without_venv_on_path()
    if activated:
        env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    result = subprocess.run([PROGRAM, "reconnect", "--help"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    name = "channel-agent" if activated else str(PROGRAM.absolute())
    assert result.stdout.startswith(f"Usage: {name} reconnect ")
    assert f"\n    {name} reconnect amazon_ads --account acme-us --link\n" in result.stdout
    # a path that merely contains the name stays as it is
    run_help = subprocess.run([PROGRAM, "run", "--help"], env=env, capture_output=True,
                              text=True, timeout=60).stdout
    assert "--config /etc/channel-agent/config.yaml" in run_help


def test_the_demo_banner_says_when_the_first_results_are_in():
    """The banner promised "every account is checked within 15s" while a throttled account
    stayed pending for 21 s: a first check starts within one interval, then may use the whole
    check timeout (and the scheduler's grace) before its result is in."""
    line = first_results_line(AgentSettings(check_interval=15.0, check_timeout=7.5))
    assert line == ("Every account is checked every 15s; the first results are all in within "
                    "24s (a first check starts within 15s and may take up to the 7s500ms "
                    "check timeout).")
    accounts = [Account(channel="amazon_ads", name=f"a{i}", region="na") for i in range(500)]
    latest = max(offset(a, 15.0) for a in accounts) + 7.5 + HARD_TIMEOUT_GRACE
    assert 20 < latest <= 24
