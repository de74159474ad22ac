"""Who may call which endpoint: basic auth, client certificates, headers, rate limit, TLS."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import ssl
import textwrap

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agent.plugins import load_plugins
from agent.service import AgentService
from agent.web import auth as websecurity
from agent.web.auth import WebSecurity, changes_state, insecure_listen_problem, is_loopback
from agent.web.listener import Listener
from agent.web.server import make_app
from tests.fakes import FakePlugin
from tests.tlsfiles import bcrypt_hash, client_cert, server_files

PASSWORD = "correct horse battery staple"
HASH = bcrypt_hash(PASSWORD)
RECHECK = {"channel": "fake", "account": "a1"}


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


SRE = basic("sre", PASSWORD)


@pytest.fixture
async def agent(fake_config, tmp_path):
    """agent(web_yaml, read_without_auth=False) -> an aiohttp TestClient on the agent's app."""
    clients = []

    async def start(web_yaml: str | None, *, read_without_auth: bool = False,
                    extra: web.RouteTableDef | None = None) -> TestClient:
        path = None
        if web_yaml is not None:
            path = tmp_path / "web.yml"
            path.write_text(textwrap.dedent(web_yaml))
        service = AgentService(fake_config(), load_plugins([FakePlugin()], entry_points=False))
        security = WebSecurity(path, read_without_auth=read_without_auth)
        app = make_app(service, security)
        if extra is not None:
            app.router.add_routes(extra)
        client = TestClient(TestServer(app))
        await client.start_server()
        client.service, client.security = service, security
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()
        await client.service.stop()


async def test_without_a_web_config_everything_is_open(agent):
    client = await agent(None)
    assert (await client.get("/metrics")).status == 200
    assert (await client.post("/api/v1/recheck", json=RECHECK)).status == 200


async def test_basic_auth_protects_every_endpoint(agent):
    client = await agent(f"basic_auth_users:\n  sre: '{HASH}'\n")
    for path in ("/", "/metrics", "/api/v1/status", "/-/healthy", "/-/ready", "/nope"):
        response = await client.get(path)
        assert response.status == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert (await client.get("/metrics", headers=basic("sre", "wrong"))).status == 401
    assert (await client.get("/metrics", headers=basic("root", PASSWORD))).status == 401
    assert (await client.get("/metrics", headers={"Authorization": "Basic !!"})).status == 401
    assert (await client.get("/metrics", headers=SRE)).status == 200
    assert (await client.post("/api/v1/recheck", json=RECHECK)).status == 401
    assert (await client.post("/api/v1/recheck", json=RECHECK, headers=SRE)).status == 200


async def test_reads_can_be_left_open_but_state_changes_never(agent):
    client = await agent(f"basic_auth_users:\n  sre: '{HASH}'\n", read_without_auth=True)
    assert (await client.get("/metrics")).status == 200
    assert (await client.get("/api/v1/status")).status == 200
    assert (await client.post("/api/v1/recheck", json=RECHECK)).status == 401
    assert (await client.post("/-/reload")).status == 401


async def test_every_state_changing_route_needs_credentials(agent):
    """Covers the routes of make_app as they are, so a route added later is covered too."""
    client = await agent(f"basic_auth_users:\n  sre: '{HASH}'\n", read_without_auth=True)
    routes = [(r.method, r.resource.canonical) for r in client.app.router.routes()
              if r.method not in ("GET", "HEAD")]
    assert ("POST", "/api/v1/recheck") in routes and ("POST", "/-/reload") in routes
    for method, path in routes:
        response = await client.request(method, path, json={})
        assert response.status == 401, (method, path)


async def test_a_get_route_marked_as_changing_state_needs_credentials(agent):
    extra = web.RouteTableDef()

    @extra.get("/marked")
    @changes_state
    async def marked(request: web.Request) -> web.Response:
        return web.Response(text="changed")

    client = await agent(f"basic_auth_users:\n  sre: '{HASH}'\n", read_without_auth=True,
                         extra=extra)
    assert (await client.get("/marked")).status == 401
    assert (await client.get("/marked", headers=SRE)).status == 200


async def test_the_oauth_callback_checks_its_own_link_instead_of_basic_auth(agent):
    client = await agent(f"basic_auth_users:\n  sre: '{HASH}'\n")
    assert (await client.get("/metrics")).status == 401
    response = await client.get("/oauth/callback", params={"state": "unknown", "code": "x"})
    assert response.status == 404 and "Unknown link" in await response.text()  # its own check


async def test_without_any_way_to_authenticate_state_changes_are_refused(agent, tmp_path):
    tls = server_files(tmp_path)
    client = await agent(f"tls_server_config: {{cert_file: {tls.cert_file}, "
                         f"key_file: {tls.key_file}}}\n")
    assert (await client.get("/metrics")).status == 200  # as in every exporter: TLS only
    response = await client.post("/api/v1/recheck", json=RECHECK)
    assert response.status == 403
    assert "basic_auth_users" in await response.text()


async def test_unknown_users_cost_one_bcrypt_check_of_the_same_cost(agent, monkeypatch):
    client = await agent(f"basic_auth_users:\n  sre: '{HASH}'\n")
    checked = []
    real = websecurity.bcrypt.checkpw
    monkeypatch.setattr(websecurity.bcrypt, "checkpw",
                        lambda pw, hashed: checked.append(hashed[:7]) or real(pw, hashed))
    await client.get("/metrics", headers=basic("sre", "wrong"))
    await client.get("/metrics", headers=basic("nobody", "wrong"))
    await client.get("/metrics")  # no credentials at all
    assert checked == [HASH[:7].encode()] * 3  # "$2b$04$": the same cost every time


async def test_passwords_past_72_bytes_are_refused(agent):
    long = "x" * 72
    client = await agent(f"basic_auth_users:\n  sre: '{bcrypt_hash(long)}'\n")
    assert (await client.get("/metrics", headers=basic("sre", long))).status == 200
    assert (await client.get("/metrics", headers=basic("sre", long + "y"))).status == 401


async def test_configured_headers_are_on_every_response(agent):
    client = await agent(f"""\
        http_server_config:
          headers:
            X-Content-Type-Options: nosniff
            Strict-Transport-Security: max-age=31536000
        basic_auth_users:
          sre: '{HASH}'
    """)
    for response in (await client.get("/metrics", headers=SRE), await client.get("/metrics"),
                     await client.get("/nope", headers=SRE)):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


async def test_rate_limit_answers_429_past_the_burst(agent):
    client = await agent("rate_limit: {interval: 1h, burst: 3}\n")
    statuses = [(await client.get("/-/healthy")).status for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]


async def test_request_bodies_are_size_limited(agent):
    client = await agent(None)
    response = await client.post("/api/v1/recheck", data=b"{" + b" " * (1 << 20) + b"}",
                                 headers={"Content-Type": "application/json"})
    assert response.status == 413
    assert (await client.get("/-/healthy")).status == 200


async def test_a_changed_web_config_applies_to_the_next_request(agent, tmp_path, caplog):
    client = await agent(f"basic_auth_users:\n  sre: '{HASH}'\n")
    assert (await client.get("/metrics", headers=SRE)).status == 200
    (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  ops: '{bcrypt_hash('other')}'\n")
    assert (await client.get("/metrics", headers=SRE)).status == 401
    assert (await client.get("/metrics", headers=basic("ops", "other"))).status == 200

    (tmp_path / "web.yml").write_text("basic_auth_users:\n  ops: not-a-hash\n")
    with caplog.at_level(logging.ERROR):
        assert (await client.get("/metrics", headers=basic("ops", "other"))).status == 200
        assert (await client.get("/metrics")).status == 401
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    stays = [e for e in errors if "previous one stays in force" in e]
    assert len(stays) == 1  # logged once, not at every request
    assert any("basic_auth_users.ops: must be a bcrypt hash" in e for e in errors)
    assert not any("not-a-hash" in e for e in errors)


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("localhost", True),
    ("", False), ("0.0.0.0", False), ("10.0.0.1", False), ("agent.example", False),
])
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_non_loopback_needs_a_web_config_or_the_insecure_flag(tmp_path):
    open_agent = WebSecurity(None)
    assert insecure_listen_problem("127.0.0.1", open_agent, False) is None
    assert "refusing to listen on 0.0.0.0" in insecure_listen_problem("0.0.0.0", open_agent, False)
    assert "every interface" in insecure_listen_problem("", open_agent, False)
    assert insecure_listen_problem("0.0.0.0", open_agent, True) is None
    (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  sre: '{HASH}'\n")
    assert insecure_listen_problem("0.0.0.0", WebSecurity(tmp_path / "web.yml"), False) is None


# --- TLS, over real sockets ------------------------------------------------------------------


@pytest.fixture
async def tls_agent(fake_config, tmp_path):
    """tls_agent(web_yaml) -> (listener, security) serving the agent over a real socket."""
    started = []

    async def start(web_yaml: str) -> tuple[Listener, WebSecurity]:
        path = tmp_path / "web.yml"
        path.write_text(textwrap.dedent(web_yaml))
        service = AgentService(fake_config(), load_plugins([FakePlugin()], entry_points=False))
        security = WebSecurity(path)
        runner = web.AppRunner(make_app(service, security))
        await runner.setup()
        listener = Listener(runner, "127.0.0.1", 0, security)
        await listener.start()
        started.append((listener, runner, service))
        return listener, security

    yield start
    for listener, runner, service in started:
        await listener.stop()
        await runner.cleanup()
        await service.stop()


async def _get(url: str, context: ssl.SSLContext, method: str = "GET", **kwargs) -> int:
    async with httpx.AsyncClient(verify=context) as client:
        return (await client.request(method, url, **kwargs)).status_code


async def test_https_with_the_configured_certificate_and_minimum_version(tls_agent, tmp_path):
    tls = server_files(tmp_path)
    listener, _ = await tls_agent(f"tls_server_config: {{cert_file: {tls.cert_file}, "
                                  f"key_file: {tls.key_file}, min_version: TLS13}}\n")
    assert listener.url.startswith("https://127.0.0.1:")
    assert await _get(listener.url + "/-/healthy", tls.client_context()) == 200
    tls12_client = tls.client_context()
    tls12_client.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(httpx.ConnectError):
        await _get(listener.url + "/-/healthy", tls12_client)


def client_auth(tls, clients, auth_type: str) -> str:
    """A web config serving ``tls`` and verifying client certificates of ``clients``' CA."""
    return (f"tls_server_config:\n  cert_file: {tls.cert_file}\n  key_file: {tls.key_file}\n"
            f"  client_auth_type: {auth_type}\n  client_ca_file: {clients.ca_file}\n")


async def test_verified_client_certificates_are_credentials(tls_agent, tmp_path):
    tls = server_files(tmp_path)
    clients = server_files(tmp_path / "clients", "clients")
    stranger = server_files(tmp_path / "stranger", "stranger")
    listener, _ = await tls_agent(client_auth(tls, clients, "VerifyClientCertIfGiven"))
    recheck = listener.url + "/api/v1/recheck"
    with_cert = tls.client_context(client_cert(clients.ca, tmp_path / "c.pem"))
    assert await _get(listener.url + "/metrics", tls.client_context()) == 200
    assert await _get(recheck, tls.client_context(), "POST", json=RECHECK) == 403
    assert await _get(recheck, with_cert, "POST", json=RECHECK) == 200
    with pytest.raises(httpx.HTTPError):  # a certificate from another CA fails the handshake
        await _get(recheck, tls.client_context(client_cert(stranger.ca, tmp_path / "s.pem")),
                   "POST", json=RECHECK)


async def test_client_allowed_sans(tls_agent, tmp_path):
    tls = server_files(tmp_path)
    clients = server_files(tmp_path / "clients", "clients")
    listener, _ = await tls_agent(client_auth(tls, clients, "RequireAndVerifyClientCert")
                                  + "  client_allowed_sans: [prometheus.example]\n")
    allowed = tls.client_context(client_cert(clients.ca, tmp_path / "p.pem", "prometheus.example"))
    other = tls.client_context(client_cert(clients.ca, tmp_path / "o.pem", "other.example"))
    assert await _get(listener.url + "/metrics", allowed) == 200
    assert await _get(listener.url + "/metrics", other) == 403
    with pytest.raises(httpx.HTTPError):  # RequireAndVerifyClientCert: no certificate, no TLS
        await _get(listener.url + "/metrics", tls.client_context())


async def test_a_renewed_certificate_is_served_without_a_restart(tls_agent, tmp_path):
    tls = server_files(tmp_path)
    listener, security = await tls_agent(f"tls_server_config: {{cert_file: {tls.cert_file}, "
                                         f"key_file: {tls.key_file}}}\n")
    port = listener.port
    renewed = server_files(tmp_path / "renewed")
    tls.cert_file.write_bytes(renewed.cert_file.read_bytes())
    tls.key_file.write_bytes(renewed.key_file.read_bytes())
    security.refresh()  # what the watcher does every second
    await listener.follow_tls_changes()
    assert listener.port == port
    assert await _get(listener.url + "/-/healthy", renewed.client_context()) == 200
    with pytest.raises(httpx.ConnectError):
        await _get(listener.url + "/-/healthy", tls.client_context())


async def test_the_watcher_notices_a_change_by_itself(tls_agent, tmp_path, monkeypatch):
    monkeypatch.setattr("agent.web.listener.WATCH_INTERVAL", 0.05)
    tls = server_files(tmp_path)
    listener, security = await tls_agent(f"tls_server_config: {{cert_file: {tls.cert_file}, "
                                         f"key_file: {tls.key_file}}}\n")
    renewed = server_files(tmp_path / "renewed")
    (tmp_path / "web.yml").write_text(f"tls_server_config: {{cert_file: {renewed.cert_file}, "
                                      f"key_file: {renewed.key_file}}}\n")
    for _ in range(200):
        if security.config.tls.cert_file == renewed.cert_file:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    assert await _get(listener.url + "/-/healthy", renewed.client_context()) == 200


async def test_a_port_in_use_is_not_shared_even_with_reuse_port(fake_config, tmp_path):
    (tmp_path / "web.yml").write_text("")
    security = WebSecurity(tmp_path / "web.yml")
    service = AgentService(fake_config(), load_plugins([FakePlugin()], entry_points=False))
    runner = web.AppRunner(make_app(service, security))
    await runner.setup()
    with socket.socket() as taken:  # another agent, also with SO_REUSEPORT
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listener = Listener(runner, "127.0.0.1", taken.getsockname()[1], security)
        with pytest.raises(OSError):
            await listener.start()
    await runner.cleanup()
    await service.stop()
