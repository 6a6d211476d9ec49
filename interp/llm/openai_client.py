"""Async client for any OpenAI-compatible server (vLLM `vllm serve`, llama.cpp, hosted APIs).

Bounded concurrency (a semaphore), an optional requests-per-second cap, a per-request timeout, and
retries with exponential backoff and full jitter on 429, 5xx, timeouts, dropped connections,
malformed and empty responses; 4xx errors other than 429 fail at once. Every attempt goes into
the ledger.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager

import openai

from interp.config import LLMConfig
from interp.llm.base import Ledger, LLMError, LLMResponse, new_call_id, redact

log = logging.getLogger(__name__)


# Optional process-wide gate, e.g. slots of a Prefect global concurrency limit shared by
# concurrent flows; the library stays free of Prefect (the flow installs it). A client enters
# gate(llm.concurrency) once, before its first request, and gets back how many requests it may
# have in flight (<= what it asked); it leaves the gate in aclose. One reservation per client,
# not per request: a per-request acquire cost two API round trips (measured ~0.25 s under load).
RequestGate = Callable[[int], AbstractAsyncContextManager[int]]
_request_gate: RequestGate | None = None


def set_request_gate(gate: RequestGate | None) -> None:
    """Install (or remove, with None) the gate that clients created from now on enter."""
    global _request_gate
    _request_gate = gate


class Transient(Exception):
    """A failure worth retrying."""


class RateLimiter:
    """Spaces request starts at least 1/rps apart (shared by all tasks of one event loop)."""

    def __init__(self, rps: float | None):
        self.interval = 1.0 / rps if rps else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


def _classify(err: Exception, secrets: Iterable[str | None] = ()) -> tuple[bool, str]:
    """(retryable, short reason) of an exception raised by the openai client. The reason is
    stored (ledger, explanation rows) and logged, so `secrets` and key-shaped strings are
    redacted: a server may echo the API key in an error body. Redacted before truncating, so a
    key cut in half at the limit cannot slip through."""
    retry, reason = _reason(err)
    return retry, redact(reason, secrets)[:200]


def _reason(err: Exception) -> tuple[bool, str]:
    if isinstance(err, Transient):
        return True, str(err)
    if isinstance(err, openai.APITimeoutError):
        return True, "timeout"
    if isinstance(err, openai.APIConnectionError):
        return True, f"connection: {err.__cause__ or err}"
    if isinstance(err, openai.RateLimitError):
        return True, "429 rate limited"
    if isinstance(err, openai.APIStatusError):
        return err.status_code >= 500, f"{err.status_code}: {err}"
    if isinstance(err, (openai.APIResponseValidationError, ValueError, KeyError, TypeError)):
        return True, f"malformed response: {err}"
    return False, f"{type(err).__name__}: {err}"


class OpenAICompatibleLLM:
    """The LLM protocol over an OpenAI-compatible HTTP endpoint."""

    def __init__(self, cfg: LLMConfig, base_url: str, ledger: Ledger | None = None):
        self.cfg = cfg
        self.model = cfg.model
        self.ledger = ledger if ledger is not None else Ledger()
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key=cfg.api_key(),
                                          max_retries=0, timeout=cfg.timeout_s)
        self._sem: asyncio.Semaphore | None = None
        self._limiter: RateLimiter | None = None
        self._ready: asyncio.Future | None = None
        self._gate = _request_gate
        self._holder: asyncio.Task | None = None
        self._release: asyncio.Event | None = None

    async def _ensure_loop_state(self) -> None:
        # Created lazily: asyncio primitives bind to the running loop. One shared future, so
        # concurrent first requests reserve the gate once.
        if self._ready is None:
            self._ready = asyncio.ensure_future(self._setup())
        await self._ready

    async def _setup(self) -> None:
        width = self.cfg.concurrency
        if self._gate is not None:
            width = max(1, min(width, await self._reserve(self._gate, width)))
        self._sem = asyncio.Semaphore(width)
        self._limiter = RateLimiter(self.cfg.requests_per_second)

    async def _reserve(self, gate: RequestGate, width: int) -> int:
        """Enter the gate in a holder task that leaves it on aclose (anyio-based context
        managers must be exited by the task that entered them)."""
        granted: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._release = asyncio.Event()

        async def hold() -> None:
            try:
                async with gate(width) as n:
                    granted.set_result(n)
                    await self._release.wait()
            except BaseException as err:
                if not granted.done():
                    granted.set_exception(err)
                raise

        self._holder = asyncio.create_task(hold())
        return await granted

    def _prefill(self, messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], str, dict]:
        """Split off a trailing assistant turn that the answer should continue."""
        if not messages or messages[-1]["role"] != "assistant":
            return messages, "", {}
        prefill = messages[-1]["content"]
        mode = self.cfg.assistant_prefill
        if mode == "off":
            return messages[:-1], "", {}
        if mode == "vllm":
            return messages, prefill, {"extra_body": {"continue_final_message": True,
                                                      "add_generation_prompt": False}}
        return messages, prefill, {}

    async def _once(self, messages, max_tokens, temperature, logprobs) -> LLMResponse:
        messages, prefill, kwargs = self._prefill(messages)
        if logprobs:
            kwargs.update(logprobs=True, top_logprobs=logprobs)
        r = await self._client.chat.completions.create(
            model=self.model, messages=messages, max_tokens=max_tokens,
            temperature=temperature, **kwargs)
        if not r.choices or r.choices[0].message is None:
            raise Transient("empty response: no choices")
        text = r.choices[0].message.content
        if not text or not text.strip():
            raise Transient("empty response: no content")
        if prefill and not text.lstrip().startswith(prefill.strip()):
            text = prefill + text  # some servers return only the continuation
        top = None
        lp = getattr(r.choices[0], "logprobs", None)
        if logprobs and lp is not None and lp.content:
            top = [[(t.token, t.logprob) for t in (c.top_logprobs or [])] or [(c.token, c.logprob)]
                   for c in lp.content]
        usage = r.usage
        return LLMResponse(text=text, prompt_tokens=usage.prompt_tokens if usage else 0,
                           completion_tokens=usage.completion_tokens if usage else 0,
                           latency_s=0.0, attempts=0, top_logprobs=top)

    async def generate(self, messages, *, max_tokens, temperature=0.0, logprobs=None,
                       stage="", latent=None) -> LLMResponse:
        await self._ensure_loop_state()
        call_id = new_call_id()
        attempts = self.cfg.max_retries + 1
        for attempt in range(1, attempts + 1):
            async with self._sem:
                await self._limiter.wait()
                t0 = time.monotonic()
                try:
                    r = await self._once(messages, max_tokens, temperature, logprobs)
                except Exception as err:  # noqa: BLE001 - classified below, never swallowed
                    retry, reason = _classify(err, [self._client.api_key])
                    latency = time.monotonic() - t0
                    final = not retry or attempt == attempts
                    self.ledger.record(call_id=call_id, stage=stage, latent=latent, model=self.model,
                                       attempt=attempt, status="error" if final else "retry",
                                       error=reason, prompt_tokens=0, completion_tokens=0,
                                       latency_s=latency)
                    if final:
                        raise LLMError(reason, attempt) from err
                    log.debug("retrying %s (attempt %d): %s", call_id, attempt, reason)
                else:
                    latency = time.monotonic() - t0
                    self.ledger.record(call_id=call_id, stage=stage, latent=latent, model=self.model,
                                       attempt=attempt, status="ok", error=None,
                                       prompt_tokens=r.prompt_tokens,
                                       completion_tokens=r.completion_tokens, latency_s=latency)
                    return LLMResponse(r.text, r.prompt_tokens, r.completion_tokens, latency,
                                       attempt, r.top_logprobs)
            # Backoff outside the semaphore so waiting does not hold a slot.
            await asyncio.sleep(random.uniform(0, self.cfg.backoff_s * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        if self._holder is not None:
            holder, self._holder = self._holder, None
            self._release.set()
            await holder
        await self._client.close()
