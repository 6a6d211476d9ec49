"""Crash-safe request slots shared by every interp process that uses one LLM server.

A slot is an exclusive `flock` on a file `<home>/llm-slots/<server>/slot-NNN.lock`. The kernel
drops a process's locks the instant it dies (kill -9 included), so a crashed run can never wedge
later ones: its slots are free again at once on a local filesystem, and within the NFS server's
lease time (90 s by default) when the home is on NFSv4. This replaces Prefect's global
concurrency limit, whose slots in 3.8.8 outlive a killed holder forever (leases are kept in the
ephemeral server's memory, which dies with it).

A client takes as many free slots as it may use (at least one, at most `wanted`) and keeps them
until it closes. Taking what is free instead of waiting for all `wanted` means two clients can
never deadlock each other holding half of the slots each.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from interp.artifacts import stable_hash

log = logging.getLogger(__name__)

POLL_S = 0.25
REPORT_EVERY_S = 30.0


def slot_dir(home: Path, server: str) -> Path:
    """Directory of the slots of one server (by URL or model name)."""
    return Path(home) / "llm-slots" / stable_hash(server, 12)


def _try_take(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    return fd


def _holders(directory: Path, limit: int) -> str:
    names = set()
    for i in range(limit):
        with contextlib.suppress(OSError):
            text = (directory / f"slot-{i:03d}.lock").read_text().strip()
            if text:
                names.add(text)
    return ", ".join(sorted(names)) or "unknown processes"


@contextlib.contextmanager
def hold_slots(directory: Path, limit: int, wanted: int, *,
               timeout_s: float | None = None) -> Iterator[int]:
    """Hold between 1 and min(wanted, limit) of `limit` slots; yields how many were taken.

    Waits while every slot is held, saying so every 30 s (who holds them, for how long it has
    waited); `timeout_s` bounds the wait (TimeoutError), None waits for as long as it takes.
    """
    directory.mkdir(parents=True, exist_ok=True)
    want = max(1, min(wanted, limit))
    fds: list[int] = []
    started = last_report = time.monotonic()
    try:
        while True:
            for i in range(limit):
                if len(fds) == want:
                    break
                fd = _try_take(directory / f"slot-{i:03d}.lock")
                if fd is not None:
                    fds.append(fd)
            if fds:
                break
            now = time.monotonic()
            if timeout_s is not None and now - started > timeout_s:
                raise TimeoutError(f"no free LLM request slot in {directory} after {timeout_s:.0f}s "
                                   f"(all {limit} held by {_holders(directory, limit)})")
            if now - last_report >= REPORT_EVERY_S:
                log.warning("waiting %.0fs for an LLM request slot: all %d slots of %s are held by %s",
                            now - started, limit, directory, _holders(directory, limit))
                last_report = now
            time.sleep(POLL_S)
        if time.monotonic() - started > 1:
            log.info("got %d LLM request slot(s) after %.1fs", len(fds), time.monotonic() - started)
        yield len(fds)
    finally:
        for fd in fds:
            os.close(fd)  # closing the descriptor releases its flock
