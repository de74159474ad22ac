"""config.example.yaml as shipped: its header says what `config check` needs (issue 19)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.yaml"
CHECK = [sys.executable, "-c", "from agent.cli import main; main()", "config", "check",
         "config.yaml"]


def header_commands() -> list[str]:
    """The shell commands of the example's header ("#   $ ...")."""
    header = EXAMPLE.read_text().split("\n\n", 1)[0]
    return re.findall(r"^#\s+\$ (.+)$", header, re.MULTILINE)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    pytest.importorskip("channel_agent_amazon_ads")
    pytest.importorskip("channel_agent_amazon_sp")
    shutil.copy(EXAMPLE, tmp_path / "config.yaml")
    return tmp_path


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("AMAZON_ADS_CLIENT_ID", "AMAZON_SP_CLIENT_ID", "WAREHOUSE_URL",
                         "PLATFORM_DB_URL")}


def test_as_shipped_check_names_exactly_what_the_header_says(copy):
    result = subprocess.run(CHECK, cwd=copy, env=environment(), capture_output=True, text=True)
    assert result.returncode == 2
    problems = [line for line in result.stderr.splitlines() if line.startswith("  config.yaml:")]
    assert len(problems) == 6, result.stderr
    commands = "\n".join(header_commands())
    for name in ("AMAZON_ADS_CLIENT_ID", "AMAZON_SP_CLIENT_ID", "WAREHOUSE_URL",
                 "PLATFORM_DB_URL", "secrets/amazon_ads_client_secret",
                 "secrets/amazon_sp_client_secret"):
        assert name in result.stderr and name in commands


def test_the_header_commands_make_the_check_pass(copy):
    *setup, check = header_commands()
    assert check == "channel-agent config check config.yaml"
    script = "\n".join(["set -e", *setup, " ".join(f"'{arg}'" for arg in CHECK)])
    result = subprocess.run(["bash", "-c", script], cwd=copy, env=environment(),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config.yaml: OK (5 account(s)")  # Ads 2, SP 1, Shopify 2
