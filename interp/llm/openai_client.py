"""Async client for any OpenAI-compatible server (vLLM `vllm serve`, llama.cpp, hosted APIs).

Bounded concurrency (a semaphore), an optional requests-per-second cap, a per-request timeout, and
retries with exponential backoff and full jitter on 429, 5xx, timeouts, dropped connections,
malformed and empty responses; 4xx errors other than 429 fail at once. Every attempt goes into
the ledger.

A request with a JSON schema goes constrained (OpenAI's `response_format: json_schema`, which
llama.cpp's server and vLLM's take too) when llm.structured_outputs resolves to on; with 'auto'
against an arbitrary server, one probe request on first use decides (`_probe`).

What a final failure means decides whether it may ever be a result: an empty answer after every
retry, or a 400/413/422 refusing this one request, is the model's (LLMError, recorded per latent);
a server that is unreachable, times out, is overloaded, or answers 401/403/404 gave no answer
(LLMUnavailable: the stage fails and a re-run asks again).

The client is not bound to one event loop: its connection pool and semaphore are made in the
loop that first uses them and again in a later loop (explain and score run one loop each), and
`aclose` releases the running loop's.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Iterable

import openai
import orjson

try:  # the HTTP library the openai client is built on (httpx2 in openai 3.x, httpx before)
    from httpx2 import Response as _HTTP_RESPONSE
except ImportError:  # pragma: no cover - older openai
    from httpx import Response as _HTTP_RESPONSE

from interp.llm.base import Ledger, LLMError, LLMResponse, LLMUnavailable, new_call_id, redact
from interp.llm.config import LLMConfig
from interp.llm.http import HTTPConnectionError, HTTPStatusError, HTTPTimeout, LeanHTTP, choose_transport
from interp.llm.structured import PROBE_MESSAGES, PROBE_SCHEMA, AnswerError, max_tokens_for, parse_json

log = logging.getLogger(__name__)


class Transient(Exception):
    """A failure worth retrying."""


class EmptyAnswer(Transient):
    """The server answered with no content: retried, and final if it persists (a model can
    really answer nothing, and will again at temperature 0)."""

# Status codes that mean the configuration is wrong (key, permissions, URL or model name):
# no retry helps and no request can succeed, so the stage stops at once.
CONFIG_ERRORS = {401: "the API key was refused (check llm.api_key_env)",
                 403: "access denied (check llm.api_key_env and the server's permissions)",
                 404: "not found (check llm.base_url and llm.model)"}


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


def _classify(err: Exception, secrets: Iterable[str | None] = ()) -> tuple[str, str]:
    """(kind, short reason) of an exception raised by a request; kind is 'retry' (worth another
    attempt), 'config' (no request can succeed) or 'final' (this request cannot). The reason is
    stored (ledger, explanation rows) and logged, so `secrets` and key-shaped strings are
    redacted: a server may echo the API key in an error body. Redacted before truncating, so a
    key cut in half at the limit cannot slip through."""
    kind, reason = _reason(err)
    return kind, redact(reason, secrets)[:200]


def _reason(err: Exception) -> tuple[str, str]:
    if isinstance(err, Transient):
        return "retry", str(err)
    # The SDK's exceptions (llm.transport openai) and the lean transport's, alike.
    if isinstance(err, (openai.APITimeoutError, HTTPTimeout)):
        return "retry", "timeout"
    if isinstance(err, openai.APIConnectionError):
        return "retry", f"connection: {err.__cause__ or err}"
    if isinstance(err, HTTPConnectionError):
        return "retry", f"connection: {err}"
    if isinstance(err, (openai.APIStatusError, HTTPStatusError)):
        code = err.status_code
        if code == 429:
            return "retry", "429 rate limited"
        if code in CONFIG_ERRORS:
            return "config", f"{code}: {CONFIG_ERRORS[code]}: {err}"
        return ("retry" if code >= 500 else "final"), f"{code}: {err}"
    if isinstance(err, (openai.APIResponseValidationError, ValueError, KeyError, TypeError)):
        return "retry", f"malformed response: {err}"
    return "final", f"{type(err).__name__}: {err}"


def response_format(schema: dict) -> dict:
    """The chat-completions `response_format` that constrains an answer to `schema`. OpenAI's
    form; llama.cpp's server reads json_schema.schema, vLLM's maps it to its structured outputs;
    `strict` is OpenAI's switch from best effort to constrained (the others ignore it)."""
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema,
                                                   "strict": True}}


def compact_grammar(schema: dict) -> str:
    """The embedded llama.cpp server's constraint for `schema`: llguidance's JSON grammar (the
    xllamacpp wheel is built with llguidance) with no whitespace between tokens. Through
    `response_format` that server lets the model indent: SmolLM2 wrote 110 tokens for the 10
    labels that take 55 as `{"labels":{"59":1,...}}`, and decoding is most of a judge call's
    time on a CPU. Same JSON value either way, parsed the same."""
    compact = {**schema, "x-guidance": {"whitespace_flexible": False, "item_separator": ",",
                                        "key_separator": ":"}}
    return "%llguidance {}\nstart: %json " + orjson.dumps(compact).decode()


def _parse(r: dict, prefill: str, want_logprobs: bool) -> LLMResponse:
    """An OpenAI chat-completion JSON body as an LLMResponse (KeyError/TypeError if malformed)."""
    choices = r["choices"]
    if not choices or not choices[0].get("message"):
        raise EmptyAnswer("empty response: no choices")
    text = choices[0]["message"].get("content")
    if not text or not text.strip():
        raise EmptyAnswer("empty response: no content")
    if prefill and not text.lstrip().startswith(prefill.strip()):
        text = prefill + text  # some servers return only the continuation
    top = tokens = None
    content = (choices[0].get("logprobs") or {}).get("content") if want_logprobs else None
    if content:
        top = [[(t["token"], t["logprob"]) for t in (c.get("top_logprobs") or [])]
               or [(c["token"], c["logprob"])] for c in content]
        tokens = [c["token"] for c in content]
    usage = r.get("usage") or {}
    return LLMResponse(text=text, prompt_tokens=usage.get("prompt_tokens") or 0,
                       completion_tokens=usage.get("completion_tokens") or 0,
                       latency_s=0.0, attempts=0, top_logprobs=top, tokens=tokens,
                       finish_reason=choices[0].get("finish_reason"))


class OpenAICompatibleLLM:
    """The LLM protocol over an OpenAI-compatible HTTP endpoint.

    `width` is how many requests it keeps in flight (llm.concurrency, or the shared slots it got).
    `constrains`: whether a request's schema is sent (None: probe on the first request with one).
    """

    def __init__(self, cfg: LLMConfig, base_url: str, ledger: Ledger | None = None, *,
                 width: int | None = None):
        self.cfg = cfg
        self.model = cfg.model
        self.base_url = base_url
        self.ledger = ledger if ledger is not None else Ledger()
        self.width = width or cfg.concurrency
        self._api_key = cfg.api_key()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.transport = choose_transport(cfg.transport, base_url)
        self._client: openai.AsyncOpenAI | LeanHTTP | None = None
        self._sem: asyncio.Semaphore | None = None
        self._limiter: RateLimiter | None = None
        self.constrains: bool | None = cfg.constrains()
        self._probing: asyncio.Lock | None = None

    def _bind(self) -> None:
        """Loop-bound state for the running loop (made again when the loop changes)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            if self.transport == "lean":
                self._client = LeanHTTP(self.base_url, self._api_key, self.cfg.timeout_s,
                                        self.width)
            else:
                self._client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key,
                                                  max_retries=0, timeout=self.cfg.timeout_s)
            self._sem = asyncio.Semaphore(self.width)
            self._limiter = RateLimiter(self.cfg.requests_per_second)
            self._probing = asyncio.Lock()

    def _prefill(self, messages: list[dict[str, str]], constrained: bool
                 ) -> tuple[list[dict[str, str]], str, dict]:
        """Split off a trailing assistant turn that the answer should continue. A constrained
        answer is the JSON alone: the turn (a free-text answer marker) is dropped; llama.cpp
        refuses a grammar after one anyway (400 'Failed to initialize samplers')."""
        if not messages or messages[-1]["role"] != "assistant":
            return messages, "", {}
        prefill = messages[-1]["content"]
        mode = self.cfg.assistant_prefill
        if mode == "off" or constrained:
            return messages[:-1], "", {}
        if mode == "vllm":
            return messages, prefill, {"continue_final_message": True, "add_generation_prompt": False}
        return messages, prefill, {}

    async def _once(self, messages, max_tokens, temperature, logprobs, schema) -> LLMResponse:
        messages, prefill, body = self._prefill(messages, schema is not None)
        body.update(model=self.model, messages=messages, max_tokens=max_tokens,
                    temperature=temperature)
        if logprobs:
            body.update(logprobs=True, top_logprobs=logprobs)
        if schema is not None and self.cfg.backend == "embedded":
            body["grammar"] = compact_grammar(schema)
        elif schema is not None:
            body["response_format"] = response_format(schema)
        if self.transport == "lean":
            content = await self._client.post_json("/chat/completions", body)
        else:
            # The SDK's low-level post: its transport, auth, headers and status errors, without
            # the request TypedDict transform and response pydantic models (~2 ms of CPU per
            # request, measured with cProfile).
            content = (await self._client.post("/chat/completions", body=body,
                                               cast_to=_HTTP_RESPONSE)).content
        return _parse(orjson.loads(content), prefill, bool(logprobs))

    async def generate(self, messages, *, max_tokens, temperature=0.0, logprobs=None,
                       stage="", latent=None, schema=None, purpose=None) -> LLMResponse:
        self._bind()
        if schema is not None and not await self._constrained():
            schema = None  # the caller sees constrained=False and parses free text
        return await self._attempts(messages, max_tokens, temperature, logprobs, schema,
                                    stage=stage, latent=latent, purpose=purpose)

    async def structured(self) -> bool:
        """Whether a request with a schema goes constrained (llm.structured_outputs; probed
        once on a server of unknown abilities)."""
        self._bind()
        return await self._constrained()

    async def _constrained(self) -> bool:
        """llm.structured_outputs for this server; probed once, by the first caller that asks."""
        if self.constrains is None:
            async with self._probing:
                if self.constrains is None:
                    self.constrains = await self._probe()
        return self.constrains

    async def _probe(self) -> bool:
        """Whether the server constrains answers to a JSON schema: one small request outside
        the ledger. A refusal (400/422) or an answer that ignores the schema means no; an outage
        raises LLMUnavailable and the next request probes again."""
        try:
            r = await self._attempts(PROBE_MESSAGES, max_tokens_for(PROBE_SCHEMA), 0.0, None,
                                     PROBE_SCHEMA, record=False)
            parse_json(r.text, PROBE_SCHEMA, truncated=r.truncated)
        except (LLMError, AnswerError) as err:
            reason = err.reason if isinstance(err, LLMError) else f"it ignored the schema ({err})"
            log.warning("LLM server %s: no structured outputs (%s); answers are parsed as text. "
                        "Set llm.structured_outputs to 'off' to skip this probe", self.base_url,
                        reason[:200])
            return False
        log.info("LLM server %s constrains answers to JSON schemas (llm.structured_outputs: auto)",
                 self.base_url)
        return True

    async def _attempts(self, messages, max_tokens, temperature, logprobs, schema, *,
                        stage="", latent=None, record=True, purpose=None) -> LLMResponse:
        """One request with retries; every attempt in the ledger (unless not `record`)."""
        call_id = new_call_id()
        attempts = self.cfg.max_retries + 1
        for attempt in range(1, attempts + 1):
            async with self._sem:
                await self._limiter.wait()
                t0 = time.monotonic()
                try:
                    r = await self._once(messages, max_tokens, temperature, logprobs, schema)
                except Exception as err:  # noqa: BLE001 - classified below, never swallowed
                    kind, reason = _classify(err, [self._api_key])
                    final = kind != "retry" or attempt == attempts
                    if record:
                        self.ledger.record(call_id=call_id, stage=stage, latent=latent,
                                           purpose=purpose, model=self.model, attempt=attempt,
                                           status="error" if final else "retry", error=reason,
                                           prompt_tokens=0, completion_tokens=0,
                                           latency_s=time.monotonic() - t0)
                    if final:
                        if kind == "final" or isinstance(err, EmptyAnswer):
                            raise LLMError(reason, attempt) from err
                        raise LLMUnavailable(reason, attempt, self.base_url,
                                             fatal=kind == "config") from err
                    log.debug("retrying %s (attempt %d): %s", call_id, attempt, reason)
                else:
                    latency = time.monotonic() - t0
                    if record:
                        self.ledger.record(call_id=call_id, stage=stage, latent=latent,
                                           purpose=purpose, model=self.model, attempt=attempt,
                                           status="ok",
                                           error=None, prompt_tokens=r.prompt_tokens,
                                           completion_tokens=r.completion_tokens,
                                           latency_s=latency)
                    return dataclasses.replace(r, latency_s=latency, attempts=attempt,
                                               constrained=schema is not None)
            # Backoff outside the semaphore so waiting does not hold a slot.
            await asyncio.sleep(random.uniform(0, self.cfg.backoff_s * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        """Close the connection pool of the running loop (a later loop makes a new one)."""
        if self._client is not None and self._loop is asyncio.get_running_loop():
            client, self._client, self._loop = self._client, None, None
            await (client.aclose() if isinstance(client, LeanHTTP) else client.close())
