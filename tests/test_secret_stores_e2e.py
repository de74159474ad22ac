"""The agent process with every secret store type against the real thing: token files, a
real exec helper, OpenBao, PostgreSQL, moto's AWS server; reconnect writes into a store; and
no secret anywhere the agent or its CLI puts text."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import uuid
from pathlib import Path

import boto3
import httpx
import pytest
import sqlalchemy as sa
from channel_agent_amazon_ads.simulator import SimAccount, Simulator, SimulatorThread

from tests.fake_browser import consent
from tests.helpers import BIN, free_port, start_agent
from tests.secret_helpers import Helper
from tests.secret_servers import ROOT_TOKEN, moto_server, openbao  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

# account -> (region, scenario, store)
ACCOUNTS = {
    "file-na": ("na", "healthy", "files"),
    "exec-na": ("na", "healthy", "helper"),
    "vault-eu": ("eu", "healthy", "bao"),
    "sql-na": ("na", "healthy", "platform"),
    "aws-fe": ("fe", "healthy", "aws"),
    "revoked-eu": ("eu", "revoked", "bao"),
    "nowrite-na": ("na", "revoked", "broken"),
    "link-na": ("na", "revoked", "platform"),
}
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-aws-secret-9d"}


@pytest.fixture(scope="module")
def world(tmp_path_factory, openbao, moto_server, postgres_url):  # noqa: F811
    tmp = tmp_path_factory.mktemp("stores")
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    sim = Simulator(client_secret="sim-secret-for-stores-e2e")
    (tmp / "client_secret").write_text(sim.client_secret + "\n")
    (tmp / "bao-token").write_text(ROOT_TOKEN + "\n")
    prefix = uuid.uuid4().hex[:8]
    helper = Helper(tmp / "helper")
    broken = Helper(tmp / "broken")
    engine = sa.create_engine(postgres_url)
    with engine.begin() as db:
        db.execute(sa.text(f"CREATE TABLE conn_{prefix} (k TEXT PRIMARY KEY, token TEXT)"))
    aws = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=moto_server.url)
    accounts, tokens = [], {}
    for i, (name, (region, scenario, store)) in enumerate(ACCOUNTS.items()):
        account = SimAccount.create(name, region, [3000 + i], scenario)
        sim.add_account(account)
        token = tokens[name] = account.refresh_token
        key = name
        if store == "files":
            (tmp / "tokens").mkdir(exist_ok=True)
            (tmp / "tokens" / name).write_text(token + "\n")
        elif store == "helper":
            helper.set_db({name: token})
        elif store == "broken":
            broken.set_db({name: token})
        elif store == "bao":
            key = f"{prefix}/{name}"
            httpx.post(f"{openbao.url}/v1/secret/data/{key}", json={"data": {
                "refresh_token": token}}, headers={"X-Vault-Token": ROOT_TOKEN}
            ).raise_for_status()
        elif store == "platform":
            with engine.begin() as db:
                db.execute(sa.text(f"INSERT INTO conn_{prefix} VALUES (:k, :t)"),
                           {"k": name, "t": token})
        elif store == "aws":
            key = f"{prefix}/{name}"
            aws.create_secret(Name=key, SecretString=token)
        reference = {"store": store} if store == "files" else f"{store}:{key}"
        accounts.append({"name": name, "region": region, "expected_profiles": [3000 + i],
                         "refresh_token": reference})
    # the broken store's write command always fails: a reconnect into it is store_failed
    os.chmod(broken.path, 0o700)
    failing_writer = tmp / "failing-writer"
    failing_writer.write_text("#!/bin/sh\necho 'write refused' >&2\nexit 1\n")
    os.chmod(failing_writer, 0o700)
    thread = SimulatorThread(sim)
    thread.start()
    agent = start_agent(tmp, {
        "secret_stores": {
            "files": {"type": "file", "path": "tokens/{account}"},
            "helper": {"type": "exec", "command": [str(helper.path)],
                       "write_command": [str(helper.path)], "cache_ttl": "1ms"},
            "broken": {"type": "exec", "command": [str(broken.path)],
                       "write_command": [str(failing_writer)]},
            "bao": {"type": "vault", "address": openbao.url, "token_file": "bao-token"},
            "platform": {"type": "sql", "url": postgres_url,
                         "read_query": f"SELECT k, token FROM conn_{prefix} WHERE k IN :keys",
                         "write_query": f"UPDATE conn_{prefix} SET token = :value WHERE "
                                        f"k = :key AND token IS NOT DISTINCT FROM :old_value"},
            "aws": {"type": "aws_secrets_manager", "region": "eu-west-1",
                    "endpoint_url": moto_server.url},
        },
        "channels": {"amazon_ads": {
            "client_id": sim.client_id, "client_secret_file": "client_secret",
            "endpoints": sim.endpoints(), "accounts": accounts,
        }},
    }, check_timeout="5s")
    outputs: list[str] = []
    yield {"sim": sim, "agent": agent, "tmp": tmp, "config": str(agent.config), "tokens": tokens,
           "helper": helper, "openbao": openbao, "prefix": prefix, "engine": engine,
           "outputs": outputs, "aws": aws}
    agent.stop()
    thread.stop()
    engine.dispose()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def cli(world, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([BIN / "channel-agent", *args], input=stdin, capture_output=True,
                            text=True, timeout=60)
    world["outputs"].append(result.stdout + result.stderr)
    return result


def test_every_store_type_feeds_the_checks(world):
    agent = world["agent"]
    for name, (_, scenario, _) in ACCOUNTS.items():
        after = agent.recheck(name)["after"]
        assert after["state"] == ("valid" if scenario == "healthy" else "invalid"), (name, after)
    for store in ("files", "helper", "bao", "platform", "aws", "broken"):
        assert agent.sample("channel_secret_store_up", "", store=store) is None  # no account
    text = agent.metrics()
    for store in ("files", "helper", "bao", "platform", "aws"):
        assert f'channel_secret_store_up{{store="{store}"}} 1.0' in text
    stores = agent.status()["secret_stores"]
    assert stores["bao"] == {"type": "vault", "mode": "owner", "up": True}


def test_store_outage_is_transient_and_pages_nothing(world):
    agent, helper = world["agent"], world["helper"]
    helper.set_state(exit=1)
    after = agent.recheck("exec-na")["after"]
    assert (after["state"], after["reason"], after["valid"]) == (
        "unverified", "secret_unavailable", True)
    assert agent.sample("channel_credential_valid", "exec-na") == 1  # no invalid alert
    assert 'channel_secret_store_up{store="helper"} 0.0' in agent.metrics()
    helper.set_state()
    assert agent.recheck("exec-na")["after"]["state"] == "valid"


def reconnect(world, account: str) -> tuple[int, dict, str]:
    """``reconnect --no-browser --json`` of ``account``, consenting as it: (exit, JSON, stderr)."""
    run = subprocess.Popen(
        [BIN / "channel-agent", "reconnect", "amazon_ads", "--account", account,
         "--no-browser", "--json", "--config", world["config"]],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = run.stdout.readline().strip()
    out, err = run.communicate(consent(url, account) + "\n", timeout=60)
    world["outputs"].append(url + out + err)
    return run.returncode, json.loads(out), err


def test_reconnect_writes_the_new_token_to_vault(world):
    sim = world["sim"]
    key = f"{world['prefix']}/revoked-eu"
    code, doc, err = reconnect(world, "revoked-eu")
    assert code == 0, err
    assert doc["stored_in"] == f"secret store bao, key {key}"
    new = sim.account("revoked-eu").refresh_token
    stored = httpx.get(f"{world['openbao'].url}/v1/secret/data/{key}",
                       headers={"X-Vault-Token": ROOT_TOKEN}).json()["data"]
    assert stored["data"]["refresh_token"] == new and stored["metadata"]["version"] == 2
    # the running agent had the old token cached: it confirms against the store and sees it
    assert doc["agent"]["after"]["state"] == "valid"


def test_a_link_completed_by_the_agent_writes_to_the_sql_store(world):
    agent, sim, engine = world["agent"], world["sim"], world["engine"]
    callback = f"{agent.url}/oauth/callback"
    made = cli(world, "reconnect", "amazon_ads", "--account", "link-na", "--link",
               "--redirect-uri", callback, "--json", "--config", world["config"])
    assert made.returncode == 0, made.stderr
    page = httpx.get(consent(json.loads(made.stdout)["consent_url"], "link-na"), timeout=30)
    assert page.status_code == 200 and "Account reconnected" in page.text
    with engine.begin() as db:
        stored = db.execute(sa.text(f"SELECT token FROM conn_{world['prefix']} "
                                    f"WHERE k = 'link-na'")).scalar()
    assert stored == sim.account("link-na").refresh_token != world["tokens"]["link-na"]
    assert agent.sample("channel_credential_valid", "link-na") == 1


def test_reconnect_into_a_store_that_fails_is_store_failed(world):
    before = world["helper"].db()
    broken_db = json.loads((world["tmp"] / "broken" / "db.json").read_text())
    code, doc, _ = reconnect(world, "nowrite-na")
    assert code != 0
    assert doc["error"]["reason"] == "store_failed", doc
    assert "secret store broken" in doc["error"]["message"]
    assert json.loads((world["tmp"] / "broken" / "db.json").read_text()) == broken_db
    assert world["helper"].db() == before


def test_config_check_connect_tries_each_store(world, tmp_path):
    ok = cli(world, "config", "check", "--connect", world["config"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for store in ("files", "helper", "bao", "platform", "aws", "broken"):
        assert f"secret store {store} (" in ok.stdout and "FAILED" not in ok.stdout
    config = json.loads(Path(world["config"]).read_text())
    config["secret_stores"]["bao"]["address"] = f"http://127.0.0.1:{free_port()}"
    broken = tmp_path / "config.yaml"
    broken.write_text(json.dumps(config))
    for name in ("bao-token", "client_secret", "tokens"):
        os.symlink(world["tmp"] / name, tmp_path / name)
    failed = cli(world, "config", "check", "--connect", str(broken))
    assert failed.returncode == 1
    assert "secret store bao (vault, owner): FAILED: StoreUnavailable" in failed.stdout


def test_no_secret_anywhere(world):
    """Runs last: every token, the Vault token and the AWS secret key, searched for in
    everything the agent and its CLI wrote."""
    agent, tmp = world["agent"], world["tmp"]
    secrets = [*world["tokens"].values(), world["sim"].account("revoked-eu").refresh_token,
               world["sim"].account("link-na").refresh_token,
               ROOT_TOKEN, AWS_ENV["AWS_SECRET_ACCESS_KEY"]]
    for args in (["check", "--config", world["config"]],
                 ["reconnect", "--list", "--config", world["config"]]):
        cli(world, *args)
    texts = {
        "log": (tmp / "agent.log").read_text(),
        "metrics": agent.metrics(),
        "status": agent.get("/api/v1/status").text,
        "landing page": agent.get("/").text,
        "cli": "\n".join(world["outputs"]),
        "exec argv and env": (tmp / "helper" / "seen.json").read_text(),
    }
    db = sqlite3.connect(tmp / "agent.db")
    texts["state db"] = "\n".join(repr(row) for table, in db.execute(
        "SELECT name FROM sqlite_master WHERE type='table'") for row in db.execute(
        f"SELECT * FROM {table}"))
    db.close()
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into the {where}"
    assert "wrote on stderr" not in texts["log"] or "write refused" in texts["log"]
