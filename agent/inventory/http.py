"""The ``http`` inventory source: GET a URL returning a JSON list of account objects.

Modelled on Prometheus ``http_sd``: a bearer token file (re-read at every request, so a
rotated token needs no reload) or basic auth, a CA file, ``If-None-Match`` with the last
``ETag`` so an unchanged list costs a 304, and a size limit. Each object holds the fields of a
row: ``channel``, ``account``, ``region``, account settings, a ``labels`` object and the
credential (``refresh_token_file``, or ``refresh_token`` itself).
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import Field

from agent import __version__
from agent.channel import MissingSecret, SecretRef
from agent.config.modelbase import ConfigModel
from agent.config.types import FilePath, Int, SecretReference, Url
from agent.hookspecs import hookimpl
from agent.inventory.source import (
    Answer,
    InventoryError,
    InventorySource,
    InventorySourceSettings,
    Row,
)

if TYPE_CHECKING:
    import aiohttp

DEFAULT_MAX_SIZE = 8 * 1024 * 1024
CHUNK = 64 * 1024


class BasicAuth(ConfigModel):
    username: str
    password: SecretReference = Field(description="or password_file; read at each request")


class HttpSettings(InventorySourceSettings):
    url: Url = Field(description="GET returns a JSON list of account objects")
    bearer_token_file: FilePath | None = Field(
        None, description="Sent as Authorization: Bearer; re-read at every request")
    basic_auth: BasicAuth | None = None
    ca_file: FilePath | None = Field(None, description="CA certificate(s) of the server")
    max_response_size: Int = Field(DEFAULT_MAX_SIZE,
                                   description="Bytes; a larger answer is refused")


class HttpInventory(InventorySource):
    type = "http"
    title = "HTTP endpoint returning a JSON list of accounts (like Prometheus http_sd)"
    Settings = HttpSettings

    def __init__(self, name: str, settings: dict[str, Any]) -> None:
        super().__init__(name, settings)
        self._url = settings["url"]
        self._basic = settings.get("basic_auth") or None
        self._bearer = settings.get("bearer_token_file")
        if self._bearer is not None and self._basic is not None:
            raise ValueError("give either bearer_token_file or basic_auth, not both")
        self._max_size = int(settings.get("max_response_size") or DEFAULT_MAX_SIZE)
        if self._max_size < 1:
            raise ValueError("max_response_size must be at least 1 byte")
        ca_file = settings.get("ca_file")
        try:
            self._ssl = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"ca_file {ca_file}: cannot load it "
                             f"({getattr(exc, 'strerror', None) or exc})") from None
        self._etag: str | None = None
        self._session: aiohttp.ClientSession | None = None

    def describe(self) -> str:
        return f"http {self._url}"

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json",
                   "User-Agent": f"channel-health-agent/{__version__}"}
        if self._etag is not None:
            headers["If-None-Match"] = self._etag
        try:
            if self._bearer is not None:
                token = SecretRef(path=self._bearer, source="bearer_token_file").read()
                headers["Authorization"] = f"Bearer {token.reveal()}"
            elif self._basic is not None:
                password = self._basic["password"].read().reveal()
                pair = f"{self._basic['username']}:{password}".encode()
                headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
        except MissingSecret as exc:
            raise InventoryError("unavailable", str(exc)) from None
        return headers

    async def fetch(self) -> list[Row] | None:
        try:
            async with asyncio.timeout(self.timeout):  # not wait_for: tests/test_stop_in_time.py
                return await self._fetch()
        except TimeoutError:
            raise InventoryError("timeout", f"no answer within {self.timeout:g}s") from None

    async def _fetch(self) -> list[Row] | None:
        # here, not at the top: every command that loads the plugins imports this module,
        # and aiohttp costs ~0.3 s of CPU to import (it makes its SSL contexts then)
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.get(self._url, headers=self._headers(), ssl=self._ssl,
                                         allow_redirects=True) as response:
                if response.status == 304 and self._etag is not None:
                    return None
                if response.status != 200:
                    raise InventoryError("unavailable", f"HTTP {response.status} from "
                                                        f"{self._url}")
                body = await self._body(response)
                etag = response.headers.get("ETag")
        except aiohttp.ClientError as exc:
            raise InventoryError("unavailable", f"cannot reach {self._url}: "
                                                f"{type(exc).__name__}") from None
        rows = self._parse(body)
        self._etag = etag  # only once the answer was usable
        return rows

    async def _body(self, response: aiohttp.ClientResponse) -> bytes:
        too_big = InventoryError("bad_response", f"the answer is larger than "
                                                 f"max_response_size ({self._max_size} bytes)")
        if (response.content_length or 0) > self._max_size:
            raise too_big
        chunks, size = [], 0
        async for chunk in response.content.iter_chunked(CHUNK):
            size += len(chunk)
            if size > self._max_size:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    def _parse(self, body: bytes) -> Answer:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            looks = "HTML" if body.lstrip()[:1] == b"<" else "not JSON"
            raise InventoryError("bad_response", f"the answer is {looks}, not a JSON list of "
                                                 f"accounts") from None
        if not isinstance(data, list):
            raise InventoryError("bad_response", f"the answer is a JSON "
                                                 f"{type(data).__name__}, not a list of accounts")
        return Answer(data, body)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@hookimpl
def register_inventory_sources(register: Callable[[type], None]) -> None:
    register(HttpInventory)
