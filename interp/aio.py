"""One runner, two kinds of caller: sync code (the CLI, Prefect tasks, scripts) and code that
already runs an event loop (a notebook, an async app).

The async entry points (`interp.stages.arun` / `abuild`) run the sync runner in a worker thread
(`in_worker`), so CPU-bound stages, locks and file I/O never block the caller's loop, while the
per-latent LLM work of explain and score (`interp.latent_stage.drive`) comes back to run on the
caller's loop (`run_coroutine`): the LLM client lives on the loop that awaits it. A sync entry
point called where a loop is running would block that loop, or fail late with asyncio's "cannot
be called from a running event loop": `refuse_running_loop` fails first, naming the async one.
"""
from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from interp.resumable import stoppable

T = TypeVar("T")

# The loop of the async entry point that started this worker thread (copied into it by to_thread).
_CALLER_LOOP: contextvars.ContextVar[asyncio.AbstractEventLoop | None] = contextvars.ContextVar(
    "interp_caller_loop", default=None)


def refuse_running_loop(sync_name: str, async_name: str) -> None:
    """Raise RuntimeError naming `async_name` when this thread is running an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return  # no loop here: the sync entry point is the right one
    raise RuntimeError(f"{sync_name} cannot run inside a running event loop (a notebook, an async "
                       f"app): use `await {async_name}` instead")


def run_coroutine(make: Callable[[], Coroutine[Any, Any, T]], sync_name: str, async_name: str) -> T:
    """The result of the coroutine `make()`, from sync code: run on the loop of the async entry
    point that started this thread (in_worker), else in a loop of its own (asyncio.run)."""
    refuse_running_loop(sync_name, async_name)
    loop = _CALLER_LOOP.get()
    if loop is not None and loop.is_running():
        return asyncio.run_coroutine_threadsafe(make(), loop).result()
    return asyncio.run(make())


async def in_worker(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in a worker thread, its per-latent LLM work run on this loop.

    Cancelled, it stops the latent stages the way Ctrl-C does (they keep the latents that
    finished, within interp.resumable.STOP_POLL_S) and waits for the thread to end: a CPU-bound
    stage that is running then finishes first, as it would in a thread of the caller's own.
    """
    with stoppable() as stop:
        token = _CALLER_LOOP.set(asyncio.get_running_loop())
        try:  # the task copies this context, and to_thread copies it into the thread
            task = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
        finally:
            _CALLER_LOOP.reset(token)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            stop.set()
            await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # retrieved: the caller asked to stop, this is how it stopped
            raise
