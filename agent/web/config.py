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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from agent.config.durations import DURATION_HINT, parse_duration
from agent.config.loader import (
    ConfigError,
    ConfigProblem,
    read_config_file,
    unknown_name,
    yaml_syntax_problem,
)

# Go's tls.ClientAuthType names -> what Python's ssl verifies. RequestClientCert asks for a
# certificate but never verifies it, so such a certificate is never a credential here.
CLIENT_AUTH_TYPES: dict[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's TLS 1.0-1.2 cipher suite names -> OpenSSL's. TLS 1.3 suites are not configurable in
# either.
CIPHER_SUITES: dict[str, str] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
}
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


@dataclass(frozen=True)
class TLSSettings:
    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    client_allowed_sans: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p)

    @property
    def verifies_clients(self) -> bool:
        """A client certificate that reached a request was verified against client_ca_file."""
        return CLIENT_AUTH_TYPES[self.client_auth_type] != ssl.CERT_NONE


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

    Raises :class:`agent.config.loader.ConfigError` listing every problem.
    """
    path = Path(path)
    text = read_config_file(path, "web configuration file")
    return parse_web_config(text, source=str(path), base_dir=path.absolute().parent)


def parse_web_config(text: str, *, source: str = "<string>",
                     base_dir: Path | None = None) -> WebConfig:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([yaml_syntax_problem(source, exc)]) from None
    except RecursionError:
        problem = "values are nested too deeply to be a web configuration"
        raise ConfigError([ConfigProblem(source, None, "", problem)]) from None
    return _Parser(source, base_dir or Path.cwd()).web_config(root)


class _Parser:
    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir
        self.problems: list[ConfigProblem] = []
        self.key_lines: dict[int, int] = {}  # id(value node) -> line of its key

    def problem(self, node: yaml.Node | None, path: str, message: str) -> None:
        line = None
        if node is not None:  # a block mapping starts below its key: show the key's line
            line = self.key_lines.get(id(node), node.start_mark.line + 1)
        self.problems.append(ConfigProblem(self.source, line, path, message))

    def web_config(self, root: yaml.Node | None) -> WebConfig:
        top = self.mapping(root, "", {"tls_server_config", "http_server_config",
                                      "basic_auth_users", "rate_limit"})
        tls = self.tls(top["tls_server_config"]) if "tls_server_config" in top else None
        headers = self.headers(top.get("http_server_config"))
        users = self.users(top.get("basic_auth_users"))
        rate_limit = self.rate_limit(top["rate_limit"]) if "rate_limit" in top else None
        if self.problems:
            raise ConfigError(sorted(self.problems, key=lambda p: (p.line or 0, p.path)))
        context = None
        if tls is not None:
            try:
                context = ssl_context(tls)
            except TLSProblem as exc:
                path = f"tls_server_config.{exc.key}"
                raise ConfigError([ConfigProblem(self.source, None, path, exc.message)]) from None
        return WebConfig(self.source, tls, users, headers, rate_limit, context,
                         _dummy_hash(users.values()))

    # --- structure ----------------------------------------------------------------------

    def mapping(self, node: yaml.Node | None, path: str, known: Iterable[str] | None,
                unsupported: Mapping[str, str] | None = None) -> dict[str, yaml.Node]:
        """The keys of a mapping node with their value nodes; ``known=None`` accepts any key;
        ``unsupported`` explains keys of the format that the agent refuses."""
        if node is None or _is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, path, "must be a mapping")
            return {}
        result: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            where = f"{path}.{key}" if path and key is not None else (key or path)
            if not isinstance(key, str) or key_node.tag == "tag:yaml.org,2002:merge":
                self.problem(key_node, path, "mapping keys must be plain strings")
            elif key in result:
                self.problem(key_node, where, "duplicate key")
            elif known is not None and key not in known:
                message = (unsupported or {}).get(key) or unknown_name("key", key, sorted(known))
                self.problem(key_node, where, message)
            else:
                result[key] = value_node
                self.key_lines[id(value_node)] = key_node.start_mark.line + 1
        return result

    def string(self, node: yaml.Node, path: str) -> str | None:
        if isinstance(node, yaml.ScalarNode) and not _is_null(node) and node.value.strip():
            return node.value.strip()
        self.problem(node, path, "must be a non-empty string")
        return None

    def strings(self, node: yaml.Node, path: str) -> tuple[str, ...]:
        if _is_null(node):
            return ()
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, path, "must be a list of strings")
            return ()
        items = [self.string(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        return tuple(item for item in items if item is not None)

    def choice(self, node: yaml.Node, path: str, choices: Iterable[str]) -> str | None:
        value = self.string(node, path)
        if value is not None and value not in choices:
            self.problem(node, path, f"must be one of {', '.join(choices)}")
            return None
        return value

    def file(self, node: yaml.Node, path: str) -> Path | None:
        value = self.string(node, path)
        if value is None:
            return None
        location = Path(value).expanduser()
        return location if location.is_absolute() else self.base_dir / location

    # --- sections -----------------------------------------------------------------------

    def tls(self, node: yaml.Node) -> TLSSettings | None:
        path = "tls_server_config"
        keys = self.mapping(node, path, {
            "cert_file", "key_file", "client_auth_type", "client_ca_file",
            "client_allowed_sans", "min_version", "max_version", "cipher_suites",
            "prefer_server_cipher_suites",
        }, _UNSUPPORTED)
        values: dict[str, Any] = {}
        for key in ("cert_file", "key_file"):
            if key not in keys:
                self.problem(node, f"{path}.{key}", "is required")
            values[key] = self.file(keys[key], f"{path}.{key}") if key in keys else None
        if "client_ca_file" in keys:
            values["client_ca_file"] = self.file(keys["client_ca_file"], f"{path}.client_ca_file")
        if "client_auth_type" in keys:
            values["client_auth_type"] = self.client_auth_type(keys["client_auth_type"])
        for key in ("min_version", "max_version"):
            if key in keys:
                values[key] = self.choice(keys[key], f"{path}.{key}", TLS_VERSIONS)
        if "client_allowed_sans" in keys:
            values["client_allowed_sans"] = self.strings(keys["client_allowed_sans"],
                                                         f"{path}.client_allowed_sans")
        if "cipher_suites" in keys:
            values["cipher_suites"] = self.cipher_suites(keys["cipher_suites"])
        if "prefer_server_cipher_suites" in keys:
            values["prefer_server_cipher_suites"] = self.boolean(
                keys["prefer_server_cipher_suites"], f"{path}.prefer_server_cipher_suites")
        if None in values.values():
            return None
        settings = TLSSettings(**values)
        self.tls_consistency(settings, node)
        return settings

    def client_auth_type(self, node: yaml.Node) -> str | None:
        path = "tls_server_config.client_auth_type"
        value = self.string(node, path)
        if value == "RequireAnyClientCert":
            self.problem(node, path, "RequireAnyClientCert (a certificate that is not verified) "
                                     "is not supported: use RequireAndVerifyClientCert")
            return None
        if value is not None and value not in CLIENT_AUTH_TYPES:
            self.problem(node, path, f"must be one of {', '.join(CLIENT_AUTH_TYPES)}")
            return None
        return value

    def cipher_suites(self, node: yaml.Node) -> tuple[str, ...] | None:
        path = "tls_server_config.cipher_suites"
        names = self.strings(node, path)
        unknown = [name for name in names if name not in CIPHER_SUITES]
        if unknown:
            self.problem(node, path, f"unknown cipher suite {', '.join(unknown)} (known: Go's "
                                     f"TLS 1.2 suites, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")
            return None
        return names

    def boolean(self, node: yaml.Node, path: str) -> bool | None:
        if isinstance(node, yaml.ScalarNode) and node.value in ("true", "false"):
            return node.value == "true"
        self.problem(node, path, "must be true or false")
        return None

    def tls_consistency(self, tls: TLSSettings, node: yaml.Node) -> None:
        path = "tls_server_config"
        if TLS_VERSIONS[tls.min_version] > TLS_VERSIONS[tls.max_version]:
            self.problem(node, f"{path}.min_version", "must not be above max_version")
        verifies = tls.verifies_clients
        if tls.client_ca_file is not None and not verifies:
            self.problem(node, f"{path}.client_ca_file", "is set but client_auth_type does not "
                                                         "verify client certificates")
        if verifies and tls.client_ca_file is None:
            self.problem(node, f"{path}.client_ca_file",
                         f"is required with client_auth_type {tls.client_auth_type}")
        if tls.client_allowed_sans and tls.client_auth_type != "RequireAndVerifyClientCert":
            self.problem(node, f"{path}.client_allowed_sans",
                         "needs client_auth_type RequireAndVerifyClientCert")

    def headers(self, node: yaml.Node | None) -> dict[str, str]:
        section = self.mapping(node, "http_server_config", {"http2", "headers"})
        if "http2" in section:
            self.boolean(section["http2"], "http_server_config.http2")
        path = "http_server_config.headers"
        headers = {}
        for name, value_node in self.mapping(section.get("headers"), path, HEADERS).items():
            if _is_null(value_node) or (isinstance(value_node, yaml.ScalarNode)
                                        and not value_node.value.strip()):
                continue  # blank: unset, as in the toolkit
            value = self.string(value_node, f"{path}.{name}")
            accepted = HEADERS[name]
            if value is not None and accepted is not None and value.lower() not in accepted:
                self.problem(value_node, f"{path}.{name}", f"must be one of {', '.join(accepted)}")
            elif value is not None:
                headers[name] = value
        return headers

    def users(self, node: yaml.Node | None) -> dict[str, bytes]:
        users = {}
        for name, value_node in self.mapping(node, "basic_auth_users", None).items():
            path = f"basic_auth_users.{name}"
            if not name or ":" in name:
                self.problem(value_node, path, "a user name must be non-empty and without ':'")
                continue
            match = (BCRYPT_HASH.fullmatch(value_node.value.strip())
                     if isinstance(value_node, yaml.ScalarNode) else None)
            if match is None:
                self.problem(value_node, path, BCRYPT_HINT)
            elif not MIN_COST <= int(match.group(1)) <= MAX_COST:
                self.problem(value_node, path, f"the bcrypt cost must be {MIN_COST} to {MAX_COST}")
            else:
                users[name] = match.group(0).encode()
        return users

    def rate_limit(self, node: yaml.Node) -> RateLimit | None:
        keys = self.mapping(node, "rate_limit", {"interval", "burst"})
        interval = burst = None
        if "interval" in keys:
            text = self.string(keys["interval"], "rate_limit.interval")
            try:
                interval = parse_duration(text) if text is not None else None
            except ValueError:
                self.problem(keys["interval"], "rate_limit.interval", f"must be {DURATION_HINT}")
        if "burst" in keys:
            text = self.string(keys["burst"], "rate_limit.burst")
            if text is not None and text.isdigit() and int(text) >= 1:
                burst = int(text)
            elif text is not None:
                self.problem(keys["burst"], "rate_limit.burst", "must be an integer, at least 1")
        if interval is None or burst is None:
            for key in ("interval", "burst"):
                if key not in keys:
                    self.problem(node, f"rate_limit.{key}", "is required")
            return None
        return RateLimit(interval, burst) if interval > 0 else None  # 0 disables it


class TLSProblem(Exception):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key, self.message = key, message


def ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    """A server-side context for ``tls``; :class:`TLSProblem` names the key that failed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.cipher_suites:
        try:
            context.set_ciphers(":".join(CIPHER_SUITES[name] for name in tls.cipher_suites))
        except ssl.SSLError:
            raise TLSProblem("cipher_suites", "none of these cipher suites is available in "
                                              "this OpenSSL") from None
    for key in ("cert_file", "key_file", "client_ca_file"):
        location = getattr(tls, key)
        if location is not None and not location.is_file():
            raise TLSProblem(key, f"file {location} does not exist")
    try:
        # A key protected by a passphrase would make OpenSSL prompt on the terminal.
        context.load_cert_chain(tls.cert_file, tls.key_file, password=_no_passphrase)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise TLSProblem("cert_file", f"cannot load the certificate and key "
                                      f"({_ssl_reason(exc)})") from None
    if tls.verifies_clients and tls.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise TLSProblem("client_ca_file", f"cannot load the CA certificates "
                                               f"({_ssl_reason(exc)})") from None
    context.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
    return context


def _no_passphrase() -> bytes:
    raise ValueError("the key file is encrypted; give an unencrypted key")


def _ssl_reason(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _dummy_hash(hashes: Iterable[bytes]) -> bytes:
    costs = [int(BCRYPT_HASH.fullmatch(h.decode()).group(1)) for h in hashes]
    if not costs:
        return b""
    return bcrypt.hashpw(b"channel-agent: no such user", bcrypt.gensalt(rounds=max(costs)))


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"

