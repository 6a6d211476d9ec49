"""The one LLM seam: `generate(messages, ...) -> LLMResponse`, plus the call ledger and `redact`,
which keeps API keys out of every error string that is stored or logged."""
from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

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


class LLMError(RuntimeError):
    """A request that failed for good (after retries, or a non-retryable error)."""

    def __init__(self, reason: str, attempts: int):
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


class LLM(Protocol):
    """Anything that can answer chat messages."""

    model: str

    async def generate(self, messages: list[dict[str, str]], *, max_tokens: int,
                       temperature: float = 0.0, logprobs: int | None = None,
                       stage: str = "", latent: int | None = None) -> LLMResponse: ...


@dataclass
class Ledger:
    """One row per request attempt (ok, retried or failed), drained into part files by stages."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, *, call_id: str, stage: str, latent: int | None, model: str, attempt: int,
               status: str, error: str | None, prompt_tokens: int, completion_tokens: int,
               latency_s: float) -> None:
        with self._lock:
            self.rows.append({
                "call_id": call_id, "stage": stage, "latent": latent, "model": model,
                "attempt": attempt, "status": status, "error": error,
                "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "latency_s": round(latency_s, 4), "created_at": time.time()})

    def drain(self) -> list[dict[str, Any]]:
        with self._lock:
            rows, self.rows = self.rows, []
        return rows


def new_call_id() -> str:
    return uuid.uuid4().hex[:16]


LEDGER_SCHEMA_FIELDS = ("call_id", "stage", "latent", "model", "attempt", "status", "error",
                        "prompt_tokens", "completion_tokens", "latency_s", "created_at")
