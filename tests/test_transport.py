"""The aiohttp transport under the channels' httpx clients, against real loopback servers."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import threading
import time

import httpx
import pytest
from aiohttp import web

from agent.checks import transport as transport_module
from agent.checks.httpretry import RetryPolicy, TransientError, send_with_retries
from agent.checks.transport import AiohttpTransport, ChannelClient
from agent.plugins import load_plugins
from agent.service import AgentService, HttpOptions
from tests.fakes import FakePlugin
from tests.helpers import free_port


@pytest.fixture
async def server():
    """A loopback server with a few misbehaving routes; yields its base URL."""
    seen: list[web.Request] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(request)
        body = await request.read()
        return web.json_response(
            {"method": request.method, "body": body.decode(), "headers": dict(request.headers)},
            headers={"Set-Cookie": "session=abc; Path=/", "X-Answer": "42"})

    async def zipped(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b'{"ok": true}'),
                            headers={"Content-Encoding": "gzip",
                                     "Content-Type": "application/json"})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    async def hang_up(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()  # no answer at all
        await asyncio.sleep(1)
        return web.Response(text="never sent")

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/gzip", zipped)
    app.router.add_get("/slow", slow)
    app.router.add_get("/hang-up", hang_up)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


@pytest.fixture
async def client():
    async with ChannelClient(transport=AiohttpTransport(max_connections=4),
                             headers={"User-Agent": "agent-test"}) as c:
        yield c


async def test_requests_and_answers_go_through_unchanged(server, client):
    base, _ = server
    response = await client.post(f"{base}/echo?x=1", content=b"a=1&b=2",
                                 headers={"Content-Type": "application/x-www-form-urlencoded",
                                          "Authorization": "Bearer t"})
    assert response.status_code == 200 and response.reason_phrase == "OK"
    assert response.headers["X-Answer"] == "42"
    sent = response.json()
    assert (sent["method"], sent["body"]) == ("POST", "a=1&b=2")
    assert sent["headers"]["User-Agent"] == "agent-test"
    assert sent["headers"]["Authorization"] == "Bearer t"
    assert sent["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert (await client.get(f"{base}/gzip")).json() == {"ok": True}  # httpx decodes


async def test_aiohttp_adds_no_header_that_httpx_did_not_send(server, client):
    base, seen = server
    request = client.build_request("POST", f"{base}/echo", content=b"raw")
    for name in ("User-Agent", "Accept", "Accept-Encoding"):
        del request.headers[name]
    await client.send(request)
    sent = seen[-1].headers
    assert {"User-Agent", "Accept", "Accept-Encoding", "Content-Type"}.isdisjoint(sent)
    assert sent["Content-Length"] == "3"
    # a request with them all: each as httpx sent it, none twice
    await client.post(f"{base}/echo", content=b"raw", headers={"Content-Type": "text/plain"})
    sent = seen[-1].headers
    assert sent.getall("User-Agent") == ["agent-test"]
    assert sent.getall("Accept") == ["*/*"]
    assert sent.getall("Content-Type") == ["text/plain"]


async def test_no_cookie_is_kept_between_requests(server, client):
    base, seen = server
    await client.get(f"{base}/echo")
    await client.get(f"{base}/echo")
    assert "Cookie" not in seen[-1].headers
    with pytest.raises(AttributeError):
        client.cookies = {"a": "b"}


async def send(client: httpx.AsyncClient, url: str, timeout: float = 0.3) -> httpx.Response:
    return await send_with_retries(
        client, lambda: client.build_request("GET", url), deadline=time.monotonic() + timeout,
        endpoint="thing", record=lambda endpoint, code: None,
        policy=RetryPolicy(request_timeout=timeout, max_attempts=1),
    )


def arming(monkeypatch) -> list[str]:
    """The callbacks of the timers the running loop arms from now on, by name."""
    loop = asyncio.get_running_loop()
    armed: list[str] = []
    call_at = loop.call_at

    def counted(when, callback, *args, **kwargs):
        armed.append(getattr(callback, "__qualname__", repr(callback)))
        return call_at(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counted)  # call_later goes through it too
    return armed


async def test_aiohttp_arms_no_timer_for_a_request_its_sender_bounds(server, client,
                                                                      monkeypatch):
    base, _ = server
    await client.get(f"{base}/echo")  # the pooled connection, opened
    armed = arming(monkeypatch)
    await client.get(f"{base}/echo", timeout=5)  # httpx's per-read timeout: aiohttp's timer
    assert "ResponseHandler._on_read_timeout" in armed
    armed.clear()
    await send(client, f"{base}/echo", timeout=5)  # send_with_retries bounds the whole
    assert "ResponseHandler._on_read_timeout" not in armed
    assert armed.count("Timeout._on_timeout") == 1  # the sender's, not aiohttp's pool wait


async def test_no_answer_in_time_is_a_timeout(server, client):
    base, _ = server
    with pytest.raises(TransientError) as caught:
        await send(client, f"{base}/slow")
    assert caught.value.reason == "timeout"


async def test_a_read_timeout_of_the_transport_itself_is_a_timeout(server):
    base, _ = server
    transport = AiohttpTransport()
    request = httpx.Request("GET", f"{base}/slow", extensions={"timeout": {"read": 0.1}})
    with pytest.raises(httpx.ReadTimeout):
        await transport.handle_async_request(request)
    await transport.aclose()


async def test_a_refused_connection_is_a_network_error(client):
    with pytest.raises(TransientError) as caught:
        await send(client, f"http://127.0.0.1:{free_port()}/nothing-listens")
    assert caught.value.reason == "network"
    assert "ConnectError" in caught.value.detail


async def test_a_connection_closed_without_answer_is_a_network_error(server, client):
    base, _ = server
    with pytest.raises(TransientError) as caught:
        await send(client, f"{base}/hang-up", timeout=2)
    assert caught.value.reason == "network"


async def test_the_proxy_of_the_environment_is_used(server, client, monkeypatch):
    base, seen = server
    monkeypatch.setenv("HTTP_PROXY", base)  # the test server plays the proxy
    await client.aclose()
    async with ChannelClient(transport=AiohttpTransport()) as proxied:
        response = await proxied.get("http://api.example.invalid/echo")  # cannot resolve
    assert response.status_code == 200
    assert seen[-1].headers["Host"] == "api.example.invalid"


async def test_an_injected_transport_replaces_aiohttp(fake_config):
    answered = []

    def handler(request: httpx.Request) -> httpx.Response:
        answered.append(request.url.path)
        return httpx.Response(204)

    service = AgentService(fake_config(), load_plugins([FakePlugin()], entry_points=False),
                           HttpOptions(transport=httpx.MockTransport(handler)))
    response = await service.http["fake"].get("https://api.example.test/ping")
    assert response.status_code == 204 and answered == ["/ping"]
    await service.stop()


def test_proxy_credentials_and_no_proxy_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://agent:s3cret@127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "inside.example")
    transport = AiohttpTransport()
    proxy, headers = transport._proxy(httpx.URL("http://api.example/x"))
    assert proxy == "http://127.0.0.1:3128"
    assert headers == {"Proxy-Authorization": "Basic YWdlbnQ6czNjcmV0"}  # agent:s3cret
    assert transport._proxy(httpx.URL("http://inside.example/x")) == (None, None)


async def test_the_direct_send_answers_like_httpxs_own_pipeline(server):
    """ChannelClient.send skips httpx's auth/redirect/hook pipeline when none applies; with
    an event hook it takes the pipeline. Both give the same, fully read response."""
    url, _ = server
    hooked: list[str] = []

    async def hook(response: httpx.Response) -> None:
        hooked.append(str(response.url))

    async def answers(**options) -> list[tuple]:
        seen = []
        async with ChannelClient(transport=AiohttpTransport(), **options) as client:
            for path in ("/echo", "/gzip"):
                response = await client.get(f"{url}{path}", headers={"X-Test": "1"})
                body = response.json()
                body.get("headers", {}).pop("Host", None)  # the port differs
                seen.append((response.status_code, body, response.headers.get("X-Answer"),
                             response.request.url == httpx.URL(f"{url}{path}"),
                             response.is_closed, response.elapsed.total_seconds() > 0))
        return seen

    direct = await answers()
    assert hooked == []
    assert direct == await answers(event_hooks={"response": [hook]})
    assert hooked == [f"{url}/echo", f"{url}/gzip"]  # the hooked client took the pipeline
    assert direct[0][1]["headers"]["X-Test"] == "1" and direct[0][2] == "42"
    assert direct[1][1] == {"ok": True}  # gzip decoded
    assert all(a[3] and a[4] and a[5] for a in direct)



@pytest.fixture
def fresh_process_bundle(monkeypatch):
    """The CA bundle's context as in a new process: not made, no thread asked for. Yields
    a function that waits for the thread, if one was started."""
    monkeypatch.setattr(transport_module, "_verifying", [])
    transport_module.load_verify_by_default_soon.cache_clear()

    def thread_done() -> None:
        for thread in threading.enumerate():
            if thread.name == "ca-bundle":
                thread.join()

    yield thread_done
    thread_done()
    transport_module.load_verify_by_default_soon.cache_clear()


def test_the_ca_bundle_is_read_in_a_thread_before_the_first_request(
        monkeypatch, fresh_process_bundle) -> None:
    """Reading the bundle releases the GIL: made beside the start, it does not stall the
    event loop at the first request."""
    made: list[str] = []

    def create_ssl_context() -> ssl.SSLContext:
        made.append(threading.current_thread().name)
        return ssl.create_default_context()

    monkeypatch.setattr(httpx, "create_ssl_context", create_ssl_context)
    AiohttpTransport()
    AiohttpTransport()  # another channel's: the same context, no second thread
    fresh_process_bundle()
    context = transport_module.verify_by_default()  # what the first request asks for
    assert made == ["ca-bundle"]
    assert transport_module.verify_by_default() is context


def test_a_ca_bundle_that_cannot_be_read_is_reported_by_the_request_not_the_thread(
        monkeypatch, fresh_process_bundle) -> None:
    escaped: list[BaseException] = []

    def missing() -> None:
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(httpx, "create_ssl_context", missing)
    monkeypatch.setattr(threading, "excepthook", lambda args: escaped.append(args.exc_value))
    AiohttpTransport()
    fresh_process_bundle()
    assert escaped == []  # no traceback of a thread on stderr
    with pytest.raises(FileNotFoundError):
        transport_module.verify_by_default()  # the first request meets it, where it is handled
