"""The lean HTTP/1.1 transport (interp/llm/http.py) against a real local TCP server whose every
answer is scripted byte by byte: chunked bodies, `Connection: close`, HTTP/1.0, keep-alive
connections the server drops, 429 then 200, 401 echoing the key, a hung server."""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest

from interp.llm import Ledger, LLMUnavailable, OpenAICompatibleLLM
from interp.llm.base import REDACTED
from interp.llm.config import LLMConfig
from interp.llm.http import LeanHTTP, choose_transport

MSG = [{"role": "user", "content": "hi"}]


def _completion(text: str) -> bytes:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 1}}).encode()


class ScriptedServer:
    """127.0.0.1:<free port>; the n-th request (over all connections) gets script[n] (then 'ok').
    Records (connection number, action) per request."""

    def __init__(self, script: list[str], hang_s: float = 2.0):
        self.script, self.hang_s = list(script), hang_s
        self.seen: list[tuple[int, str]] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.lock = threading.Lock()
        self.conns = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with self.lock:
                self.conns += 1
                n = self.conns
            threading.Thread(target=self._serve, args=(conn, n), daemon=True).start()

    def _serve(self, conn: socket.socket, n: int) -> None:
        f = conn.makefile("rb")
        with conn, f:
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = f.readline()
                    if not line:
                        return  # the client closed the connection
                    head += line
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = json.loads(f.read(length))
                auth = head.split(b"Authorization: ")[1].split(b"\r\n")[0].decode()
                with self.lock:
                    action = self.script.pop(0) if self.script else "ok"
                    self.seen.append((n, action))
                if not self._answer(conn, action, body, auth):
                    return

    def _answer(self, conn: socket.socket, action: str, body: dict, auth: str) -> bool:
        """Send the scripted answer; False when the server then closes the connection."""
        text = body["messages"][-1]["content"]
        if action == "hangup":  # read the request, close without a byte of answer
            return False
        if action == "hang":
            time.sleep(self.hang_s)
            return False
        if action == "chunked":
            payload = _completion(text)
            chunks = [payload[:7], payload[7:20], payload[20:]]
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n"
                         + b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks)
                         + b"0\r\nX-Trailer: yes\r\n\r\n")
            return True
        if action == "http10":  # no length: the body runs to the end of the connection
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + _completion(text))
            return False
        status = {"429": b"429 Too Many Requests", "401": b"401 Unauthorized"}.get(action, b"200 OK")
        payload = (json.dumps({"error": {"message": f"Incorrect API key provided: {auth}"}}).encode()
                   if action == "401" else b'{"error": "slow down"}' if action == "429"
                   else _completion(text))
        close = action in ("close", "drop")
        conn.sendall(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
                     % (status, len(payload), b"Connection: close\r\n" if action == "close" else b"",
                        payload))
        return not close  # 'drop': keep-alive announced, then closed while idle

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()


def _llm(url: str, ledger: Ledger | None = None, **kw) -> OpenAICompatibleLLM:
    cfg = LLMConfig(**({"backend": "openai", "base_url": url, "transport": "lean",
                        "max_retries": 2, "backoff_s": 0.01, "timeout_s": 2.0} | kw))
    return OpenAICompatibleLLM(cfg, url, ledger)


def _ask(llm: OpenAICompatibleLLM, texts: list[str], pause_s: float = 0.0) -> list[str]:
    """The answers to `texts`, asked one after another in one event loop."""
    async def go():
        out = []
        try:
            for t in texts:
                out.append((await llm.generate([{"role": "user", "content": t}], max_tokens=3)).text)
                await asyncio.sleep(pause_s)
        finally:
            await llm.aclose()
        return out
    return asyncio.run(go())


@pytest.mark.parametrize("script, conns", [
    (["ok", "ok", "ok"], 1),               # keep-alive: one connection for all
    (["chunked", "chunked", "ok"], 1),     # chunked bodies with extensions and trailers
    (["close", "ok", "ok"], 2),            # Connection: close is honoured
    (["http10", "http10", "ok"], 3),       # HTTP/1.0, body up to the end of the connection
    (["drop", "ok", "ok"], 2),             # closed by the server while idle
    (["ok", "hangup", "ok"], 2),           # closed as the next request came: sent again
], ids=["keep-alive", "chunked", "connection-close", "http1.0", "dropped-idle", "dropped-on-send"])
def test_bodies_and_connection_handling(script, conns):
    with ScriptedServer(script) as srv:
        ledger = Ledger()
        answers = _ask(_llm(srv.base_url, ledger), ["a", "b", "c"], pause_s=0.05)
    assert answers == ["a", "b", "c"]
    resent = script.count("hangup")  # the server saw that request twice
    assert srv.conns == conns and [a for _, a in srv.seen] == script + ["ok"] * resent
    # a connection the server dropped is not a failed attempt: nothing to retry
    assert [r["status"] for r in ledger.drain()] == ["ok"] * 3


def test_429_is_retried_then_answered():
    with ScriptedServer(["429", "429"]) as srv:
        ledger = Ledger()
        assert _ask(_llm(srv.base_url, ledger), ["x"]) == ["x"]
    rows = ledger.drain()
    assert [r["status"] for r in rows] == ["retry", "retry", "ok"]
    assert rows[0]["error"] == "429 rate limited"


def test_401_is_fatal_and_the_key_is_redacted(monkeypatch):
    monkeypatch.setenv("INTERP_LEAN_KEY", "plain-secret-value-42")
    with ScriptedServer(["401"] * 3) as srv:
        ledger = Ledger()
        with pytest.raises(LLMUnavailable) as err:
            _ask(_llm(srv.base_url, ledger, api_key_env="INTERP_LEAN_KEY"), ["x"])
        assert len(srv.seen) == 1  # never retried
    assert err.value.fatal and "401" in err.value.reason and "Incorrect API key" in err.value.reason
    stored = [err.value.reason, str(err.value), ledger.drain()[0]["error"]]
    assert all("plain-secret-value-42" not in s and REDACTED in s for s in stored)


def test_timeout_is_retried_then_unavailable():
    with ScriptedServer(["hang", "hang"], hang_s=1.0) as srv:
        ledger = Ledger()
        t0 = time.monotonic()
        with pytest.raises(LLMUnavailable, match="timeout"):
            _ask(_llm(srv.base_url, ledger, timeout_s=0.3, max_retries=1), ["x"])
        assert time.monotonic() - t0 < 1.5  # each attempt stopped at llm.timeout_s
    assert [(r["status"], r["error"]) for r in ledger.drain()] == [("retry", "timeout"),
                                                                  ("error", "timeout")]


def test_unreachable_server_is_a_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    with pytest.raises(LLMUnavailable, match="connection: cannot connect"):
        _ask(_llm(dead, max_retries=1), ["x"])


def test_pool_keeps_at_most_its_size():
    with ScriptedServer([]) as srv:
        pool = LeanHTTP(srv.base_url, "k", 2.0, size=2)

        async def go():
            body = {"messages": MSG}
            out = await asyncio.gather(*(pool.post_json("/chat/completions", body) for _ in range(5)))
            idle = len(pool._idle)
            await pool.aclose()
            return out, idle
        out, idle = asyncio.run(go())
    assert len(out) == 5 and idle == 2 and srv.conns == 5


def test_auto_picks_lean_only_for_plain_http_without_a_proxy(monkeypatch):
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    assert choose_transport("auto", "http://127.0.0.1:8000/v1") == "lean"
    assert choose_transport("auto", "https://api.example.com/v1") == "openai"
    assert choose_transport("openai", "http://127.0.0.1:8000/v1") == "openai"
    monkeypatch.setenv("HTTP_PROXY", "http://proxy:3128")
    assert choose_transport("auto", "http://10.0.0.5:8000/v1") == "openai"
    monkeypatch.setenv("NO_PROXY", "10.0.0.5")
    assert choose_transport("auto", "http://10.0.0.5:8000/v1") == "lean"
    with pytest.raises(ValueError, match="llm.transport"):
        LLMConfig(backend="openai", base_url="https://api.example.com/v1", transport="lean")
