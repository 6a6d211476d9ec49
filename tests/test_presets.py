"""Protocol presets: each validates, user values win over a preset, the CLI lists and applies
them, and the LLM-call arithmetic of each preset matches what its scorers do."""
from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from interp.cli import app
from interp.config import load_config
from interp.presets import load_preset, merge, preset_names
from interp.scoring.cost import llm_calls


def test_every_preset_validates_and_lists_with_its_cost():
    assert {"default", "paper", "saebench"} <= set(preset_names())
    for name in preset_names():
        load_config(None, preset=name)
    out = CliRunner().invoke(app, ["presets"])
    assert out.exit_code == 0
    for name in preset_names():
        assert f"{name}: " in out.output
    assert "saebench 1; controls +1" in out.output and "detection 40, fuzzing 40" in out.output


def test_the_preset_sits_under_the_users_config(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text(yaml.safe_dump({"score": {"n_positive": 7}, "mine": {"n_random": 50}}))
    cfg = load_config(user, {"explain.max_tokens": 9}, preset="paper")
    assert cfg.score.n_positive == 7 and cfg.mine.n_random == 50      # the user's values
    assert cfg.explain.max_tokens == 9                                # overrides last
    assert cfg.score.n_negative == 100 and cfg.mine.n_quantiles == 10  # the preset's
    assert cfg.explain.n_examples == 40 and cfg.explain.train_set == "mixed"
    assert load_config(None, preset="default") == load_config(None)


def test_a_bad_preset_or_a_bad_value_under_a_preset_fails_naming_it(tmp_path):
    with pytest.raises(ValueError, match="known: .*paper.*saebench"):
        load_config(None, preset="papr")
    user = tmp_path / "bad.yaml"
    user.write_text(yaml.safe_dump({"mine": {"n_iw_test": 9}}))   # more held out than drawn
    with pytest.raises(ValueError, match="mine.n_iw_test"):
        load_config(user, preset="saebench")
    out = CliRunner().invoke(app, ["run", "--preset", "papr", "--home", str(tmp_path / "h")])
    assert out.exit_code == 2 and "is not a preset" in out.output


def test_saebench_preset_follows_the_published_protocol():
    cfg = load_config(None, preset="saebench")
    m, s = cfg.mine, cfg.score.saebench
    # AutoInterpEvalConfig: 10 top + 5 iw for generation; 2 top + 2 iw + 10 random for scoring.
    assert (m.n_top, m.n_iw - m.n_iw_test, cfg.explain.n_examples) == (10, 5, 15)
    assert (m.n_top_test, m.n_iw_test, m.n_random // 2) == (2, 2, 10)
    assert (s.n_top, s.n_iw, s.n_random) == (2, 2, 10) and cfg.score.scorers == ("saebench",)
    assert llm_calls(cfg) == {"explain": 1, "saebench": 1, "controls": 1, "probes": 4}


def test_llm_calls_follow_the_config_arithmetic():
    default = llm_calls(load_config(None))
    # one request per latent and scorer (score.batch_size all)
    assert default == {"explain": 1, "detection": 1, "fuzzing": 1, "controls": 2, "probes": 8}
    paper = load_config(None, preset="paper")   # 200 windows, 5 per call
    assert llm_calls(paper)["detection"] == 40
    # a probe is 5 + 5 windows, 2 calls of 5 per scorer, whatever n_positive says (16, not 320)
    assert llm_calls(paper)["probes"] == 4 * 2 * 2
    odd = load_config(None, {"score.batch_size": 3, "score.scorers": ["detection", "simulation"]})
    assert llm_calls(odd) == {"explain": 1, "detection": 4, "simulation": 10, "controls": 14,
                              "probes": 56}


def test_rescore_layers_a_preset_between_the_base_run_and_the_changes():
    base = {"score": {"n_positive": 5, "batch_size": 1}, "mine": {"n_top": 20}}
    changes = merge(load_preset("paper"), {"score": {"batch_size": 10}})
    tree = merge(base, changes)
    assert tree["score"]["batch_size"] == 10 and tree["score"]["n_positive"] == 100
    assert tree["mine"]["n_top"] == 40


def test_rescore_with_the_saebench_preset_reaches_the_catalogue(tmp_path, collected, fake_llm):
    import duckdb

    from interp.rescore import run_after_collect
    from storage.catalog import load_run, publish
    from tests.conftest import tiny_config

    base = run_after_collect(tiny_config(tmp_path, fake_llm.base_url), collected.key)
    publish(tmp_path, base.artifacts, [load_run(tmp_path / "runs" / base.run_id)])
    r = CliRunner().invoke(app, ["rescore", "--home", str(tmp_path), "--preset", "saebench",
                                 "--set", "explain.n_latents=3", "--set", "explain.min_examples=2",
                                 "--no-prefect"])
    assert r.exit_code == 0, r.output
    con = duckdb.connect(str(tmp_path / "catalog.duckdb"), read_only=True)
    try:
        kinds = {k for (k,) in con.execute("SELECT DISTINCT kind FROM example_rows").fetchall()}
        prompts = con.execute("SELECT DISTINCT prompt_name FROM explanations").fetchall()
        rows = con.execute("SELECT latent, status, metric, n_examples, error FROM score_headlines "
                           "WHERE scorer = 'saebench'").fetchall()
    finally:
        con.close()
    assert "iw" in kinds and ("explain_saebench",) in prompts
    assert 0 < len(rows) <= 3 and all(m == "accuracy" for _, _, m, _, _ in rows)   # the user's 3 win
    # 2 top + 2 iw + 10 random windows each; the scripted judge's bare 1 parses, its 0 (not a
    # window number) is a counted failure
    assert all(n == 14 for *_, n, _ in rows), rows
    assert all(s == "ok" or (s == "failed" and "unparseable" in e) for _, s, _, _, e in rows), rows
