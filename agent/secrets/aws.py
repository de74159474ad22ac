"""``type: aws_secrets_manager``: AWS Secrets Manager through boto3 (the ``aws`` extra).

Two layouts: one secret per account (the key is the secret id; ``field`` names a JSON field
of it, or the whole SecretString is the token), or one shared secret (``secret_id``) whose
JSON object maps each key to its token (one GetSecretValue reads every account).

Writes are compare-and-set through version stages: the new value is put under the stage
``AGENTPENDING``, then ``UpdateSecretVersionStage`` moves ``AWSCURRENT`` to it with
``RemoveFromVersionId`` = the version the agent read; AWS refuses that move when
``AWSCURRENT`` is on another version by then (someone rotated meanwhile). A shared secret is
re-merged once when only other fields changed. API: docs.aws.amazon.com/secretsmanager/
latest/apireference (GetSecretValue, PutSecretValue, UpdateSecretVersionStage).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from agent.channel import Secret
from agent.config.types import Int, Url, problem
from agent.secrets.base import (
    Fetched,
    SecretStore,
    StoreSettings,
    StoreSetupError,
    StoreUnavailable,
    WriteConflict,
    fetched,
    read_each,
)

PENDING_STAGE = "AGENTPENDING"


class AwsSettings(StoreSettings):
    region: str = Field(description="e.g. eu-west-1")
    endpoint_url: Url | None = Field(None, description="A VPC endpoint (or a test server)")
    secret_id: str | None = Field(None, description="One shared secret: a JSON object of "
                                                    "key -> token")
    field: str | None = Field(None, description="Per-account secrets holding JSON: the "
                                                "token's field")
    max_parallel: Int = Field(8, ge=1, le=64, description="Requests at a time")

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d+", value):
            raise problem("must be an AWS region like eu-west-1")
        return value


class AwsSecretsManagerStore(SecretStore):
    type = "aws_secrets_manager"
    Settings = AwsSettings
    settings: AwsSettings

    def __init__(self, name: str, settings: StoreSettings, base_dir: Path | None = None) -> None:
        super().__init__(name, settings, base_dir)
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise StoreSetupError("this store type needs boto3: "
                                  "pip install 'channel-health-agent[aws]'") from None
        s = self.settings
        self._client = boto3.session.Session().client(
            "secretsmanager", region_name=s.region, endpoint_url=s.endpoint_url,
            config=Config(connect_timeout=s.timeout, read_timeout=s.timeout,
                          retries={"max_attempts": 2, "mode": "standard"},
                          max_pool_connections=s.max_parallel))

    async def _call(self, method: str, **params: Any) -> dict[str, Any] | None:
        """The API's answer; None for ResourceNotFoundException."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await asyncio.to_thread(getattr(self._client, method), **params)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                return None
            if code == "InvalidParameterException" and method == "update_secret_version_stage":
                raise WriteConflict("AWSCURRENT moved to another version meanwhile") from None
            raise StoreUnavailable(f"{method}: {code or 'error'}") from None
        except BotoCoreError as exc:
            raise StoreUnavailable(f"{method}: {type(exc).__name__}") from None

    async def _get(self, secret_id: str) -> tuple[str, str] | None:
        answer = await self._call("get_secret_value", SecretId=secret_id,
                                  VersionStage="AWSCURRENT")
        if answer is None:
            return None
        text = answer.get("SecretString")
        if not isinstance(text, str):
            raise StoreUnavailable(f"secret {secret_id} holds binary data, not a string")
        return text, answer["VersionId"]

    async def read(self, keys: Sequence[str]) -> dict[str, Fetched | None]:
        if self.settings.secret_id is not None:
            found = await self._get(self.settings.secret_id)
            if found is None:
                raise StoreUnavailable(f"the shared secret {self.settings.secret_id} does "
                                       f"not exist")
            fields = _json(found[0], self.settings.secret_id)
            return {key: fetched(fields.get(key), found[1]) for key in keys}
        return await read_each(keys, self.settings.max_parallel, self._read_one)

    async def _read_one(self, key: str) -> Fetched | None:
        found = await self._get(key)
        if found is None:
            return None
        text, version = found
        return fetched(_json(text, key).get(self.settings.field) if self.settings.field
                       else text, version)

    async def write(self, key: str, value: Secret, previous: Fetched | None) -> None:
        shared = self.settings.secret_id
        secret_id = shared or key
        for attempt in range(2):
            current = await self._get(secret_id)
            if current is None:
                if shared or previous is not None:
                    raise WriteConflict(f"secret {secret_id} no longer exists")
                await self._call("create_secret", Name=secret_id,
                                 SecretString=self._compose(None, key, value))
                return
            text, version = current
            expected = previous.version if previous and previous.version else version
            if version != expected:
                if not (shared and attempt == 0 and previous is not None
                        and _json(text, secret_id).get(key) == previous.value.reveal()):
                    raise WriteConflict(f"secret {secret_id} changed since the agent read it")
                expected = version  # only other accounts' fields changed: merge again
            put = await self._call("put_secret_value", SecretId=secret_id,
                                   SecretString=self._compose(text, key, value),
                                   VersionStages=[PENDING_STAGE])
            assert put is not None
            try:
                await self._call("update_secret_version_stage", SecretId=secret_id,
                                 VersionStage="AWSCURRENT", MoveToVersionId=put["VersionId"],
                                 RemoveFromVersionId=expected)
                return
            except WriteConflict:
                if not shared or attempt:
                    raise

    def _compose(self, current: str | None, key: str, value: Secret) -> str:
        if self.settings.secret_id is not None:
            fields = _json(current or "{}", self.settings.secret_id)
            fields[key] = value.reveal()
            return json.dumps(fields)
        if self.settings.field:
            fields = _json(current or "{}", key)
            fields[self.settings.field] = value.reveal()
            return json.dumps(fields)
        return value.reveal()

    async def probe(self) -> None:
        if self.settings.secret_id is not None:
            await self.read(["channel-agent-connectivity-probe"])
        else:
            await self._call("list_secrets", MaxResults=1)

    async def close(self) -> None:
        self._client.close()


def _json(text: str, where: str) -> dict[str, Any]:
    try:
        fields = json.loads(text)
    except ValueError:
        raise StoreUnavailable(f"secret {where} is not a JSON object") from None
    if not isinstance(fields, dict):
        raise StoreUnavailable(f"secret {where} is not a JSON object")
    return fields


