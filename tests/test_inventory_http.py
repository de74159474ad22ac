"""The ``http`` inventory source against a real aiohttp server on loopback."""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path

import pytest
from aiohttp import web

from agent.channel import Secret, SecretRef
from agent.inventory import InventoryError
from agent.inventory.http import HttpInventory
from tests.tlsfiles import server_files

ROWS = [{"channel": "fake", "account": "acme", "region": "na", "labels": {"merchant": "acme"}}]


class Server:
    """Serves ``body`` at /accounts with an ETag; records each request's headers."""

    def __init__(self) -> None:
        self.body: bytes = json.dumps(ROWS).encode()
        self.status = 200
        self.content_type = "application/json"
        self.requests: list[dict[str, str]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.headers))
        etag = f'"{hash(self.body) & 0xffff:x}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304)
        return web.Response(body=self.body, status=self.status, content_type=self.content_type,
                            headers={"ETag": etag})

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        app = web.Application()
        app.router.add_get("/accounts", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{port}/accounts"

    async def stop(self) -> None:
        await self.runner.cleanup()


@pytest.fixture
async def server():
    s = Server()
    await s.start()
    yield s
    await s.stop()


def inventory(url: str, **settings) -> HttpInventory:
    return HttpInventory("platform", {"url": url, "channels": ("fake",), "interval": 60.0,
                                      "timeout": 5.0, "labels": {}, "basic_auth": None,
                                      **settings})


async def test_the_list_is_fetched_and_an_unchanged_one_costs_a_304(server, tmp_path):
    token = tmp_path / "token"
    token.write_text("PLANTED-bearer-1\n")
    source = inventory(server.url, bearer_token_file=token)
    assert await source.fetch() == ROWS
    assert server.requests[-1]["Authorization"] == "Bearer PLANTED-bearer-1"
    assert await source.fetch() is None  # If-None-Match: not modified
    assert "If-None-Match" in server.requests[-1]

    token.write_text("PLANTED-bearer-2\n")  # a rotated token is read at the next request
    server.body = json.dumps([*ROWS, {"channel": "fake", "account": "globex"}]).encode()
    assert len(await source.fetch()) == 2
    assert server.requests[-1]["Authorization"] == "Bearer PLANTED-bearer-2"
    await source.close()


async def test_basic_auth(server):
    password = SecretRef(value=Secret("PLANTED-basic-password"), source="password")
    source = inventory(server.url, basic_auth={"username": "agent", "password": password})
    await source.fetch()
    expected = base64.b64encode(b"agent:PLANTED-basic-password").decode()
    assert server.requests[-1]["Authorization"] == f"Basic {expected}"
    await source.close()


@pytest.mark.parametrize(("body", "status", "content_type", "message"), [
    (b"<html><body>502 Bad Gateway</body></html>", 200, "text/html",
     "the answer is HTML, not a JSON list of accounts"),
    (b'{"accounts": []}', 200, "application/json",
     "the answer is a JSON dict, not a list of accounts"),
    (b"[" + b'{"channel": "fake", "account": "x"},' * 300_000 + b"{}]", 200,
     "application/json", "the answer is larger than max_response_size (8388608 bytes)"),
    (b"[]", 503, "application/json", "HTTP 503 from"),
])
async def test_a_bad_answer_is_a_clear_error(server, body, status, content_type, message):
    server.body, server.status, server.content_type = body, status, content_type
    source = inventory(server.url)
    with pytest.raises(InventoryError) as caught:
        await source.fetch()
    assert message in str(caught.value)
    await source.close()


async def test_an_unusable_answer_does_not_update_the_etag(server):
    source = inventory(server.url)
    assert await source.fetch() == ROWS
    server.body, server.content_type = b"<html>maintenance</html>", "text/html"
    with pytest.raises(InventoryError):
        await source.fetch()
    server.body, server.content_type = json.dumps(ROWS).encode(), "application/json"
    assert await source.fetch() is None  # still the list the agent has
    await source.close()


async def test_tls_with_a_ca_file(tmp_path: Path):
    files = server_files(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert_file, files.key_file)
    tls = Server()
    await tls.start(context)
    try:
        source = inventory(tls.url, ca_file=files.ca_file)
        assert await source.fetch() == ROWS
        await source.close()
        untrusted = inventory(tls.url)
        with pytest.raises(InventoryError) as caught:
            await untrusted.fetch()
        assert caught.value.reason == "unavailable"
        await untrusted.close()
    finally:
        await tls.stop()


async def test_a_missing_bearer_token_file_is_unavailable(server, tmp_path):
    source = inventory(server.url, bearer_token_file=tmp_path / "absent")
    with pytest.raises(InventoryError) as caught:
        await source.fetch()
    assert caught.value.reason == "unavailable" and "does not exist" in str(caught.value)
    await source.close()


async def test_the_answer_carries_a_digest_of_the_body(server):
    source = inventory(server.url)
    first = await source.fetch()
    source._etag = None  # a server without ETags: each refresh gets the whole list
    again = await source.fetch()
    assert again == first and again.digest == first.digest
    server.body = json.dumps([{**ROWS[0], "region": "eu"}]).encode()
    changed = await source.fetch()
    assert changed.digest != first.digest
    await source.close()
