"""The vault secret store against a real OpenBao server (KV v2)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from agent.channel import Secret
from agent.secrets.base import StoreUnavailable, WriteConflict
from agent.secrets.vault import VaultSettings, VaultStore
from tests.helpers import free_port
from tests.secret_servers import ROOT_TOKEN, openbao  # noqa: F401 - fixture

pytestmark = pytest.mark.integration


def put(server, path: str, data: dict) -> None:
    response = httpx.post(f"{server.url}/v1/secret/data/{path}", json={"data": data},
                          headers={"X-Vault-Token": ROOT_TOKEN})
    response.raise_for_status()


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def make(url: str, **settings) -> VaultStore:
    settings.setdefault("token", ROOT_TOKEN)
    return VaultStore("bao", VaultSettings(address=url, **settings))


async def test_reads_field_and_version(openbao, prefix):  # noqa: F811
    put(openbao, f"{prefix}/acme", {"refresh_token": "tok-vault-acme", "owner": "sync"})
    store = make(openbao.url)
    answers = await store.read([f"{prefix}/acme", f"{prefix}/gone"])
    assert answers[f"{prefix}/acme"].value == Secret("tok-vault-acme")
    assert answers[f"{prefix}/acme"].version == "1"
    assert answers[f"{prefix}/gone"] is None
    await store.close()


async def test_token_file_and_bad_token(openbao, prefix, tmp_path):  # noqa: F811
    put(openbao, f"{prefix}/acme", {"refresh_token": "tok-1"})
    token_file = tmp_path / "token"
    token_file.write_text(ROOT_TOKEN + "\n")
    store = VaultStore("bao", VaultSettings(address=openbao.url,
                                            token_file=str(token_file)))
    assert (await store.read([f"{prefix}/acme"]))[f"{prefix}/acme"].value == Secret("tok-1")
    token_file.write_text("not-the-token")
    with pytest.raises(StoreUnavailable, match="403"):  # a store problem, never "invalid"
        await store.read([f"{prefix}/acme"])
    await store.close()


async def test_write_is_check_and_set_and_keeps_other_fields(openbao, prefix):  # noqa: F811
    key = f"{prefix}/acme"
    put(openbao, key, {"refresh_token": "tok-1", "owner": "sync"})
    store = make(openbao.url)
    read = (await store.read([key]))[key]
    await store.write(key, Secret("tok-2"), read)
    again = (await store.read([key]))[key]
    assert (again.value, again.version) == (Secret("tok-2"), "2")
    data = httpx.get(f"{openbao.url}/v1/secret/data/{key}",
                     headers={"X-Vault-Token": ROOT_TOKEN}).json()["data"]["data"]
    assert data == {"refresh_token": "tok-2", "owner": "sync"}
    # a pipeline rotates meanwhile: the agent's write based on version 2 must not land
    put(openbao, key, {"refresh_token": "tok-from-pipeline", "owner": "sync"})
    with pytest.raises(WriteConflict):
        await store.write(key, Secret("tok-3"), again)
    assert (await store.read([key]))[key].value == Secret("tok-from-pipeline")
    await store.close()


async def test_a_new_key_is_created_only_if_absent(openbao, prefix):  # noqa: F811
    store = make(openbao.url)
    await store.write(f"{prefix}/new", Secret("tok-new"), None)
    assert (await store.read([f"{prefix}/new"]))[f"{prefix}/new"].value == Secret("tok-new")
    await store.close()


async def test_unreachable_is_unavailable():
    store = make(f"http://127.0.0.1:{free_port()}", timeout="1s")
    with pytest.raises(StoreUnavailable):
        await store.read(["x"])
    await store.close()
