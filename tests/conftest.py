import os
from datetime import timedelta

import pytest
from hypothesis import settings

from agent.config.loader import build_config
from tests.fakes import FakeChannel


@pytest.fixture(autouse=True)
def _reset_fake():
    FakeChannel.reset()
    yield
    FakeChannel.reset()


@pytest.fixture
def fake_config(tmp_path):
    """A config with three fake accounts and a state file under tmp_path."""

    def make(accounts=("a1", "a2", "a3"), **agent):
        data = {
            "agent": {"state_path": str(tmp_path / "agent.db"), "check_interval": "1s",
                      "check_timeout": "500ms", **agent},
            "channels": {"fake": {"accounts": [
                {"name": name, "region": "na" if i % 2 == 0 else "eu"}
                for i, name in enumerate(accounts)
            ]}},
        }
        return build_config(data, {"fake": FakeChannel}, base_dir=tmp_path)

    return make


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server for the session (missing binaries: skip; with CI set: fail)."""
    from tests.helpers import free_port, require_program
    from tests.postgres import PostgresServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:  # not both on PATH nor in /usr/lib/postgresql/*/bin
        require_program("pg_ctl")
        require_program("initdb")
    server = PostgresServer(bin_dir, free_port())
    server.start()
    yield server.url
    server.stop()


# Property tests (hypothesis): bounded by default; CHANNEL_AGENT_LONG_TESTS=1 tries 20 times as
# many inputs. The deadline is generous: it catches a hang, not a slow machine.
settings.register_profile("default", max_examples=100, deadline=timedelta(seconds=5),
                          print_blob=True)
settings.register_profile("long", max_examples=2000, deadline=timedelta(seconds=5),
                          print_blob=True)
settings.load_profile("long" if os.environ.get("CHANNEL_AGENT_LONG_TESTS") == "1" else "default")
