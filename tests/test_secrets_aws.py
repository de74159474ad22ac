"""The aws_secrets_manager store against moto's standalone server on loopback."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from agent.channel import Secret
from agent.secrets.aws import AwsSecretsManagerStore, AwsSettings
from agent.secrets.base import StoreUnavailable, WriteConflict
from tests.helpers import free_port
from tests.secret_servers import moto_server  # noqa: F401 - fixture

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture
def aws(moto_server):  # noqa: F811
    return boto3.client("secretsmanager", region_name="eu-west-1",
                        endpoint_url=moto_server.url)


def rotate(aws, secret_id: str, value: str) -> None:
    """What a rotation function does (AWSPENDING, then move AWSCURRENT). A plain
    PutSecretValue would do on AWS too, but moto then loses track of a stage the agent moved."""
    current = aws.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")["VersionId"]
    new = aws.put_secret_value(SecretId=secret_id, SecretString=value,
                               VersionStages=["AWSPENDING"])["VersionId"]
    aws.update_secret_version_stage(SecretId=secret_id, VersionStage="AWSCURRENT",
                                    MoveToVersionId=new, RemoveFromVersionId=current)


def current(aws, secret_id: str) -> str:
    return aws.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")["SecretString"]


def make(url: str, **settings) -> AwsSecretsManagerStore:
    return AwsSecretsManagerStore("aws", AwsSettings(
        region="eu-west-1", endpoint_url=url, **settings))


async def test_secret_per_account(moto_server, aws):  # noqa: F811
    p = uuid.uuid4().hex[:8]
    aws.create_secret(Name=f"{p}/acme", SecretString="tok-aws-acme")
    aws.create_secret(Name=f"{p}/json", SecretString=json.dumps({"refresh_token": "tok-j"}))
    store = make(moto_server.url)
    answers = await store.read([f"{p}/acme", f"{p}/gone"])
    assert answers[f"{p}/acme"].value == Secret("tok-aws-acme")
    assert answers[f"{p}/gone"] is None
    by_field = make(moto_server.url, field="refresh_token")
    assert (await by_field.read([f"{p}/json"]))[f"{p}/json"].value == Secret("tok-j")
    await store.close()
    await by_field.close()


async def test_write_moves_awscurrent_compare_and_set(moto_server, aws):  # noqa: F811
    key = f"{uuid.uuid4().hex[:8]}/acme"
    aws.create_secret(Name=key, SecretString="tok-1")
    store = make(moto_server.url)
    read = (await store.read([key]))[key]
    await store.write(key, Secret("tok-2"), read)
    assert current(aws, key) == "tok-2"
    rotate(aws, key, "tok-pipeline")  # rotated meanwhile
    with pytest.raises(WriteConflict):
        await store.write(key, Secret("tok-3"), read)
    assert current(aws, key) == "tok-pipeline"
    await store.close()


async def test_shared_secret_one_call_and_field_merge(moto_server, aws):  # noqa: F811
    shared = f"{uuid.uuid4().hex[:8]}/tokens"
    aws.create_secret(Name=shared, SecretString=json.dumps({"acme": "tok-a", "beta": "tok-b"}))
    store = make(moto_server.url, secret_id=shared)
    answers = await store.read(["acme", "beta", "gone"])
    assert (answers["acme"].value, answers["beta"].value, answers["gone"]) == (
        Secret("tok-a"), Secret("tok-b"), None)
    # another account's field changes meanwhile: not a conflict for acme
    rotate(aws, shared, json.dumps({"acme": "tok-a", "beta": "tok-b2"}))
    await store.write("acme", Secret("tok-a2"), answers["acme"])
    assert json.loads(current(aws, shared)) == {
        "acme": "tok-a2", "beta": "tok-b2"}
    # acme's own field changes meanwhile: a conflict
    rotate(aws, shared, json.dumps({"acme": "tok-pipe", "beta": "tok-b2"}))
    with pytest.raises(WriteConflict):
        await store.write("acme", Secret("tok-a3"), answers["acme"])
    await store.close()


async def test_unreachable_is_unavailable():
    store = make(f"http://127.0.0.1:{free_port()}", timeout="1s")
    with pytest.raises(StoreUnavailable):
        await store.read(["x"])
    await store.close()
