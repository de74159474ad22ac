"""deploy/systemd/: the unit passes `systemd-analyze verify`, is hardened, and its user is
created by the sysusers file. systemd need not be running (these are offline checks)."""

import configparser
import subprocess

import pytest

from tests.helpers import BIN, REPO, require_program

UNIT = REPO / "deploy" / "systemd" / "channel-agent.service"
SYSUSERS = REPO / "deploy" / "systemd" / "channel-agent.sysusers"
INSTALLED = "/opt/channel-agent/bin/channel-agent"


def directives() -> dict[str, list[str]]:
    """Service-section directives, each with every value it was given."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",),
                                       dict_type=_MultiDict)
    parser.optionxform = str
    parser.read_string(UNIT.read_text())
    return {key: value.split("\n") for key, value in parser["Service"].items()}


class _MultiDict(dict):
    """Keeps repeated keys (systemd allows SystemCallFilter= twice) instead of the last."""

    def __setitem__(self, key, value):
        if isinstance(value, list) and key in self and isinstance(self[key], list):
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


@pytest.fixture
def unit_here(tmp_path):
    """The unit with ExecStart pointing at this checkout's agent, which `verify` requires
    to exist; everything else as shipped."""
    text = UNIT.read_text()
    assert INSTALLED in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED, str(BIN / "channel-agent")))
    return copy


def test_systemd_analyze_verify_is_clean(unit_here):
    analyze = require_program("systemd-analyze")
    result = subprocess.run([analyze, "verify", str(unit_here)], capture_output=True, text=True)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr)


def test_exposure_is_low(unit_here):
    analyze = require_program("systemd-analyze")
    # threshold is in tenths: fail above an overall exposure of 2.0 ("OK" is below 4.0)
    result = subprocess.run([analyze, "security", "--offline=yes", "--threshold=20",
                             str(unit_here)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


def test_hardening_and_lifecycle_directives():
    service = directives()
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
                       "StateDirectory": "channel-agent", "User": "channel-agent",
                       "CapabilityBoundingSet": "", "Restart": "on-failure"}.items():
        assert service[key] == [value], key
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["ExecStart"][0].startswith(INSTALLED + " run ")
    assert "~@privileged @resources" in service["SystemCallFilter"]


def test_sysusers_creates_the_service_user(tmp_path):
    sysusers = require_program("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    result = subprocess.run([sysusers, f"--root={tmp_path}", "--dry-run", str(SYSUSERS)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    user = directives()["User"][0]
    assert f"Creating user '{user}'" in result.stdout + result.stderr
