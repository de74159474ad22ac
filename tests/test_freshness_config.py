"""Configuration of freshness sources and data sets: defaults, overrides and every problem."""

import textwrap

import pytest

from agent.config.loader import ConfigError, parse_config
from agent.freshness import Dataset
from agent.freshness.file import FileSource
from agent.freshness.heartbeat import HeartbeatSource
from agent.freshness.sql import SqlSource
from tests.test_config import CHANNELS, ENV, message, where

HEAD = """\
freshness_sources:
  warehouse:
    type: sql
    url: sqlite:///warehouse.db
    query: SELECT max(finished_at) FROM sync_runs WHERE account = :account AND dataset = :dataset
    interval: 5m
  pipeline:
    type: heartbeat
"""


def parse(text, tmp_path=None):
    return parse_config(textwrap.dedent(text), CHANNELS, environ=dict(ENV), base_dir=tmp_path)


def problems(text):
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value.problems


ACME = "      - name: acme-us\n        region: na\n        refresh_token: t0k3n-1\n"


def channel(datasets="", accounts=ACME):
    """A sink channel section with the given datasets block and accounts."""
    return ("channels:\n  sink:\n    client_id: c\n    client_secret: s3cr3t-value\n"
            + datasets + "    accounts:\n" + accounts)


def test_channel_defaults_and_account_overrides_key_by_key(tmp_path):
    config = parse(HEAD + channel(
        datasets="    datasets:\n"
                 "      sp_campaigns_daily: {source: warehouse, max_age: 36h}\n"
                 "      sb_campaigns_daily: {source: pipeline, max_age: 48h}\n",
        accounts="      - name: acme-us\n        region: na\n        refresh_token: t0k3n-1\n"
                 "        datasets:\n"
                 "          sp_campaigns_daily: {max_age: 72h}\n"
                 "          orders: {source: pipeline, max_age: 2h}\n"
                 "      - name: acme-eu\n        region: eu\n        refresh_token: t0k3n-2\n"),
        tmp_path)
    assert isinstance(config.freshness_sources["warehouse"], SqlSource)
    assert isinstance(config.freshness_sources["pipeline"], HeartbeatSource)
    assert config.freshness_sources["warehouse"].interval == 300
    assert config.freshness_sources["warehouse"].timeout == 30
    assert config.datasets == [
        Dataset("sink", "acme-us", "na", "sp_campaigns_daily", "warehouse", 72 * 3600.0),
        Dataset("sink", "acme-us", "na", "sb_campaigns_daily", "pipeline", 48 * 3600.0),
        Dataset("sink", "acme-us", "na", "orders", "pipeline", 2 * 3600.0),
        Dataset("sink", "acme-eu", "eu", "sp_campaigns_daily", "warehouse", 36 * 3600.0),
        Dataset("sink", "acme-eu", "eu", "sb_campaigns_daily", "pipeline", 48 * 3600.0),
    ]


def test_no_freshness_configuration_means_no_data_sets():
    config = parse(channel())
    assert config.freshness_sources == {} and config.datasets == []


def test_file_source_path_is_relative_to_the_config_and_defaults_apply(tmp_path):
    config = parse("freshness_sources:\n  marks:\n    type: file\n"
                   "    path: marks/{channel}/{account}/{dataset}.json\n"
                   "    json_field: last_sync.finished_at\n" + channel(), tmp_path)
    source = config.freshness_sources["marks"]
    assert isinstance(source, FileSource)
    assert source.settings["path"] == tmp_path / "marks/{channel}/{account}/{dataset}.json"
    assert source.interval == 60


def test_every_problem_at_once_with_lines_and_paths():
    found = problems("""\
freshness_sources:
  warehouse:
    type: sqll
  pipeline:
    type: heartbeat
    interval: 5m
  db:
    type: sql
    url: sqlite:///x.db
    query: SELECT 1
    interval: 1m
    timeout: 2m
  nourl:
    type: sql
    query: SELECT 1
  "bad name":
    type: heartbeat
  notype: {}
channels:
  sink:
    client_id: c
    client_secret: s3cr3t-value
    datasets:
      sp: {source: warehous, max_age: 36h}
      sb: {source: pipeline, max_age: soon, colour: red}
      "bad name": {source: pipeline, max_age: 1h}
      nomax: {source: pipeline}
      zero: {source: pipeline, max_age: 0}
      scalar: 36h
    accounts:
      - name: acme-us
        region: na
        refresh_token: t0k3n-1
        datasets:
          orders: {max_age: 1h}
""")
    assert where(found) == {
        (3, "freshness_sources.warehouse.type"),
        (6, "freshness_sources.pipeline.interval"),
        (12, "freshness_sources.db.timeout"),
        (13, "freshness_sources.nourl.url"),
        (16, "freshness_sources.bad name"),
        (18, "freshness_sources.notype.type"),
        (24, "channels.sink.datasets.sp.source"),
        (25, "channels.sink.datasets.sb.max_age"),
        (25, "channels.sink.datasets.sb.colour"),
        (26, "channels.sink.datasets.bad name"),
        (27, "channels.sink.datasets.nomax.max_age"),
        (28, "channels.sink.datasets.zero.max_age"),
        (29, "channels.sink.datasets.scalar"),
        (35, "channels.sink.accounts[0].datasets.orders.source"),
    }
    assert message(found, "freshness_sources.warehouse.type") == (
        "unknown freshness source type 'sqll' (did you mean 'sql'?)")
    assert "unknown key 'interval'" in message(found, "freshness_sources.pipeline.interval")
    assert message(found, "freshness_sources.db.timeout") == (
        "must be less than freshness_sources.db.interval")
    assert message(found, "freshness_sources.nourl.url") == "is required: set url or url_file"
    assert message(found, "freshness_sources.notype.type") == (
        "is required: one of file, heartbeat, sql")
    assert message(found, "channels.sink.datasets.sp.source") == (
        "unknown freshness source 'warehous' (did you mean 'warehouse'?)")
    assert message(found, "channels.sink.datasets.sb.colour") == (
        "unknown key 'colour' (expected one of: max_age, source)")
    assert message(found, "channels.sink.datasets.nomax.max_age") == "is required"
    assert message(found, "channels.sink.datasets.zero.max_age") == "must be more than 0"
    assert message(found, "channels.sink.datasets.scalar") == "must be a mapping"


def test_an_override_missing_a_key_names_the_channel_default():
    found = problems(HEAD + channel(
        datasets="    datasets:\n      sp: {max_age: 36h}\n",
        accounts="      - name: acme-us\n        region: na\n        refresh_token: t0k3n-1\n"
                 "        datasets:\n          sp: {max_age: 72h}\n"))
    assert message(found, "channels.sink.accounts[0].datasets.sp.source") == (
        "is required (here or in channels.sink.datasets.sp)")


@pytest.mark.parametrize(("source", "expected"), [
    ("type: sql\n    url: sqlite:///x.db\n    query: SELECT max(t) FROM s WHERE a = :acount",
     "query uses unknown bind parameter(s) :acount"),
    ("type: sql\n    url: 'not a url'\n    query: SELECT 1", "url is not a database URL"),
    ("type: sql\n    url: nosuchdb://h/db\n    query: SELECT 1",
     "SQLAlchemy has no database type 'nosuchdb'"),
    ("type: sql\n    url: sqlite:///x.db\n    query: SELECT 1\n    timezone: Mars/Olympus",
     "unknown time zone 'Mars/Olympus'"),
    ("type: file\n    path: /var/{acount}.json", "path may only use {channel}"),
    ("type: file\n    path: /var/{account.json", "unbalanced"),
    ("type: file\n    path: /var/x.json\n    json_field: a..b", "json_field must be dotted"),
])
def test_a_source_type_rejecting_its_settings_is_a_problem(source, expected):
    found = problems(f"freshness_sources:\n  src:\n    {source}\n" + channel())
    assert where(found) == {(2, "freshness_sources.src")}
    assert "the freshness source type rejected its settings" in found[0].message
    assert expected in found[0].message


def test_a_database_password_never_appears_in_problems():
    password = "Pa55-w0rd-never-shown"
    found = problems("freshness_sources:\n  src:\n    type: sql\n"
                     f"    url: nosuchdb://user:{password}@db/x\n    query: SELECT :zzz\n"
                     + channel())
    assert found and all(password not in str(p) for p in found)


def test_discovered_accounts_get_their_channels_data_sets(tmp_path):
    """An inventory's accounts get their channel's data sets (after the file's own, which
    stay as they were); a data set is slotted (100,000 of them at 50,000 accounts)."""
    from agent.channel import Account
    from agent.inventory.runner import with_discovered

    loaded = parse(HEAD + channel(
        datasets="    datasets:\n"
                 "      sp_campaigns_daily: {source: warehouse, max_age: 36h}\n"
                 "      orders: {source: pipeline, max_age: 2h}\n"), tmp_path)
    found = [Account("sink", "shop-1", "eu"), Account("sink", "shop-2", "na"),
             Account("other", "shop-3", "na")]  # a channel that declares none
    config = with_discovered(loaded, found)
    assert config.discovered == found and loaded.datasets == config.datasets[:2]
    assert config.datasets[2:] == [
        Dataset("sink", "shop-1", "eu", "sp_campaigns_daily", "warehouse", 36 * 3600.0),
        Dataset("sink", "shop-1", "eu", "orders", "pipeline", 2 * 3600.0),
        Dataset("sink", "shop-2", "na", "sp_campaigns_daily", "warehouse", 36 * 3600.0),
        Dataset("sink", "shop-2", "na", "orders", "pipeline", 2 * 3600.0),
    ]
    assert not hasattr(config.datasets[0], "__dict__")
