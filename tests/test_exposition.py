"""The cached /metrics renderer says exactly what generate_latest says, for the same state."""

import gzip
import math
import zlib

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from agent.channel import CheckResult
from agent.metrics.exposition import BLOCK, Exposition, float_text
from agent.plugins import load_plugins
from agent.service import AgentService
from agent.web.server import accepts_gzip, make_app
from tests.fakes import FakeChannel, FakePlugin

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def families(text: bytes) -> dict:
    """name -> (type, help, sorted samples): the content, whatever the order. The process_*
    families are left out: they read the process (CPU, memory) afresh at every render."""
    return {
        f.name: (f.type, f.documentation,
                 sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in f.samples))
        for f in text_string_to_metric_families(text.decode())
        if not f.name.startswith("process_")
    }


def assert_same(service, exposition):
    expected = families(generate_latest(service.metrics.registry))
    assert families(exposition.render()) == expected
    assert families(gzip.decompress(exposition.render_gzip())) == expected


class StalenessCollector:
    """Stands in for a collector another module registers, with a value that depends on now."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def collect(self):
        family = GaugeMetricFamily("channel_data_staleness_seconds", "Seconds since data.",
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
            'token="access"} 1234.568\n') in text  # to the millisecond


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
    assert b"channel_data_staleness_seconds{channel=\"fake\"} 42.0" in text
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
        assert plain.headers["Content-Type"] == CONTENT_TYPE_LATEST
        assert families(await plain.read()) == expected


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
