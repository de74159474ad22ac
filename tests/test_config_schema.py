"""`channel-agent config schema`: the JSON Schema editors use, built from the models."""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from agent.cli import cli
from agent.config.schema import config_schema
from tests.test_config import CHANNELS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def schema() -> dict:
    result = CliRunner().invoke(cli, ["config", "schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def problems(schema: dict, data: dict) -> set[tuple[str, ...]]:
    validator = jsonschema.Draft202012Validator(schema)
    return {tuple(str(p) for p in error.absolute_path) for error in validator.iter_errors(data)}


def test_the_example_configuration_validates_against_the_schema(schema):
    if "amazon_ads" not in schema["properties"]["channels"]["properties"]:
        pytest.skip("the amazon_ads plugin is not installed")
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    assert problems(schema, example) == set()


def test_the_schema_rejects_what_the_agent_rejects(schema):
    bad = {
        "agnet": {},
        "agent": {"check_intervall": "5m", "check_timeout": "30 seconds"},
        "freshness_sources": {"dw": {"type": "sqll", "url": "x", "query": "q"}},
        "channels": {"amazon_ads": {
            "client_id": "x",
            "accounts": [{"name": "a b", "region": "mars", "refresh_token": "t"}]}},
    }
    env = problems(schema, {"agent": {"check_interval": "${INTERVAL:-5m}"}})
    assert not [path for path in env if path[:1] == ("agent",)]  # ${VAR}: the agent takes it
    found = problems(schema, bad)
    assert {(), ("agent",), ("agent", "check_timeout"), ("freshness_sources", "dw"),
            ("channels", "amazon_ads"), ("channels", "amazon_ads", "accounts", "0", "name"),
            ("channels", "amazon_ads", "accounts", "0", "region")} <= found


def test_secrets_take_a_value_or_a_file_and_plugins_channels_are_included():
    schema = config_schema(CHANNELS, {})
    channels = schema["properties"]["channels"]["properties"]
    assert set(channels) == {"plain", "sink"}
    base = {"client_id": "c", "accounts": [{"name": "a", "region": "na", "refresh_token": "t"}]}
    for secret in ({"client_secret": "s"}, {"client_secret_file": "secrets/s"}):
        assert problems(schema, {"channels": {"sink": base | secret}}) == set()
    assert problems(schema, {"channels": {"sink": base}}) == {("channels", "sink")}
    plain = {"accounts": [{"name": "p", "region": "na"}]}
    assert problems(schema, {"channels": {"plain": plain}}) == {
        ("channels", "plain", "accounts", "0")}
