"""The embedded explainer: SmolLM2's GGUF served by xllamacpp as an OpenAI-compatible HTTP server
on 127.0.0.1, for offline runs. Production points llm.base_url at a vLLM server instead."""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from interp.config import LLMConfig
from interp.models import embedded_gguf_path

log = logging.getLogger(__name__)


@contextlib.contextmanager
def embedded_server(cfg: LLMConfig) -> Iterator[str]:
    """Start the local llama.cpp server; yield its `/v1` base URL; stop it on exit."""
    import xllamacpp as xlc

    p = xlc.CommonParams()
    p.model.path = str(embedded_gguf_path())
    p.model_alias = cfg.model
    p.n_parallel = cfg.concurrency
    p.n_ctx = cfg.n_ctx  # shared by the parallel slots
    threads = cfg.n_threads or os.cpu_count() or 2
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    p.port = 0             # any free port, on the default 127.0.0.1 host
    p.verbosity = -1       # llama.cpp is very chatty on stderr otherwise
    server = xlc.Server(p)
    url = server.listening_address.rstrip("/") + "/v1"
    log.info("embedded LLM server at %s (%d slots, %d threads)", url, cfg.concurrency, threads)
    try:
        yield url
    finally:
        del server  # the server stops when the object is released
