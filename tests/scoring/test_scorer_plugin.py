"""A new scorer is one module plus its line in the registry: a toy LLM scorer, added to a copy of
the source tree and nothing else, is configured (its section in `score.<name>`), keyed (its
settings enter the score key only when it is enabled), costed (the presets' table), run through
the scorer skeleton against a real local HTTP server, published, in the views' columns and in the
browser's scorer filter."""
from __future__ import annotations

import json

from tests.builders import make_shards
from tests.conftest import scripted_answer
from tests.fakeserver import FakeLLMServer
from tests.plugin_tree import copy_tree, edit, run_python

TOY = '''"""Toy: asks the judge once per latent whether the explanation fits one held-out window."""
from __future__ import annotations

from typing import Any

from pydantic import Field

from interp.config_base import _Strict
from interp.prompts import load_prompt
from interp.scoring.base import Outcome, Prediction
from interp.scoring.llm_scorer import Ask, LLMScorer, answer_body, errors_of
from interp.scoring.metrics import classification_metrics
from interp.scoring.windows import plain


class ToyConfig(_Strict):
    """Toy: one window, one call."""

    prompt: str = Field("score_detection", description="Template.")
    max_tokens: int = Field(3, gt=0, description="Completion budget.")


class Toy(LLMScorer):
    name = "toy"
    Config = ToyConfig
    headline = "accuracy"
    needs = ("positives",)

    def prompts(self, score: Any) -> tuple[str, ...]:
        return (score.toy.prompt,)

    def calls(self, score: Any) -> int | None:
        return 1

    def asks(self, ctx, latent, explanation, examples):
        prompt = load_prompt(ctx.cfg.score.toy.prompt)
        window = next(e for e in examples if e.kind == "quantile" and e.split == "test")
        messages = prompt.messages(explanation=explanation, examples=plain(window), n=1)
        return [Ask(messages, ctx.cfg.score.toy.max_tokens, [window])], prompt

    def parse(self, ctx, ask, response):
        body = answer_body(response.text)
        return int(body) if body in ("0", "1") else None

    def outcome(self, ctx, latent, asks, replies, prompt):
        preds = [r.value for r in replies]
        return Outcome([Prediction(a.items[0].seq_id, a.items[0].start, 0, 1, p, None)
                        for a, p in zip(asks, preds)],
                       classification_metrics([1] * len(asks), preds), ctx.cfg.llm.model,
                       prompt.sha, errors_of(replies))
'''

CHECK = '''
import json, sys
from pathlib import Path

from interp.artifacts import ArtifactStore
from interp.config import RunConfig, build_config
from interp.scoring.cost import llm_calls
from interp.stages import run, stage_key
from interp.ui.data import Catalog, scorers
from storage.catalog import publish_run
from storage.read import connect_readonly

home, url = Path(sys.argv[1]), sys.argv[2]
base = {"home": str(home), "corpus": {"seq_len": 17},
        "sae": {"expansion_factor": 2, "k": 2, "batch_size": 64, "epochs": 2, "eval_sequences": 0},
        "mine": {"window": 4, "n_top": 5, "n_quantiles": 2, "per_quantile": 2, "n_random": 4},
        "llm": {"backend": "openai", "base_url": url, "max_retries": 2, "backoff_s": 0.01},
        "explain": {"n_examples": 3, "min_examples": 2, "min_heldout": 2, "n_latents": 4,
                    "embed": False},
        "logits": {"k": 0}}
score = {"scorers": ["detection", "toy"], "n_positive": 2, "n_negative": 2, "batch_size": 4,
         "controls": [], "min_per_class": 1}
cfg = build_config(base | {"score": score})
other = build_config(base | {"score": score | {"toy": {"max_tokens": 5}}})
off = build_config(base | {"score": score | {"scorers": ["detection"]}})
off_tuned = build_config(base | {"score": score | {"scorers": ["detection"], "toy": {"max_tokens": 5}}})
keys = {"explain": "e", "mine": "m", "collect": "c", "train": "t"}
out = {"schema": "toy" in json.dumps(RunConfig.model_json_schema()),
       "keyed": stage_key(cfg, "score", keys) != stage_key(other, "score", keys),
       "unkeyed_when_off": stage_key(off, "score", keys) == stage_key(off_tuned, "score", keys),
       "calls": llm_calls(cfg)}
collect = ArtifactStore(home).require("collect", "c0ffee")
rec = run(cfg, reuse={"collect": collect})
publish_run(home, rec.run_id)
con = connect_readonly(home)
out["rows"] = con.execute("SELECT count(*), count(value) FROM scores WHERE scorer = 'toy'").fetchone()
out["status"] = con.execute("SELECT status, error FROM scores WHERE scorer = 'toy'").fetchall()
out["scorers_table"] = con.execute("SELECT headline_metric FROM scorers WHERE scorer = 'toy'").fetchall()
cols = [r[0] for r in con.execute("DESCRIBE explanation_scores").fetchall()]
out["view_columns"] = [c for c in cols if c in ("detection", "toy")]
out["latest_toy"] = con.execute("SELECT count(toy) FROM latest").fetchone()[0]
con.close()
catalog = Catalog(home)
with catalog.cursor() as cur:
    out["ui_scorers"] = scorers(cur)
catalog.close()
print(json.dumps(out))
'''


def test_toy_scorer_needs_one_module_and_its_registry_line(tmp_path):
    tree = copy_tree(tmp_path)
    (tree / "interp/scoring/toy.py").write_text(TOY)
    registry = tree / "interp/scoring/registry.py"
    edit(registry, "from interp.scoring.surprisal import Surprisal\n",
         "from interp.scoring.surprisal import Surprisal\nfrom interp.scoring.toy import Toy\n")
    edit(registry, "    SAEBench(),\n", "    SAEBench(),\n    Toy(),\n")
    make_shards(tmp_path / "home" / "artifacts" / "collect" / "c0ffee", n_seq=40, seq_len=17, d=8)
    with FakeLLMServer(scripted_answer) as srv:
        done = run_python(tree, CHECK, str(tmp_path / "home"), srv.base_url)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["schema"] and out["keyed"] and out["unkeyed_when_off"]
    # probes: 4 probes x (detection's 5 + 5 probe windows at 4 per call = 3, toy 1)
    assert out["calls"] == {"explain": 1, "detection": 1, "toy": 1, "controls": 0, "probes": 16}
    n_rows, n_values = out["rows"]
    assert n_rows == 4 and n_values == 4, out["status"]  # one scored row per latent, all parsed
    assert out["scorers_table"] == [["accuracy"]]
    assert out["view_columns"] == ["detection", "toy"] and out["latest_toy"] == 4
    assert "toy" in out["ui_scorers"]
