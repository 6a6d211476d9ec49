"""vLLM in-process (`vllm.LLM`) as an LLM backend, for GPU machines (`pip install 'interp[vllm]'`).

The same async `generate(...) -> LLMResponse` as the HTTP client, but requests are gathered into
batches and handed to one blocking `vllm.LLM.generate` call in a worker thread: offline vLLM is
fast only when it sees many prompts at once. Chats are rendered with the model's own chat template
(`tokenizer.apply_chat_template`); a trailing assistant turn is continued, like the HTTP backends.
Every call gets a ledger row. There are no retries: an in-process failure is not transient.
A request's JSON schema constrains decoding through vLLM's structured outputs
(`SamplingParams(structured_outputs=StructuredOutputsParams(json=...))`; older vLLM named it
`guided_decoding=GuidedDecodingParams(json=...)`, removed in 0.12) unless llm.structured_outputs
is 'off'.

vLLM pins a FastAPI older than Prefect's server needs, so it lives in its own environment (or
serve it with `vllm serve` and use `llm.backend: openai`).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from interp.llm.base import Ledger, LLMError, LLMResponse, new_call_id
from interp.llm.config import LLMConfig

log = logging.getLogger(__name__)

_ENGINES: dict[str, Any] = {}  # one loaded model per (model, options): explain and score share it


def import_vllm():
    """The vllm module, or an ImportError saying how to get it."""
    try:
        import vllm
    except ImportError as err:
        raise ImportError(
            "llm.backend 'vllm' needs the vllm package, which is not installed: on a GPU machine "
            "`pip install 'interp[vllm]'` in an environment without Prefect's server (FastAPI pins), "
            "or run `vllm serve <model>` and set llm.backend: openai, llm.base_url: "
            "http://<host>:8000/v1") from err
    return vllm


def _engine(vllm, cfg: LLMConfig):
    key = json.dumps({"model": cfg.model, **cfg.vllm_options}, sort_keys=True, default=str)
    if key not in _ENGINES:
        log.info("loading %s with vllm.LLM(%s)", cfg.model, cfg.vllm_options)
        _ENGINES[key] = vllm.LLM(model=cfg.model, **cfg.vllm_options)
    return _ENGINES[key]


@dataclass
class _Request:
    prompt: str
    prefill: str
    params: Any
    future: asyncio.Future = field(repr=False)


class VLLMOfflineLLM:
    """The LLM protocol over an in-process vllm.LLM, batching concurrent requests."""

    def __init__(self, cfg: LLMConfig, ledger: Ledger | None = None, engine: Any = None):
        self._vllm = import_vllm()
        self.cfg = cfg
        self.model = cfg.model
        self.ledger = ledger if ledger is not None else Ledger()
        self.engine = engine if engine is not None else _engine(self._vllm, cfg)
        self.tokenizer = self.engine.get_tokenizer()
        self._queue: list[_Request] = []
        self._worker: asyncio.Task | None = None
        self.batches: list[int] = []  # sizes of the batches sent to vllm (observability, tests)
        self.constrains = cfg.constrains() is not False  # 'auto': vLLM always can

    def render(self, messages: list[dict[str, str]], constrained: bool = False) -> tuple[str, str]:
        """(prompt text, assistant prefill that the answer continues) via the chat template;
        a constrained answer is the JSON alone, so its trailing assistant turn is dropped."""
        prefill = ""
        if messages and messages[-1]["role"] == "assistant":
            if self.cfg.assistant_prefill == "off" or constrained:
                messages = messages[:-1]
            else:
                prefill = messages[-1]["content"]
        prompt = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=not prefill,
            continue_final_message=bool(prefill))
        return prompt, prefill

    async def structured(self) -> bool:
        """Whether a request with a schema goes constrained (llm.structured_outputs)."""
        return bool(self.constrains)

    async def generate(self, messages, *, max_tokens, temperature=0.0, logprobs=None,
                       stage="", latent=None, schema=None, purpose=None) -> LLMResponse:
        constrained = schema is not None and self.constrains
        prompt, prefill = self.render(messages, constrained)
        extra = structured_params(schema) if constrained else {}
        params = self._vllm.SamplingParams(max_tokens=max_tokens, temperature=temperature,
                                           logprobs=logprobs or None, **extra)
        req = _Request(prompt, prefill, params, asyncio.get_running_loop().create_future())
        self._queue.append(req)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        call_id, t0 = new_call_id(), time.monotonic()
        try:
            out = await req.future
        except Exception as err:  # noqa: BLE001 - recorded, then raised as LLMError
            reason = f"vllm: {type(err).__name__}: {str(err)[:200]}"
            self._record(call_id, stage, latent, purpose, "error", reason, 0, 0, time.monotonic() - t0)
            raise LLMError(reason, 1) from err
        latency = time.monotonic() - t0
        resp = to_response(out, prefill, bool(logprobs), latency, constrained)
        self._record(call_id, stage, latent, purpose, "ok", None, resp.prompt_tokens,
                     resp.completion_tokens, latency)
        return resp

    def _record(self, call_id, stage, latent, purpose, status, error, p_tok, c_tok,
                latency) -> None:
        self.ledger.record(call_id=call_id, stage=stage, latent=latent, purpose=purpose,
                           model=self.model,
                           attempt=1, status=status, error=error, prompt_tokens=p_tok,
                           completion_tokens=c_tok, latency_s=latency)

    async def _drain(self) -> None:
        """Send queued requests to vllm in batches of up to llm.concurrency until none are left."""
        while self._queue:
            await asyncio.sleep(0)  # let every task that is about to submit do so first
            batch, self._queue = self._queue[: self.cfg.concurrency], self._queue[self.cfg.concurrency:]
            self.batches.append(len(batch))
            try:
                outs = await asyncio.to_thread(self.engine.generate, [r.prompt for r in batch],
                                               [r.params for r in batch], use_tqdm=False)
                if len(outs) != len(batch):
                    raise RuntimeError(f"vllm returned {len(outs)} outputs for {len(batch)} prompts")
            except Exception as err:  # noqa: BLE001 - every waiting caller gets the error
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(err)
                continue
            for r, o in zip(batch, outs):
                if not r.future.done():
                    r.future.set_result(o)

    async def aclose(self) -> None:
        """Nothing to close per client; the loaded engine stays cached for the next stage."""
        if self._worker is not None and not self._worker.done():
            await self._worker


def structured_params(schema: dict[str, Any]) -> dict[str, Any]:
    """SamplingParams keyword arguments constraining the answer to the JSON `schema`."""
    try:
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:  # a vLLM from before the rename
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(json=schema)}
    return {"structured_outputs": StructuredOutputsParams(json=schema)}


def to_response(out: Any, prefill: str, want_logprobs: bool, latency: float,
                constrained: bool = False) -> LLMResponse:
    """An LLMResponse from a vllm RequestOutput (the prefill is put back in front of the text)."""
    comp = out.outputs[0]
    top = tokens = None
    if want_logprobs and comp.logprobs:
        # Per position: {token_id: Logprob(logprob, rank, decoded_token)}, most likely first;
        # the sampled token is always among them.
        top = [[(lp.decoded_token or "", lp.logprob)
                for lp in sorted(pos.values(), key=lambda lp: -lp.logprob)]
               for pos in comp.logprobs]
        tokens = [pos[t].decoded_token or "" if t in pos else ""
                  for t, pos in zip(comp.token_ids, comp.logprobs)]
    return LLMResponse(text=prefill + comp.text, prompt_tokens=len(out.prompt_token_ids or []),
                       completion_tokens=len(comp.token_ids), latency_s=latency, attempts=1,
                       top_logprobs=top, tokens=tokens, constrained=constrained,
                       finish_reason=getattr(comp, "finish_reason", None))
