"""The one LLM seam: `generate(messages, ...) -> LLMResponse`, plus the call ledger and `redact`,
which keeps API keys out of every error string that is stored or logged."""
from __future__ import annotations

import contextlib
import functools
import random
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

REDACTED = "[REDACTED]"
# Key-shaped strings, whatever key is configured: a server may echo another one (an OpenAI-style
# "sk-..." key, a bearer token, an "api_key=..." pair) in its error body.
_KEY_SHAPES = re.compile(
    r"(?P<keep>\bbearer\s+|api[_-]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}]+"
    r"|\bsk-[A-Za-z0-9_-]{8,}", re.IGNORECASE)
_PLACEHOLDER_KEYS = {"", "unused", "EMPTY"}


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every given secret value, and anything shaped like an API key, replaced."""
    for secret in sorted({s for s in secrets if s and s not in _PLACEHOLDER_KEYS}, key=len,
                         reverse=True):
        text = text.replace(secret, REDACTED)
    return _KEY_SHAPES.sub(lambda m: (m.group("keep") or "") + REDACTED, text)


@dataclass(frozen=True)
class LLMResponse:
    """A completed generation."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    attempts: int
    # Per generated token: list of (token, logprob) alternatives, most likely first; None if absent.
    top_logprobs: list[list[tuple[str, float]]] | None = None
    # Per generated token: the token the server chose, where it says (with logprobs). Under a
    # decoding constraint it need not be the most likely alternative above.
    tokens: list[str] | None = None
    # Whether the request's JSON schema was sent as a decoding constraint (llm.structured_outputs):
    # when False the answer is free text, for the caller's text parser.
    constrained: bool = False
    # Why generation stopped, as the server says: 'stop', 'length' (cut off at max_tokens), ...
    finish_reason: str | None = None

    @property
    def truncated(self) -> bool:
        """Cut off at max_tokens: an unfinished answer (a parse failure if it does not parse)."""
        return self.finish_reason == "length"


class LLMError(RuntimeError):
    """A request that failed for good (after retries, or a non-retryable error)."""

    def __init__(self, reason: str, attempts: int):
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts

    def __reduce__(self):  # rebuilt from its fields: a shard's error crosses a process (Dask)
        return type(self), (self.reason, self.attempts)


class LLMUnavailable(RuntimeError):
    """The server could not give an answer: unreachable, timing out, overloaded (after every
    retry), or refusing the configuration (401/403/404). Never a result: the stage fails, keeps
    what succeeded, and a re-run asks again for exactly what is missing."""

    def __init__(self, reason: str, attempts: int, server: str = "", *, fatal: bool = False):
        super().__init__(f"LLM server {server or '(unnamed)'}: {reason}")
        self.reason = reason
        self.attempts = attempts
        self.server = server
        self.fatal = fatal  # a configuration error: no later request can succeed either

    def __reduce__(self):  # rebuilt from its fields: a shard's error crosses a process (Dask)
        return functools.partial(type(self), fatal=self.fatal), (self.reason, self.attempts,
                                                                 self.server)


class LLM(Protocol):
    """Anything that can answer chat messages.

    `generate` raises LLMError for a request the server answered with a final refusal of that
    request (e.g. 400: the prompt is too long: asking again gives the same), LLMUnavailable when no
    answer could be had. `aclose` releases what the client holds in the running event loop.

    `schema` (a JSON schema, interp.llm.structured) asks for an answer constrained to it where
    llm.structured_outputs resolves to on for this server: then a trailing assistant turn (an
    answer marker for free text) is dropped, the answer is the JSON alone and
    `LLMResponse.constrained` is True. Otherwise the schema is not sent, the messages go as
    they are and the caller parses free text.
    """

    model: str
    ledger: Ledger

    async def generate(self, messages: list[dict[str, str]], *, max_tokens: int,
                       temperature: float = 0.0, logprobs: int | None = None,
                       stage: str = "", latent: int | None = None,
                       schema: dict[str, Any] | None = None,
                       purpose: str | None = None) -> LLMResponse: ...

    async def structured(self) -> bool:
        """Whether a request with a schema goes constrained (else its answer is free text)."""
        ...

    async def aclose(self) -> None: ...


@dataclass
class Ledger:
    """One row per request attempt (ok, retried or failed).

    Inside `writing_to(path)` every row is appended to that JSON-lines file the moment the attempt
    ends (line-buffered: in the kernel before `record` returns), so a crash loses no finished
    call; otherwise rows collect in memory for `drain`.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    # Running totals of answered calls (for the run record and llm.max_prompt_tokens).
    totals: dict[str, int] = field(default_factory=lambda: {"calls": 0, "prompt_tokens": 0,
                                                             "completion_tokens": 0})
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sink: Any = None

    def record(self, *, call_id: str, stage: str, latent: int | None, model: str, attempt: int,
               status: str, error: str | None, prompt_tokens: int, completion_tokens: int,
               latency_s: float, purpose: str | None = None) -> None:
        row = {"call_id": call_id, "stage": stage, "purpose": purpose or stage or None,
               "latent": latent, "model": model,
               "attempt": attempt, "status": status, "error": error,
               "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
               "latency_s": round(latency_s, 4), "created_at": time.time()}
        with self._lock:
            if status == "ok":
                self.totals["calls"] += 1
                self.totals["prompt_tokens"] += prompt_tokens or 0
                self.totals["completion_tokens"] += completion_tokens or 0
            if self._sink is not None:
                self._sink.write(orjson.dumps(row).decode() + "\n")
            else:
                self.rows.append(row)

    def drain(self) -> list[dict[str, Any]]:
        with self._lock:
            rows, self.rows = self.rows, []
        return rows

    @contextlib.contextmanager
    def writing_to(self, path: Path) -> Iterator[None]:
        """Append every row recorded meanwhile to `path` (JSON lines)."""
        with open(path, "a", buffering=1) as fh, self._lock_sink(fh):
            yield

    @contextlib.contextmanager
    def _lock_sink(self, fh) -> Iterator[None]:
        with self._lock:
            previous, self._sink = self._sink, fh
        try:
            yield
        finally:
            with self._lock:
                self._sink = previous


def new_call_id() -> str:
    return f"{random.getrandbits(64):016x}"  # reseeded after fork; no syscall (uuid4: urandom)


# purpose: what the call was for: 'explain', a scorer's name, 'control:<scorer>' or
# 'probe:<scorer>', so the cost per latent of each is one GROUP BY.
LEDGER_SCHEMA_FIELDS = ("call_id", "stage", "purpose", "latent", "model", "attempt", "status",
                        "error", "prompt_tokens", "completion_tokens", "latency_s", "created_at")
