"""Secret stores in the agent: configuration, checks, write-back (in process, real stores:
files, a real exec helper, PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import ClassVar

import pytest

from agent.channel import (
    Account,
    AccountSettings,
    Channel,
    CheckContext,
    CheckResult,
    MissingSecret,
    RefreshTokens,
    Secret,
)
from agent.checks.scheduler import offset
from agent.config.loader import ConfigError, build_config, parse_config
from agent.config.types import SecretReference
from agent.plugins import load_plugins
from agent.service import AgentService
from tests.fakes import FakeChannel
from tests.secret_helpers import Helper

TOKEN = "tok-3c1f-store-acme"


class RotatingAccount(AccountSettings):
    refresh_token: SecretReference


class Rotating(Channel):
    """Valid while its token is in ``valid``; hands back ``rotate_to`` when set (as a
    provider that rotates refresh tokens does), keeping it in memory until stored."""

    name = "rotating"
    regions = ("na",)
    AccountSettings = RotatingAccount
    refresh_tokens = RefreshTokens(max_age_setting=None)
    valid: ClassVar[set[str]] = set()
    rotate_to: ClassVar[str | None] = None
    used: ClassVar[list[str]] = []
    owner: ClassVar[bool | None] = None

    def __init__(self, settings, accounts) -> None:
        super().__init__(settings, accounts)
        self.rotated: dict[str, tuple[str, Secret]] = {}

    async def check(self, account: Account, ctx: CheckContext) -> CheckResult:
        try:
            stored = account.settings["refresh_token"].read()
        except MissingSecret as exc:
            return CheckResult(valid=False, reason="missing_credential", detail=str(exc))
        old_fp, new = self.rotated.get(account.name, (None, None))
        token = new if new is not None and stored.fingerprint() == old_fp else stored
        type(self).used.append(token.reveal())
        type(self).owner = ctx.token_owner
        if token.reveal() not in self.valid:
            return CheckResult(valid=False, reason="invalid_grant")
        if self.rotate_to and token.reveal() != self.rotate_to:
            new = Secret(type(self).rotate_to)
            self.rotated[account.name] = (token.fingerprint(), new)
            ctx.persist_refresh_token(account, new)
        return CheckResult(valid=True)


@pytest.fixture(autouse=True)
def _reset_rotating():
    Rotating.valid, Rotating.rotate_to, Rotating.used = set(), None, []


@pytest.fixture
def helper(tmp_path) -> Helper:
    return Helper(tmp_path / "helper", {"acme": TOKEN})


CHANNELS = {"fake": FakeChannel, "rotating": Rotating}


def config(tmp_path, stores: dict, accounts: list[dict], channel: str = "fake"):
    data = {"agent": {"state_path": ":memory:"}, "secret_stores": stores,
            "channels": {channel: {"accounts": accounts}}}
    return build_config(data, CHANNELS, base_dir=tmp_path)


def exec_store(helper: Helper, **more) -> dict:
    return {"type": "exec", "command": [str(helper.path)], **more}


# --- configuration ------------------------------------------------------------------------


def test_references_long_and_short_form(tmp_path, helper):
    cfg = config(tmp_path, {"helper": exec_store(helper)}, [
        {"name": "a1", "region": "na", "refresh_token": "helper:acme"},
        {"name": "a2", "region": "na",
         "refresh_token": {"store": "helper", "key": "beta", "mode": "observer"}},
        {"name": "a3", "region": "na", "refresh_token": "unknown:colon-in-an-inline-token"},
    ])
    a1, a2, a3 = cfg.channels["fake"].accounts
    assert (a1.settings["refresh_token"].store, a1.settings["refresh_token"].key) == (
        "helper", "acme")
    assert a2.settings["refresh_token"].mode == "observer"
    assert a3.settings["refresh_token"].store is None  # not a store name: an inline token
    assert a3.settings["refresh_token"].read() == Secret("unknown:colon-in-an-inline-token")


def test_a_token_from_the_environment_is_never_taken_for_a_reference(tmp_path, helper):
    text = json.dumps({"secret_stores": {"helper": exec_store(helper)}, "channels": {"fake": {
        "accounts": [{"name": "a1", "region": "na", "refresh_token": "${TOKEN}"}]}}})
    cfg = parse_config(text, CHANNELS, base_dir=tmp_path, environ={"TOKEN": "helper:acme"})
    ref = cfg.channels["fake"].accounts[0].settings["refresh_token"]
    assert ref.store is None and ref.read() == Secret("helper:acme")


def test_file_store_template(tmp_path):
    cfg = config(tmp_path, {"files": {"type": "file", "path": "tokens/{channel}/{account}"}},
                 [{"name": "a1", "region": "na", "refresh_token": {"store": "files"}}])
    ref = cfg.channels["fake"].accounts[0].settings["refresh_token"]
    assert ref.key == str(tmp_path / "tokens/fake/a1")


def test_every_problem_with_file_and_line(tmp_path, helper):
    os.chmod(helper.path, 0o755)
    text = f"""\
secret_stores:
  helper:
    type: exec
    command: ["{helper.path}"]
  vault:
    type: vault
    address: not-a-url
    token: ${{VAULT_TOKEN}}
    mout: kv
  nothing:
    type: carrier-pigeon
  sql:
    type: sql
    url: sqlite://
    read_query: SELECT k, v FROM t WHERE k = :key
channels:
  fake:
    accounts:
      - name: a1
        region: na
        refresh_token: {{store: nowhere, key: x}}
      - name: a2
        region: na
        refresh_token: {{store: vault, key: "a b"}}
      - name: a3
        region: na
        refresh_token: vault:acme
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, CHANNELS, source="c.yaml", base_dir=tmp_path,
                     environ={"VAULT_TOKEN": "hvs.secret-vault-token"})
    problems = [str(p) for p in caught.value.problems]
    message = "\n".join(problems)
    assert f"c.yaml:2: secret_stores.helper: {helper.path} must give group and others no " \
           f"rights (mode 0755): chmod 700" in message
    assert "c.yaml:7: secret_stores.vault.address: must be an http(s) URL" in message
    assert "c.yaml:9: secret_stores.vault.mout: unknown key 'mout' (did you mean 'mount'?)" \
           in message
    assert "c.yaml:11: secret_stores.nothing.type: unknown secret store type " \
           "'carrier-pigeon'" in message
    assert "c.yaml:15: secret_stores.sql.read_query: must use exactly one bind parameter, " \
           ":keys" in message
    assert "c.yaml:21: channels.fake.accounts[0].refresh_token: store must name a secret " \
           "store (known: helper" in message
    assert "accounts[1].refresh_token: key must be a string" in message
    assert "accounts[2]" not in message  # a reference to a store that has its own problems
    assert "hvs.secret-vault-token" not in message


# --- checks -------------------------------------------------------------------------------


async def test_store_outage_is_transient_and_keeps_the_verdict(tmp_path, helper):
    cfg = config(tmp_path, {"helper": exec_store(helper, cache_ttl="1ms")},
                 [{"name": "a1", "region": "na", "refresh_token": "helper:acme"}])
    service = AgentService(cfg, load_plugins(entry_points=False))
    account = service.find_account("fake", "a1")
    state = await service.scheduler.check_now(account)
    assert state.valid is True and FakeChannel.tokens["a1"] == TOKEN
    helper.set_state(exit=1, stderr=f"vault sealed while reading {TOKEN}")
    await asyncio.sleep(0.01)
    state = await service.scheduler.check_now(account)
    assert (state.valid, state.check_success, state.reason) == (True, False,
                                                                "secret_unavailable")
    assert "secret store helper" in state.detail and "exited with status 1" in state.detail
    registry = service.metrics.registry
    assert registry.get_sample_value("channel_secret_store_up", {"store": "helper"}) == 0
    assert registry.get_sample_value("channel_secret_store_requests_total",
                                     {"store": "helper", "op": "read", "outcome": "error"}) == 1
    assert registry.get_sample_value("channel_credential_valid", {
        "channel": "fake", "account": "a1", "region": "na"}) == 1
    await service.stop()


async def test_absent_key_is_missing_credential(tmp_path, helper):
    cfg = config(tmp_path, {"helper": exec_store(helper)},
                 [{"name": "a1", "region": "na", "refresh_token": "helper:gone"}])
    service = AgentService(cfg, load_plugins(entry_points=False))
    state = await service.scheduler.check_now(service.find_account("fake", "a1"))
    assert (state.valid, state.reason) == (False, "missing_credential")
    assert "secret store helper has no key gone" in state.detail
    await service.stop()


async def test_a_rejection_is_confirmed_against_the_store(tmp_path, helper):
    """The platform replaced the token after the agent cached it: no false 'invalid'."""
    cfg = config(tmp_path, {"helper": exec_store(helper)},
                 [{"name": "a1", "region": "na", "refresh_token": "helper:acme"}],
                 channel="rotating")
    service = AgentService(cfg, load_plugins(entry_points=False))
    account = service.find_account("rotating", "a1")
    Rotating.valid = {TOKEN}
    assert (await service.scheduler.check_now(account)).valid is True
    helper.set_db({"acme": "tok-reconnected-by-platform"})  # cached copy is now stale
    Rotating.valid = {"tok-reconnected-by-platform"}
    state = await service.scheduler.check_now(account)
    assert state.valid is True
    assert Rotating.used[-2:] == [TOKEN, "tok-reconnected-by-platform"]
    await service.stop()


# --- write-back ---------------------------------------------------------------------------


async def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_rotated_token_is_written_back_retried_and_never_lost(tmp_path, helper):
    cfg = config(tmp_path, {"helper": exec_store(helper, write_command=[str(helper.path)])},
                 [{"name": "a1", "region": "na", "refresh_token": "helper:acme"}],
                 channel="rotating")
    service = AgentService(cfg, load_plugins(entry_points=False))
    service.writeback.initial_backoff = 0.05
    registry = service.metrics.registry
    account = service.find_account("rotating", "a1")
    Rotating.valid, Rotating.rotate_to = {TOKEN, "tok-rotated-1"}, "tok-rotated-1"
    helper.set_state(exit=2)  # the store takes no write now (nor reads)
    # a check with the store down cannot even read: nothing rotates
    assert (await service.scheduler.check_now(account)).reason == "secret_unavailable"
    helper.set_state()
    service.config.secret_stores.forget("helper", "acme")
    assert (await service.scheduler.check_now(account)).valid is True
    await wait_for(lambda: helper.db()["acme"] == "tok-rotated-1")
    await wait_for(lambda: registry.get_sample_value("channel_secret_store_pending_writes",
                                                     {"store": "helper"}) == 0)

    # the next rotation's write fails: kept in memory, retried, counted, then stored
    Rotating.valid.add("tok-rotated-2")
    Rotating.rotate_to = "tok-rotated-2"
    service.config.secret_stores.forget("helper", "acme")
    helper.set_state(write_exit=2)
    await service.scheduler.check_now(account)  # reads tok-rotated-1, rotates to -2
    await wait_for(lambda: (registry.get_sample_value(
        "channel_secret_store_write_failures_total", {"store": "helper"}) or 0) >= 1)
    assert registry.get_sample_value("channel_secret_store_pending_writes",
                                     {"store": "helper"}) == 1
    assert helper.db()["acme"] in ("tok-rotated-1", "tok-rotated-2")
    helper.set_state()
    await wait_for(lambda: helper.db()["acme"] == "tok-rotated-2")
    await wait_for(lambda: registry.get_sample_value(
        "channel_secret_store_pending_writes", {"store": "helper"}) == 0)
    await service.stop()


async def test_write_back_conflict_keeps_the_platforms_token(tmp_path, postgres_url):
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    with engine.begin() as db:
        db.execute(sa.text("CREATE TABLE IF NOT EXISTS wb_conflict (k TEXT PRIMARY KEY, v TEXT)"))
        db.execute(sa.text("DELETE FROM wb_conflict"))
        db.execute(sa.text("INSERT INTO wb_conflict VALUES ('acme', 'tok-sql-1')"))
    stores = {"db": {"type": "sql", "url": postgres_url,
                     "read_query": "SELECT k, v FROM wb_conflict WHERE k IN :keys",
                     "write_query": "UPDATE wb_conflict SET v = :value WHERE k = :key "
                                    "AND v IS NOT DISTINCT FROM :old_value"}}
    cfg = config(tmp_path, stores, [{"name": "a1", "region": "na", "refresh_token": "db:acme"}],
                 channel="rotating")
    service = AgentService(cfg, load_plugins(entry_points=False))
    account = service.find_account("rotating", "a1")
    Rotating.valid = {"tok-sql-1", "tok-agent-2", "tok-pipeline"}
    await service.scheduler.check_now(account)  # cache holds tok-sql-1
    with engine.begin() as db:  # the platform's pipeline writes a token meanwhile
        db.execute(sa.text("UPDATE wb_conflict SET v = 'tok-pipeline'"))
    Rotating.rotate_to = "tok-agent-2"
    await service.scheduler.check_now(account)
    registry = service.metrics.registry
    await wait_for(lambda: registry.get_sample_value(
        "channel_secret_store_requests_total",
        {"store": "db", "op": "write", "outcome": "conflict"}) == 1)
    with engine.begin() as db:
        assert db.execute(sa.text("SELECT v FROM wb_conflict")).scalar() == "tok-pipeline"
    Rotating.rotate_to = None
    await service.scheduler.check_now(account)
    assert Rotating.used[-1] == "tok-pipeline"  # the store's token wins from now on
    await service.stop()
    engine.dispose()


async def test_observer_mode_never_writes(tmp_path, helper, caplog):
    cfg = config(tmp_path, {"helper": exec_store(helper, write_command=[str(helper.path)],
                                                 mode="observer")},
                 [{"name": "a1", "region": "na", "refresh_token": "helper:acme"}],
                 channel="rotating")
    service = AgentService(cfg, load_plugins(entry_points=False))
    Rotating.valid, Rotating.rotate_to = {TOKEN, "tok-new"}, "tok-new"
    await service.scheduler.check_now(service.find_account("rotating", "a1"))
    await asyncio.sleep(0.2)
    assert helper.db()["acme"] == TOKEN
    assert "observer mode" in caplog.text
    assert Rotating.owner is False  # the channel is told not to consume the token
    await service.stop()


# --- inventory rows -----------------------------------------------------------------------


async def test_inventory_rows_carry_store_references(tmp_path, helper):
    from agent.cli.inventory import _account
    from tests.inventory_helpers import QUERY, Connections

    helper.set_db({"acme": TOKEN, "beta": "tok-beta-77"})
    table = Connections(tmp_path / "platform.db", extra_columns=("refresh_token_ref",))
    table.put({"account": "a1", "refresh_token_ref": "helper:acme"},
              {"account": "a2", "refresh_token_ref": '{"store": "helper", "key": "beta"}'},
              {"account": "a3", "refresh_token_ref": "nowhere:x"},
              {"account": "a4", "refresh_token_ref": "helper:x", "refresh_token": "tok-inline"})

    def make_config():
        return build_config({
            "agent": {"state_path": str(tmp_path / "agent.db"), "check_interval": "1h"},
            "secret_stores": {"helper": exec_store(helper)},
            "inventory_sources": {"crm": {"type": "sql", "url": table.url, "query": QUERY,
                                          "channels": ["fake"], "interval": "1m",
                                          "timeout": "5s"}},
            "channels": {"fake": {}},
        }, CHANNELS, base_dir=tmp_path)

    config = make_config()
    service = AgentService(config, load_plugins(entry_points=False))
    assert await service.inventory.refresh("crm")
    service.apply_inventory()
    assert sorted(service.fleet.accounts) == [("fake", "a1"), ("fake", "a2")]
    problems = " ".join(service.status()["inventory_sources"]["crm"]["invalid_rows"])
    assert "row 3 (fake/a3): refresh_token_ref: must be STORE:KEY" in problems
    assert "(known: helper)" in problems
    assert "row 4 (fake/a4): refresh_token_ref: give one of refresh_token" in problems
    assert "tok-inline" not in problems
    for name, token in (("a1", TOKEN), ("a2", "tok-beta-77")):
        state = await service.scheduler.check_now(service.find_account("fake", name))
        assert state.valid is True and FakeChannel.tokens[name] == token
    assert helper.runs() == 1  # both keys in one batch
    shown = _account(config, service.find_account("fake", "a1"))["credential"]
    assert shown == "refresh_token: secret store helper, key acme"
    await service.stop()

    table.drop()  # restarted while the source is down: the references were kept
    second = AgentService(make_config(), load_plugins(entry_points=False))
    account = second.fleet.accounts["fake", "a2"]
    assert not second.scheduler.withheld(account)
    state = await second.scheduler.check_now(account)
    assert state.valid is True and FakeChannel.tokens["a2"] == "tok-beta-77"
    await second.stop()


async def test_a_check_cycle_through_the_scheduler_costs_accounts_over_batch_size_runs(
        tmp_path):
    """The scale promise through the real path: the agent's check order (per-account offsets),
    the scheduler's prefetch, one exec helper. 2,000 accounts in batches of 100: 20 runs (the
    10,000-account cycle is in test_secrets_exec.py, without the scheduler's overhead)."""
    n, batch = 2_000, 100
    helper = Helper(tmp_path / "h", {f"acct-{i}": f"tok-{i:05d}-abcdef" for i in range(n)})
    cfg = config(tmp_path, {"helper": exec_store(helper, batch_size=batch)},
                 [{"name": f"a{i}", "region": "na", "refresh_token": f"helper:acct-{i}"}
                  for i in range(n)])
    service = AgentService(cfg, load_plugins(entry_points=False))
    interval = cfg.agent.check_interval
    for account in sorted(service.fleet.accounts.values(), key=lambda a: offset(a, interval)):
        await service.scheduler.check_now(account)
    print(f"exec helper runs for one check cycle of {n} accounts: {helper.runs()}")
    assert helper.runs() == n // batch
    assert len(FakeChannel.tokens) == n
    assert service.metrics.registry.get_sample_value(
        "channel_secret_store_requests_total",
        {"store": "helper", "op": "read", "outcome": "ok"}) == n // batch
    await service.stop()


def test_the_json_schema_knows_stores_and_references():
    import jsonschema

    from agent.config.schema import config_schema

    plugins = load_plugins(entry_points=False)
    schema = config_schema(CHANNELS, {}, {}, plugins.secret_stores)
    validator = jsonschema.Draft202012Validator(schema)
    good = {"secret_stores": {"bao": {"type": "vault", "address": "https://v:8200",
                                      "token_file": "/run/token", "cache_ttl": "1m"}},
            "channels": {"fake": {"accounts": [
                {"name": "a1", "region": "na", "refresh_token": {"store": "bao", "key": "x"}},
                {"name": "a2", "region": "na", "refresh_token": "bao:y"}]}}}
    assert list(validator.iter_errors(good)) == []
    bad = {"secret_stores": {"bao": {"type": "vault", "adress": "https://v:8200"}},
           "channels": {"fake": {"accounts": [
               {"name": "a1", "region": "na", "refresh_token": {"stor": "bao"}}]}}}
    paths = {tuple(map(str, e.absolute_path)) for e in validator.iter_errors(bad)}
    assert ("secret_stores", "bao") in paths
    assert ("channels", "fake", "accounts", "0", "refresh_token") in paths
