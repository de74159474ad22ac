"""httpx's request and response objects, built in one step for the requests checks make.

``AsyncClient.build_request`` builds four ``Headers`` objects per request (the client's copy,
the merge, the ``Request``'s copy, and its copy with ``Host`` added), and reading a response
goes through ``aiter_bytes``, ``aiter_raw`` and a decoder even when the body is already in
memory and not encoded. For the common case (an absolute ``httpx.URL``, a dict of ASCII
headers, a ``bytes`` body or none) :func:`build_request` makes the same ``httpx.Request``
directly, and :func:`read_in_memory` gives a response its body in one step.
:func:`form_body` is ``urlencode(form).encode()`` for token requests: ``quote_plus`` loops
over every byte of a value that has one character to escape (a refresh token's ``|``).
``tests/test_httpx_direct.py`` compares both with httpx's own results, so an httpx release
that changes what these build is caught.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import httpx

# Headers httpx itself sets from the URL and the body: a request naming them goes the long way.
_DERIVED = frozenset({b"host", b"content-length", b"transfer-encoding"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# what urllib.parse.quote_plus escapes: all but letters, digits, "_.-~" (space becomes "+")
_ESCAPED = re.compile(rb"[^A-Za-z0-9_.~ -]")


def _escape(match: re.Match[bytes]) -> bytes:
    return b"%%%02X" % match.group()[0]


def form_body(form: dict[str, str]) -> bytes:
    """``urllib.parse.urlencode(form).encode()``, for a dict of strings."""
    return b"&".join(
        _ESCAPED.sub(_escape, key.encode()).replace(b" ", b"+") + b"="
        + _ESCAPED.sub(_escape, value.encode()).replace(b" ", b"+")
        for key, value in form.items())


def build_request(client: httpx.AsyncClient, method: str, url: Any, content: Any,
                  headers: Any, extensions: Any) -> httpx.Request | None:
    """The request ``client.build_request`` would build, or None when this is not the common
    case (the caller then lets httpx build it)."""
    if (type(url) is not httpx.URL or not url.is_absolute_url or client.params
            or (content is not None and type(content) is not bytes)):
        return None
    own: list[tuple[bytes, bytes, bytes]] = []
    if headers:
        if type(headers) is not dict:
            return None
        try:
            for key, value in headers.items():
                raw = key.encode("ascii")
                own.append((raw, raw.lower(), value.encode("ascii")))
        except (AttributeError, UnicodeEncodeError):  # bytes, or not ASCII: httpx decides
            return None
    replaced = {lower for _, lower, _ in own}
    if replaced & _DERIVED:
        return None
    merged = [item for item in client.headers._list if item[1] not in replaced]
    merged += own
    method = method.upper()
    prefix = [(b"Host", b"host", url.netloc)]
    if content:
        merged.append((b"Content-Length", b"content-length", str(len(content)).encode()))
    elif method in _BODY_METHODS:
        prefix.append((b"Content-Length", b"content-length", b"0"))

    request = httpx.Request.__new__(httpx.Request)
    request.method = method
    request.url = url
    request.headers = _headers(prefix + merged)
    request.extensions = {} if extensions is None else dict(extensions)
    body = content or b""
    request.stream = httpx.ByteStream(body)
    request._content = body
    return request


class ReceivedBody(httpx.ByteStream):
    """A response body received whole, as a transport hands it to httpx."""

    def __init__(self, content: bytes) -> None:
        super().__init__(content)
        self.content = content


def response_headers(raw: Iterable[tuple[bytes, bytes]]) -> httpx.Headers:
    """``httpx.Headers(raw)`` for a transport's raw byte pairs, without re-checking each."""
    return _headers([(key, key.lower(), value) for key, value in raw])


def _headers(items: list[tuple[bytes, bytes, bytes]]) -> httpx.Headers:
    """``httpx.Headers`` holding ``items`` (raw name, lower-case name, value), as its
    ``__init__`` leaves them."""
    headers = httpx.Headers.__new__(httpx.Headers)
    headers._list = items
    headers._encoding = None
    return headers


def read_in_memory(response: httpx.Response) -> bool:
    """Give ``response`` the body its transport received whole (a :class:`ReceivedBody`) as
    ``aread`` would leave it: True; False when the body must go through httpx's reading (any
    other stream, or an encoded body: gzip... needs its decoder)."""
    body = response.stream
    if type(body) is not ReceivedBody:
        return False
    for _, key, _ in response.headers._list:
        if key == b"content-encoding":
            return False
    content = body.content
    response._content = content
    response._num_bytes_downloaded = len(content)
    response.is_stream_consumed = True
    response.is_closed = True
    return True

