"""A lean HTTP/1.1 client for plain `http://` OpenAI-compatible servers (a local vLLM or llama.cpp).

The openai SDK's transport (httpx2 + httpcore2 + anyio) costs 1.2-2 ms of CPU per request; at
hundreds of requests per second that, not the server, bounds one process. This one is a
keep-alive connection pool on asyncio streams and orjson: ~0.15 ms per request (bench/llm_scale.py).
It speaks just what those servers answer: Content-Length and chunked bodies, `Connection: close`,
HTTP/1.0. TLS and proxies stay with the SDK (llm.transport, `choose_transport`).

Errors are its own small types, classified by interp.llm.openai_client exactly like the SDK's:
HTTPStatusError (status code and body), HTTPTimeout, HTTPConnectionError.
"""
from __future__ import annotations

import asyncio
import urllib.request
from urllib.parse import urlsplit

import orjson

_HEAD_END = b"\r\n\r\n"
_MAX_BODY = 256 * 1024 * 1024  # a chat completion is kilobytes: anything near this is not one


class HTTPStatusError(Exception):
    """The server answered with status >= 400; str() holds the code and the body's start, as
    the SDK's APIStatusError does (redacted by the caller before it is stored or logged)."""

    def __init__(self, status_code: int, body: bytes):
        self.status_code = status_code
        self.body = body
        super().__init__(f"Error code: {status_code} - "
                         f"{body[:1000].decode('utf-8', errors='replace')}")


class HTTPTimeout(Exception):
    """No complete response within the request's timeout."""


class HTTPConnectionError(Exception):
    """Could not connect, or the connection broke before a complete response."""


class _Stale(Exception):
    """The connection closed before any byte of an answer: the request was not handled."""


def choose_transport(setting: str, base_url: str) -> str:
    """'lean' or 'openai' for llm.transport `setting` ('auto': lean for a plain http:// URL
    that no HTTP(S)_PROXY / ALL_PROXY environment variable routes through a proxy)."""
    if setting != "auto":
        return setting
    url = urlsplit(base_url)
    if url.scheme != "http":
        return "openai"
    proxies = urllib.request.getproxies_environment()
    if ("http" in proxies or "all" in proxies) and not urllib.request.proxy_bypass_environment(
            url.netloc, proxies):
        return "openai"
    return "lean"


class LeanHTTP:
    """POSTs JSON to one http:// server over a pool of at most `size` idle keep-alive
    connections. Connections in use are bounded by the caller (its semaphore of llm.concurrency),
    so the pool never holds more than that. Bound to the event loop that uses it."""

    def __init__(self, base_url: str, api_key: str, timeout_s: float, size: int):
        url = urlsplit(base_url)
        if url.scheme != "http":
            raise ValueError(f"llm.transport 'lean' speaks plain http://, not {base_url!r}: "
                             "set llm.transport to 'openai' or 'auto'")
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.prefix = url.path.rstrip("/")
        self.timeout_s, self.size = timeout_s, size
        host = url.netloc.rpartition("@")[2]  # never user:password@ in a header
        self._headers = (f"Host: {host}\r\nUser-Agent: interp\r\nAccept: application/json\r\n"
                         f"Content-Type: application/json\r\nAuthorization: Bearer {api_key}\r\n"
                         ).encode("latin-1")
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post_json(self, path: str, body: dict) -> bytes:
        """The body of a 2xx answer to POSTing `body` as JSON to base_url + path; raises
        HTTPStatusError, HTTPTimeout or HTTPConnectionError."""
        data = orjson.dumps(body)
        head = b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n" % (
            (self.prefix + path).encode(), self._headers, len(data))
        try:
            async with asyncio.timeout(self.timeout_s):
                status, payload = await self._exchange(head + data)
        except TimeoutError:
            raise HTTPTimeout(f"no response within {self.timeout_s:g} s (llm.timeout_s)") from None
        if status >= 400:
            raise HTTPStatusError(status, payload)
        return payload

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        # A reused connection may have been closed by the server while idle (uvicorn drops idle
        # ones after 5 s, llama.cpp too): when it breaks before any byte of an answer came, the
        # request goes again on the next one (as httpx and urllib3 do). A new connection's
        # failure is final for this attempt (the caller's retry policy decides).
        while self._idle:
            conn = self._idle.pop()
            if conn[0].at_eof() or conn[1].is_closing():
                conn[1].close()
                continue
            try:
                return await self._on(conn, request)
            except _Stale:
                continue
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as err:
                raise HTTPConnectionError(f"connection broken: {err!r}") from err
        try:
            conn = await asyncio.open_connection(self.host, self.port)
        except OSError as err:
            raise HTTPConnectionError(f"cannot connect to {self.host}:{self.port}: {err}") from err
        try:
            return await self._on(conn, request)
        except _Stale as err:
            raise HTTPConnectionError(f"connection closed without an answer: "
                                      f"{err.__cause__!r}") from err
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as err:
            raise HTTPConnectionError(f"connection broken: {err!r}") from err

    async def _on(self, conn, request: bytes) -> tuple[int, bytes]:
        """One request/response on `conn`, which goes back to the pool if it can be reused; any
        exception (timeout and cancellation included) closes it."""
        reader, writer = conn
        keep = False
        try:
            writer.write(request)
            try:
                head = await reader.readuntil(_HEAD_END)
            except asyncio.IncompleteReadError as err:
                if err.partial:
                    raise
                raise _Stale from err
            except (ConnectionResetError, BrokenPipeError) as err:
                raise _Stale from err
            status, payload, keep = await _read_response(reader, head)
            return status, payload
        finally:
            if keep and len(self._idle) < self.size:
                self._idle.append(conn)
            else:
                writer.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()
        for _, writer in idle:
            try:
                await writer.wait_closed()
            except OSError:
                pass  # the server had dropped it already


async def _read_response(reader: asyncio.StreamReader, head: bytes) -> tuple[int, bytes, bool]:
    """(status, body, whether the connection may be reused) of the HTTP/1.x response whose
    head (status line and headers) was read."""
    while True:
        lines = head[:-4].split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        status = int(rest[:3])
        if status >= 200:
            break
        head = await reader.readuntil(_HEAD_END)  # 1xx interim answers come before the real one
    length, chunked, close = None, False, version != b"HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            value = value.strip().lower()
            close = value == b"close" or (close and value != b"keep-alive")
    if status in (204, 304):
        body = b""
    elif chunked:
        body = await _read_chunked(reader)
    elif length is not None:
        if length > _MAX_BODY:
            raise HTTPConnectionError(f"response body of {length} bytes: not a chat completion")
        body = await reader.readexactly(length)
    else:  # no length: the body runs to the end of the connection
        body, close = await reader.read(), True
    return status, body, not close


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts, total = [], 0
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailer fields, if any
            return b"".join(parts)
        total += size
        if total > _MAX_BODY:
            raise HTTPConnectionError(f"chunked body over {_MAX_BODY} bytes: not a chat completion")
        parts.append((await reader.readexactly(size + 2))[:-2])
