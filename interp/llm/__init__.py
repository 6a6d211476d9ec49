"""LLM access: one async interface over OpenAI-compatible servers and the embedded llama.cpp."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from interp.config import LLMConfig
from interp.llm.base import LLM, Ledger, LLMError, LLMResponse
from interp.llm.openai_client import OpenAICompatibleLLM

__all__ = ["LLM", "LLMError", "LLMResponse", "Ledger", "OpenAICompatibleLLM", "llm_endpoint",
           "open_llm"]


@contextlib.contextmanager
def llm_endpoint(cfg: LLMConfig) -> Iterator[str]:
    """Base URL of the configured LLM, starting (and later stopping) the embedded server if needed."""
    if cfg.backend == "vllm":
        raise ValueError("llm.backend 'vllm' runs in-process and has no URL: use "
                         "interp.llm.open_llm(cfg, ledger), or `vllm serve` with llm.backend 'openai'")
    if cfg.backend == "embedded":
        from interp.llm.embedded import embedded_server

        with embedded_server(cfg) as url:
            yield url
    else:
        assert cfg.base_url is not None
        yield cfg.base_url


@contextlib.contextmanager
def open_llm(cfg: LLMConfig, ledger: Ledger | None = None) -> Iterator[LLM]:
    """The configured backend as an LLM (with `aclose`), recording every call in `ledger`.

    embedded / openai: the async OpenAI-compatible client (the embedded server runs meanwhile);
    vllm: vllm.LLM in the same process (optional extra, import-guarded in interp.llm.vllm_offline).
    """
    if cfg.backend == "vllm":
        from interp.llm.vllm_offline import VLLMOfflineLLM

        yield VLLMOfflineLLM(cfg, ledger)
        return
    cfg.api_key()  # an unset key variable fails here, before a server is started for nothing
    with llm_endpoint(cfg) as url:
        yield OpenAICompatibleLLM(cfg, url, ledger)
