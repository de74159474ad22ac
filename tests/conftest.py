import pytest

from agent.config import build_config
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
