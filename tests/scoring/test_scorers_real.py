"""All scorers through the real pipeline: the embedded subject model, the llama.cpp server,
MiniLM and the DuckDB catalogue, on a tiny run (2k tokens, 2 latents, 1+1 windows: 8 LLM calls
per latent). Slow-ish (~1-3 min on 2 cores), so it is the one real test of the scorers; it also
checks that steering really acts at the SAE's hookpoint of the real TransformerBridge."""
from __future__ import annotations

import time

import duckdb
import pytest
import torch

from interp.config import build_config
from interp.scoring.registry import SCORERS
from interp.scoring.resources import StageResources as Resources
from interp.scoring.steering import steering_hook
from interp.stages import run
from storage.catalog import load_run, publish

pytestmark = pytest.mark.slow  # the real subject model and llama.cpp


def _cfg(tmp_path, model_cache):
    return build_config({
        "home": str(tmp_path), "model": {"cache_dir": str(model_cache)},
        "corpus": {"n_tokens": 2048},  # two documents: the split by document needs both splits
        "sae": {"expansion_factor": 1, "k": 8, "epochs": 1, "batch_size": 256, "eval_sequences": 0},
        "mine": {"n_top": 5, "n_quantiles": 2, "per_quantile": 2, "n_random": 4},
        "llm": {"concurrency": 2, "n_ctx": 4096},
        "explain": {"n_latents": 2, "n_examples": 3, "min_examples": 2, "min_heldout": 2,
                    "max_tokens": 24},
        # one window per class: the statistics' floor comes down to match
        # one probe (the word "the") keeps every probed scorer's probe path in the test
        "score": {"scorers": list(SCORERS), "n_positive": 1, "n_negative": 1, "min_per_class": 1,
                  "probes": ["the"],
                  "intervention": {"n_prompts": 1, "new_tokens": 8},
                  "intervention_judge": {"n_prompts": 1, "new_tokens": 8},
                  "intruder": {"n_rounds": 2}, "controls": [],
                  "simulation_words": {"max_tokens": 16}},
    })


def test_all_scorers_reach_the_catalogue(tmp_path, model_cache):
    cfg = _cfg(tmp_path, model_cache)
    t0 = time.time()
    rec = run(cfg)
    print(f"pipeline {time.time() - t0:.1f}s; per stage {rec.seconds}")
    publish(tmp_path, rec.artifacts, [load_run(tmp_path / "runs" / rec.run_id)])
    con = duckdb.connect(str(tmp_path / "catalog.duckdb"), read_only=True)
    ok = [r[0] for r in con.execute("SELECT latent FROM explanations WHERE status = 'ok'").fetchall()]
    assert ok, "the embedded explainer gave no usable explanation"
    rows = con.execute("SELECT latent, scorer, status, n_examples, n_failed, auc, corr, error "
                       "FROM scores ORDER BY latent, scorer").fetchall()
    for r in rows:
        print(r)
    probes = {(r[0], r[1]) for r in rows if r[0] < 0}  # known-answer probes: pseudo-latents < 0
    assert {(r[0], r[1]) for r in rows if r[0] >= 0} == {(l, s) for l in ok for s in SCORERS}
    assert probes == {(-1, s) for s in SCORERS if SCORERS[s].probed}  # every probed scorer
    by = {(r[0], r[1]): r for r in rows}
    for latent in ok:
        for name in ("embedding", "surprisal"):  # no LLM involved: always complete
            r = by[(latent, name)]
            assert r[2] == "ok" and r[3] == 2 and r[4] == 0 and 0 <= r[5] <= 1
        assert by[(latent, "intervention_judge")][3] == 2 * cfg.score.intervention.n_prompts
        assert by[(latent, "intervention")][3] == cfg.score.intervention.n_prompts
        for name in ("simulation", "simulation_words"):
            sim = by[(latent, name)]
            assert sim[2] != "ok" or sim[6] is not None  # a parsed simulation has a correlation
        assert by[(latent, "intruder")][2] in ("ok", "failed", "insufficient")
    n_pred = con.execute("SELECT count(*) FROM predictions").fetchone()[0]
    assert n_pred == sum(r[3] for r in rows)
    con.close()


def test_steering_acts_at_the_sae_hookpoint(tmp_path, model_cache):
    cfg = build_config({"home": str(tmp_path), "model": {"cache_dir": str(model_cache)}})
    model = Resources(cfg).subject_model()
    hook = cfg.model.hookpoint
    tokens = torch.tensor([[1, 504, 2365, 314, 253, 1345]])
    direction = torch.nn.functional.normalize(torch.randn(model.d_model), dim=0)
    clean = model.run_to_hook(tokens, hook)
    seen = {}

    def record(acts, hook):
        seen["acts"] = acts.detach().clone()

    steer = steering_hook(direction, 5.0)
    with torch.inference_mode():
        model.bridge.run_with_hooks(tokens, fwd_hooks=[(hook, lambda a, hook: steer(a)),
                                                       (hook, record)], return_type="logits")
    delta = seen["acts"] - clean
    assert torch.allclose(delta[0, 0], torch.zeros(model.d_model), atol=1e-4)  # BOS untouched
    assert torch.allclose(delta[0, 1:], 5.0 * direction.expand(5, -1), atol=1e-3)
    run = model.run_model(hook)
    assert not torch.allclose(run(tokens, None), run(tokens, steer))
