"""The web configuration file of the Prometheus exporter toolkit (``--web.config.file``).

The YAML that Go exporters accept (exporter-toolkit ``docs/web-configuration.md``), so SREs
reuse the files they already have::

    tls_server_config:
      cert_file: server.crt            # relative to this file's directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: clients.crt
      min_version: TLS12               # the default
    http_server_config:
      headers:
        X-Content-Type-Options: nosniff
    basic_auth_users:
      prometheus: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG
    rate_limit:
      interval: 100ms
      burst: 20

Keys of that format the agent cannot honour (inline ``cert``/``key``/``client_ca``,
``curve_preferences``, ``client_auth_type: RequireAnyClientCert``) are errors, never silently
ignored. ``http2`` is accepted and has no effect: the agent speaks HTTP/1.1. Problems are
reported like the agent's configuration, every one at once with file, line and key path, and
without values (a value may be a secret).
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import bcrypt
from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from agent.config.engine import Scope
from agent.config.loader import read_config_file
from agent.config.problems import ConfigError, ConfigProblem, ProblemList
from agent.config.types import ConfigModel, Duration, FilePath, TextInput, problem
from agent.config.yamltree import Node, read_yaml
from agent.web.tls import (
    CIPHER_SUITES,
    CLIENT_AUTH_TYPES,
    TLS_VERSIONS,
    TLSProblem,
    TLSSettings,
    ssl_context,
)

# The headers http_server_config.headers may set, with the values each accepts (None: any).
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Content-Security-Policy": None,
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": None,
    "Strict-Transport-Security": None,
}
BCRYPT_HASH = re.compile(r"\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}")
MIN_COST, MAX_COST = 4, 31
BCRYPT_HINT = "must be a bcrypt hash, like the output of: htpasswd -nBC 10 \"\" | tr -d ':\\n'"

_UNSUPPORTED = {
    "cert": "inline certificates are not supported: use cert_file",
    "key": "inline keys are not supported: use key_file",
    "client_ca": "inline CA certificates are not supported: use client_ca_file",
    "curve_preferences": "is not supported by channel-agent (OpenSSL's defaults apply): "
                         "remove it",
}




def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise problem("must be a non-empty string")
    return value.strip()


def _go_bool(value: Any) -> bool:
    """Go's YAML booleans: true or false (not yes/no/on/off)."""
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise problem("must be true or false")


def _client_auth_type(value: Any) -> str:
    if value == "RequireAnyClientCert":
        raise problem("RequireAnyClientCert (a certificate that is not verified) is not "
                      "supported: use RequireAndVerifyClientCert")
    # a list or mapping is not hashable: test the type before membership in the set
    if not isinstance(value, str) or value not in CLIENT_AUTH_TYPES:
        raise problem(f"must be one of {', '.join(CLIENT_AUTH_TYPES)}")
    return value


def _cipher_suites(names: list[str]) -> list[str]:
    unknown = [name for name in names if name not in CIPHER_SUITES]
    if unknown:
        raise problem(f"unknown cipher suite {', '.join(unknown)} (known: Go's TLS 1.2 suites, "
                      f"e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")
    return names


Text = Annotated[str, BeforeValidator(_text), TextInput()]
GoBool = Annotated[bool, BeforeValidator(_go_bool), TextInput(),
                   WithJsonSchema({"type": "boolean"})]
TLSVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]


class TLSModel(ConfigModel):
    refused_keys = _UNSUPPORTED

    cert_file: FilePath
    key_file: FilePath
    client_auth_type: Annotated[str, BeforeValidator(_client_auth_type), TextInput(),
                                WithJsonSchema({"enum": list(CLIENT_AUTH_TYPES)})] = "NoClientCert"
    client_ca_file: FilePath | None = None
    client_allowed_sans: list[Text] = []
    min_version: TLSVersion = "TLS12"
    max_version: TLSVersion = "TLS13"
    cipher_suites: Annotated[list[Text], AfterValidator(_cipher_suites)] = []
    prefer_server_cipher_suites: GoBool = True


def _header(*accepted: str) -> Any:
    def validate(value: Any) -> str | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None  # blank: unset, as in the toolkit
        text = _text(value)
        if accepted and text.lower() not in accepted:
            raise problem(f"must be one of {', '.join(accepted)}")
        return text

    return Annotated[str | None, BeforeValidator(validate), TextInput()]


class HeadersModel(ConfigModel):
    content_security_policy: _header() = Field(None, alias="Content-Security-Policy")
    x_frame_options: _header(*HEADERS["X-Frame-Options"] or ()) = Field(
        None, alias="X-Frame-Options")
    x_content_type_options: _header(*HEADERS["X-Content-Type-Options"] or ()) = Field(
        None, alias="X-Content-Type-Options")
    x_xss_protection: _header() = Field(None, alias="X-XSS-Protection")
    strict_transport_security: _header() = Field(None, alias="Strict-Transport-Security")


class HttpServerModel(ConfigModel):
    http2: GoBool = False  # accepted, no effect: the agent speaks HTTP/1.1
    headers: HeadersModel = Field(default_factory=dict)


def _user_name(name: Any) -> str:
    if not isinstance(name, str) or not name or ":" in name:
        raise problem("a user name must be non-empty and without ':'")
    return name


def _bcrypt_hash(value: Any) -> bytes:
    match = BCRYPT_HASH.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise problem(BCRYPT_HINT)
    if not MIN_COST <= int(match.group(1)) <= MAX_COST:
        raise problem(f"the bcrypt cost must be {MIN_COST} to {MAX_COST}")
    return match.group(0).encode()


def _burst(value: Any) -> int:
    if not isinstance(value, str) or not value.strip().isdigit() or int(value) < 1:
        raise problem("must be an integer, at least 1")
    return int(value)


class RateLimitModel(ConfigModel):
    interval: Duration
    burst: Annotated[int, BeforeValidator(_burst), TextInput()]


class WebConfigModel(ConfigModel):
    """The whole web configuration file."""

    tls_server_config: TLSModel | None = None
    http_server_config: HttpServerModel = Field(default_factory=dict)
    basic_auth_users: dict[Annotated[str, BeforeValidator(_user_name)],
                           Annotated[bytes, BeforeValidator(_bcrypt_hash),
                                     WithJsonSchema({"type": "string"})]] = {}
    rate_limit: RateLimitModel | None = None


@dataclass(frozen=True)
class RateLimit:
    interval: float  # seconds between two requests once the burst is used up
    burst: int


@dataclass(frozen=True)
class WebConfig:
    source: str
    tls: TLSSettings | None = None
    basic_auth_users: Mapping[str, bytes] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    rate_limit: RateLimit | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)
    # checked for unknown users so they take as long as known ones: same bcrypt cost
    dummy_hash: bytes = field(default=b"", compare=False, repr=False)

    @property
    def files(self) -> tuple[Path, ...]:
        """The files whose change means the configuration must be read again."""
        return (Path(self.source), *(self.tls.files if self.tls else ()))


def load_web_config(path: str | Path) -> WebConfig:
    """Read, validate and prepare (TLS context, dummy hash) a web config file.

    Raises :class:`agent.config.problems.ConfigError` listing every problem.
    """
    path = Path(path)
    text = read_config_file(path, "web configuration file")
    return parse_web_config(text, source=str(path), base_dir=path.absolute().parent)


def parse_web_config(text: str, *, source: str = "<string>",
                     base_dir: Path | None = None) -> WebConfig:
    problems = ProblemList(source)
    root = read_yaml(text, problems)
    if isinstance(root.value, dict):
        for key in ("tls_server_config", "rate_limit"):  # given but empty: still required keys
            if key in root.value and root.value[key].value is None:
                root.value[key] = Node({}, root.key_lines[key])
    # No ${VAR} expansion: the file is the exporter toolkit's, and "$" starts a bcrypt hash.
    scope = Scope(problems, None, base_dir or Path.cwd())
    model = scope.validate(WebConfigModel, root, "")
    tls = None
    if model is not None and model.tls_server_config is not None:
        tls = _tls_settings(model.tls_server_config)
        node = root.value["tls_server_config"]
        for key, message in _tls_inconsistencies(tls):
            problems.add(node.line, f"tls_server_config.{key}", message)
    if problems or model is None:
        raise ConfigError(sorted(problems.problems, key=lambda p: (p.line or 0, p.path)))
    context = None
    if tls is not None:
        try:
            context = ssl_context(tls)
        except TLSProblem as exc:
            path = f"tls_server_config.{exc.key}"
            raise ConfigError([ConfigProblem(source, None, path, exc.message)]) from None
    headers = model.http_server_config.headers.model_dump(by_alias=True, exclude_none=True)
    users = model.basic_auth_users
    rate = model.rate_limit
    rate_limit = RateLimit(rate.interval, rate.burst) if rate and rate.interval > 0 else None
    return WebConfig(source, tls, users, headers, rate_limit, context,
                     _dummy_hash(users.values()))


def _tls_settings(model: TLSModel) -> TLSSettings:
    values = {name: getattr(model, name) for name in type(model).model_fields}
    return TLSSettings(**{name: tuple(value) if isinstance(value, list) else value
                          for name, value in values.items()})


def _tls_inconsistencies(tls: TLSSettings) -> Iterator[tuple[str, str]]:
    if TLS_VERSIONS[tls.min_version] > TLS_VERSIONS[tls.max_version]:
        yield "min_version", "must not be above max_version"
    verifies = tls.verifies_clients
    if tls.client_ca_file is not None and not verifies:
        yield "client_ca_file", "is set but client_auth_type does not verify client certificates"
    if verifies and tls.client_ca_file is None:
        yield "client_ca_file", f"is required with client_auth_type {tls.client_auth_type}"
    if tls.client_allowed_sans and tls.client_auth_type != "RequireAndVerifyClientCert":
        yield "client_allowed_sans", "needs client_auth_type RequireAndVerifyClientCert"


def _dummy_hash(hashes: Iterable[bytes]) -> bytes:
    costs = [int(BCRYPT_HASH.fullmatch(h.decode()).group(1)) for h in hashes]
    if not costs:
        return b""
    return bcrypt.hashpw(b"channel-agent: no such user", bcrypt.gensalt(rounds=max(costs)))
