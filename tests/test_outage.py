"""An LLM outage is never a result: the stage fails naming the server, keeps every latent that got
an answer, and the next run asks again for exactly the others (counted on the server)."""
from __future__ import annotations

import socket

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from interp.llm import LLMUnavailable
from interp.rescore import run_after_collect
from interp.resumable import StageIncomplete
from tests.builders import explain, mine, score, train_stage
from tests.conftest import scripted_answer, tiny_config
from tests.fakeserver import FakeLLMServer


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def test_server_going_down_mid_stage_then_back(tmp_path, collected, transport):
    with FakeLLMServer(scripted_answer, script=["ok"] * 5 + ["500"] * 400) as srv:
        cfg = tiny_config(tmp_path, srv.base_url, llm={"concurrency": 1, "transport": transport})
        sae = train_stage(cfg, collected)
        mined = mine(cfg, collected, sae)
        with pytest.raises(StageIncomplete, match=srv.base_url) as err:
            explain(cfg, mined, collected)
        assert "re-run" in str(err.value) or "run again" in str(err.value)
        partial = next((tmp_path / "artifacts" / "explain").glob("*.partial"))
        kept = {l for f in partial.glob("part-*.parquet")
                for l in pq.read_table(f).column("latent").to_pylist()}
        assert len(kept) == 5  # every answered latent was kept, none of the failed ones
        srv.script.clear()  # the server is back
        seen = len([r for r in srv.requests if r == "ok"])
        exp = explain(cfg, mined, collected)
        rows = pq.read_table(exp.path / "explanations.parquet").to_pylist()
        asked = len([r for r in srv.requests if r == "ok"]) - seen
        assert sorted(r["latent"] for r in rows) == sorted({r["latent"] for r in rows})
        assert asked == len(rows) - 5 and all(r["status"] == "ok" for r in rows)
        # Scoring with the server refusing the key: fatal at once, nothing cached.
        srv.script[:] = ["401"] * 50
        with pytest.raises(StageIncomplete, match="401"):
            score(cfg, exp, mined, collected, sae)
        assert not list((tmp_path / "artifacts" / "score").glob("*/manifest.json"))


def test_down_server_fails_the_run_before_any_work(tmp_path, collected, fake_llm):
    base = run_after_collect(tiny_config(tmp_path, fake_llm.base_url), collected.key)
    dead = _dead_url()
    with pytest.raises(LLMUnavailable, match=dead):
        run_after_collect(tiny_config(tmp_path, dead, explain={"max_tokens": 41}), collected.key)
    from storage.catalog import publish_run

    publish_run(tmp_path, base.run_id)
    r = CliRunner().invoke(__import__("interp.cli", fromlist=["app"]).app, [
        "rescore", "--home", str(tmp_path), "--no-prefect", "--set", f"llm.base_url={dead}",
        "--set", "explain.max_tokens=41"])
    assert r.exit_code == 2 and dead in r.output and "Traceback" not in r.output


def test_prompt_token_budget_stops_cleanly_and_resumes(tmp_path, collected, fake_llm):
    import json

    from interp import stages
    from interp.artifacts import ArtifactStore
    from interp.resumable import BudgetReached

    ref = ArtifactStore(tmp_path).require("collect", collected.key)
    # The fake server counts a prompt's words as its tokens: ~150 per explainer prompt.
    cfg = tiny_config(tmp_path, fake_llm.base_url, llm={"max_prompt_tokens": 400, "concurrency": 1})
    with pytest.raises(BudgetReached, match="max_prompt_tokens"):
        stages.run(cfg, reuse={"collect": ref})
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/run.json")]
    assert record["status"] == "failed" and record["llm_tokens"]["prompt_tokens"] >= 400
    asked = len(fake_llm.requests)
    assert 0 < asked < 16  # stopped early: 16 latents to explain
    more = tiny_config(tmp_path, fake_llm.base_url, llm={"max_prompt_tokens": 10**9})
    rec = stages.run(more, reuse={"collect": ref})
    assert rec.status == "complete" and rec.cached["train"] and not rec.cached["explain"]
    # The second run asked only for what the first did not finish.
    assert len(fake_llm.requests) - asked == 16 - asked + 2 * 16
