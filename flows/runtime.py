"""Prefect plumbing shared by the flows: the global LLM request limit and the task runner.

The LLM limit is one Prefect global concurrency limit (`interp-llm-requests`), so every flow run
on the same Prefect server — two nightly runs and a rescore at once — shares one budget of
requests in flight. It is created at flow start if missing (Prefect silently ignores limits that
do not exist unless `strict=True`, which we always use). Each LLM client (one per stage or shard)
reserves min(llm.concurrency, limit) slots before its first request, keeps at most that many
requests in flight, and frees them when it closes (a crashed holder's lease expires), through the
client's gate seam (`interp.llm.openai_client.set_request_gate`).
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.asyncio import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.task_runners import ThreadPoolTaskRunner

from interp.llm.openai_client import set_request_gate

log = logging.getLogger(__name__)

LLM_LIMIT = "interp-llm-requests"
TaskRunnerName = Literal["threads", "dask"]

_gate_users = 0
_gate_lock = threading.Lock()


def ensure_llm_limit(limit: int | None, default: int) -> int:
    """Create the global LLM request limit if missing; set it when `limit` is given.

    Returns the limit in force. An existing limit is left alone unless `limit` is explicit, so a
    run with defaults never shrinks a budget another deployment configured.
    """
    with get_client(sync_client=True) as client:
        if limit is not None:
            client.upsert_global_concurrency_limit_by_name(LLM_LIMIT, limit)
            return limit
        try:
            return client.read_global_concurrency_limit_by_name(LLM_LIMIT).limit
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=LLM_LIMIT, limit=default))
        except ObjectAlreadyExists:  # a concurrent flow created it first: use theirs
            return client.read_global_concurrency_limit_by_name(LLM_LIMIT).limit
        log.info("created global concurrency limit %s = %d", LLM_LIMIT, default)
        return default


def _read_limit() -> int:
    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(LLM_LIMIT).limit
        except ObjectNotFound:
            raise RuntimeError(f"the global concurrency limit {LLM_LIMIT!r} does not exist on "
                               f"this Prefect server; flows create it at start (ensure_llm_limit)") from None


def _reserver(limit: int):
    @contextlib.asynccontextmanager
    async def reserve(wanted: int) -> AsyncIterator[int]:
        slots = max(1, min(wanted, limit))  # never more than the limit: that would wait forever
        async with concurrency(LLM_LIMIT, occupy=slots, strict=True):
            yield slots
    return reserve


@contextlib.contextmanager
def llm_gate() -> Iterator[None]:
    """Make every LLM client created in this process while inside reserve global slots.

    Reference-counted: tasks run in threads of one process and share the client module's gate.
    """
    global _gate_users
    reserve = _reserver(_read_limit())
    with _gate_lock:
        _gate_users += 1
        set_request_gate(reserve)
    try:
        yield
    finally:
        with _gate_lock:
            _gate_users -= 1
            if _gate_users == 0:
                set_request_gate(None)


def task_runner(kind: TaskRunnerName = "threads", *, max_workers: int | None = None,
                dask_address: str | None = None) -> Any:
    """The task runner that maps latent shards: a thread pool, or Dask (local or a cluster).

    `dask_address` (e.g. tcp://scheduler:8786) points at a running Dask cluster; without it
    prefect-dask starts a local cluster of threads in this process.
    """
    if kind == "threads":
        return ThreadPoolTaskRunner(max_workers=max_workers)
    if kind == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise ValueError("task_runner 'dask' needs prefect-dask: pip install 'interp[dask]'") from None
        if dask_address:
            return DaskTaskRunner(address=dask_address)
        # Threads, not processes: workers share this process's Prefect client and LLM gate.
        return DaskTaskRunner(cluster_kwargs={"processes": False, "n_workers": 1,
                                              "threads_per_worker": max_workers or 2,
                                              "dashboard_address": None})
    raise ValueError(f"task_runner must be 'threads' or 'dask', not {kind!r}")
