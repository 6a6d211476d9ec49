"""LLM access: one async interface over OpenAI-compatible servers and the embedded llama.cpp."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from interp.config import LLMConfig
from interp.llm.base import LLM, Ledger, LLMError, LLMResponse
from interp.llm.openai_client import OpenAICompatibleLLM

__all__ = ["LLM", "LLMError", "LLMResponse", "Ledger", "OpenAICompatibleLLM", "llm_endpoint"]


@contextlib.contextmanager
def llm_endpoint(cfg: LLMConfig) -> Iterator[str]:
    """Base URL of the configured LLM, starting (and later stopping) the embedded server if needed."""
    if cfg.backend == "embedded":
        from interp.llm.embedded import embedded_server

        with embedded_server(cfg) as url:
            yield url
    else:
        assert cfg.base_url is not None
        yield cfg.base_url
