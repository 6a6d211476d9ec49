"""LLM access: one async interface over OpenAI-compatible servers, the embedded llama.cpp server
and in-process vLLM.

`open_llm` is what a caller (the CLI's run, a flow task, a shard task) opens around the stages
that need an LLM: it starts the embedded server or checks that the configured one answers (one
probe, before any stage work), takes the crash-safe shared request slots, and yields the client
that the stages use; everything is released on exit.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from interp.llm.base import LLM, Ledger, LLMError, LLMResponse, LLMUnavailable
from interp.llm.config import LLMConfig
from interp.llm.openai_client import CONFIG_ERRORS, OpenAICompatibleLLM

__all__ = ["LLM", "LLMError", "LLMResponse", "LLMUnavailable", "Ledger", "OpenAICompatibleLLM",
           "llm_endpoint", "open_llm", "probe"]

log = logging.getLogger(__name__)


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


def probe(cfg: LLMConfig, base_url: str, *, attempts: int = 3) -> None:
    """One cheap request (GET /models) that proves the server answers and accepts the key.

    Raises LLMUnavailable naming the server and what to do; a server that lists its models must
    list llm.model. Retried briefly, so a server that is still starting is not an outage.
    """
    url = base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {cfg.api_key()}"}
    reason = ""
    for attempt in range(1, attempts + 1):
        try:
            r = httpx.get(url, headers=headers, timeout=min(cfg.timeout_s, 10.0))
        except httpx.HTTPError as err:
            reason = f"cannot connect ({type(err).__name__}: {err})"[:200]
        else:
            if r.status_code in (401, 403):
                raise LLMUnavailable(f"{r.status_code}: {CONFIG_ERRORS[r.status_code]}", attempt,
                                     base_url, fatal=True)
            if r.status_code in (404, 405, 501):
                return  # no model list on this server: the first request will tell
            if r.status_code < 500:
                _check_model(cfg, r, base_url)
                return
            reason = f"HTTP {r.status_code}"
        time.sleep(min(cfg.backoff_s * 2 ** (attempt - 1), 5.0))
    raise LLMUnavailable(f"{reason}; start it (e.g. `vllm serve {cfg.model}`) or fix llm.base_url",
                         attempts, base_url)


def _check_model(cfg: LLMConfig, r: httpx.Response, base_url: str) -> None:
    try:
        served = [m.get("id") for m in r.json().get("data", [])]
    except (ValueError, AttributeError):
        return  # not an OpenAI model list: nothing to check
    if served and cfg.model not in served:
        raise LLMUnavailable(f"serves {', '.join(map(str, served[:5]))}, not llm.model "
                             f"{cfg.model!r}: set llm.model to one of them", 1, base_url, fatal=True)


@contextlib.contextmanager
def open_llm(cfg: LLMConfig, ledger: Ledger | None = None, *, base_url: str | None = None,
             home: Path | None = None) -> Iterator[LLM]:
    """The configured backend as an LLM, recording every call in `ledger`.

    embedded: a private llama.cpp server for this block; openai: `base_url` (a replica pinned by
    a shard) or llm.base_url, probed first; with `home`, requests in flight to that server are
    bounded across every process using the home by crash-safe slots (llm.shared_limit);
    vllm: vllm.LLM in this process (optional extra, import-guarded in interp.llm.vllm_offline).
    """
    if cfg.backend == "vllm":
        from interp.llm.vllm_offline import VLLMOfflineLLM

        yield VLLMOfflineLLM(cfg, ledger)
        return
    cfg.api_key()  # an unset key variable fails here, before a server is started for nothing
    if cfg.backend == "embedded" and base_url is None:
        with llm_endpoint(cfg) as url:
            yield OpenAICompatibleLLM(cfg, url, ledger)
        return
    url = base_url or cfg.base_url
    assert url is not None
    probe(cfg, url)
    limit = cfg.shared_limit if cfg.shared_limit is not None else cfg.concurrency
    if home is None or limit == 0:
        yield OpenAICompatibleLLM(cfg, url, ledger)
        return
    from interp.llm.slots import hold_slots, slot_dir

    with hold_slots(slot_dir(home, url), limit, cfg.concurrency) as width:
        yield OpenAICompatibleLLM(cfg, url, ledger, width=width)
