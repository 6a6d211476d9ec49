"""The runner from a running event loop (a notebook): `await arun(...)` / `await abuild(...)`
complete explain and score with their LLM work on the caller's loop, and the sync entry points
refuse a running loop with an error that names the async one."""
from __future__ import annotations

import asyncio
import time

import pyarrow.parquet as pq
import pytest

from interp import latent_stage, stages
from interp.resumable import done_latents
from tests.builders import mine, train_stage
from tests.conftest import scripted_answer, tiny_config
from tests.fakeserver import FakeLLMServer


def _loops_of_run_latents(monkeypatch) -> list[asyncio.AbstractEventLoop]:
    """The loops that explain's and score's latent work ran on, recorded as it starts."""
    loops, real = [], latent_stage.run_latents

    async def recording(*args, **kwargs):
        loops.append(asyncio.get_running_loop())
        return await real(*args, **kwargs)
    monkeypatch.setattr(latent_stage, "run_latents", recording)
    return loops


def test_a_run_awaited_in_a_running_loop_explains_and_scores(tmp_path, collected, fake_llm,
                                                              monkeypatch):
    cfg = tiny_config(tmp_path, fake_llm.base_url)
    loops = _loops_of_run_latents(monkeypatch)

    async def main():
        ticks = 0

        async def heartbeat():  # the stages must not block the loop meanwhile
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1
        beat = asyncio.create_task(heartbeat())
        rec = await stages.arun(cfg, reuse={"collect": collected})
        beat.cancel()
        return rec, asyncio.get_running_loop(), ticks

    rec, loop, ticks = asyncio.run(main())
    assert rec.status == "complete" and {"explain", "score"} <= set(rec.artifacts)
    assert loops == [loop, loop]  # explain's and score's LLM work ran on the caller's loop
    assert ticks >= 3
    home = tmp_path / "artifacts"
    exps = pq.read_table(home / "explain" / rec.artifacts["explain"] / "explanations.parquet")
    assert exps.num_rows > 0 and set(exps.column("status").to_pylist()) == {"ok"}
    scores = pq.read_table(home / "score" / rec.artifacts["score"] / "scores.parquet").to_pylist()
    assert scores and all(s["status"] == "ok" for s in scores)


def test_stages_built_one_by_one_in_a_running_loop(tmp_path, collected, fake_llm, monkeypatch):
    cfg = tiny_config(tmp_path, fake_llm.base_url)
    sae = train_stage(cfg, collected)
    mined = mine(cfg, collected, sae)
    loops = _loops_of_run_latents(monkeypatch)

    async def main():
        exp = await stages.abuild(cfg, "explain", {"mine": mined, "collect": collected})
        sc = await stages.abuild(cfg, "score", {"explain": exp, "mine": mined,
                                                "collect": collected, "train": sae})
        return exp, sc, asyncio.get_running_loop()

    exp, sc, loop = asyncio.run(main())
    assert loops == [loop, loop]
    assert pq.read_table(exp.path / "explanations.parquet").num_rows > 0
    assert pq.read_table(sc.path / "scores.parquet").num_rows > 0


def test_cancelling_an_awaited_stage_stops_it_and_keeps_what_finished(tmp_path, collected):
    def slow(messages):
        time.sleep(0.05)
        return scripted_answer(messages)

    with FakeLLMServer(slow) as srv:
        cfg = tiny_config(tmp_path, srv.base_url, llm={"concurrency": 1})
        sae = train_stage(cfg, collected)
        mined = mine(cfg, collected, sae)
        inputs = {"mine": mined, "collect": collected}

        async def cancelled_after(n_requests: int):
            task = asyncio.create_task(stages.abuild(cfg, "explain", inputs))
            while len(srv.requests) < n_requests:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cancelled_after(3))
        partial = next((tmp_path / "artifacts" / "explain").glob("*.partial"))
        kept, asked = done_latents(partial), len(srv.requests)
        assert kept and not partial.with_suffix("").exists()  # no artifact: kept for the next run
        exp = asyncio.run(stages.abuild(cfg, "explain", inputs))  # resumes at the missing ones
        n = pq.read_table(exp.path / "explanations.parquet").num_rows
        assert len(srv.requests) - asked == n - len(kept)


def test_the_sync_entry_points_in_a_running_loop_name_the_async_ones(tmp_path, collected,
                                                                     fake_llm):
    cfg = tiny_config(tmp_path, fake_llm.base_url)
    sae = train_stage(cfg, collected)
    mined = mine(cfg, collected, sae)

    async def main():
        with pytest.raises(RuntimeError, match=r"running event loop.*await interp\.stages\.arun"):
            stages.run(cfg, reuse={"collect": collected})
        with pytest.raises(RuntimeError, match=r"await interp\.stages\.abuild"):
            stages.build(cfg, "explain", {"mine": mined, "collect": collected})
        with pytest.raises(RuntimeError, match=r"await interp\.latent_stage\.adrive"):
            latent_stage.drive(None, [0], None, None)
    asyncio.run(main())
    assert not (tmp_path / "artifacts" / "explain").exists()  # refused before any work
    assert fake_llm.requests == []
    # Stages without LLM work stay callable (they block the loop, as any sync call does).
    assert asyncio.run(_in_loop(lambda: stages.build(cfg, "mine", {"collect": collected,
                                                                    "train": sae}))).key == mined.key


async def _in_loop(fn):
    return fn()
