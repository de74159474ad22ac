"""Rendezvous sharding: parsing, ownership, how accounts move, and a sharded service."""

from collections import Counter

import pytest
from click.testing import CliRunner
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.checks.sharding import Shard, account_key, owner, parse_shard
from agent.cli import cli
from agent.cli.check import _check
from agent.config.loader import ConfigError
from agent.plugins import load_plugins
from agent.service import AgentService
from tests.fakes import FakePlugin

KEYS = [account_key("amazon_ads", f"merchant-{i:04d}") for i in range(1000)]


@pytest.mark.parametrize("text, shard", [
    ("0/1", Shard(0, 1)), ("2/3", Shard(2, 3)), (" 1 / 4 ", Shard(1, 4)), ("0/64", Shard(0, 64)),
])
def test_parse(text, shard):
    assert parse_shard(text) == shard


@pytest.mark.parametrize("text, message", [
    ("3/3", "INDEX 3 is not below COUNT 3"),
    ("0/0", "COUNT must be at least 1"),
    ("-1/3", "INDEX/COUNT"),
    ("1", "INDEX/COUNT"),
    ("one/3", "INDEX/COUNT"),
    ("", "INDEX/COUNT"),
])
def test_parse_rejects_with_a_reason(text, message):
    with pytest.raises(ValueError, match=message):
        parse_shard(text)


def test_auto_takes_the_index_from_the_statefulset_ordinal():
    assert parse_shard("auto/3", hostname=lambda: "channel-agent-2") == Shard(2, 3)
    assert parse_shard("auto/12", hostname=lambda: "my-agent-10") == Shard(10, 12)
    with pytest.raises(ValueError, match="host is named 'laptop'"):
        parse_shard("auto/3", hostname=lambda: "laptop")
    with pytest.raises(ValueError, match="INDEX 3 is not below COUNT 3"):
        parse_shard("auto/3", hostname=lambda: "channel-agent-3")


def test_the_hash_is_stable_across_processes_and_versions():
    # Replicas of different versions run side by side during a rolling upgrade: they must
    # agree on every owner. These values pin SHA-256 rendezvous; changing them reshards.
    assert [owner(key, 3) for key in KEYS[:8]] == [0, 2, 1, 2, 1, 2, 2, 1]
    assert owner("amazon_ads/acme-us", 5) == 4


def test_every_key_has_exactly_one_owner_and_shards_are_balanced():
    shards = [Shard(i, 3) for i in range(3)]
    for key in KEYS:
        assert sum(shard.owns(key) for shard in shards) == 1
    sizes = Counter(owner(key, 3) for key in KEYS)
    assert all(280 <= sizes[i] <= 390 for i in range(3)), sizes


def test_three_to_four_shards_moves_about_a_quarter_all_to_the_new_shard():
    before = {key: owner(key, 3) for key in KEYS}
    after = {key: owner(key, 4) for key in KEYS}
    moved = [key for key in KEYS if before[key] != after[key]]
    assert 0.15 * len(KEYS) <= len(moved) <= 0.35 * len(KEYS), len(moved)
    assert {after[key] for key in moved} == {3}


def test_config_shard_is_validated_with_its_line(fake_config):
    assert fake_config(shard="1/3").agent.shard == Shard(1, 3)
    assert fake_config().agent.shard == Shard(0, 1)
    with pytest.raises(ConfigError) as caught:
        fake_config(shard="3/3")
    [problem] = caught.value.problems
    assert problem.path == "agent.shard" and "INDEX 3 is not below COUNT 3" in problem.message


async def test_a_sharded_service_keeps_and_exports_only_its_accounts(fake_config):
    names = [f"m{i}" for i in range(30)]
    owned = {}
    for index in range(3):
        config = fake_config(accounts=names, shard=f"{index}/3")
        service = AgentService(config, load_plugins([FakePlugin()], entry_points=False))
        owned[index] = {name for _, name in service.fleet.accounts}
        exposition = generate_latest(service.metrics.registry).decode()
        families = {f.name: f for f in text_string_to_metric_families(exposition)}
        [info] = families["channel_agent_shard_info"].samples
        assert info.labels == {"index": str(index), "count": "3"} and info.value == 1
        [count] = families["channel_agent_accounts"].samples
        assert count.value == len(owned[index]) > 0
        for name in set(names) - owned[index]:
            assert f'account="{name}"' not in exposition
        assert service.find_account("fake", next(iter(set(names) - owned[index]))) is None
        status = service.status()
        assert status["agent"]["shard"] == f"{index}/3"
        assert status["agent"]["accounts_configured"] == 30
        assert {a["account"] for a in status["accounts"]} == owned[index]
        await service.stop()
    assert owned[0] | owned[1] | owned[2] == set(names)
    assert sum(len(o) for o in owned.values()) == len(names)


def test_run_rejects_a_bad_shard_before_starting(tmp_path):
    result = CliRunner().invoke(cli, ["run", "--config", str(tmp_path / "none.yaml"),
                                      "--shard", "5/3"])
    assert result.exit_code == 2
    assert "--shard" in result.output and "INDEX 5 is not below COUNT 3" in result.output


async def test_one_shot_check_ignores_the_shard(fake_config):
    config = fake_config(accounts=[f"m{i}" for i in range(9)], shard="0/3")
    plugins = load_plugins([FakePlugin()], entry_points=False)
    docs = await _check(config, plugins, [a.key for a in config.accounts()])
    assert [d["account"] for d in docs] == [f"m{i}" for i in range(9)]
    assert all(d["last_check"] is not None for d in docs)
