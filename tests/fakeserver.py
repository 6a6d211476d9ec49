"""A real local HTTP server speaking the OpenAI chat-completions protocol, with scripted answers
and injectable faults (429, 500, timeouts, malformed JSON, empty answers). For unit tests of the
LLM layer and stages; the end-to-end test uses the real embedded llama.cpp server instead."""
from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# An answer is the completion text, or (text, top log-probs per token as [(token, logprob), ...]).
Answer = Callable[[list[dict]], "str | tuple[str, list[list[tuple[str, float]]]]"]
FAULTS = ("429", "500", "timeout", "malformed", "empty")


class FakeLLMServer:
    """Serves on 127.0.0.1:<free port> (or `port`); `answer(messages)` produces the text of ok
    responses.

    It ignores `response_format` (as a server without structured outputs does) unless
    `constrained(schema)` is given: then that answers every request carrying a JSON schema.
    """

    def __init__(self, answer: Answer, fault_rate: float = 0.0, faults=FAULTS, seed: int = 0,
                 hang_s: float = 2.0, script: list[str] | None = None,
                 constrained: Callable[[dict], str] | None = None, finish_reason: str = "stop",
                 port: int = 0):
        self.answer, self.fault_rate, self.faults = answer, fault_rate, faults
        self.constrained, self.finish_reason = constrained, finish_reason
        self.rng = random.Random(seed)
        self.hang_s = hang_s
        self.script = list(script or [])  # forced outcomes for the first requests
        self.models: list[str] = []        # listed by GET /v1/models (empty: no check)
        self.requests: list[str] = []
        self.bodies: list[dict] = []       # every POSTed request body, in order
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output quiet
                pass

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):  # the client's start-up probe
                    payload = json.dumps({"object": "list", "data": [
                        {"id": m, "object": "model"} for m in server.models]}).encode()
                    return server._send(self, 200, payload)
                server._send(self, 404, b'{"error": {"message": "not found"}}')

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    outcome = server.script.pop(0) if server.script else (
                        server.rng.choice(server.faults) if server.rng.random() < server.fault_rate else "ok")
                    server.requests.append(outcome)
                    server.bodies.append(body)
                server._respond(self, outcome, body)

        # port: a fixed one, for a server that replaces a killed one at the same URL
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def _respond(self, h: BaseHTTPRequestHandler, outcome: str, body: dict) -> None:
        if outcome == "timeout":
            time.sleep(self.hang_s)
            outcome = "500"
        if outcome in ("401", "echo500"):  # a careless server echoing the credentials it got
            auth = h.headers.get("Authorization", "")
            payload = json.dumps({"error": {"message": f"Incorrect API key provided: {auth} "
                                            f"(api_key={auth.removeprefix('Bearer ')})"}}).encode()
            return self._send(h, 401 if outcome == "401" else 500, payload)
        if outcome in ("429", "500", "400", "403", "404"):
            payload = json.dumps({"error": {"message": f"injected {outcome}"}}).encode()
            return self._send(h, int(outcome), payload)
        if outcome == "malformed":
            return self._send(h, 200, b'{"id": "x", "choices": [{"mess')
        schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema")
        if outcome == "empty":
            answer = ""
        elif schema is not None and self.constrained is not None:
            answer = self.constrained(schema)
        else:
            answer = self.answer(body["messages"])
        text, top = answer if isinstance(answer, tuple) else (answer, None)
        choice = {"index": 0, "finish_reason": self.finish_reason,
                  "message": {"role": "assistant", "content": text}}
        if top is not None and body.get("logprobs"):
            choice["logprobs"] = {"content": [
                {"token": alts[0][0], "logprob": alts[0][1], "bytes": None,
                 "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in alts]}
                for alts in top]}
        payload = {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                   "choices": [choice],
                   "usage": {"prompt_tokens": sum(len(m["content"].split()) for m in body["messages"]),
                             "completion_tokens": len(text.split()),
                             "total_tokens": 0}}
        self._send(h, 200, json.dumps(payload).encode())

    @staticmethod
    def _send(h, code: int, payload: bytes) -> None:
        try:
            h.send_response(code)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): fine

    def __enter__(self) -> FakeLLMServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
