"""One account from plain data (an inventory row...): the file's model, the file's messages."""

import pytest

from agent.config.loader import ConfigError, parse_account
from agent.inventory import rows
from agent.inventory.rows import normalise, validate_row
from tests.test_config import SECRET, SinkChannel, problems


def test_a_row_becomes_the_same_account_as_in_the_file(tmp_path):
    account = parse_account(
        SinkChannel, {"name": "acme-us", "region": "na", "refresh_token_file": "tokens/acme",
                      "expected_profiles": "1, 2", "probe": "yes"},
        where="inventory crm, row 3", base_dir=tmp_path, environ={})
    assert (account.channel, account.name, account.region) == ("sink", "acme-us", "na")
    assert account.settings["refresh_token"].path == tmp_path / "tokens" / "acme"
    assert account.settings["expected_profiles"] == [1, 2]
    assert account.settings["probe"] is True
    assert account.settings["webhook_secret"] is None


def test_a_row_has_the_messages_of_the_file_and_no_secret(tmp_path):
    row = {"name": "acme us", "region": "mars", "refresh_token": SECRET,
           "refresh_token_file": "x", "expected_profiles": [1, SECRET], "colour": SECRET}
    with pytest.raises(ConfigError) as info:
        parse_account(SinkChannel, row, where="inventory crm, row 3", base_dir=tmp_path,
                      environ={})
    found = {p.path: p.message for p in info.value.problems}
    assert all(p.source == "inventory crm, row 3" and p.line is None
               for p in info.value.problems)
    assert SECRET not in str(info.value)
    in_file = {p.path.removeprefix("channels.sink.accounts[0]."): p.message for p in problems(
        "channels:\n  sink:\n    client_id: c\n    client_secret: s\n    accounts:\n"
        f"      - {{name: acme us, region: mars, refresh_token: {SECRET}, "
        f"refresh_token_file: x, expected_profiles: [1, {SECRET}], colour: {SECRET}}}\n")}
    assert found == in_file
    assert found == {
        "name": "must match [A-Za-z0-9_.-]+ (it becomes a Prometheus label value)",
        "region": "must be one of na, eu, fe",
        "refresh_token_file": "give either refresh_token or refresh_token_file, not both",
        "expected_profiles[1]": "must be an integer",
        "colour": "unknown key 'colour' (expected one of: datasets, expected_profiles, labels, "
                  "name, probe, refresh_token, refresh_token_file, region, webhook_secret, "
                  "webhook_secret_file)",
    }


def test_a_path_prefix_and_environment(tmp_path):
    with pytest.raises(ConfigError) as info:
        parse_account(SinkChannel, {"name": "a", "region": "na", "refresh_token": "${TOKEN}"},
                      where="inventory crm", path="rows[7]", base_dir=tmp_path, environ={})
    assert str(info.value) == ("inventory crm: rows[7].refresh_token: environment variable "
                               "TOKEN is not set (use ${TOKEN:-default} for a default)")


@pytest.mark.parametrize("row", [
    {"account": "acme-us", "region": "na", "refresh_token_file": "tokens/acme",
     "expected_profiles": "[1, 2]", "probe": "yes", "label_tier": "gold"},
    {"account": "dollar", "region": "eu", "refresh_token": "tok$${X}", "expected_profiles": "3,4",
     "label_note": "${HOME} $$", "webhook_secret": "w$"},
    {"account": "abs", "region": "fe", "refresh_token_file": "~/t//x/", "probe": 0},
])
def test_a_valid_row_skips_the_files_tree_and_gets_the_same_account(tmp_path, monkeypatch,
                                                                     row):
    """A valid row goes straight into the account model; the file's path (per-value tree,
    ${VAR} escaping) must give the very same account."""
    candidate = normalise("crm", 1, {"channel": "sink", **row}, {"sink": SinkChannel})
    given = {"source": "crm", "channel_cls": SinkChannel, "static_labels": {"team": "sre"},
             "base_dir": tmp_path}
    fast = validate_row(candidate, **given)
    monkeypatch.setattr(rows, "_account", lambda *args: None)
    assert validate_row(candidate, **given) == fast
    assert fast.labels["team"] == "sre" and fast.source == "crm"
