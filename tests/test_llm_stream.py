"""run_latents over several blocks of latents: the next block's examples load while the current
block's latents run, every latent runs once with its own examples, a failing load stops the run
keeping what finished; the last latents fan their requests out once slots would idle; the heap
held before a run stays out of the cyclic GC's walks during it."""
from __future__ import annotations

import asyncio
import gc
import threading

import pyarrow as pa
import pytest

from interp.llm.base import Ledger
from interp.resumable import done_latents, frozen_heap, gather_settled, in_order, run_latents

SCHEMA = pa.schema([("latent", pa.int32()), ("n", pa.int32())])


class Loader:
    """Examples of a block (a latent's examples: [latent] * 3); records how many latents were
    in flight when each block's load began."""

    def __init__(self, fail_at: int | None = None):
        self.blocks: list[list[int]] = []
        self.in_flight_at_load: list[int] = []
        self.in_flight = 0
        self.lock = threading.Lock()
        self.fail_at = fail_at

    def __call__(self, block: list[int]) -> dict[int, list[int]]:
        with self.lock:
            self.blocks.append(list(block))
            self.in_flight_at_load.append(self.in_flight)
        if self.fail_at is not None and len(self.blocks) - 1 == self.fail_at:
            raise OSError(f"cannot read block {self.fail_at}")
        return {l: [l] * 3 for l in block}


def _run(tmp_path, loader: Loader, latents: list[int]):
    async def work(latent: int, examples: list[int]) -> list[dict]:
        assert examples == [latent] * 3
        with loader.lock:
            loader.in_flight += 1
        await asyncio.sleep(0.002)
        with loader.lock:
            loader.in_flight -= 1
        return [{"latent": latent, "n": len(examples)}]
    tmp_path.mkdir(exist_ok=True)
    return asyncio.run(run_latents(latents, work, loader, partial=tmp_path, schema=SCHEMA,
                                   ledger=Ledger(), inflight=8, desc="t"))


def test_next_block_loads_while_the_current_one_runs(tmp_path):
    latents = list(range(0, 1200, 2))  # 600 latents: a small first block, doubling up to 256
    loader = Loader()
    counts = _run(tmp_path, loader, latents)
    assert counts == {"latents": 600, "resumed": 0, "computed": 600}
    bounds = [0, 16, 48, 112, 240, 496, 600]
    assert loader.blocks == [latents[a:b] for a, b in zip(bounds, bounds[1:])]
    assert loader.in_flight_at_load[0] == 0 and all(n > 0 for n in loader.in_flight_at_load[1:])
    assert done_latents(tmp_path) == set(latents)


def test_a_failing_load_stops_the_run_and_keeps_what_finished(tmp_path):
    latents = list(range(200))
    with pytest.raises(OSError, match="block 2"):
        _run(tmp_path, Loader(fail_at=2), latents)
    done = done_latents(tmp_path)
    assert set(range(48)) >= done >= set(range(16))  # block 0 finished, block 2 never started
    loader = Loader()
    assert _run(tmp_path, loader, latents)["computed"] == 200 - len(done)  # the rest, once
    assert done_latents(tmp_path) == set(latents)


def test_the_last_latents_fan_out_once_slots_would_idle(tmp_path):
    """Latents run their steps one after another (prefix cache) until every latent has started
    and fewer run than there are slots; then what is left of a chain goes at once."""
    running: dict[int, int] = {}
    widest: dict[int, int] = {}

    def step(latent: int, seconds: float):
        async def go() -> int:
            running[latent] = running.get(latent, 0) + 1
            widest[latent] = max(widest.get(latent, 0), running[latent])
            await asyncio.sleep(seconds)
            running[latent] -= 1
            return latent
        return go

    async def work(latent: int, examples) -> list[dict]:
        seconds = 0.03 if latent == 9 else 0.01  # the last latent is slow: a long tail
        out = await in_order([step(latent, seconds) for _ in range(6)])
        assert out == [latent] * 6
        return [{"latent": latent, "n": len(out)}]

    counts = asyncio.run(run_latents(list(range(10)), work, lambda b: {l: [] for l in b},
                                     partial=tmp_path, schema=SCHEMA, ledger=Ledger(),
                                     inflight=4, slots=2, desc="t"))
    assert counts["computed"] == 10
    assert all(widest[l] == 1 for l in range(8))  # one request at a time while slots are busy
    assert widest[9] > 1  # alone at the end: its remaining steps went at once


def test_gather_settled_lets_every_request_end_then_raises_the_first_error():
    ended = []

    async def slow(i: int) -> int:
        await asyncio.sleep(0.01)
        ended.append(i)  # an answer already asked for is awaited (and would be in the ledger)
        return i

    async def bad() -> None:
        await asyncio.sleep(0)
        raise KeyError("no answer")

    async def main() -> None:
        with pytest.raises(KeyError, match="no answer"):  # as it is, not an ExceptionGroup
            await gather_settled([slow(0), bad(), slow(2)])
        assert sorted(ended) == [0, 2]
        assert await gather_settled([asyncio.sleep(0, result=i) for i in range(3)]) == [0, 1, 2]
    asyncio.run(main())


def test_a_run_keeps_what_the_process_held_out_of_the_cyclic_gc(tmp_path):
    """During run_latents the objects held before it are frozen (full collections walked them
    all, ~0.2 s each); after it they are not, nested runs unfreezing only at the outermost; a
    heap the application froze stays frozen."""
    before = gc.get_freeze_count()
    assert before == 0
    seen: list[int] = []

    async def work(latent: int, examples: list[int]) -> list[dict]:
        seen.append(gc.get_freeze_count())
        return [{"latent": latent, "n": len(examples)}]
    asyncio.run(run_latents(list(range(5)), work, Loader(), partial=tmp_path, schema=SCHEMA,
                            ledger=Ledger(), inflight=2, desc="t"))
    assert len(seen) == 5 and min(seen) > before
    assert gc.get_freeze_count() == before
    with frozen_heap():
        outer = gc.get_freeze_count()
        with frozen_heap():
            pass
        assert gc.get_freeze_count() == outer > 0
    assert gc.get_freeze_count() == 0
    gc.freeze()  # an application's own freeze (before forking workers, say) is its own
    try:
        held = gc.get_freeze_count()
        with frozen_heap():
            [object() for _ in range(10)]
        assert gc.get_freeze_count() == held
    finally:
        gc.unfreeze()
