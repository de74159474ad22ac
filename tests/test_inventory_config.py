"""The ``inventory_sources:`` section and account ``labels:``: every problem named with its
place in the file."""

from __future__ import annotations

import pytest

from agent.config.loader import ConfigError, parse_config
from tests.fakes import FakeChannel

CHANNELS = {"fake": FakeChannel}


def problems(text: str, tmp_path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, CHANNELS, base_dir=tmp_path)
    return [str(p) for p in caught.value.problems]


def test_a_channel_fed_by_a_source_needs_no_static_account(tmp_path):
    config = parse_config("""
inventory_sources:
  crm:
    type: file
    files: inventory/*.yaml
    channels: [fake]
    interval: 30s
    timeout: 5s
    labels: {team: checkout}
channels:
  fake: {}
""", CHANNELS, base_dir=tmp_path)
    crm = config.inventory_sources["crm"]
    assert (crm.interval, crm.timeout, crm.channels) == (30.0, 5.0, ("fake",))
    assert (crm.max_removal, crm.removal_hold, crm.labels) == (0.2, 1800.0, {"team": "checkout"})
    assert config.accounts() == []


def test_every_problem_of_a_source_is_named(tmp_path):
    found = problems("""
inventory_sources:
  crm:
    type: sql
    query: SELECT 1
    channels: [fake]
    max_removal: 1.5
    labels: {"bad-name": x}
  web:
    type: htp
  files:
    type: file
    files: x.yaml
  slow:
    type: file
    files: x.yaml
    channels: [fake, shopfy]
  fast:
    type: file
    files: x.yaml
    channels: [fake]
    interval: 10s
    timeout: 10s
channels:
  fake: {}
""", tmp_path)
    assert found == [
        "<string>:3: inventory_sources.crm.url: is required: set url or url_file",
        "<string>:7: inventory_sources.crm.max_removal: must be a share between 0 and 1 "
        "(0.2 = 20%)",
        "<string>:8: inventory_sources.crm.labels.bad-name: is not a Prometheus label name "
        "([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)",
        "<string>:10: inventory_sources.web.type: unknown inventory source type 'htp' (did you "
        "mean 'http'?)",
        "<string>:11: inventory_sources.files.channels: is required",
        "<string>:17: inventory_sources.slow.channels: unknown channel 'shopfy' (expected one "
        "of: fake); a fed channel needs its section under channels (its client etc.)",
        "<string>:23: inventory_sources.fast.timeout: must be less than "
        "inventory_sources.fast.interval",
    ]


def test_a_channel_fed_by_nobody_still_needs_accounts(tmp_path):
    assert problems("channels:\n  fake: {}\n", tmp_path) == [
        "<string>:2: channels.fake.accounts: is required: list at least one account (or feed "
        "the channel from an inventory source)"]


def test_http_takes_one_kind_of_authentication(tmp_path):
    (tmp_path / "token").write_text("t")
    found = problems("""
inventory_sources:
  platform:
    type: http
    url: https://platform.example.com/connections
    bearer_token_file: token
    basic_auth: {username: agent, password: x}
    channels: [fake]
    timeout: 5s
channels:
  fake: {}
""", tmp_path)
    assert found == ["<string>:3: inventory_sources.platform: the inventory source type rejected "
                     "its settings: ValueError: give either bearer_token_file or basic_auth, "
                     "not both"]


def test_static_accounts_carry_validated_labels(tmp_path):
    config = parse_config("""
channels:
  fake:
    accounts:
      - {name: a1, region: na, labels: {merchant: acme, tenant: t1}}
""", CHANNELS, base_dir=tmp_path)
    assert config.accounts()[0].labels == {"merchant": "acme", "tenant": "t1"}
    many = ", ".join(f"l{i}: x" for i in range(11))
    found = problems(f"""
channels:
  fake:
    accounts:
      - {{name: a1, region: na, labels: {{account: x}}}}
      - {{name: a2, region: na, labels: {{__meta: y}}}}
      - {{name: a3, region: na, labels: {{{many}}}}}
""", tmp_path)
    assert found == [
        "<string>:5: channels.fake.accounts[0].labels.account: is reserved: channel and "
        "account are channel_account_info's own",
        "<string>:6: channels.fake.accounts[1].labels.__meta: is not a Prometheus label name "
        "([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)",
        "<string>:7: channels.fake.accounts[2].labels: has 11 labels; at most 10 are allowed "
        "per account",
    ]


def test_every_bad_label_of_an_account_is_reported_never_its_value(tmp_path):
    found = problems("""
channels:
  fake:
    accounts:
      - {name: a1, region: na, labels: {account: SECRET-1, 9lives: SECRET-2, ok: fine,
                                        team: SECRET-3-""" + "x" * 300 + "}}\n", tmp_path)
    assert found == [
        "<string>:5: channels.fake.accounts[0].labels.account: is reserved: channel and "
        "account are channel_account_info's own",
        "<string>:5: channels.fake.accounts[0].labels.9lives: is not a Prometheus label name "
        "([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)",
        "<string>:6: channels.fake.accounts[0].labels.team: must be at most 256 characters",
    ]
