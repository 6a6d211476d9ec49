"""run_latents over several blocks of latents: the next block's examples load while the current
block's latents run, every latent runs once with its own examples, a failing load stops the run
keeping what finished."""
from __future__ import annotations

import asyncio
import threading

import pyarrow as pa
import pytest

from interp.llm.base import Ledger
from interp.resumable import done_latents, run_latents

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
    latents = list(range(0, 400, 2))  # 200 latents: blocks of 64, 64, 64, 8
    loader = Loader()
    counts = _run(tmp_path, loader, latents)
    assert counts == {"latents": 200, "resumed": 0, "computed": 200}
    assert loader.blocks == [latents[b:b + 64] for b in range(0, 200, 64)]
    assert loader.in_flight_at_load[0] == 0 and all(n > 0 for n in loader.in_flight_at_load[1:])
    assert done_latents(tmp_path) == set(latents)


def test_a_failing_load_stops_the_run_and_keeps_what_finished(tmp_path):
    latents = list(range(200))
    with pytest.raises(OSError, match="block 2"):
        _run(tmp_path, Loader(fail_at=2), latents)
    done = done_latents(tmp_path)
    assert set(range(128)) >= done >= set(range(64))  # block 0 finished, block 2 never started
    loader = Loader()
    assert _run(tmp_path, loader, latents)["computed"] == 200 - len(done)  # the rest, once
    assert done_latents(tmp_path) == set(latents)
