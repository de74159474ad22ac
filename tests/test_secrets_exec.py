"""The exec secret store against a real helper process (Datadog secret_backend protocol)."""

from __future__ import annotations

import logging
import os

import pytest

from agent.channel import MissingSecret, Secret
from agent.secrets.base import StoreSetupError, StoreUnavailable
from agent.secrets.exec import ExecSettings, ExecStore
from agent.secrets.registry import SecretStores
from tests.secret_helpers import Helper

TOKEN = "tok-exec-3f9a1c77e2"


def make(helper: Helper, **settings) -> ExecStore:
    return ExecStore("vaultish", ExecSettings(command=[str(helper.path)], **settings))


@pytest.fixture
def helper(tmp_path) -> Helper:
    return Helper(tmp_path / "helper", {"acme": TOKEN, "other": "tok-other-1"})


async def test_reads_a_batch_in_one_run(helper):
    store = make(helper)
    answers = await store.read(["acme", "other", "gone"])
    assert answers["acme"].value == Secret(TOKEN)
    assert answers["other"].value == Secret("tok-other-1")
    assert answers["gone"] is None  # value null, error null: no such key
    assert helper.runs() == 1


async def test_a_key_error_fails_that_key_only(helper):
    helper.set_state(errors=["acme"])
    answers = await make(helper).read(["acme", "other"])
    assert isinstance(answers["acme"], StoreUnavailable)
    assert TOKEN not in str(answers["acme"])  # the helper's error text quoted the secret
    assert answers["other"].value == Secret("tok-other-1")


@pytest.mark.parametrize("state, message", [
    ({"exit": 3}, "exited with status 3"),
    ({"hang": 30}, "did not finish within 0.5s"),
    ({"garbage": "not json"}, "not JSON"),
])
async def test_no_answer_is_unavailable(helper, state, message):
    helper.set_state(**state)
    with pytest.raises(StoreUnavailable, match=message):
        await make(helper, timeout="500ms").read(["acme"])


async def test_output_over_the_limit_is_refused(helper):
    helper.set_db({"acme": "x" * 5000})
    with pytest.raises(StoreUnavailable, match="more than 1024 bytes"):
        await make(helper, output_max_size=1024).read(["acme"])


@pytest.mark.parametrize("mode", [0o720, 0o702, 0o755, 0o600])
def test_permissions_as_datadog_requires(helper, mode):
    os.chmod(helper.path, mode)
    with pytest.raises(StoreSetupError, match="chmod 700"):
        make(helper)


async def test_keys_travel_on_stdin_and_the_environment_is_minimal(helper, monkeypatch):
    monkeypatch.setenv("AMAZON_CLIENT_SECRET", "amzn1.oa2-cs.v1.leakme")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    await make(helper, pass_env=["AWS_REGION"]).read(["acme"])
    seen = helper.seen()
    assert seen["argv"] == [str(helper.path)]
    assert "AMAZON_CLIENT_SECRET" not in seen["env"]
    assert seen["env"]["AWS_REGION"] == "eu-west-1"


async def test_stderr_is_redacted_and_truncated(helper, caplog):
    helper.set_state(stderr=f"debug: fetched {TOKEN} for acme " + "y" * 2000)
    with caplog.at_level(logging.WARNING):
        await make(helper).read(["acme"])
    logged = caplog.text
    assert "wrote on stderr" in logged and "fetched" in logged
    assert TOKEN not in logged
    assert "(truncated)" in logged and "y" * 600 not in logged


async def test_write_command(helper):
    store = ExecStore("s", ExecSettings(command=[str(helper.path)],
                                        write_command=[str(helper.path)]))
    await store.write("acme", Secret("tok-new-77"), None)
    assert helper.db()["acme"] == "tok-new-77"
    assert "tok-new-77" not in " ".join(helper.seen()["argv"])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_10000_accounts_take_20_runs_per_cycle(tmp_path):
    """The scale promise: accounts checked one after another over a 5-minute cycle cost
    accounts / batch_size runs of the helper per cycle, not one per account."""
    n, batch = 10_000, 500
    helper = Helper(tmp_path / "h", {f"acct-{i}": f"tok-{i:05d}-abcdef" for i in range(n)})
    clock = Clock()
    stores = SecretStores({"x": make(helper, batch_size=batch)}, monotonic=clock)
    refs = [stores.ref("x", f"acct-{i}", f"accounts[{i}]") for i in range(n)]
    stores.plan(refs)
    interval = 300.0
    per_cycle = []
    for _cycle in range(2):
        before = helper.runs()
        for ref in refs:  # the scheduler's order, spread over the interval
            await stores.prefetch([ref])
            assert ref.read().reveal().startswith("tok-")
            clock.now += interval / n
        per_cycle.append(helper.runs() - before)
    print(f"store calls per cycle at {n} accounts: {per_cycle}")
    assert per_cycle == [n // batch, n // batch]
    assert max(helper.batches()) == batch


async def test_absent_key_is_missing_credential(helper):
    stores = SecretStores({"x": make(helper)})
    ref = stores.ref("x", "gone", "channels.amazon_ads.accounts[0].refresh_token")
    await stores.prefetch([ref])
    with pytest.raises(MissingSecret, match="has no key gone"):
        ref.read()
