"""``type: vault``: HashiCorp Vault or OpenBao, KV version 2 secrets engine.

One secret per account at ``<mount>/data/<key>``, the token in its ``field`` (default
``refresh_token``). Reads are one request per key (KV v2 has no batch read), run
``max_parallel`` at a time. Writes use check-and-set: ``options.cas`` set to the version the
agent read, so a token a pipeline wrote meanwhile is never overwritten (Vault answers 400,
"check-and-set parameter did not match the current version"); other fields of the secret are
kept. API: developer.hashicorp.com/vault/api-docs/secret/kv/kv-v2 (OpenBao's is the same).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import Field, field_validator

from agent.channel import MissingSecret, Secret
from agent.config.types import FilePath, Int, SecretReference, Url, problem
from agent.secrets.base import (
    Fetched,
    SecretStore,
    StoreSettings,
    StoreUnavailable,
    WriteConflict,
    fetched,
    read_each,
)


class VaultSettings(StoreSettings):
    address: Url = Field(description="Vault's address, e.g. https://vault.internal:8200")
    # token: ${VAULT_TOKEN}, or token_file: what a Vault Agent sink writes (read at each call)
    token: SecretReference = Field(description="The Vault token")
    namespace: str | None = Field(None, description="Vault Enterprise / OpenBao namespace")
    mount: str = Field("secret", description="Path of the KV version 2 engine")
    field: str = Field("refresh_token", min_length=1,
                       description="The field of each secret that holds the token")
    max_parallel: Int = Field(16, ge=1, le=256, description="Requests at a time")
    ca_file: FilePath | None = Field(None, description="CA certificate(s) for Vault's TLS")

    @field_validator("mount")
    @classmethod
    def _mount(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*", value):
            raise problem("must be a path of letters, digits and _.- (like secret or kv/teams)")
        return value


class VaultStore(SecretStore):
    type = "vault"
    Settings = VaultSettings
    settings: VaultSettings

    def __init__(self, name: str, settings: StoreSettings, base_dir: Path | None = None) -> None:
        super().__init__(name, settings, base_dir)
        s = self.settings
        verify: Any = str(s.ca_file) if s.ca_file else True
        self._client = httpx.AsyncClient(base_url=s.address.rstrip("/"), timeout=s.timeout,
                                         verify=verify)

    def _headers(self) -> dict[str, str]:
        try:
            token = self.settings.token.read().reveal()
        except MissingSecret as exc:
            raise StoreUnavailable(f"the Vault token: {exc.problem}") from None
        headers = {"X-Vault-Token": token}
        if self.settings.namespace:
            headers["X-Vault-Namespace"] = self.settings.namespace
        return headers

    def _url(self, key: str) -> str:
        return f"/v1/{self.settings.mount}/data/{quote(key, safe='/')}"

    async def _request(self, method: str, key: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.request(method, self._url(key), headers=self._headers(),
                                              **kwargs)
        except httpx.TimeoutException:
            raise StoreUnavailable(f"no answer within {self.settings.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"{type(exc).__name__} reaching {self.settings.address}"
                                   ) from None

    async def _get(self, key: str) -> tuple[dict[str, Any], int] | None:
        response = await self._request("GET", key)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise StoreUnavailable(_status(response))
        try:
            data = response.json()["data"]
            return dict(data["data"] or {}), int(data["metadata"]["version"])
        except (ValueError, KeyError, TypeError):
            raise StoreUnavailable("the answer is not a KV v2 secret (is the mount KV v2?)"
                                   ) from None

    async def read(self, keys: Sequence[str]) -> dict[str, Fetched | None]:
        return await read_each(keys, self.settings.max_parallel, self._read_one)

    async def _read_one(self, key: str) -> Fetched | None:
        found = await self._get(key)
        return None if found is None else fetched(found[0].get(self.settings.field),
                                                  str(found[1]))

    async def write(self, key: str, value: Secret, previous: Fetched | None) -> None:
        current = await self._get(key)
        data, version = current if current is not None else ({}, 0)
        expected = int(previous.version) if previous and previous.version else 0
        if previous is not None and previous.version is None:
            expected = version  # read without a version (a cache filled by a write): as now
        if version != expected:
            raise WriteConflict(f"{key} is at version {version}, the agent read {expected}")
        data[self.settings.field] = value.reveal()
        response = await self._request("POST", key,
                                       json={"options": {"cas": version}, "data": data})
        if response.status_code == 400 and "check-and-set" in response.text:
            raise WriteConflict(f"{key} changed while the agent wrote it")
        if response.status_code not in (200, 204):
            raise StoreUnavailable(_status(response))

    async def probe(self) -> None:
        await self._get("channel-agent-connectivity-probe")

    async def close(self) -> None:
        await self._client.aclose()


def _status(response: httpx.Response) -> str:
    """What went wrong, from the status alone (Vault's error list may quote the request)."""
    meaning = {401: "the token is not accepted", 403: "permission denied for this path",
               503: "Vault is sealed or in standby"}.get(response.status_code, "")
    return f"HTTP {response.status_code}" + (f" ({meaning})" if meaning else "")
