"""SIGTERM stops a run the way Ctrl-C does, so that both leave the same state behind."""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """Within the block SIGTERM raises KeyboardInterrupt, as SIGINT does: the stages' cleanup runs
    (part files flushed, the embedded LLM server stopped, Prefect told the run crashed) and the
    CLI exits 130, instead of dying mid-write. A second SIGTERM kills at once.

    Off the main thread (an application calling the CLI's functions) nothing changes: Python
    lets only the main thread set signal handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
