"""Prefect plumbing shared by the CLI and the flows: offline settings, an ephemeral API server
that dies with the run and whose URL travels with tasks to workers, quiet console logs, and the
task runner.

This module imports Prefect only inside its functions: `prefect_env` must run before Prefect is
first imported, because Prefect reads its settings (home, analytics, timeouts) at import.

LLM requests are bounded across runs by interp's crash-safe slots (interp/llm/slots.py, file
locks the kernel frees when a holder dies), not by a Prefect global concurrency limit: in Prefect
3.8.8 a killed run's slots of such a limit stay taken forever and wedge every later run.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import signal
import subprocess
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

TaskRunnerName = Literal["threads", "dask"]
PR_SET_PDEATHSIG = 1
# Prefect offline: no SDK or server telemetry (a worker's server without these tried to send it
# and logged "Failed to send telemetry"), no UI, and time for a server start on a loaded machine.
OFFLINE_ENV = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "PREFECT_SERVER_UI_ENABLED": "false",
               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}


def prefect_env(home: Path) -> None:
    """Keep Prefect offline and its files under `home` unless the user configured it otherwise.
    Call it before the first `import prefect` in this process."""
    os.environ.setdefault("PREFECT_HOME", str(Path(home).resolve() / "prefect"))
    for k, v in OFFLINE_ENV.items():
        os.environ.setdefault(k, v)


def offline_env() -> dict[str, str]:
    """This process's offline settings, for a task to apply where it runs (a Dask worker was
    started with its own environment)."""
    return {k: os.environ[k] for k in OFFLINE_ENV if k in os.environ}


def apply_env(env: Mapping[str, str]) -> None:
    """Take the driver's offline settings in this (worker) process; what the task starts inherits
    them."""
    os.environ.update(env)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@contextlib.contextmanager
def _popen_dies_with_parent(module: types.ModuleType) -> Iterator[None]:
    """Within the block, `module`'s subprocess.Popen starts children that the kernel kills when
    the calling thread's process dies (PR_SET_PDEATHSIG; Linux), in a session of their own so
    that a Ctrl-C in the terminal reaches this process only: a server killed by the same Ctrl-C
    left the run retrying it for minutes before it could exit."""
    real = module.subprocess
    shim = types.SimpleNamespace(**{k: getattr(subprocess, k) for k in dir(subprocess)
                                    if not k.startswith("__")})
    shim.Popen = functools.partial(subprocess.Popen, preexec_fn=_die_with_parent,
                                   start_new_session=True)
    module.subprocess = shim
    try:
        yield
    finally:
        module.subprocess = real


def start_ephemeral_server() -> None:
    """Start Prefect's ephemeral API server now, from the calling (main) thread, so that it dies
    with this process even on kill -9 (Prefect's own start leaves it running, still listening).

    No-op when PREFECT_API_URL points at a real server, or off Linux. Call it from the thread
    that lives as long as the process: the kernel signals the child when that thread exits.
    """
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value() or not hasattr(os, "fork") or os.uname().sysname != "Linux":
        return
    from prefect.server.api import server

    instance = server.SubprocessASGIServer()  # the singleton Prefect's clients use
    if instance.running:
        return
    with _popen_dies_with_parent(server):
        instance.start()


@contextlib.contextmanager
def api_url_travels() -> Iterator[None]:
    """Within the block, the settings that Prefect sends with each task to its worker name this
    process's API server. Without it, a task on a Dask worker process found no API URL and
    started an ephemeral server of its own: one per worker process, racing on one database,
    sending telemetry, and left running after the worker was stopped.

    The ephemeral server listens on 127.0.0.1: workers on other hosts need a server they can
    reach (`prefect server start --host 0.0.0.0`, PREFECT_API_URL exported to the driver).
    """
    from prefect.context import FlowRunContext
    from prefect.settings import PREFECT_API_URL, temporary_settings

    run = FlowRunContext.get()
    if PREFECT_API_URL.value() or run is None or run.client is None:
        yield  # set already (it travels as it is), or no flow run here to take it from
        return
    with temporary_settings({PREFECT_API_URL: str(run.client.api_url).rstrip("/")}):
        yield


class QuietPrefect(logging.Filter):
    """Prefect's console records as the CLI shows them without -v: warnings and retry notices,
    each on one line, and nothing about a failed run, which the CLI's `error:` line reports once
    (Prefect printed a 100-line traceback before it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "prefect" and not record.name.startswith("prefect."):
            return True
        if record.name.startswith(("prefect.flow_runs", "prefect.task_runs")):
            if record.levelno >= logging.ERROR:
                return False
            if record.levelno < logging.WARNING:
                return "Retry" in str(record.msg)  # "Task run failed with ... - Retry 1/2 ..."
        elif record.levelno < logging.WARNING:
            return False
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def quiet_prefect_logs() -> None:
    """Put QuietPrefect on the root logger's handlers (Prefect's records propagate there when
    the application configured logging first, as the CLI does)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, QuietPrefect) for f in handler.filters):
            handler.addFilter(QuietPrefect())


def task_runner(kind: TaskRunnerName = "threads", *, max_workers: int | None = None,
                dask_address: str | None = None) -> Any:
    """The task runner that maps latent shards: a thread pool, or Dask (local or a cluster).

    `dask_address` (e.g. tcp://scheduler:8786) points at a running Dask cluster; without it
    prefect-dask starts a local cluster of threads in this process.
    """
    if kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=max_workers)
    if kind == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise ValueError("task_runner 'dask' needs prefect-dask: pip install 'interp[dask]'") from None
        if dask_address:
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(cluster_kwargs={"processes": False, "n_workers": 1,
                                              "threads_per_worker": max_workers or 2,
                                              "dashboard_address": None})
    raise ValueError(f"task_runner must be 'threads' or 'dask', not {kind!r}")
