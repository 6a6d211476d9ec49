"""The train, mine, explain and score stages on tiny dimensions, with a scripted local LLM server;
per-latent resume after a crash; and publishing into a real DuckDB catalogue."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from interp.explain import stage as explain_mod
from storage.catalog import publish
from tests.builders import explain, mine, score, train_stage
from tests.conftest import tiny_config


def _run_all(cfg, collected):
    sae = train_stage(cfg, collected)
    mined = mine(cfg, collected, sae)
    exp = explain(cfg, mined, collected)
    sc = score(cfg, exp, mined, collected, sae)
    return sae, mined, exp, sc


def test_stages_produce_consistent_artifacts(tmp_path, collected, fake_llm):
    cfg = tiny_config(tmp_path, fake_llm.base_url)
    sae, mined, exp, sc = _run_all(cfg, collected)
    metrics = sae.manifest()["metrics"]
    assert 0 <= metrics["fvu"] < 1.5 and metrics["num_latents"] == 16
    latents = pq.read_table(mined.path / "latents.parquet")
    assert latents.num_rows == 16
    exps = pq.read_table(exp.path / "explanations.parquet").to_pylist()
    assert exps and all(e["status"] == "ok" and e["text"].startswith("the token") for e in exps)
    assert len({e["latent"] for e in exps}) == len(exps)
    scores = pq.read_table(sc.path / "scores.parquet").to_pylist()
    assert {(s["latent"], s["scorer"]) for s in scores} == \
        {(e["latent"], sc_) for e in exps for sc_ in ("detection", "fuzzing")}
    for s in scores:
        assert s["status"] == "ok" and s["n_failed"] == 0 and 0 <= s["balanced_accuracy"] <= 1
        assert len(s["predictions"]) == s["n_examples"] == 4
    calls = pq.read_table(exp.path / "llm_calls.parquet")
    assert calls.num_rows == len(exps) and sum(calls.column("completion_tokens").to_pylist()) > 0
    # Running again is a pure cache hit: same keys, no new LLM requests.
    n_requests = len(fake_llm.requests)
    assert [r.key for r in _run_all(cfg, collected)] == [sae.key, mined.key, exp.key, sc.key]
    assert len(fake_llm.requests) == n_requests


def test_per_example_scoring_uses_logprobs(tmp_path, collected, fake_llm):
    cfg = tiny_config(tmp_path, fake_llm.base_url, score={"batch_size": 1})
    _sae, _mined, _exp, sc = _run_all(cfg, collected)
    scores = pq.read_table(sc.path / "scores.parquet").to_pylist()
    assert scores and all(s["status"] == "ok" and s["n_failed"] == 0 for s in scores)
    probs = [p["prob"] for s in scores for p in s["predictions"]]
    assert all(p is not None and 0 < p < 1 for p in probs)
    assert any(s["auc"] is not None for s in scores)
    for s in scores:
        assert all(p["prediction"] == int(p["prob"] >= 0.5) for p in s["predictions"])


def test_changing_scorer_settings_reuses_explanations(tmp_path, collected, fake_llm):
    cfg = tiny_config(tmp_path, fake_llm.base_url)
    sae, mined, exp, sc = _run_all(cfg, collected)
    cfg2 = tiny_config(tmp_path, fake_llm.base_url, score={"seed": 7})
    sae2, mined2, exp2, sc2 = _run_all(cfg2, collected)
    assert (sae2.key, mined2.key, exp2.key) == (sae.key, mined.key, exp.key) and sc2.key != sc.key


def test_parse_failures_are_recorded_not_scored(tmp_path, collected):
    from tests.fakeserver import FakeLLMServer

    def answer(messages):
        if "EXPLANATION" in messages[-1]["content"]:
            return "[EXPLANATION]:\nExample 1: the <<t5>> t6"
        raise AssertionError("a parse failure must never be scored")

    with FakeLLMServer(answer) as srv:
        cfg = tiny_config(tmp_path, srv.base_url)
        sae = train_stage(cfg, collected)
        mined = mine(cfg, collected, sae)
        exp = explain(cfg, mined, collected)
        sc = score(cfg, exp, mined, collected, sae)
    exps = pq.read_table(exp.path / "explanations.parquet").to_pylist()
    assert exps and {e["status"] for e in exps} == {"parse_error"}
    assert all(e["text"] is None and e["raw"] for e in exps)
    assert pq.read_table(sc.path / "scores.parquet").num_rows == 0


def test_explain_resumes_after_a_crash_without_redoing_latents(tmp_path, collected, fake_llm,
                                                               monkeypatch):
    cfg = tiny_config(tmp_path, fake_llm.base_url)
    sae = train_stage(cfg, collected)
    mined = mine(cfg, collected, sae)
    real = explain_mod.make_work
    calls = {"n": 0}
    first = 5

    def crashing(*a, **kw):
        work = real(*a, **kw)

        async def w(latent, examples):
            calls["n"] += 1
            if calls["n"] > first:  # a bug on the 6th latent stops the stage
                raise RuntimeError("simulated crash")
            return await work(latent, examples)
        return w

    monkeypatch.setattr(explain_mod, "make_work", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        explain(cfg, mined, collected)
    first_requests = len(fake_llm.requests)
    assert first_requests >= first  # latents that finished before the crash were all written
    monkeypatch.setattr(explain_mod, "make_work", real)
    exp = explain(cfg, mined, collected)
    rows = pq.read_table(exp.path / "explanations.parquet").to_pylist()
    assert len(rows) == len({r["latent"] for r in rows}) == exp.manifest()["progress"]["latents"]
    resumed = exp.manifest()["progress"]["resumed"]
    assert resumed == first_requests  # every answered latent was kept ...
    assert len(fake_llm.requests) - first_requests == len(rows) - resumed  # ... and not re-asked


def test_publish_is_idempotent_and_queryable(tmp_path, collected, fake_llm):
    import duckdb

    cfg = tiny_config(tmp_path, fake_llm.base_url)
    sae, mined, exp, sc = _run_all(cfg, collected)
    arts = {"collect": collected.key, "train": sae.key, "mine": mined.key,
            "explain": exp.key, "score": sc.key}
    run = {"run_id": "r1", "started_at": 0.0, "finished_at": 1.0, "artifacts": arts}
    assert len(publish(tmp_path, arts, [run])) == 5
    assert publish(tmp_path, arts, [run]) == []  # nothing twice
    con = duckdb.connect(str(tmp_path / "catalog.duckdb"), read_only=True)
    n_exp = con.execute("select count(*) from explanations").fetchone()[0]
    assert n_exp == pq.read_table(exp.path / "explanations.parquet").num_rows
    assert con.execute("select count(*) from scores").fetchone()[0] == 2 * n_exp
    assert con.execute("select count(*) from runs").fetchone()[0] == 1
    text, tokens = con.execute("select text, tokens from examples limit 1").fetchone()
    assert text == "".join(tokens) and len(tokens) == 4
    assert con.execute("select count(*) from latest").fetchone()[0] == n_exp
    assert con.execute("select count(*) from predictions").fetchone()[0] == 2 * n_exp * 4
    con.close()


def test_external_sae_is_imported_and_checked(tmp_path, collected, fake_llm):
    from interp.sae import SAE, load_sae, save_saelens

    ext = tmp_path / "saelens_sae"
    sae = SAE(8, 24, 3, cfg={"hookpoint": "blocks.0.hook_resid_post"})
    save_saelens(sae, ext)
    cfg = tiny_config(tmp_path, fake_llm.base_url, sae={"path": str(ext)})
    ref = train_stage(cfg, collected)
    m = ref.manifest()["metrics"]
    assert m["num_latents"] == 24 and m["imported_from"] == str(ext) and "fvu" in m
    assert load_sae(ref.path).num_latents == 24
    mined = mine(cfg, collected, ref)
    assert pq.read_table(mined.path / "latents.parquet").num_rows == 24

    wrong = tmp_path / "wrong_width"
    save_saelens(SAE(16, 24, 3, cfg={"hookpoint": "blocks.0.hook_resid_post"}), wrong)
    with pytest.raises(ValueError, match="width"):
        train_stage(tiny_config(tmp_path, fake_llm.base_url, sae={"path": str(wrong)}), collected)
    elsewhere = tmp_path / "other_hook"
    save_saelens(SAE(8, 24, 3, cfg={"hookpoint": "blocks.9.hook_resid_post"}), elsewhere)
    with pytest.raises(ValueError, match="hookpoint"):
        train_stage(tiny_config(tmp_path, fake_llm.base_url, sae={"path": str(elsewhere)}), collected)


def test_explain_embeds_ok_explanations_into_its_artifact(tmp_path, collected, fake_llm):
    import numpy as np

    cfg = tiny_config(tmp_path, fake_llm.base_url, explain={"embed": True, "n_latents": 4})
    exp = explain(cfg, mine(cfg, collected, train_stage(cfg, collected)), collected)
    ok = [r for r in pq.read_table(exp.path / "explanations.parquet").to_pylist() if r["status"] == "ok"]
    emb = pq.read_table(exp.path / "explanation_embeddings.parquet").to_pylist()
    assert [e["explanation_id"] for e in emb] == [r["explanation_id"] for r in ok] and ok
    v = np.array([e["embedding"] for e in emb], dtype=np.float32)
    assert v.shape == (len(ok), 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)


def test_controls_reach_the_catalogue_beside_the_real_scores(tmp_path, collected, fake_llm):
    import duckdb

    from storage.catalog import publish

    cfg = tiny_config(tmp_path, fake_llm.base_url, score={
        "controls": ["shuffled", "top_tokens"], "control_scorers": ["detection", "fuzzing"],
        "control_latents": None})
    sae, mined, exp, sc = _run_all(cfg, collected)
    publish(tmp_path, {"collect": collected.key, "train": sae.key, "mine": mined.key,
                       "explain": exp.key, "score": sc.key})
    con = duckdb.connect(str(tmp_path / "catalog.duckdb"), read_only=True)
    controls = con.execute("SELECT scorer, control, lift, ci_low <= lift AND lift <= ci_high "
                           "FROM controls ORDER BY 1, 2").fetchall()
    assert {(s, c) for s, c, *_ in controls} == {(s, c) for s in cfg.score.scorers
                                                   for c in ("shuffled", "top_tokens")}
    real, stand_ins = con.execute("SELECT count(*) FILTER (WHERE control IS NULL), "
                                  "count(*) FILTER (WHERE control IS NOT NULL) FROM scores").fetchone()
    assert stand_ins == 2 * real > 0
    assert con.execute("SELECT count(*) FROM score_headlines").fetchone()[0] == real
    con.close()


def test_a_registry_run_reaches_the_catalogue_stage_by_stage(tmp_path, collected, fake_llm):
    import duckdb

    from interp import stages
    from storage.catalog import publish_run

    rec = stages.run(tiny_config(tmp_path, fake_llm.base_url), reuse={"collect": collected})
    assert set(rec.artifacts) == set(stages.STAGES) and rec.status == "complete"
    publish_run(tmp_path, rec.run_id)
    con = duckdb.connect(str(tmp_path / "catalog.duckdb"), read_only=True)
    stats = con.execute("SELECT sae_key, r2_error, r2_norm FROM sae_error_stats").fetchall()
    assert [s[0] for s in stats] == [rec.artifacts["train"]] and stats[0][2] is not None
    assert con.execute("SELECT count(*) FROM token_errors WHERE sae_key = ?",
                       [rec.artifacts["train"]]).fetchone()[0] > 0
    published = {r[0] for r in con.execute("SELECT stage FROM published").fetchall()}
    assert published >= set(stages.STAGES) - {"match"} | {"dark_matter"}
    con.close()
