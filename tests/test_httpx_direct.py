"""ChannelClient's one-step requests and responses are the objects httpx itself builds."""

from __future__ import annotations

import gzip
import os
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.channel import MissingSecret, Secret, SecretRef
from agent.checks import httpx_direct
from agent.checks.transport import ChannelClient
from agent.secret import fingerprint

URL = httpx.URL("https://api.example.com:8443/v2/profiles")
TOKEN_URL = httpx.URL("https://api.example.com/auth/o2/token")


def own(client: httpx.AsyncClient, *args, **kwargs) -> httpx.Request:
    """What httpx's own ``build_request`` builds for this client."""
    return httpx.AsyncClient.build_request(client, *args, **kwargs)


def same_request(ours: httpx.Request, theirs: httpx.Request) -> None:
    assert ours.headers.raw == theirs.headers.raw
    assert (ours.method, ours.url, ours.content, ours.extensions) == (
        theirs.method, theirs.url, theirs.content, theirs.extensions)
    assert type(ours.stream) is type(theirs.stream)
    assert b"".join(ours.stream) == b"".join(theirs.stream)
    assert vars(ours).keys() == vars(theirs).keys()


CASES = [
    ("GET", URL, {}),
    ("get", URL, {"headers": {"Authorization": "Bearer x", "Accept": "application/json"}}),
    ("POST", TOKEN_URL, {"content": b"grant_type=refresh_token&x=%7C",
                         "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),
    ("POST", TOKEN_URL, {}),  # no body: Content-Length 0 first, as httpx puts it
    ("POST", TOKEN_URL, {"content": b""}),
    ("PUT", URL, {"content": b"{}", "headers": {"user-agent": "other", "X-A": "1"}}),
    ("DELETE", URL, {"timeout": 3.5}),
    ("GET", URL, {"extensions": {"trace": None}, "timeout": httpx.Timeout(1, read=5)}),
    ("GET", URL, {"extensions": {"timeout": {"connect": 1, "read": 1, "write": 1,
                                             "pool": 1}}}),
]


@pytest.mark.parametrize(("method", "url", "kwargs"), CASES)
async def test_the_one_step_request_is_the_request_httpx_builds(method, url, kwargs):
    async with ChannelClient(headers={"User-Agent": "agent/1", "X-Client": "c"},
                             timeout=7) as client:
        ours = client.build_request(method, url, **kwargs)
        assert "_content" in vars(ours)  # built in one step: httpx's own has it too
        same_request(ours, own(client, method, url, **kwargs))


@pytest.mark.parametrize("kwargs", [
    {"url": "https://api.example.com/v2/profiles"},  # a string: httpx parses it
    {"url": URL, "params": {"a": "1"}},
    {"url": URL, "json": {"a": 1}},
    {"url": URL, "data": {"a": "1"}},
    {"url": URL, "content": "text body"},
    {"url": URL, "headers": {"X-Raw": b"bytes"}},
    {"url": URL, "headers": [("X-Twice", "1"), ("X-Twice", "2")]},
    {"url": URL, "headers": {"Content-Length": "2"}, "content": b"{}"},
    {"url": URL, "headers": {"Host": "other.example.com"}},
    {"url": httpx.URL("/relative")},
])
async def test_other_requests_are_left_to_httpx(kwargs):
    async with ChannelClient(base_url="https://base.example.com") as client:
        same_request(client.build_request("POST", **kwargs), own(client, "POST", **kwargs))


async def test_a_non_ascii_header_fails_as_in_httpx():
    async with ChannelClient() as client:
        with pytest.raises(UnicodeEncodeError):
            own(client, "GET", URL, headers={"X-Name": "café"})
        with pytest.raises(UnicodeEncodeError):
            client.build_request("GET", URL, headers={"X-Name": "café"})


async def test_client_params_and_headers_set_later_are_honoured():
    async with ChannelClient() as client:
        client.params = {"k": "v"}
        client.headers["X-Later"] = "yes"
        request = client.build_request("GET", URL)
        same_request(request, own(client, "GET", URL))
        assert request.url.params["k"] == "v" and request.headers["X-Later"] == "yes"


REQUEST = httpx.Request("GET", URL)


def canned(content: bytes, headers: list[tuple[bytes, bytes]]) -> httpx.Response:
    return httpx.Response(200, headers=httpx_direct.response_headers(headers),
                          stream=httpx_direct.ReceivedBody(content), request=REQUEST)


async def test_a_body_received_whole_is_read_as_aread_leaves_it():
    raw = [(b"Content-Type", b"application/json; charset=utf-8"), (b"X-Answer", b"42")]
    ours = canned(b'{"ok": true}', raw)
    assert httpx_direct.read_in_memory(ours)
    theirs = httpx.Response(200, headers=raw, stream=httpx.ByteStream(b'{"ok": true}'),
                            request=REQUEST)
    await theirs.aread()
    cached = ("stream", "_decoder")  # the decoder httpx used and keeps
    assert {k: v for k, v in vars(ours).items() if k not in cached} == {
        k: v for k, v in vars(theirs).items() if k not in cached}
    assert ours.headers.raw == theirs.headers.raw and ours.headers["x-answer"] == "42"
    assert (ours.json(), ours.text, ours.encoding) == (theirs.json(), theirs.text, "utf-8")


async def test_an_encoded_body_goes_through_httpxs_decoder():
    ours = canned(gzip.compress(b'{"ok": true}'), [(b"Content-Encoding", b"gzip")])
    assert not httpx_direct.read_in_memory(ours)
    assert await ours.aread() == b'{"ok": true}'
    assert not httpx_direct.read_in_memory(
        httpx.Response(200, stream=httpx.ByteStream(b"x")))  # another transport's stream


@given(st.dictionaries(st.text(), st.text(), max_size=4))
def test_form_body_is_urlencode(form):
    assert httpx_direct.form_body(form) == urlencode(form).encode()


def test_form_body_of_a_token_request():
    form = {"grant_type": "refresh_token", "refresh_token": "Atzr|IwE/B+x=y&z é",
            "client_id": "amzn1.application-oa2-client.1", "client_secret": "s3 cr~t"}
    assert httpx_direct.form_body(form) == urlencode(form).encode()
    assert b"refresh_token=Atzr%7CIwE%2FB%2Bx%3Dy%26z+%C3%A9" in httpx_direct.form_body(form)


def test_a_secret_file_is_read_with_the_same_errors(tmp_path):
    token = tmp_path / "token"
    token.write_text("Atzr|abc\n")
    secret = SecretRef(path=token, source="t").read()
    assert secret.reveal() == "Atzr|abc"
    assert secret.fingerprint() == secret.fingerprint() == fingerprint("Atzr|abc")
    token.chmod(0)
    if os.geteuid() != 0:  # root reads anything
        with pytest.raises(MissingSecret, match="cannot read file .*: Permission denied"):
            SecretRef(path=token, source="t").read()
    with pytest.raises(MissingSecret, match="does not exist"):
        SecretRef(path=token / "below-a-file", source="t").read()
    with pytest.raises(MissingSecret, match="does not exist"):
        SecretRef(path=tmp_path / "missing", source="t").read()
    exactly = tmp_path / "exactly"
    exactly.write_bytes(b"y" * 64 * 1024)
    assert len(SecretRef(path=exactly, source="t").read().reveal()) == 64 * 1024
    assert secret == Secret("Atzr|abc") and hash(secret) == hash(Secret("Atzr|abc"))

