"""channel-agent inventory: what every source yields, never a token."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

from click.testing import CliRunner

from agent.cli import cli

PLANTED = "PLANTED-cli-inventory-token"


def write_config(tmp_path, rows):
    db = tmp_path / "platform.db"
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("CREATE TABLE connections (channel, account, region, refresh_token, "
                     "refresh_token_file, label_merchant)")
        conn.executemany("INSERT INTO connections VALUES (?, ?, ?, ?, ?, ?)", rows)
    config = tmp_path / "config.yaml"
    config.write_text(f"""
agent: {{state_path: var/agent.db}}
inventory_sources:
  crm:
    type: sql
    url: sqlite:///{db}
    query: SELECT * FROM connections
    channels: [amazon_ads]
    timeout: 5s
channels:
  amazon_ads: {{client_id: app, client_secret: PLANTED-client-secret}}
""")
    return config


def test_inventory_prints_every_account_and_where_its_credential_is(tmp_path):
    config = write_config(tmp_path, [
        ("amazon_ads", "acme", "na", None, "tokens/acme", "acme-corp"),
        ("amazon_ads", "globex", "eu", PLANTED, None, None),
        ("amazon_ads", "bad", "mars", PLANTED, None, None),
    ])
    result = CliRunner().invoke(cli, ["inventory", "--config", str(config)])
    assert result.exit_code == 1  # a row was skipped
    lines = result.output.splitlines()
    assert lines[0].split() == ["SOURCE", "CHANNEL", "ACCOUNT", "REGION", "LABELS", "CREDENTIAL"]
    assert lines[1].split() == ["crm", "amazon_ads", "acme", "na", "merchant=acme-corp",
                                "refresh_token:", "file", str(tmp_path / "tokens" / "acme")]
    assert lines[2].split() == ["crm", "amazon_ads", "globex", "eu", "-", "refresh_token:",
                                "from", "the", "source"]
    assert "  skipped: inventory source crm, row 3 (amazon_ads/bad): region: must be one of " \
           "na, eu, fe" in result.output
    assert PLANTED not in result.output

    result = CliRunner().invoke(cli, ["inventory", "--config", str(config), "--json"])
    doc = json.loads(result.output)
    assert [a["account"] for a in doc["accounts"]] == ["acme", "globex"]
    assert doc["sources"]["crm"]["up"] is True and len(doc["sources"]["crm"]["invalid_rows"]) == 1
    assert PLANTED not in result.output and not (tmp_path / "var").exists()


def test_inventory_reports_a_failing_source(tmp_path):
    config = write_config(tmp_path, [])
    config.write_text(config.read_text().replace("FROM connections", "FROM nowhere"))
    result = CliRunner().invoke(cli, ["inventory", "--config", str(config)])
    assert result.exit_code == 1
    assert "source crm (sql sqlite:///" in result.output
    assert "FAILED: OperationalError: no such table: nowhere" in result.output
