"""The LLM's config: which server or engine answers, and how it is asked."""
from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, model_validator

from interp.config_base import EMBEDDED, _Strict


class LLMConfig(_Strict):
    """The explainer / scorer LLM: the embedded llama.cpp server or any OpenAI-compatible server."""

    backend: Literal["embedded", "openai", "vllm"] = Field(EMBEDDED, description="'embedded' starts "
        "a local xllamacpp server; 'openai' uses base_url; 'vllm' loads `model` in-process with "
        "vllm.LLM (GPU machines, `pip install interp[vllm]`).")
    vllm_options: dict[str, Any] = Field(default_factory=dict, description="Extra keyword "
        "arguments for vllm.LLM (backend vllm), e.g. {tensor_parallel_size: 2, max_model_len: 8192}.")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://host:8000/v1.")
    model: str = Field("smollm2-135m-instruct", description="Model name sent with each request.")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key.")
    concurrency: int = Field(4, gt=0, description="Requests in flight at once (per process); "
        "the embedded server's slots. On 2 CPU cores 8 slots decode 1.2x faster in all than 4 "
        "(117 vs 98 tokens/s, SmolLM2-135M) but make each request 2x slower: on a loaded "
        "machine the saebench preset's explain requests then passed llm.timeout_s (120 s).")
    shared_limit: int | None = Field(None, ge=0, description="Requests in flight to one server "
        "(backend openai) summed over every interp process using this home, e.g. two nightly "
        "runs and a rescore: crash-safe file-lock slots under <home>/llm-slots, freed the moment "
        "a holder dies. None = llm.concurrency; 0 = no shared limit.")
    requests_per_second: float | None = Field(None, gt=0, description="Request rate cap; None = none.")
    max_prompt_tokens: int | None = Field(None, gt=0, description="Prompt tokens one run may "
        "spend (explain and score together). When reached, the stage stops cleanly, keeps every "
        "finished latent and fails saying so; a later run continues where it stopped. None = no budget.")
    max_retries: int = Field(4, ge=0, description="Retries on 429/5xx/timeouts/dropped connections.")
    timeout_s: float = Field(120.0, gt=0, description="Per-request timeout in seconds.")
    transport: Literal["auto", "openai", "lean"] = Field("auto", description="HTTP client of "
        "backends openai/embedded: 'lean' (a keep-alive HTTP/1.1 pool on asyncio, ~10x less CPU "
        "per request; plain http:// only), 'openai' (the openai SDK: https, proxies), 'auto' "
        "(lean for an http:// URL not routed through an HTTP(S)_PROXY/ALL_PROXY variable). "
        "Answers do not depend on it: not in any cache key.")
    backoff_s: float = Field(0.5, gt=0, description="First retry delay; doubles each retry, jittered.")
    assistant_prefill: Literal["native", "vllm", "off"] = Field("native", description="How a "
        "prompt's trailing assistant turn is continued: 'native' (llama.cpp does it), 'vllm' (sends "
        "continue_final_message), 'off' (the turn is dropped; the answer must carry the marker).")
    structured_outputs: Literal["auto", "json_schema", "off"] = Field("auto", description=
        "Constrained decoding of answers that have a JSON schema: 'json_schema' sends the schema "
        "with every such request (the server's JSON-schema mode: response_format for HTTP "
        "servers, StructuredOutputsParams for in-process vLLM); 'off' never sends one (answers "
        "are free text for the stage's text parser); 'auto' = json_schema for the embedded "
        "llama.cpp server and vLLM, and for backend openai one tiny constrained request on first "
        "use decides (a server that refuses or ignores it gets none). In the cache keys as it "
        "resolves: see LLMConfig.identity.")
    n_ctx: int = Field(8192, ge=512, description="Embedded server context, shared by its "
        "slots (llm.concurrency): 2,048 tokens per slot at the default 4 slots, enough for the "
        "paper preset's 40-window explainer prompt (~1,950 tokens).")
    n_threads: int | None = Field(None, gt=0, description="Embedded server threads; None = all cores.")

    @model_validator(mode="after")
    def _url_for_openai(self) -> LLMConfig:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("llm.base_url is required when llm.backend is 'openai'")
        if self.transport == "lean" and self.base_url and not self.base_url.startswith("http://"):
            raise ValueError(f"llm.transport 'lean' speaks plain http://, not llm.base_url "
                             f"{self.base_url!r}: set llm.transport to 'auto' or 'openai'")
        return self

    def api_key(self) -> str:
        """The API key from the environment (never stored in config files)."""
        if not self.api_key_env:
            return "unused"
        key = os.environ.get(self.api_key_env)
        if key is None:
            raise ValueError(f"llm.api_key_env names {self.api_key_env!r}, which is not set "
                             "in the environment")
        return key

    def constrains(self) -> bool | None:
        """Whether requests with a schema are sent constrained; None: probe the server first
        ('auto' with backend openai, whose server may be anything)."""
        if self.structured_outputs != "auto":
            return self.structured_outputs == "json_schema"
        return None if self.backend == "openai" else True

    def identity(self) -> dict[str, Any]:
        """What determines the LLM's answers (for cache keys): not concurrency, not secrets.

        structured_outputs enters as it resolves: 'auto' on the embedded server or vLLM is
        'json_schema' (same answers, same key); 'auto' with backend openai stays 'auto', which
        the probe resolves per server, and the server (base_url, model) is in the key already.
        """
        constrains = self.constrains()
        mode = {True: "json_schema", False: "off", None: "auto"}[constrains]
        if constrains and self.backend == "embedded":
            mode = "json_schema:compact"  # llguidance without whitespace (compact_grammar)
        ident = {"backend": self.backend, "base_url": self.base_url, "model": self.model,
                 "assistant_prefill": self.assistant_prefill, "structured_outputs": mode}
        if self.backend == "vllm":
            ident["vllm_options"] = self.vllm_options  # e.g. dtype or quantization change answers
        return ident
