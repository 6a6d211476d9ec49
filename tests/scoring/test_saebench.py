"""The saebench scorer (SAEBench's autointerp scoring): strict parser, the shuffled window set,
and the score = fraction of windows classified correctly, through the real score stage with a
scripted judge (FakeLLMServer) on hand-built artifacts."""
from __future__ import annotations

import random
import re

import pyarrow.parquet as pq
import pytest

from interp.scoring.saebench import parse_indices
from tests.builders import hand_artifacts, keyword_windows, stage
from tests.conftest import tiny_config
from tests.fakeserver import FakeLLMServer

KEYWORDS = ["banana", "guitar", "volcano", "senator", "umbrella", "penguin"]
FILLER = ["the", "walked", "slowly", "across", "a", "quiet", "street", "before", "evening"]
# Per latent: (kind, split, count, active). SAEBench's scoring set: 2 top + 2 iw + 10 random.
KINDS = [("top", "train", 3, True), ("iw", "train", 2, True), ("top", "test", 2, True),
         ("iw", "test", 2, True), ("random", "test", 10, False), ("quantile", "test", 2, True)]


@pytest.mark.parametrize("raw, n, want", [
    ("[RESULT]: 1, 4, 7", 8, {1, 4, 7}), ("[RESULT]: 3", 3, {3}), ("[RESULT]: 2 5.", 5, {2, 5}),
    ("[RESULT]: None", 5, set()), ("[RESULT]: none.", 5, set()), ('[RESULT]: "1, 2"', 4, {1, 2}),
    ("[RESULT]: 1, 2\n\nbecause both mention fruit", 4, {1, 2}),
    ("[RESULT]: 1, 9", 8, None),          # out of range
    ("[RESULT]: 0, 1", 8, None),          # numbers are 1-based
    ("[RESULT]: 2, 2", 8, None),          # repeated
    ("[RESULT]: 1 and 3", 8, None),       # prose
    ("[RESULT]: examples 1, 3", 8, None),
    ("[RESULT]:", 8, None), ("1, 2", 8, None),   # empty answer, no marker
])
def test_parse_indices_is_strict(raw, n, want):
    assert parse_indices(raw, n) == want


def _build(home, latents: int = len(KEYWORDS)):
    rng = random.Random(0)
    seqs, examples, explanations = [], [], []
    for latent, kw in enumerate(KEYWORDS[:latents]):
        for kind, split, n, active in KINDS:
            for rank, (toks, acts) in enumerate(keyword_windows(rng, kw, n, active, FILLER, 2.0)):
                seq_id = len(seqs)
                seqs.append({"seq_id": seq_id, "tokens": list(range(4)), "token_str": toks})
                examples.append({"latent": latent, "kind": kind, "split": split, "rank": rank,
                                 "quantile": 0 if kind == "quantile" else -1, "seq_id": seq_id,
                                 "start": 0, "max_act": max(acts), "acts": acts})
        explanations.append({"latent": latent, "status": "ok", "explanation_id": f"x{latent}",
                             "text": f"the word {kw}"})
    return hand_artifacts(home, seqs, examples, explanations)


def _texts(messages):
    user = messages[-2]["content"]
    named = set(re.findall(r"\w+", re.search(r"fires on (.*)", user).group(1))) & set(KEYWORDS)
    return named, re.findall(r"^(\d+)\. (.*)$", user, re.MULTILINE)


def oracle(messages):
    named, texts = _texts(messages)
    hits = [i for i, t in texts if set(t.split()) & named]
    return "[RESULT]: " + (", ".join(hits) if hits else "None")


def first_two(messages):
    return "[RESULT]: 1, 2"   # whatever is shown: a fixed guess


def _rows(tmp_path, judge, **score_over):
    refs = _build(tmp_path)
    with FakeLLMServer(judge) as srv:
        cfg = tiny_config(tmp_path, srv.base_url, score={"scorers": ["saebench"], **score_over})
        ref = stage(cfg, "score", **refs)
        assert len(srv.requests) == len(KEYWORDS)     # one judge call per latent
    return pq.read_table(ref.path / "scores.parquet").to_pylist()


def test_oracle_judge_scores_one_with_an_interval(tmp_path):
    rows = _rows(tmp_path, oracle)
    assert len(rows) == len(KEYWORDS)
    for r in rows:
        assert r["status"] == "ok" and r["metric"] == "accuracy" and r["value"] == 1.0
        assert r["n_examples"] == 14 and r["n_valid"] == 14
        assert 0.7 < r["ci_low"] < 1.0 and r["ci_high"] == 1.0  # exact binomial, 14 of 14
        preds = r["predictions"]
        assert sum(p["label"] for p in preds) == 4       # 2 top + 2 iw held out, never train ones
        assert all(p["prediction"] == p["label"] for p in preds)


def test_score_is_the_fraction_of_windows_classified_correctly(tmp_path):
    rows = _rows(tmp_path, first_two)
    for r in rows:
        preds = r["predictions"]
        hits = [p["prediction"] for p in preds]
        assert hits[:2] == [1, 1] and sum(hits) == 2   # windows 1 and 2, in the shown order
        want = sum(p["prediction"] == p["label"] for p in preds) / 14
        assert r["value"] == pytest.approx(want)
        assert r["ci_low"] <= r["value"] <= r["ci_high"]
    assert len({tuple(p["label"] for p in r["predictions"]) for r in rows}) > 1  # shuffled


def test_unparseable_answer_fails_the_latent_and_is_never_scored(tmp_path):
    rows = _rows(tmp_path, lambda m: "[RESULT]: the ones about fruit")
    assert all(r["status"] == "failed" and r["value"] is None for r in rows)
    assert all("unparseable" in r["error"] for r in rows)
