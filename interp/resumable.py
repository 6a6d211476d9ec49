"""Per-latent resumable LLM work, streamed: every latent's requests in flight as soon as a slot is
free, results committed to part files as latents finish, a crash losing only the last seconds.

A stage hands `run_latents` its latent list, a loader of examples for a block of latents and a
`work(latent, examples) -> rows` coroutine. Latents already present in a part file of the
stage's partial directory are skipped, so a re-run (after a crash, an outage, or in another shard)
continues where the last one stopped and asks the LLM only about missing latents. There is no
barrier between latents: up to `inflight` latents run at once (their own requests one after
another, which keeps a latent's shared prompt prefix hot in the server's cache), and examples are
loaded a block at a time just ahead of use, so memory is O(latents in flight), not O(latents).
Once every latent has started and fewer run than the LLM has slots, `fan_out()` turns true: the
last latents then send their remaining requests at once (`in_order`), so the server is not left
with idle slots while a few long chains finish one request at a time.

A latent whose requests got no answer (LLMUnavailable: unreachable server, timeouts, 401/403) is
never written: the run stops early when the server looks down, keeps what finished, and raises
StageIncomplete naming the server, so nothing missing is ever cached as a result.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from interp.artifacts import write_parquet_atomic
from interp.llm.base import Ledger, LLMUnavailable

log = logging.getLogger(__name__)

Work = Callable[[int, Any], Awaitable[list[dict[str, Any]]]]
Loader = Callable[[list[int]], dict[int, Any]]

FLUSH_S = 2.0          # a crash loses at most this much finished work
FLUSH_LATENTS = 256    # ... or this many latents, whichever comes first
BLOCK = 256            # latents whose examples load in one query (5-25 ms, whatever its size)
DOWN_AFTER = 3         # consecutive latents without an answer before the server counts as down


_FAN_OUT: contextvars.ContextVar[asyncio.Event | None] = contextvars.ContextVar(
    "interp_fan_out", default=None)


def fan_out() -> bool:
    """True in a latent's work once the stage has started every latent and fewer of them are
    running than the LLM has slots: its remaining requests should then go at once."""
    event = _FAN_OUT.get()
    return event is not None and event.is_set()


async def gather_settled(coros) -> list:
    """Results of the awaitables run concurrently, in order. Each runs to its end even when
    another fails (a request already sent is answered and goes into the ledger, never cut off),
    then the first error is raised as it is (no ExceptionGroup: callers catch LLMUnavailable)."""
    results = await asyncio.gather(*coros, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return list(results)


async def in_order(steps: list[Callable[[], Awaitable[Any]]]) -> list:
    """Results of `steps` (coroutine factories): one after another, which keeps a latent's
    shared prompt prefix hot in one server slot, until `fan_out()` turns true; what is left
    then runs at once."""
    out = []
    for i, step in enumerate(steps):
        if fan_out():
            return out + await gather_settled([s() for s in steps[i:]])
        out.append(await step())
    return out


class StageIncomplete(RuntimeError):
    """Some latents got no answer from the LLM; what finished is kept for the next run.

    `server_down`: the stage stopped early because the server looked down or refused the
    configuration, so asking again seconds later is pointless (a retry fails the same way)."""

    def __init__(self, message: str, *, server_down: bool = False):
        super().__init__(message)
        self.server_down = server_down


class BudgetReached(StageIncomplete):
    """llm.max_prompt_tokens was spent before every latent was done."""


class Stopped(RuntimeError):
    """The run was stopped from outside (Ctrl-C, SIGTERM); what finished is kept."""


# Set to an Event by code that runs latent stages in threads of its own (the flows' shard pool):
# Ctrl-C and SIGTERM reach only the main thread, so that thread sets the event, and every
# run_latents of its context (copied into the pool's threads) stops within STOP_POLL_S.
STOP_EVENT: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "interp_stop_event", default=None)
STOP_POLL_S = 0.2


@contextlib.contextmanager
def stoppable() -> Iterator[threading.Event]:
    """Within the block, latent stages run from this context, or from threads that copy it, stop
    once the yielded event is set."""
    stop = threading.Event()
    token = STOP_EVENT.set(stop)
    try:
        yield stop
    finally:
        STOP_EVENT.reset(token)


def done_latents(partial: Path) -> set[int]:
    """Latents that have rows in a finished part file of `partial`."""
    done: set[int] = set()
    for f in partial.glob("part-*.parquet"):
        done.update(pq.read_table(f, columns=["latent"]).column("latent").to_pylist())
    return done


def shard_of(latents: list[int], shard: tuple[int, int] | None) -> list[int]:
    """Shard i of n takes every n-th latent of the stage's list (all of them when None)."""
    if shard is None:
        return list(latents)
    i, n = shard
    if not 0 <= i < n:
        raise ValueError(f"shard {i} of {n} does not exist")
    return latents[i::n]


def pending(latents: list[int], partial: Path, shard: tuple[int, int] | None = None) -> list[int]:
    done = done_latents(partial) if partial.is_dir() else set()
    return [l for l in shard_of(latents, shard) if l not in done]


@dataclass
class _Run:
    """Mutable state of one run_latents call (single event loop: no locks needed)."""

    partial: Path
    schema: pa.Schema
    rows: list[dict[str, Any]] = field(default_factory=list)
    n_rows_latents: int = 0
    last_flush: float = field(default_factory=time.monotonic)
    failed: dict[int, LLMUnavailable] = field(default_factory=dict)
    consecutive: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    computed: int = 0
    error: BaseException | None = None  # a bug in `work`: stop, keep what finished, re-raise
    over_budget: bool = False

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.rows.extend(rows)
        self.n_rows_latents += 1
        self.computed += 1
        self.consecutive = 0
        if self.n_rows_latents >= FLUSH_LATENTS or time.monotonic() - self.last_flush >= FLUSH_S:
            self.flush()

    def fail(self, latent: int, err: LLMUnavailable) -> None:
        self.failed[latent] = err
        self.consecutive += 1
        if err.fatal or self.consecutive >= DOWN_AFTER:
            self.stop.set()

    def flush(self) -> None:
        if self.rows:
            table = pa.Table.from_pylist(self.rows, schema=self.schema)
            write_parquet_atomic(table, self.partial / f"part-{uuid.uuid4().hex[:12]}.parquet")
        self.rows, self.n_rows_latents, self.last_flush = [], 0, time.monotonic()

    async def flush_periodically(self) -> None:
        """Flush every FLUSH_S: finished latents never wait on slow ones."""
        while True:
            await asyncio.sleep(FLUSH_S)
            if time.monotonic() - self.last_flush >= FLUSH_S:
                self.flush()


def _blocks(todo: list[int], size: int) -> list[list[int]]:
    """Blocks of latents whose examples load together: a small first one (16), so the first
    requests go out after a short load, then doubling up to `size`."""
    blocks, b, n = [], 0, min(16, size)
    while b < len(todo):
        blocks.append(todo[b:b + n])
        b, n = b + n, min(size, 2 * n)
    return blocks


async def _loaded(blocks: list[list[int]], load: Loader,
                  stop: asyncio.Event) -> AsyncIterator[tuple[list[int], dict[int, Any]]]:
    """Each block with its examples, until `stop` is set. The next block's examples load (in a
    thread) while the caller runs this one: loading waited for on the loop left every slot idle
    meanwhile (~0.1-0.3 s a block, which capped explain, one request per latent, well below the
    server's rate)."""
    ahead = asyncio.ensure_future(asyncio.to_thread(load, blocks[0])) if blocks else None
    try:
        for i, block in enumerate(blocks):
            if stop.is_set():
                return
            examples = await ahead
            ahead = (asyncio.ensure_future(asyncio.to_thread(load, blocks[i + 1]))
                     if i + 1 < len(blocks) else None)
            yield block, examples
    finally:
        if ahead is not None and not ahead.cancel() and not ahead.cancelled():
            ahead.exception()  # retrieved: a load that failed after the run stopped is no news


async def _produce(todo: list[int], load: Loader, work: Work, run: _Run, inflight: int,
                   bar: tqdm, spent: Callable[[], bool], slots: int) -> None:
    sem = asyncio.Semaphore(inflight)
    tasks: set[asyncio.Task] = set()
    fan = asyncio.Event()
    token = _FAN_OUT.set(fan)  # copied into every task made below; set() later reaches them all
    started_all = False

    def check_fan_out() -> None:
        if started_all and len(tasks) < slots:
            fan.set()

    async def one(latent: int, examples: Any) -> None:
        try:
            run.add(await work(latent, examples))
        except LLMUnavailable as err:
            run.fail(latent, err)
        except Exception as err:  # noqa: BLE001 - re-raised by run_latents after the others end
            run.error = run.error or err
            run.stop.set()
        finally:
            sem.release()
            bar.update(1)
            tasks.discard(asyncio.current_task())
            check_fan_out()

    flusher = asyncio.create_task(run.flush_periodically())
    try:
        blocks = _loaded(_blocks(todo, max(BLOCK, inflight)), load, run.stop)
        async with contextlib.aclosing(blocks):
            async for block, examples in blocks:
                for latent in block:
                    await sem.acquire()
                    if not run.stop.is_set() and spent():
                        run.over_budget = True
                        run.stop.set()
                    if run.stop.is_set():
                        sem.release()
                        break
                    t = asyncio.create_task(one(latent, examples.pop(latent, [])))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
        started_all = True
        check_fan_out()
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        _FAN_OUT.reset(token)
        flusher.cancel()
        run.flush()  # keep every finished latent, whatever happened to the rest


async def _until_stopped(work: Awaitable[None], stop: threading.Event | None, desc: str) -> None:
    """Await `work`; once `stop` is set, cancel it (it keeps what finished) and raise Stopped."""
    if stop is None:
        return await work
    task = asyncio.ensure_future(work)
    while not task.done():
        await asyncio.wait({task}, timeout=STOP_POLL_S)
        if stop.is_set() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise Stopped(f"{desc}: stopped with the run; the latents that finished are kept")
    return task.result()


_FROZEN = {"depth": 0, "ours": False}
_FROZEN_LOCK = threading.Lock()


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """What the process holds when a run starts (modules, the config, a model: ~400k objects)
    moved out of the cyclic GC's sight for the run (gc.freeze), and back after it. A run
    allocates a block's examples and a request's prompt, answer and row per latent; every
    full collection then walked the whole heap again, ~0.2 s each: a quarter of the client's
    CPU at 1,000 latents (bench/llm_scale.py). Nested or concurrent runs freeze once; a heap
    the application froze itself is left as it is; an object frozen here that becomes cyclic
    garbage meanwhile is collected after the outermost run."""
    with _FROZEN_LOCK:
        if not _FROZEN["depth"]:
            _FROZEN["ours"] = gc.get_freeze_count() == 0
            if _FROZEN["ours"]:
                gc.freeze()
        _FROZEN["depth"] += 1
    try:
        yield
    finally:
        with _FROZEN_LOCK:
            _FROZEN["depth"] -= 1
            if not _FROZEN["depth"] and _FROZEN["ours"]:
                gc.unfreeze()


async def run_latents(latents: list[int], work: Work, load: Loader, *, partial: Path,
                      schema: pa.Schema, ledger: Ledger, inflight: int, desc: str,
                      shard: tuple[int, int] | None = None, progress: bool = False,
                      close: Callable[[], Awaitable[None]] | None = None,
                      max_prompt_tokens: int | None = None,
                      todo: list[int] | None = None, slots: int | None = None) -> dict[str, int]:
    """Run `work` for every latent (of `shard`) without rows in `partial`; returns counts.

    Ledger rows go to a calls-*.jsonl file of `partial` as each request ends. `close` (the LLM
    client's aclose) runs in this loop at the end. Raises StageIncomplete when latents got no
    answer, after writing everything that did, and BudgetReached once the ledger's prompt
    tokens reach `max_prompt_tokens` (no new latent starts; those in flight finish). `todo`:
    the pending latents when the caller already listed them. `slots`: requests the LLM serves
    at once (default inflight // 2), below which running latents fan out (`fan_out`).
    """
    mine = shard_of(latents, shard)
    todo = pending(latents, partial, shard) if todo is None else todo
    resumed = len(mine) - len(todo)
    if resumed:
        log.info("%s: resuming, %d of %d latents already done", desc, resumed, len(mine))
    run = _Run(partial, schema)
    bar = tqdm(total=len(mine), initial=resumed, desc=desc, unit="latent", disable=not progress)
    try:
        with ledger.writing_to(partial / f"calls-{uuid.uuid4().hex[:12]}.jsonl"), frozen_heap():
            await _until_stopped(_produce(
                todo, load, work, run, inflight, bar, lambda: max_prompt_tokens is not None
                and ledger.totals["prompt_tokens"] >= max_prompt_tokens,
                slots or max(1, inflight // 2)), STOP_EVENT.get(), desc)
    finally:
        bar.close()
        if close is not None:
            await close()
    if run.error is not None:
        raise run.error
    if run.over_budget and run.computed < len(todo):
        raise BudgetReached(
            f"{desc}: llm.max_prompt_tokens ({max_prompt_tokens}) spent with "
            f"{len(todo) - run.computed} of {len(mine)} latents left; {resumed + run.computed} are "
            f"kept. Run again (with a higher budget) to continue where this one stopped.")
    if run.failed:
        err = next(iter(run.failed.values()))
        missing = len(todo) - run.computed
        raise StageIncomplete(
            f"{desc}: {missing} of {len(mine)} latents got no answer from the LLM server "
            f"{err.server or ''} ({err.reason}); {resumed + run.computed} are kept. Fix the server "
            f"or the config and run again: only the missing latents are asked again.",
            server_down=run.stop.is_set() and not run.over_budget) from err
    return {"latents": len(mine), "resumed": resumed, "computed": run.computed}
