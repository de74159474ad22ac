"""The cached /metrics renderer says exactly what generate_latest says, for the same state."""

import asyncio
import gzip
import logging
import math
import socket
import struct
import zlib

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from agent.channel import CheckResult
from agent.metrics import samplelines
from agent.metrics.blockcache import BLOCK
from agent.metrics.exposition import Exposition
from agent.metrics.formats import OPENMETRICS, negotiate
from agent.metrics.samplelines import float_text
from agent.plugins import load_plugins
from agent.service import AgentService
from agent.web.server import EXPOSITION, accepts_gzip, make_app
from tests.fakes import FakeChannel, FakePlugin

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def families(text: bytes, parse=text_string_to_metric_families) -> dict:
    """name -> (type, help, sorted samples): the content, whatever the order. The process_*
    families are left out: they read the process (CPU, memory) afresh at every render."""
    return {
        f.name: (f.type, f.documentation,
                 sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in f.samples))
        for f in parse(text.decode())
        if not f.name.startswith("process_")
    }


def om_families(text: bytes) -> dict:
    """The same from OpenMetrics text, with prometheus_client's strict parser (which refuses
    a text without its final # EOF, a family split in two, a misnamed counter...)."""
    return families(text, openmetrics_families)


def assert_same(service, exposition):
    """Both formats, plain and gzip, say what prometheus_client's encoders say."""
    registry = service.metrics.registry
    expected = families(generate_latest(registry))
    assert families(exposition.render()) == expected
    assert families(gzip.decompress(exposition.render_gzip())) == expected
    expected = om_families(openmetrics.generate_latest(registry))
    assert om_families(exposition.render(OPENMETRICS)) == expected
    assert om_families(gzip.decompress(exposition.render_gzip(OPENMETRICS))) == expected


class StalenessCollector:
    """Stands in for a collector another module registers, with a value that depends on now."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def collect(self):
        family = GaugeMetricFamily("other_module_age_seconds", "Seconds since data.",
                                   labels=["channel"])
        family.add_metric(["fake"], self.clock() - T0)
        yield family


@pytest.fixture
async def world(fake_config):
    names = [f"acct{i:03d}" for i in range(BLOCK * 2 + 5)]  # more than two blocks
    service = AgentService(fake_config(accounts=names),
                           load_plugins([FakePlugin()], entry_points=False))
    clock = Clock()
    service.fleet.clock = clock
    yield service, clock, Exposition(service.metrics.registry)
    await service.stop()


def rich(clock, i):
    return CheckResult(valid=True, targets={str(1000 + i): True, "2\\\"x\n": False},
                       refresh_token_fingerprint=f"fp{i}", access_token_issued_at=clock.now,
                       access_token_expires_at=clock.now + 3600)


async def test_same_content_as_generate_latest_as_state_changes(world):
    service, clock, exposition = world
    assert_same(service, exposition)  # nothing checked yet
    second, third = f"acct{BLOCK + 1:03d}", f"acct{2 * BLOCK + 2:03d}"  # other blocks
    FakeChannel.script["acct000"] = rich(clock, 0)
    FakeChannel.script["acct001"] = CheckResult(valid=False, reason="invalid_grant")
    FakeChannel.script[second] = CheckResult(valid=None, reason="throttled")
    FakeChannel.script[third] = rich(clock, 130)
    for name in ("acct000", "acct001", second, third):
        await service.scheduler.check_now(service.find_account("fake", name))
    assert_same(service, exposition)

    clock.now += 600  # ages move on with no change of state
    assert_same(service, exposition)
    FakeChannel.script["acct001"] = CheckResult(valid=None, reason="server_error")
    await service.scheduler.check_now(service.find_account("fake", "acct001"))
    assert_same(service, exposition)


async def test_ages_are_computed_at_scrape_time(world):
    service, clock, exposition = world
    FakeChannel.script["acct002"] = rich(clock, 2)
    await service.scheduler.check_now(service.find_account("fake", "acct002"))
    exposition.render_gzip()
    clock.now += 1234.5678
    text = gzip.decompress(exposition.render_gzip()).decode()
    assert ('channel_token_age_seconds{account="acct002",channel="fake",region="na",'
            'token="access"} 1234\n') in text  # whole seconds


async def test_an_expired_access_token_leaves_without_a_state_change(world):
    service, clock, exposition = world
    FakeChannel.script["acct003"] = rich(clock, 3)
    await service.scheduler.check_now(service.find_account("fake", "acct003"))
    assert b'channel_access_token_expiry_timestamp_seconds{account="acct003"' in (
        exposition.render())
    clock.now += 3601
    assert b"channel_access_token_expiry_timestamp_seconds{" not in exposition.render()
    assert_same(service, exposition)


async def test_every_other_collector_appears_and_is_current(world):
    service, clock, exposition = world
    registry = service.metrics.registry
    registry.register(StalenessCollector(clock))
    gauge = Gauge("channel_reloads", "Reloads.", registry=registry)
    gauge.set(3)
    clock.now += 42
    text = exposition.render()
    assert b"other_module_age_seconds{channel=\"fake\"} 42.0" in text
    assert b"channel_reloads 3.0" in text
    assert_same(service, exposition)


async def test_removed_accounts_leave_no_series(world, fake_config):
    service, clock, exposition = world
    FakeChannel.script["acct004"] = rich(clock, 4)
    await service.scheduler.check_now(service.find_account("fake", "acct004"))
    exposition.render()
    service.fleet.configure(fake_config(accounts=("acct000", "acct005")))
    text = exposition.render()
    assert b'account="acct004"' not in text
    assert_same(service, exposition)


async def test_gzip_is_one_member_any_decoder_reads_whole(world):
    service, clock, exposition = world
    for i in range(0, BLOCK * 2 + 5, 7):
        FakeChannel.script[f"acct{i:03d}"] = rich(clock, i)
        await service.scheduler.check_now(service.find_account("fake", f"acct{i:03d}"))
    body = exposition.render_gzip()
    decoder = zlib.decompressobj(zlib.MAX_WBITS | 16)  # like httpx: one member only
    # process_* (CPU seconds, memory) move on between the two renders; the rest may not
    assert without_process_metrics(decoder.decompress(body)) == without_process_metrics(
        exposition.render())
    assert decoder.eof and decoder.unused_data == b""


def without_process_metrics(text: bytes) -> bytes:
    return b"\n".join(line for line in text.split(b"\n")
                      if not line.startswith((b"process_", b"# HELP process_", b"# TYPE process_")))


@pytest.mark.parametrize("value", [0.0, 1.0, -2.5, 0.1, 123456.0, 1234567.0, 1.7e9, 1e-9,
                                   1700000000.123, 12345678901234567890.0, math.inf,
                                   -math.inf, math.nan])
def test_float_text_is_prometheus_formatting(value):
    assert float_text(value) == floatToGoString(value)


async def test_metrics_endpoint_serves_gzip_to_who_accepts_it(world):
    service, clock, _ = world
    FakeChannel.script["acct000"] = rich(clock, 0)
    await service.scheduler.check_now(service.find_account("fake", "acct000"))
    expected = families(generate_latest(service.metrics.registry))
    server = TestServer(make_app(service))
    async with TestClient(server, auto_decompress=False) as client:
        zipped = await client.get("/metrics", headers={"Accept-Encoding": "gzip, deflate"})
        assert zipped.headers["Content-Encoding"] == "gzip"
        assert families(gzip.decompress(await zipped.read())) == expected
        plain = await client.get("/metrics", headers={"Accept-Encoding": "gzip;q=0"})
        assert "Content-Encoding" not in plain.headers
        assert plain.headers["Content-Type"] == CONTENT_TYPE_PLAIN_0_0_4
        assert families(await plain.read()) == expected


async def test_plain_metrics_are_streamed_with_their_exact_length(world):
    service, clock, _ = world
    FakeChannel.script["acct000"] = rich(clock, 0)
    await service.scheduler.check_now(service.find_account("fake", "acct000"))
    server = TestServer(make_app(service))
    async with TestClient(server, auto_decompress=False) as client:
        plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
        body = await plain.read()
        assert int(plain.headers["Content-Length"]) == len(body)
        assert "Transfer-Encoding" not in plain.headers
        for encoding in ("gzip", "identity"):
            head = await client.head("/metrics", headers={"Accept-Encoding": encoding})
            assert head.status == 200
            assert int(head.headers["Content-Length"]) > 0
            assert await head.read() == b""
        # the connection is still good after the HEADs: no body was sent on it
        again = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
        assert families(await again.read()) == families(body)


async def test_plain_text_taken_piece_by_piece_is_the_state_it_was_asked_at(world):
    """The pieces are taken while the loop serves others: a check, a refresh of the caches
    and a new second in between change neither the text nor its length."""
    service, clock, exposition = world
    FakeChannel.script["acct000"] = rich(clock, 0)
    await service.scheduler.check_now(service.find_account("fake", "acct000"))
    before = exposition.render()
    size, parts = exposition.render_parts()
    FakeChannel.script["acct000"] = CheckResult(valid=False, reason="invalid_grant")
    await service.scheduler.check_now(service.find_account("fake", "acct000"))
    clock.now += 5
    exposition.refresh()
    exposition.render_gzip()  # renders the changed ages' chunks anew
    body = b"".join(parts)
    assert len(body) == size
    assert without_process_metrics(body) == without_process_metrics(before)
    assert without_process_metrics(exposition.render()) != without_process_metrics(before)


# what Prometheus 2.x sends by default (scrape.go, scrapeAcceptHeader)
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


async def test_metrics_endpoint_negotiates_openmetrics_as_prometheus_client_does(world):
    service, clock, _ = world
    FakeChannel.script["acct000"] = rich(clock, 0)
    FakeChannel.script["acct001"] = CheckResult(valid=False, reason="invalid_grant")
    for name in ("acct000", "acct001"):
        await service.scheduler.check_now(service.find_account("fake", name))
    registry = service.metrics.registry
    server = TestServer(make_app(service))
    async with TestClient(server, auto_decompress=False) as client:
        for encoding in ("gzip", "identity"):
            response = await client.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT,
                                                              "Accept-Encoding": encoding})
            assert response.headers["Content-Type"].startswith(
                "application/openmetrics-text; version=1.0.0; charset=utf-8")
            assert "Accept" in response.headers["Vary"]
            body = await response.read()
            body = gzip.decompress(body) if encoding == "gzip" else body
            assert body.endswith(b"\n# EOF\n") and body.count(b"# EOF") == 1
            # counters are named without _total in OpenMetrics' HELP and TYPE lines
            assert b"# TYPE channel_credential_check_failures counter\n" in body
            assert om_families(body) == om_families(openmetrics.generate_latest(registry))
        text = await client.get("/metrics", headers={"Accept": "text/plain",
                                                     "Accept-Encoding": "identity"})
        assert text.headers["Content-Type"] == CONTENT_TYPE_PLAIN_0_0_4
        body = await text.read()
        assert b"# EOF" not in body
        assert b"# TYPE channel_credential_check_failures_total counter\n" in body


@pytest.mark.parametrize("accept", [
    None, "", "text/plain", "text/plain;version=0.0.4", "*/*", "application/json",
    "application/openmetrics-text", "application/openmetrics-text;version=1.0.0",
    "text/plain;version=1.0.0;escaping=allow-utf-8", PROMETHEUS_ACCEPT,
])
def test_negotiation_is_prometheus_clients(accept):
    from prometheus_client.exposition import choose_encoder
    assert negotiate(accept).content_type == choose_encoder(accept or "")[1]


@pytest.mark.parametrize(("header", "gzip_ok"), [
    ("gzip", True), ("deflate, gzip;q=1.0, *;q=0.5", True), ("GZIP", True), ("*", True),
    ("", False), ("identity", False), ("gzip;q=0", False), ("br, deflate", False),
])
def test_accept_encoding(header, gzip_ok):
    assert accepts_gzip(header) is gzip_ok


async def test_expiry_bookkeeping_stays_bounded_however_often_an_account_changes(world):
    service, clock, exposition = world
    account = service.find_account("fake", "acct005")
    exposition.render()
    for _ in range(300):  # a new access token at every check
        clock.now += 1
        FakeChannel.script["acct005"] = rich(clock, 5)
        await service.scheduler.check_now(account)
        exposition.refresh()
    cache = next(iter(exposition._caches.values()))
    assert len(cache.expiries) <= 2 * len(cache.expiry_of) + 64
    assert_same(service, exposition)


@pytest.mark.parametrize("length", [0, 1, 7, 4096, 100_003])
@pytest.mark.parametrize("implementation", ["crc32_combine", "_crc32_combine_python"])
def test_crc32_combine_is_the_crc_of_the_concatenation(length, implementation):
    """zlib's own (loaded from the shared library where there is one) and the Python port."""
    from agent.metrics import gzipstream

    crc32_combine = getattr(gzipstream, implementation)
    first, second = bytes(range(256)) * 3, bytes((i * 7) % 251 for i in range(length))
    assert crc32_combine(zlib.crc32(first), zlib.crc32(second), len(second)) == (
        zlib.crc32(first + second))


@pytest.mark.parametrize(("label_names", "without_region", "line"), [
    (["channel", "account"], False, 'm{account="a1",channel="ads"} '),
    (["channel", "region"], True, 'm{channel="ads"} '),  # one label left: the right one
    (["region", "channel"], True, 'm{channel="ads"} '),
    (["channel"], False, 'm{channel="ads"} '),
    (["region"], True, "m{} "),
])
def test_a_prefix_picks_the_values_of_its_own_labels(label_names, without_region, line):
    fmt, pick = samplelines.prefix_format("m", label_names, without_region)
    values = {"channel": "ads", "account": "a1", "region": "eu"}
    assert fmt % pick(tuple(values[n] for n in label_names)) == line


async def test_a_scraper_that_leaves_mid_body_is_no_error(world, caplog):
    """A scrape timeout closes the connection while the body is being written: nothing is
    wrong with the agent, so nothing is logged as an error (aiohttp logged a traceback)."""
    service, _, _ = world
    app = make_app(service)
    piece = b"# " + b"x" * (1 << 20) + b"\n"
    sent = []

    def huge(fmt):  # far more than the sockets' buffers hold: a write meets the reset
        def parts():
            for _ in range(256):
                sent.append(1)
                yield piece
        return 256 * len(piece), parts()

    runner = web.AppRunner(app, access_log=None)  # as channel-agent run serves it
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        app[EXPOSITION].render_parts = huge
        port = runner.addresses[0][1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n")
        await reader.readexactly(4096)
        sock = writer.get_extra_info("socket")  # a reset, as a scraper's timeout may do
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        async with asyncio.timeout(10):  # until the server has let the connection go
            while runner.server.connections:
                await asyncio.sleep(0.01)
    finally:
        await runner.cleanup()
    assert 0 < len(sent) < 256  # the body was cut short
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
