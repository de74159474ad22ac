"""The documented exec helper for a KMS-encrypted column (docs/examples/) works: real
PostgreSQL, KMS from moto's server, run by the exec store as the agent runs it."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import boto3
import psycopg
import pytest

from agent.channel import Secret
from agent.secrets.exec import ExecSettings, ExecStore
from tests.secret_servers import moto_server  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parent.parent / "docs" / "examples" / "kms-column-secret-helper.py"


async def test_kms_column_helper_reads_and_writes(tmp_path, postgres_url, moto_server,  # noqa: F811
                                                  monkeypatch):
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL": moto_server.url,
           "DATABASE_URL": postgres_url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    kms = boto3.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    monkeypatch.setenv("KMS_KEY_ID", key_id)
    table = f"connections_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(f"CREATE TABLE {table} (account_key text PRIMARY KEY, "
                   f"refresh_token_enc bytea)")
        blob = kms.encrypt(KeyId=key_id, Plaintext=b"Atzr|kms-acme-token")["CiphertextBlob"]
        db.execute(f"INSERT INTO {table} VALUES ('acme-us', %s)", (blob,))
    helper = tmp_path / "kms-helper"
    text = EXAMPLE.read_text().replace("#!/usr/bin/env python3", f"#!{sys.executable}", 1)
    helper.write_text(text.replace("FROM connections", f"FROM {table}")
                      .replace("UPDATE connections", f"UPDATE {table}"))
    os.chmod(helper, 0o700)
    store = ExecStore("kms", ExecSettings(command=[str(helper)],
                                          write_command=[str(helper)], pass_env=[*env,
                                                                                 "KMS_KEY_ID"]))
    answers = await store.read(["acme-us", "gone-eu"])
    assert answers["acme-us"].value == Secret("Atzr|kms-acme-token")
    assert answers["gone-eu"] is None
    await store.write("acme-us", Secret("Atzr|kms-rotated"), answers["acme-us"])
    assert (await store.read(["acme-us"]))["acme-us"].value == Secret("Atzr|kms-rotated")
    with psycopg.connect(postgres_url) as db:
        stored = db.execute(f"SELECT refresh_token_enc FROM {table}").fetchone()[0]
    assert b"kms-rotated" not in bytes(stored)  # encrypted at rest
