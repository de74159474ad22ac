"""The exporter-toolkit web configuration file: what is accepted, and how problems are told."""

import ssl
import textwrap
from pathlib import Path

import pytest

from agent.config.loader import ConfigError
from agent.web.config import load_web_config, parse_web_config
from tests.tlsfiles import bcrypt_hash, server_files

HASH = bcrypt_hash("s3cret-pw")
# The example hash of the exporter-toolkit documentation, as htpasswd writes it ($2y$).
TOOLKIT_HASH = "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG"


def problems(text, tmp_path=None):
    with pytest.raises(ConfigError) as info:
        parse_web_config(textwrap.dedent(text), source="web.yml", base_dir=tmp_path)
    return [str(p) for p in info.value.problems]


def test_the_toolkit_documentation_example_is_accepted(tmp_path):
    tls = server_files(tmp_path)
    text = f"""\
        tls_server_config:
          cert_file: {tls.cert_file.name}
          key_file: {tls.key_file.name}
          client_auth_type: RequireAndVerifyClientCert
          client_ca_file: {tls.ca_file.name}
          client_allowed_sans: [client.example]
          min_version: TLS12
          max_version: TLS13
          cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
          prefer_server_cipher_suites: true
        http_server_config:
          http2: true
          headers:
            X-Content-Type-Options: nosniff
            X-Frame-Options: deny
            Content-Security-Policy: ""
        basic_auth_users:
          prometheus: {TOOLKIT_HASH}
          sre: '{HASH}'
        rate_limit:
          interval: 100ms
          burst: 20
    """
    (tmp_path / "web.yml").write_text(textwrap.dedent(text))
    config = load_web_config(tmp_path / "web.yml")
    assert config.tls.cert_file == tmp_path / tls.cert_file.name  # relative to the file
    assert config.tls.verifies_clients
    assert config.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert config.ssl_context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert set(config.basic_auth_users) == {"prometheus", "sre"}
    assert config.headers == {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "deny"}
    assert (config.rate_limit.interval, config.rate_limit.burst) == (0.1, 20)
    assert config.dummy_hash.startswith(b"$2b$10$")  # the highest cost of the users


def test_tls_12_is_the_default_minimum(tmp_path):
    tls = server_files(tmp_path)
    config = parse_web_config(f"tls_server_config: {{cert_file: {tls.cert_file}, "
                              f"key_file: {tls.key_file}}}")
    assert config.ssl_context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert config.ssl_context.verify_mode == ssl.CERT_NONE


def test_an_empty_file_is_a_config_without_anything():
    config = parse_web_config("")
    assert (config.tls, dict(config.basic_auth_users), config.rate_limit) == (None, {}, None)


def test_every_problem_is_reported_with_line_and_key_and_never_the_value():
    found = problems("""\
        tls_server_config:
          cert: inline-pem
          min_version: TLS9
          client_auth_type: RequireAnyClientCert
        http_server_config:
          headers:
            X-Frame-Options: allow
            X-Powered-By: me
        basic_auth_users:
          alice: plain-text-password
        rate_limit: {interval: 1s}
        tls_srever_config: {}
    """)
    assert found == [
        "web.yml:1: tls_server_config.cert_file: is required",
        "web.yml:1: tls_server_config.key_file: is required",
        "web.yml:2: tls_server_config.cert: inline certificates are not supported: use cert_file",
        "web.yml:3: tls_server_config.min_version: must be one of TLS10, TLS11, TLS12, TLS13",
        "web.yml:4: tls_server_config.client_auth_type: RequireAnyClientCert (a certificate that "
        "is not verified) is not supported: use RequireAndVerifyClientCert",
        "web.yml:7: http_server_config.headers.X-Frame-Options: must be one of deny, sameorigin",
        "web.yml:8: http_server_config.headers.X-Powered-By: unknown key 'X-Powered-By' "
        "(expected one of: Content-Security-Policy, Strict-Transport-Security, "
        "X-Content-Type-Options, X-Frame-Options, X-XSS-Protection)",
        "web.yml:10: basic_auth_users.alice: must be a bcrypt hash, like the output of: "
        "htpasswd -nBC 10 \"\" | tr -d ':\\n'",
        "web.yml:11: rate_limit.burst: is required",
        "web.yml:12: tls_srever_config: unknown key 'tls_srever_config' "
        "(did you mean 'tls_server_config'?)",
    ]
    assert not any("plain-text-password" in p or "inline-pem" in p for p in found)


def test_client_authentication_must_be_consistent(tmp_path):
    tls = server_files(tmp_path)
    base = f"tls_server_config:\n  cert_file: {tls.cert_file}\n  key_file: {tls.key_file}\n"
    assert problems(base + "  client_auth_type: RequireAndVerifyClientCert\n") == [
        "web.yml:1: tls_server_config.client_ca_file: is required with client_auth_type "
        "RequireAndVerifyClientCert"]
    assert problems(base + f"  client_ca_file: {tls.ca_file}\n") == [
        "web.yml:1: tls_server_config.client_ca_file: is set but client_auth_type does not "
        "verify client certificates"]
    assert problems(base + "  client_allowed_sans: [a]\n") == [
        "web.yml:1: tls_server_config.client_allowed_sans: needs client_auth_type "
        "RequireAndVerifyClientCert"]
    assert problems(base + "  min_version: TLS13\n  max_version: TLS12\n") == [
        "web.yml:1: tls_server_config.min_version: must not be above max_version"]


def test_tls_files_that_cannot_be_used_are_named(tmp_path):
    tls = server_files(tmp_path)
    missing = f"tls_server_config: {{cert_file: {tmp_path}/nope.crt, key_file: {tls.key_file}}}"
    assert problems(missing) == [
        f"web.yml: tls_server_config.cert_file: file {tmp_path}/nope.crt does not exist"]
    swapped = f"tls_server_config: {{cert_file: {tls.key_file}, key_file: {tls.cert_file}}}"
    [problem] = problems(swapped)
    assert problem.startswith("web.yml: tls_server_config.cert_file: cannot load the "
                              "certificate and key (")


def test_an_encrypted_key_is_refused_instead_of_prompting(tmp_path):
    from cryptography.hazmat.primitives import serialization

    tls = server_files(tmp_path)
    key = serialization.load_pem_private_key(tls.key_file.read_bytes(), password=None)
    tls.key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    [problem] = problems(f"tls_server_config: {{cert_file: {tls.cert_file}, "
                         f"key_file: {tls.key_file}}}")
    assert "cannot load the certificate and key" in problem


@pytest.mark.parametrize("text", ["- a\n- b\n", "basic_auth_users: [a]\n", "[" * 2000,
                                  # found by hypothesis: a list is not hashable
                                  "tls_server_config: {client_auth_type: []}\n"])
def test_wrong_shapes_are_problems_not_crashes(text):
    assert problems(text)


def test_an_unreadable_file_is_one_problem(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_web_config(tmp_path / "missing.yml")
    [problem] = info.value.problems
    assert "cannot read the web configuration file" in str(problem)


def test_the_example_file_is_valid(tmp_path):
    example = Path(__file__).parent.parent / "web-config.example.yml"
    tls = server_files(tmp_path)
    tls.cert_file.rename(tmp_path / "agent.crt")
    tls.key_file.rename(tmp_path / "agent.key")
    tls.ca_file.rename(tmp_path / "clients-ca.crt")
    (tmp_path / "web.yml").write_text(example.read_text())
    config = load_web_config(tmp_path / "web.yml")
    assert config.tls.client_allowed_sans == ("prometheus.example.com",)
    assert "prometheus" in config.basic_auth_users
