"""Host header check of `interp ui`: a defence against DNS rebinding.

A page on evil.example can make its name resolve to 127.0.0.1 and then read this server's pages
as same-origin; the browser still sends `Host: evil.example`, so answering only to the names the
server is really reached by closes that hole. Those are the loopback names and the host given
to `interp ui --host`. A wildcard bind (0.0.0.0, ::) also accepts any IP literal and this
machine's hostname: a rebinding page always sends its own domain name, never an address.
"""
from __future__ import annotations

import ipaddress
import logging
import socket

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARDS = frozenset({"", "0.0.0.0", "::"})
REFUSAL = ("421 Misdirected Request: this server answers only to 127.0.0.1, localhost, [::1] and "
           "the host given to `interp ui --host`; open it under one of those, or start it with "
           "`interp ui --host NAME` to serve under another name\n")


def host_name(header: str) -> str:
    """The lower-case host of a Host header, without port, brackets or a trailing dot."""
    h = header.strip().lower()
    if h.startswith("["):  # [v6] or [v6]:port
        end = h.find("]")
        rest = h[end + 1:] if end > 0 else ":"
        return h[1:end] if rest == "" or (rest[:1] == ":" and rest[1:].isdigit()) else ""
    if h.count(":") == 1:
        h, _, port = h.partition(":")
        if not port.isdigit():
            return ""
    return h.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def allowed_hosts(bind_host: str) -> tuple[frozenset[str], bool]:
    """(names accepted, whether any IP literal is accepted) for a server bound to bind_host."""
    bind = host_name(bind_host)
    if bind in WILDCARDS:
        return LOOPBACK | {socket.gethostname().lower()}, True
    return LOOPBACK | {bind}, False


class HostCheck:
    """ASGI middleware answering 421 to HTTP requests whose Host is not one of this server's
    (a missing Host too: browsers always send one)."""

    def __init__(self, app: ASGIApp, bind_host: str = "127.0.0.1") -> None:
        self.app, self.bind_host = app, bind_host
        self.names, self.any_ip = allowed_hosts(bind_host)

    def accepts(self, header: str | None) -> bool:
        name = host_name(header or "")
        return bool(name) and (name in self.names or (self.any_ip and _is_ip(name)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan; the app has no websockets
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
        if self.accepts(header):
            await self.app(scope, receive, send)
            return
        log.info("refused a request for host %r: not a name of this server", header)
        # The request's Host is not echoed: under DNS rebinding the requesting page reads this.
        await PlainTextResponse(REFUSAL, status_code=421)(scope, receive, send)
