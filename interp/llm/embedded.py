"""The embedded explainer: SmolLM2's GGUF served by xllamacpp as an OpenAI-compatible HTTP server
on 127.0.0.1, for offline runs. Production points llm.base_url at a vLLM server instead.

The server lives in a child process (interp/llm/embedded_child.py). In-process, releasing an
`xllamacpp.Server` joins its loop thread in C++ with the GIL held; an error right after start-up
(a stop that races the loop's start) hung there in 3 of 7 tries, deaf to SIGTERM. A child can
always be killed, and it exits by itself when this process dies (its stdin reaches EOF).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from interp.llm.config import LLMConfig
from interp.models import embedded_gguf_path

log = logging.getLogger(__name__)

CHILD = Path(__file__).with_name("embedded_child.py")
START_TIMEOUT_S = 120.0   # model load is 1-2 s; generous for a loaded 2-core machine
STOP_TIMEOUT_S = 5.0      # after this the child is killed


@contextlib.contextmanager
def embedded_server(cfg: LLMConfig) -> Iterator[str]:
    """Start the local llama.cpp server; yield its `/v1` base URL; stop it on exit (bounded)."""
    threads = cfg.n_threads or os.cpu_count() or 2
    spec = {"model_path": str(embedded_gguf_path()), "alias": cfg.model,
            "n_parallel": cfg.concurrency, "n_ctx": cfg.n_ctx, "n_threads": threads}
    with tempfile.TemporaryFile() as errlog:
        proc = subprocess.Popen([sys.executable, str(CHILD), json.dumps(spec)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog)
        try:
            address = _wait_ready(proc, errlog, START_TIMEOUT_S)
            url = address.rstrip("/") + "/v1"
            log.info("embedded LLM server at %s (%d slots, %d threads, pid %d)", url,
                     cfg.concurrency, threads, proc.pid)
            yield url
        finally:
            stop_child(proc, STOP_TIMEOUT_S)


def _wait_ready(proc: subprocess.Popen, errlog: IO[bytes], timeout_s: float) -> str:
    """The address the child announces, or RuntimeError with its reason and stderr."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            raise RuntimeError(f"the embedded LLM server did not start within {timeout_s:.0f} s"
                               f"{_stderr_tail(errlog)}")
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            break  # the child exited before announcing itself
        line += chunk
    status, _, detail = line.decode(errors="replace").strip().partition(" ")
    if status != "ready":
        raise RuntimeError(f"the embedded LLM server failed to start: "
                           f"{detail or 'it exited'}{_stderr_tail(errlog)}")
    return detail


def _stderr_tail(errlog: IO[bytes], n: int = 400) -> str:
    errlog.seek(0)
    tail = errlog.read().decode(errors="replace").strip()[-n:]
    return f" (stderr: {' '.join(tail.split())})" if tail else ""


def stop_child(proc: subprocess.Popen, timeout_s: float) -> None:
    """Ask the child to leave (EOF on its stdin), then kill it if it has not within timeout_s."""
    with contextlib.suppress(OSError):
        if proc.stdin is not None:
            proc.stdin.close()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("embedded LLM server (pid %d) did not stop in %.0f s: killing it",
                    proc.pid, timeout_s)
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
