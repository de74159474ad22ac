import os
import textwrap
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

from agent.channel import (
    Account,
    AccountSettings,
    Channel,
    ChannelSettings,
    CheckResult,
    MissingSecret,
    Secret,
    SecretRef,
)
from agent.config.loader import (
    AgentSettings,
    Config,
    ConfigError,
    ConfigProblem,
    build_config,
    load_config,
    parse_config,
)
from agent.config.types import (
    ConfigModel,
    Duration,
    IntList,
    RegionalUrl,
    SecretReference,
    SecretValue,
    Url,
    model_defaults,
)

SECRET = "Sup3r-s3cret-do-not-print"
TOKEN_URLS = {
    "na": "https://na.example.com/token",
    "eu": "https://eu.example.com/token",
    "fe": "https://fe.example.com/token",
}


class SinkEndpoints(ConfigModel):
    token_url: RegionalUrl = dict(TOKEN_URLS)
    api_url: RegionalUrl | None = None


class SinkRetry(ConfigModel):
    initial_backoff: Duration = "2s"
    max_backoff: Duration = "30s"


class SinkSettings(ChannelSettings):
    client_id: str
    client_secret: SecretValue
    max_age: Duration = "365d"
    retries: int = 3
    ratio: float = 0.5
    probe: bool = True
    scopes: list[str] = ["read"]
    mode: Literal["fast", "slow"] = "fast"
    homepage: Url = "https://example.com"
    endpoints: SinkEndpoints = Field(default_factory=dict)
    retry: SinkRetry = Field(default_factory=dict)


class SinkAccount(AccountSettings):
    refresh_token: SecretReference
    expected_profiles: IntList = []
    probe: bool | None = None
    webhook_secret: SecretValue | None = None


class SinkChannel(Channel):
    """Declares every kind of value the core implements."""

    name = "sink"
    regions = ("na", "eu", "fe")
    Settings = SinkSettings
    AccountSettings = SinkAccount
    built = 0

    def __init__(self, settings, accounts):
        super().__init__(settings, accounts)
        type(self).built += 1

    async def check(self, account, ctx):
        return CheckResult(valid=True)


class PlainAccount(AccountSettings):
    api_url: RegionalUrl = "https://plain.example.com"


class PlainChannel(Channel):
    """A channel without regions."""

    name = "plain"
    AccountSettings = PlainAccount

    async def check(self, account, ctx):
        return CheckResult(valid=True)


CHANNELS = {"sink": SinkChannel, "plain": PlainChannel}
ENV = {"CLIENT_ID": "client-1", "CLIENT_SECRET": SECRET}

MINIMAL = """\
channels:
  sink:
    client_id: ${CLIENT_ID}
    client_secret: ${CLIENT_SECRET}
    accounts:
      - name: acme-us
        region: na
        refresh_token: ${CLIENT_SECRET}
"""


def parse(text: str, env=None, base_dir: Path | None = None, **kwargs) -> Config:
    environ = dict(ENV) if env is None else env
    return parse_config(textwrap.dedent(text), CHANNELS, base_dir=base_dir, environ=environ,
                        **kwargs)


def problems(text: str, env=None, base_dir: Path | None = None) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        parse(text, env, base_dir)
    return info.value.problems


def where(found: list[ConfigProblem]) -> set[tuple[int | None, str]]:
    return {(p.line, p.path) for p in found}


def message(found: list[ConfigProblem], path: str) -> str:
    matching = [p.message for p in found if p.path == path]
    assert len(matching) == 1, (path, found)
    return matching[0]


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    directory = tmp_path / "secrets"
    directory.mkdir()
    (directory / "client_secret").write_text(SECRET + "\n")
    (directory / "webhook").write_text("hook-secret\n")
    return directory


def test_valid_full_file(tmp_path, secrets):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(textwrap.dedent("""\
        agent:
          listen_address: 0.0.0.0:9100
          state_path: ./var/agent.db
          check_interval: 10m
          check_timeout: 45s
          max_concurrency: 8
        channels:
          sink:
            client_id: ${CLIENT_ID}
            client_secret_file: ./secrets/client_secret
            max_age: 36h
            retries: 5
            ratio: 0.25
            probe: false
            scopes: [read, write]
            mode: slow
            homepage: http://localhost:8080/home
            endpoints:
              token_url: http://127.0.0.1:9000/token
              api_url: {na: "https://na.api", eu: "https://eu.api", fe: "https://fe.api"}
            retry:
              initial_backoff: 500ms
            accounts:
              - name: acme-us
                region: na
                refresh_token_file: ./secrets/acme-us.refresh_token
                expected_profiles: [1234567890, 42]
                probe: true
                webhook_secret_file: secrets/webhook
              - name: acme.eu_2
                region: eu
                refresh_token: ${CLIENT_SECRET}
        """))
    SinkChannel.built = 0
    config = load_config(config_file, CHANNELS, environ=ENV)

    assert config.source == str(config_file)
    assert config.agent == AgentSettings(
        listen_address="0.0.0.0:9100",
        state_path=tmp_path / "var" / "agent.db",
        check_interval=600.0,
        check_timeout=45.0,
        max_concurrency=8,
    )
    assert SinkChannel.built == 1
    sink = config.channels["sink"]
    assert isinstance(sink, SinkChannel)
    settings = sink.settings
    assert settings["client_id"] == "client-1"
    assert settings["client_secret"] == Secret(SECRET)
    assert settings["max_age"] == 129600.0
    assert settings["retries"] == 5
    assert settings["ratio"] == 0.25
    assert settings["probe"] is False
    assert settings["scopes"] == ["read", "write"]
    assert settings["mode"] == "slow"
    assert settings["homepage"] == "http://localhost:8080/home"
    assert settings["endpoints"] == {
        "token_url": dict.fromkeys(("na", "eu", "fe"), "http://127.0.0.1:9000/token"),
        "api_url": {"na": "https://na.api", "eu": "https://eu.api", "fe": "https://fe.api"},
    }
    assert settings["retry"] == {"initial_backoff": 0.5, "max_backoff": 30.0}

    us, eu = config.accounts()
    assert (us.channel, us.name, us.region) == ("sink", "acme-us", "na")
    assert us.settings == {
        "refresh_token": SecretRef(
            path=secrets / "acme-us.refresh_token",
            source="channels.sink.accounts[0].refresh_token_file",
        ),
        "expected_profiles": [1234567890, 42],
        "probe": True,
        "webhook_secret": Secret("hook-secret"),
    }
    assert (eu.name, eu.region) == ("acme.eu_2", "eu")
    assert eu.settings["refresh_token"] == SecretRef(
        value=Secret(SECRET), source="channels.sink.accounts[1].refresh_token"
    )
    assert eu.settings["expected_profiles"] == []
    assert eu.settings["probe"] is None
    assert eu.settings["webhook_secret"] is None
    assert sink.accounts == [us, eu]


def test_defaults(tmp_path):
    config = parse(MINIMAL, base_dir=tmp_path)
    assert config.source == "<string>"
    assert config.agent == AgentSettings(state_path=tmp_path / "var" / "agent.db")
    settings = config.channels["sink"].settings
    assert settings["max_age"] == 365 * 86400.0
    assert settings["retries"] == 3
    assert settings["ratio"] == 0.5
    assert settings["probe"] is True
    assert settings["scopes"] == ["read"]
    assert settings["mode"] == "fast"
    assert settings["homepage"] == "https://example.com"
    assert settings["endpoints"] == {"token_url": TOKEN_URLS, "api_url": None}
    assert settings["retry"] == {"initial_backoff": 2.0, "max_backoff": 30.0}
    # defaults are copies: one channel's settings never change another's
    settings["scopes"].append("x")
    assert SinkChannel.Settings.model_fields["scopes"].default == ["read"]


def test_every_problem_reported_at_once_with_lines_and_paths():
    found = problems("""\
        agent:
          check_interval: 5 minutes
          max_concurrency: 0
          listen_address: localhost
        channels:
          sink:
            client_id: abc
            retries: many
            ratio: [1]
            probe: maybe
            scopes: read
            mode: medium
            homepage: ftp://example.com
            endpoints:
              api_url: {na: "https://na.api"}
            retry:
              max_backoff: 30
            accounts:
              - name: acme us
                region: us
                expected_profiles: [1, two]
              - region: eu
                refresh_token: x
        """)
    assert [(p.line, p.path) for p in found] == [
        (2, "agent.check_interval"),
        (3, "agent.max_concurrency"),
        (4, "agent.listen_address"),
        (6, "channels.sink.client_secret"),
        (8, "channels.sink.retries"),
        (9, "channels.sink.ratio"),
        (10, "channels.sink.probe"),
        (11, "channels.sink.scopes"),
        (12, "channels.sink.mode"),
        (13, "channels.sink.homepage"),
        (15, "channels.sink.endpoints.api_url"),
        (17, "channels.sink.retry.max_backoff"),
        (19, "channels.sink.accounts[0].name"),
        (19, "channels.sink.accounts[0].refresh_token"),
        (20, "channels.sink.accounts[0].region"),
        (21, "channels.sink.accounts[0].expected_profiles[1]"),
        (22, "channels.sink.accounts[1].name"),
    ]
    assert message(found, "agent.check_interval").startswith("must be a duration like 30s, 5m")
    assert message(found, "agent.max_concurrency") == "must be at least 1"
    assert "HOST:PORT" in message(found, "agent.listen_address")
    assert message(found, "channels.sink.client_secret") == (
        "is required: set client_secret or client_secret_file"
    )
    assert message(found, "channels.sink.retries") == "must be an integer"
    assert message(found, "channels.sink.ratio") == "must be a number"
    assert message(found, "channels.sink.probe") == "must be true or false"
    assert message(found, "channels.sink.scopes") == "must be a list of strings"
    assert message(found, "channels.sink.mode") == "must be one of fast, slow"
    assert "http(s) URL" in message(found, "channels.sink.homepage")
    assert "region eu, fe" in message(found, "channels.sink.endpoints.api_url")
    assert message(found, "channels.sink.accounts[0].refresh_token") == (
        "is required: set refresh_token or refresh_token_file"
    )
    assert "[A-Za-z0-9_.-]+" in message(found, "channels.sink.accounts[0].name")
    assert message(found, "channels.sink.accounts[0].region") == "must be one of na, eu, fe"
    assert message(found, "channels.sink.accounts[0].expected_profiles[1]") == (
        "must be an integer"
    )
    assert message(found, "channels.sink.accounts[1].name") == "is required"


def test_str_of_problem_and_error():
    problem = ConfigProblem("config.yaml", 12, "channels.sink.accounts[0].region",
                            "must be one of na, eu, fe")
    assert str(problem) == (
        "config.yaml:12: channels.sink.accounts[0].region: must be one of na, eu, fe"
    )
    assert str(ConfigProblem("<demo>", None, "agent", "x")) == "<demo>: agent: x"
    assert str(ConfigProblem("c.yaml", 3, "", "invalid YAML")) == "c.yaml:3: invalid YAML"
    error = ConfigError([problem, ConfigProblem("config.yaml", 14, "agent", "y")])
    assert str(error).splitlines() == [str(problem), "config.yaml:14: agent: y"]


def test_unknown_keys_with_suggestions():
    found = problems("""\
        agnet: {}
        agent:
          check_intervall: 5m
        channels:
          sink:
            client_id: abc
            client_secret: ${CLIENT_SECRET}
            client_secrt_file: /x
            retry: {max_backof: 1s}
            accounts:
              - name: acme
                region: na
                refresh_tokn: abc
                refresh_token: abc
                zzz: 1
        """)
    assert message(found, "agnet") == "unknown key 'agnet' (did you mean 'agent'?)"
    assert message(found, "agent.check_intervall") == (
        "unknown key 'check_intervall' (did you mean 'check_interval'?)"
    )
    assert message(found, "channels.sink.client_secrt_file") == (
        "unknown key 'client_secrt_file' (did you mean 'client_secret_file'?)"
    )
    assert message(found, "channels.sink.retry.max_backof") == (
        "unknown key 'max_backof' (did you mean 'max_backoff'?)"
    )
    assert message(found, "channels.sink.accounts[0].refresh_tokn") == (
        "unknown key 'refresh_tokn' (did you mean 'refresh_token'?)"
    )
    unknown = message(found, "channels.sink.accounts[0].zzz")
    assert unknown.startswith("unknown key 'zzz' (expected one of: ")
    assert "expected_profiles" in unknown and "refresh_token_file" in unknown
    assert where(found) == {
        (1, "agnet"),
        (3, "agent.check_intervall"),
        (8, "channels.sink.client_secrt_file"),
        (9, "channels.sink.retry.max_backof"),
        (13, "channels.sink.accounts[0].refresh_tokn"),
        (15, "channels.sink.accounts[0].zzz"),
    }


def test_unknown_channel_lists_the_known_ones():
    found = problems("""\
        channels:
          sinc:
            accounts: []
        """)
    assert where(found) == {(2, "channels.sinc")}
    assert found[0].message == "unknown channel 'sinc' (did you mean 'sink'?)"
    found = problems("channels:\n  nothing_like_it: {}\n")
    assert found[0].message == "unknown channel 'nothing_like_it' (expected one of: plain, sink)"


def test_env_expansion_with_defaults_and_escapes(tmp_path):
    config = parse(
        """\
        agent:
          listen_address: ${HOST:-127.0.0.1}:${PORT}
          check_interval: ${INTERVAL:-10m}
          max_concurrency: ${CONCURRENCY}
        channels:
          sink:
            client_id: "pre-${CLIENT_ID}-$${NOT_A_VAR}-a$$b-$x"
            client_secret: ${CLIENT_SECRET}
            probe: ${PROBE}
            ratio: ${RATIO}
            endpoints:
              api_url: ${API:-https://api.example.com}
            accounts:
              - name: ${ACCOUNT}
                region: ${REGION:-eu}
                refresh_token: ${EMPTY:-fallback-token}
                expected_profiles: ${PROFILES}
        """,
        env={**ENV, "PORT": "9999", "CONCURRENCY": "7", "PROBE": "no", "RATIO": "0.75",
             "ACCOUNT": "acme-from-env", "PROFILES": "11, 22,33", "EMPTY": ""},
        base_dir=tmp_path,
    )
    assert config.agent.listen_address == "127.0.0.1:9999"
    assert config.agent.check_interval == 600.0
    assert config.agent.max_concurrency == 7
    settings = config.channels["sink"].settings
    assert settings["client_id"] == "pre-client-1-${NOT_A_VAR}-a$b-$x"
    assert settings["probe"] is False
    assert settings["ratio"] == 0.75
    assert settings["endpoints"]["api_url"] == dict.fromkeys(("na", "eu", "fe"),
                                                             "https://api.example.com")
    (account,) = config.accounts()
    assert (account.name, account.region) == ("acme-from-env", "eu")
    assert account.settings["refresh_token"].read() == Secret("fallback-token")
    assert account.settings["expected_profiles"] == [11, 22, 33]


def test_missing_environment_variable_names_variable_and_path():
    found = problems("""\
        channels:
          sink:
            client_id: ${MISSING_ID}
            client_secret: ${CLIENT_SECRET}
            accounts:
              - name: a
                region: na
                refresh_token: "${ALSO_MISSING}"
                expected_profiles: ["${MISSING_PROFILE}"]
              - name: b
                region: na
                refresh_token: ${bad-name}
        """)
    assert where(found) == {
        (3, "channels.sink.client_id"),
        (8, "channels.sink.accounts[0].refresh_token"),
        (9, "channels.sink.accounts[0].expected_profiles[0]"),
        (12, "channels.sink.accounts[1].refresh_token"),
    }
    assert message(found, "channels.sink.client_id") == (
        "environment variable MISSING_ID is not set (use ${MISSING_ID:-default} for a default)"
    )
    assert "ALSO_MISSING" in message(found, "channels.sink.accounts[0].refresh_token")
    assert "invalid ${...} reference" in message(found, "channels.sink.accounts[1].refresh_token")


def test_secrets_from_files_and_from_env(tmp_path, secrets):
    config = parse(
        """\
        channels:
          sink:
            client_id: id
            client_secret_file: secrets/client_secret
            accounts:
              - name: from-file
                region: na
                refresh_token_file: secrets/not-there-yet
                webhook_secret: ${CLIENT_SECRET}
              - name: from-env
                region: fe
                refresh_token: ${CLIENT_SECRET}
        """,
        base_dir=tmp_path,
    )
    assert config.channels["sink"].settings["client_secret"].reveal() == SECRET
    from_file, from_env = config.accounts()
    # a secret_ref file is read at check time: its absence is not a config problem
    ref = from_file.settings["refresh_token"]
    assert ref.path == secrets / "not-there-yet" and ref.value is None
    (secrets / "not-there-yet").write_text("Atzr|later\n")
    assert ref.read().reveal() == "Atzr|later"
    assert from_file.settings["webhook_secret"].reveal() == SECRET
    assert from_env.settings["refresh_token"].read().reveal() == SECRET


def test_secret_file_problems_name_the_file(tmp_path, secrets):
    (secrets / "empty").write_text("\n  \n")
    (secrets / "a_directory").mkdir()
    found = problems(
        """\
        channels:
          sink:
            client_id: id
            client_secret_file: secrets/missing
            accounts:
              - name: a
                region: na
                refresh_token: x
                webhook_secret_file: secrets/empty
              - name: b
                region: na
                refresh_token: x
                refresh_token_file: secrets/rt
                webhook_secret_file: secrets/a_directory
              - name: c
                region: na
                refresh_token: "  "
        """,
        base_dir=tmp_path,
    )
    assert message(found, "channels.sink.client_secret_file") == (
        f"file {secrets / 'missing'} does not exist"
    )
    assert message(found, "channels.sink.accounts[0].webhook_secret_file") == (
        f"file {secrets / 'empty'} is empty"
    )
    assert message(found, "channels.sink.accounts[1].refresh_token_file") == (
        "give either refresh_token or refresh_token_file, not both"
    )
    assert message(found, "channels.sink.accounts[1].webhook_secret_file") == (
        f"file {secrets / 'a_directory'} is not a regular file"
    )
    assert message(found, "channels.sink.accounts[2].refresh_token") == "must not be empty"


def test_secret_values_never_appear_in_errors():
    text = """\
        agent:
          max_concurrency: ${S}
          check_interval: ${S}
          listen_address: ${S}
        channels:
          sink:
            client_id: ${S}
            client_secret: ${S}
            retries: ${S}
            ratio: ${S}
            probe: ${S}
            mode: ${S}
            homepage: ${S}
            scopes: ${S}
            client_secrett: ${S}
            endpoints:
              token_url: ${S}
              api_url: {na: "${S}", xx: "${S}"}
            accounts:
              - name: ${S}
                region: ${S}
                refresh_tokn: ${S}
                refresh_token: ${S}
                expected_profiles: ${S}
              - name: ${S}
                region: na
                refresh_token: ${S}
                expected_profiles: ["${S}"]
        """
    with pytest.raises(ConfigError) as info:
        parse(text, env={"S": SECRET})
    rendered = str(info.value) + repr(info.value.problems)
    assert len(info.value.problems) >= 15
    assert "Sup3r" not in rendered and "s3cret" not in rendered
    # a literal secret on a line with a YAML syntax error is not quoted either
    with pytest.raises(ConfigError) as info:
        parse(f"channels:\n  sink:\n    client_secret: {SECRET}: [\n", env={})
    assert "Sup3r" not in str(info.value)


def test_duplicate_account_names():
    found = problems("""\
        channels:
          sink:
            client_id: id
            client_secret: s
            accounts:
              - {name: acme, region: na, refresh_token: a}
              - {name: other, region: na, refresh_token: b}
              - {name: acme, region: eu, refresh_token: c}
        """)
    assert where(found) == {(8, "channels.sink.accounts[2].name")}
    assert found[0].message == "duplicate account name: accounts[0] already uses it"


def test_duplicate_account_name_is_reported_even_when_the_first_is_broken():
    found = problems("""\
        channels:
          sink:
            client_id: id
            client_secret: s
            accounts:
              - {name: acme, region: xx, refresh_token: a}
              - {name: acme, region: eu, refresh_token: c}
        """)
    assert where(found) == {(6, "channels.sink.accounts[0].region"),
                            (7, "channels.sink.accounts[1].name")}


def test_same_account_name_in_two_channels_is_fine():
    config = parse(MINIMAL + "  plain:\n    accounts:\n      - name: acme-us\n")
    assert [a.key for a in config.accounts()] == [("sink", "acme-us"), ("plain", "acme-us")]


def test_region_required_and_checked():
    found = problems("""\
        channels:
          sink:
            client_id: id
            client_secret: s
            accounts:
              - name: no-region
                refresh_token: a
              - name: bad-region
                region: NA
                refresh_token: a
          plain:
            accounts:
              - name: has-region
                region: na
        """)
    assert message(found, "channels.sink.accounts[0].region") == "is required: one of na, eu, fe"
    assert message(found, "channels.sink.accounts[1].region") == "must be one of na, eu, fe"
    assert message(found, "channels.plain.accounts[0].region") == "this channel has no regions"
    assert where(found) == {
        (6, "channels.sink.accounts[0].region"),
        (9, "channels.sink.accounts[1].region"),
        (14, "channels.plain.accounts[0].region"),
    }


def test_channel_without_regions():
    config = parse(MINIMAL + "  plain:\n    accounts:\n      - name: p\n")
    (plain,) = config.channels["plain"].accounts
    assert plain.region == ""
    assert plain.settings["api_url"] == {"": "https://plain.example.com"}


REGIONAL = """\
channels:
  sink:
    client_id: id
    client_secret: s
    endpoints:
{}
    accounts: [{{name: a, region: na, refresh_token: t}}]
"""


def test_regional_urls():
    def endpoints(lines: str) -> dict:
        return parse(REGIONAL.format(lines)).channels["sink"].settings["endpoints"]

    # a partial map is completed from the option's default
    assert endpoints('      token_url: {eu: "http://eu.local/t"}')["token_url"] == {
        **TOKEN_URLS, "eu": "http://eu.local/t"
    }
    assert endpoints("      api_url: http://one.local")["api_url"] == dict.fromkeys(
        ("na", "eu", "fe"), "http://one.local"
    )
    found = problems(REGIONAL.format('      token_url: {na: "http://x", mars: "http://y"}\n'
                                     '      api_url: {eu: "http://x"}'))
    assert message(found, "channels.sink.endpoints.token_url.mars") == (
        "unknown region 'mars' (expected one of: na, eu, fe)"
    )
    assert message(found, "channels.sink.endpoints.api_url") == (
        "has no URL for region na, fe (give one for each of na, eu, fe)"
    )
    found = problems(REGIONAL.format("      token_url: [http://x]"))
    assert message(found, "channels.sink.endpoints.token_url").startswith("must be an http(s) URL")


@pytest.mark.parametrize(
    "url", ["example.com", "http://", "mailto:a@b.c", "https://host:99999/", "http://a b/"]
)
def test_invalid_urls(url):
    found = problems(MINIMAL.replace("    accounts:", f"    homepage: {url!r}\n    accounts:"))
    assert message(found, "channels.sink.homepage").startswith("must be an http(s) URL")


def test_yaml_syntax_error_has_a_line():
    found = problems("agent:\n  check_interval: 5m\n bad indent: [\n")
    assert len(found) == 1
    assert found[0].line == 3 and found[0].path == ""
    assert found[0].message.startswith("invalid YAML: ")
    assert str(found[0]).startswith("<string>:3: invalid YAML: ")


def test_duplicate_keys_are_problems():
    found = problems(MINIMAL + "    client_id: again\n" + "agent: {}\nagent: {}\n")
    assert where(found) == {(9, "channels.sink.client_id"), (11, "agent")}
    assert message(found, "agent") == "duplicate key (first at line 10)"


def test_yaml_merge_keys():
    config = parse("""\
        channels:
          sink:
            client_id: id
            client_secret: s
            accounts:
              - &base {name: one, region: eu, refresh_token: shared, expected_profiles: [7]}
              - {<<: *base, name: two, region: fe}
        """)
    one, two = config.accounts()
    assert (two.name, two.region, two.settings["expected_profiles"]) == ("two", "fe", [7])
    assert two.settings["refresh_token"].read().reveal() == "shared"
    found = problems("""\
        agent: &a
          check_interval: 5m
        channels:
          sink:
            client_id: id
            client_secret: s
            accounts:
              - {<<: *a, name: one, region: na, refresh_token: t}
        """)
    assert where(found) == {(2, "channels.sink.accounts[0].check_interval")}


def test_recursive_alias_is_a_problem_not_a_crash():
    found = problems(MINIMAL + "    scopes: &loop [*loop]\n")
    assert any(p.path.startswith("channels.sink.scopes") for p in found)


def test_alias_expansion_bomb_is_refused_quickly():
    text = "a: &a [x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefghi":  # 9**9 values if every alias were expanded
        previous = chr(ord(level) - 1)
        text += f"{level}: &{level} [{', '.join([f'*{previous}'] * 9)}]\n"
    [problem] = problems(text)
    assert "too many values through YAML aliases" in problem.message


def test_anchors_merged_into_many_accounts_are_fine():
    accounts = "".join(f"      - {{<<: *acct, name: a{i}}}\n" for i in range(2000))
    text = MINIMAL.split("    accounts:")[0] + (
        "    accounts:\n"
        "      - &acct {name: a, region: na, refresh_token: t, probe: true,"
        " expected_profiles: [1, 2, 3, 4, 5, 6, 7, 8]}\n" + accounts)
    assert len(parse(text).accounts()) == 2001


@pytest.mark.parametrize("text", ["a: " + "[" * 3000 + "]" * 3000,
                                  "agent: " + "{a: " * 3000 + "1" + "}" * 3000])
def test_deep_nesting_is_a_problem_not_a_crash(text):
    [problem] = problems(text)
    assert problem.message == "values are nested too deeply to be a configuration"


def test_characters_yaml_refuses_are_named():
    [problem] = problems("agent:\n  state_path: a\x00b\n")
    assert problem.message == "invalid YAML: special characters are not allowed"


def test_a_secret_file_that_would_block_or_never_end_is_refused(tmp_path, secrets):
    os.mkfifo(secrets / "fifo")  # reading it would wait for a writer forever
    (secrets / "huge").write_bytes(b"x" * (64 * 1024 + 1))
    found = problems(MINIMAL.replace("client_secret: ${CLIENT_SECRET}",
                                     "client_secret_file: secrets/fifo"), base_dir=tmp_path)
    assert message(found, "channels.sink.client_secret_file") == (
        f"file {secrets / 'fifo'} is not a regular file")
    with pytest.raises(MissingSecret, match="larger than 64 KiB"):
        SecretRef(path=secrets / "huge", source="x").read()
    with pytest.raises(MissingSecret, match="/dev/zero is not a regular file"):
        SecretRef(path=Path("/dev/zero"), source="x").read()


def test_relative_paths_resolve_against_the_config_directory(tmp_path, monkeypatch):
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / "cs").write_text("client-secret\n")
    config_file = config_dir / "config.yaml"
    config_file.write_text(textwrap.dedent("""\
        agent:
          state_path: state/agent.db
        channels:
          sink:
            client_id: id
            client_secret_file: cs
            accounts:
              - {name: rel, region: na, refresh_token_file: tokens/rel}
              - {name: abs, region: na, refresh_token_file: /var/lib/tokens/abs}
              - {name: home, region: na, refresh_token_file: ~/tokens/home}
        """))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = load_config(Path("..") / "etc" / "config.yaml", CHANNELS, environ={})
    assert config.agent.state_path.resolve() == config_dir / "state" / "agent.db"
    assert config.channels["sink"].settings["client_secret"].reveal() == "client-secret"
    rel, abs_, home = (a.settings["refresh_token"].path for a in config.accounts())
    assert rel.resolve() == config_dir / "tokens" / "rel"
    assert abs_ == Path("/var/lib/tokens/abs")
    assert home == tmp_path / "home" / "tokens" / "home"


def test_in_memory_state_path_is_not_resolved(tmp_path):
    config = parse("agent: {state_path: ':memory:'}\n" + MINIMAL, base_dir=tmp_path)
    assert config.agent.state_path == Path(":memory:")


@pytest.mark.parametrize(
    ("agent", "path", "expected"),
    [
        ("{check_interval: 30s, check_timeout: 30s}", "agent.check_timeout",
         "must be less than agent.check_interval"),
        ("{check_interval: 1m, check_timeout: 0}", "agent.check_timeout", "must be more than 0"),
        ("{check_interval: 0}", "agent.check_interval", "must be more than 0"),
        ("{check_interval: 300}", "agent.check_interval", "must be a duration like 30s"),
        ("{max_concurrency: -1}", "agent.max_concurrency", "must be at least 1"),
        ("{max_concurrency: true}", "agent.max_concurrency", "must be an integer"),
        ("{listen_address: '127.0.0.1:65536'}", "agent.listen_address", "must be HOST:PORT"),
        ("{listen_address: '::1:9877'}", "agent.listen_address", "must be HOST:PORT"),
        ("{listen_address: 9877}", "agent.listen_address", "must be HOST:PORT"),
        ("{state_path: ''}", "agent.state_path", "must be a file path"),
        ("[]", "agent", "must be a mapping"),
    ],
)
def test_agent_settings_problems(agent, path, expected):
    found = problems(f"agent: {agent}\n" + MINIMAL)
    assert message(found, path).startswith(expected)


@pytest.mark.parametrize("address", ["127.0.0.1:9877", ":9877", "[::1]:9877", "localhost:0"])
def test_valid_listen_addresses(address):
    assert parse(f"agent: {{listen_address: '{address}'}}\n" + MINIMAL).agent.listen_address == (
        address
    )


@pytest.mark.parametrize(
    ("text", "path", "expected"),
    [
        ("", "channels", "is required: configure at least one channel (known: plain, sink)"),
        ("channels: {}", "channels", "must configure at least one channel"),
        ("channels: []", "channels", "must be a mapping"),
        ("channels:\n  plain: {}", "channels.plain.accounts", "is required"),
        ("channels:\n  plain:\n    accounts: []", "channels.plain.accounts",
         "must list at least one account"),
        ("channels:\n  plain:\n    accounts: {name: x}", "channels.plain.accounts",
         "must be a list of accounts"),
        ("channels:\n  plain:\n    accounts: [x]", "channels.plain.accounts[0]",
         "must be a mapping"),
        ("[1, 2]", "", "the configuration must be a mapping"),
    ],
)
def test_at_least_one_channel_with_one_account(text, path, expected):
    assert message(problems(text), path).startswith(expected)


def test_nothing_is_built_when_there_are_problems():
    SinkChannel.built = 0
    problems(MINIMAL + "  plain:\n    accounts: []\n")
    assert SinkChannel.built == 0


def test_a_channel_that_rejects_its_settings_is_a_problem():
    class Picky(PlainChannel):
        name = "picky"

        def __init__(self, settings, accounts):
            raise ValueError(f"no thanks {SECRET}")

    Secret(SECRET)  # registered secrets are masked in the plugin's message
    with pytest.raises(ConfigError) as info:
        parse_config("channels:\n  picky:\n    accounts: [{name: a}]\n", {"picky": Picky},
                     environ={})
    assert str(info.value) == (
        "<string>:2: channels.picky: the channel plugin rejected its settings: "
        "ValueError: no thanks ***"
    )


def test_numbers_and_booleans_given_for_strings_are_taken_as_written():
    config = parse(MINIMAL.replace("client_id: ${CLIENT_ID}", "client_id: 0123456"))
    assert config.channels["sink"].settings["client_id"] == "0123456"


def test_load_config_of_a_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml", CHANNELS)
    assert str(info.value) == (
        f"{tmp_path / 'nope.yaml'}: cannot read the configuration file: No such file or directory"
    )


def test_build_config_from_python_data(tmp_path, secrets):
    data = {
        "agent": {"state_path": str(tmp_path / "agent.db"), "check_interval": "15s",
                  "check_timeout": "10s", "listen_address": "127.0.0.1:0"},
        "channels": {
            "sink": {
                "client_id": "${CLIENT_ID}",
                "client_secret_file": secrets / "client_secret",
                "endpoints": {"token_url": "http://127.0.0.1:1234/token",
                              "api_url": "http://127.0.0.1:1234"},
                "accounts": [
                    {"name": "healthy", "region": "na", "refresh_token_file": "healthy.token",
                     "expected_profiles": [1, 2]},
                    {"name": "revoked", "region": "eu", "refresh_token": "Atzr|revoked"},
                ],
            }
        },
    }
    config = build_config(data, CHANNELS, base_dir=tmp_path, environ=ENV)
    assert config.source == "<demo>"
    assert config.agent.check_interval == 15.0
    assert config.agent.state_path == tmp_path / "agent.db"
    settings = config.channels["sink"].settings
    assert settings["client_id"] == "client-1"
    assert settings["client_secret"].reveal() == SECRET
    assert settings["endpoints"]["api_url"]["fe"] == "http://127.0.0.1:1234"
    healthy, revoked = config.accounts()
    assert healthy.settings["refresh_token"].path == tmp_path / "healthy.token"
    assert revoked.settings["refresh_token"].read().reveal() == "Atzr|revoked"


def test_build_config_reports_problems_without_lines(tmp_path):
    data = {
        "agent": {"check_interval": 15},
        "channels": {"sink": {"client_id": "id", "client_secret": "s", 3: "x",
                              "accounts": [{"name": "a", "region": "mars", "refresh_token": 1}]}},
    }
    with pytest.raises(ConfigError) as info:
        build_config(data, CHANNELS, base_dir=tmp_path, environ={})
    assert [str(p) for p in info.value.problems] == [
        "<demo>: channels.sink: mapping keys must be strings",
        "<demo>: agent.check_interval: must be a duration like 30s, 5m, 1h30m or 365d "
        "(units ms, s, m, h, d, w, y, largest first; 0 needs no unit)",
        "<demo>: channels.sink.accounts[0].region: must be one of na, eu, fe",
    ]


def test_accounts_of_all_channels():
    config = parse(MINIMAL + "  plain:\n    accounts: [{name: p1}, {name: p2}]\n")
    accounts = config.accounts()
    assert [a.key for a in accounts] == [("sink", "acme-us"), ("plain", "p1"), ("plain", "p2")]
    assert all(isinstance(a, Account) for a in accounts)


def test_example_config_is_valid(tmp_path):
    from agent.plugins import load_plugins

    channels = load_plugins().channels
    if not {"amazon_ads", "amazon_sp", "shopify"} <= set(channels):
        pytest.skip("the amazon_ads, amazon_sp and shopify plugins are not all installed")
    example = Path(__file__).resolve().parent.parent / "config.example.yaml"
    copy = tmp_path / "config.yaml"
    copy.write_text(example.read_text())
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "amazon_ads_client_secret").write_text("client-secret\n")
    (tmp_path / "secrets" / "amazon_sp_client_secret").write_text("sp-client-secret\n")
    config = load_config(copy, channels, environ={
        "AMAZON_ADS_CLIENT_ID": "amzn1.client", "AMAZON_SP_CLIENT_ID": "amzn1.sp-client",
        "WAREHOUSE_URL": "postgresql://agent:pw@warehouse.example.com/dw",
        "PLATFORM_DB_URL": "postgresql://agent:pw@platform.example.com/app"})
    platform = config.inventory_sources["platform"]
    assert (platform.channels, platform.labels) == (("amazon_ads",), {"platform": "main"})
    assert config.accounts()[0].labels == {"merchant": "acme", "tenant": "retail"}

    assert config.agent == AgentSettings(state_path=tmp_path / "var" / "agent.db")
    channel, sp = config.channels["amazon_ads"], config.channels["amazon_sp"]
    sp_defaults = model_defaults(sp.Settings, regions=sp.regions)
    for name in ("refresh_token_max_age", "participations_interval", "client_secret_max_age"):
        assert sp.settings[name] == sp_defaults[name], name  # the example shows the defaults
    assert sp.settings["client_secret"].reveal() == "sp-client-secret"
    defaults = model_defaults(channel.Settings, regions=channel.regions)
    assert channel.settings["refresh_token_max_age"] == defaults["refresh_token_max_age"]
    assert channel.settings["refresh_interval"] == defaults["refresh_interval"]
    for name in ("redirect_uri", "reconnect_link_expiry"):
        assert channel.settings[name] == defaults[name]
    endpoints = defaults["endpoints"]
    for name, default in endpoints.items():  # the example shows the real defaults
        assert channel.settings["endpoints"][name] == default
    assert [(a.name, a.region) for a in config.accounts() if a.channel == "amazon_ads"] == [
        ("acme-us", "na"), ("acme-eu", "eu")]
    [seller] = [a for a in config.accounts() if a.channel == "amazon_sp"]
    assert (seller.name, seller.region) == ("acme-us", "na")
    assert seller.settings["expected_marketplaces"] == ["ATVPDKIKX0DER", "A2EUQ1WTGCTBG2"]
    shopify = config.channels["shopify"]  # the example shows Shopify's real defaults too
    shopify_defaults = model_defaults(shopify.Settings, regions=shopify.regions)
    for name in ("api_version", "api_version_support_months", "api_version_warning",
                 "refresh_token_max_age", "call_limit_threshold", "call_limit_leak_rate",
                 "non_expiring_tokens_end"):
        assert shopify.settings[name] == shopify_defaults[name], name
    assert [a.settings["shop"] for a in shopify.accounts] == [
        "acme.myshopify.com", "globex.myshopify.com"]
    assert {(d.account, d.name): d.max_age / 3600 for d in config.datasets} == {
        ("acme-us", "sp_campaigns_daily"): 72, ("acme-us", "sb_campaigns_daily"): 48,
        ("acme-eu", "sp_campaigns_daily"): 36, ("acme-eu", "sb_campaigns_daily"): 48}
    assert all(d.channel == "amazon_ads" for d in config.datasets)
