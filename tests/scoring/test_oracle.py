"""Oracle tests of the score stage's statistics and controls on tiny hand-built artifacts.

Every latent fires on one keyword of its own, so a judge (FakeLLMServer) can answer from ground
truth by reading the window text: an oracle judge says 1 iff the description names a keyword that
is in the window (fuzzing: inside the marks). With the real explanations it is perfect; with
shuffled ones (another latent's keyword) it says 0 everywhere. A coin-flip judge answers at
random. One latent has no held-out positives and must come out `unscorable`.
"""
from __future__ import annotations

import json
import math
import random
import re
import zlib

import pyarrow.parquet as pq
import pytest

from interp.scoring.controls import verdict
from tests.builders import hand_artifacts, keyword_windows, stage
from tests.conftest import tiny_config
from tests.fakeserver import FakeLLMServer

KEYWORDS = ["banana", "guitar", "volcano", "senator", "umbrella", "penguin", "violin", "glacier",
            "harbor", "lantern", "meadow", "tractor"]
FILLER = ["the", "walked", "slowly", "across", "a", "quiet", "street", "before", "evening", "and",
          "then", "turned", "left", "near", "old", "house", "with", "friends"]
NO_POSITIVES = 99   # a latent whose activating windows all went to the explainer


def _build(home):
    """collect -> mine -> explain artifacts: per latent 3 train top windows, 4 held-out quantile
    windows and 4 held-out random negatives (the NO_POSITIVES latent has no quantile windows)."""
    rng = random.Random(0)
    seqs, examples, explanations = [], [], []
    latents = {i: kw for i, kw in enumerate(KEYWORDS)} | {NO_POSITIVES: "zebra"}
    for latent, kw in latents.items():
        kinds = [("top", "train", 3, True), ("random", "test", 4, False)]
        if latent != NO_POSITIVES:
            kinds.append(("quantile", "test", 4, True))
        for kind, split, n, active in kinds:
            for rank, (toks, acts) in enumerate(keyword_windows(rng, kw, n, active, FILLER)):
                seq_id = len(seqs)
                seqs.append({"seq_id": seq_id, "tokens": list(range(4)), "token_str": toks})
                examples.append({"latent": latent, "kind": kind, "split": split, "rank": rank,
                                 "quantile": rank % 2 if kind == "quantile" else -1,
                                 "seq_id": seq_id, "start": 0, "max_act": max(acts), "acts": acts})
        explanations.append({"latent": latent, "status": "ok", "explanation_id": f"x{latent}",
                             "text": f"the word {kw}"})
    freq = [{"latent": l, "frequency": 0.01 * (l + 1)} for l in latents]
    return hand_artifacts(home, seqs, examples, explanations, freq)


def _parts(messages):
    user = messages[-2]["content"] if messages[-1]["role"] == "assistant" else messages[-1]["content"]
    description = re.search(r"Description: (.*)", user).group(1)
    return description, re.findall(r"^Example \d+: (.*)$", user, re.MULTILINE)


def oracle(messages):
    description, examples = _parts(messages)
    named = set(re.findall(r"\w+", description)) & set(KEYWORDS)
    answers = []
    for ex in examples:
        shown = " ".join(re.findall(r"<<(.*?)>>", ex)) if "<<" in ex else ex
        answers.append(int(any(k in shown.split() for k in named)))
    return "[RESULT]: " + ", ".join(map(str, answers))


def coin_flip(messages):
    description, examples = _parts(messages)
    return "[RESULT]: " + ", ".join(str(zlib.crc32(f"{description}|{ex}".encode()) % 2)
                                    for ex in examples)


def _score(tmp_path, answer):
    refs = _build(tmp_path)
    with FakeLLMServer(answer) as srv:
        cfg = tiny_config(tmp_path, srv.base_url,
                          score={"n_positive": 4, "n_negative": 4, "batch_size": 4,
                                 "controls": ["shuffled", "top_tokens"],
                                 "control_scorers": ["detection", "fuzzing"],
                                 "control_latents": None})
        ref = stage(cfg, "score", **refs)
    rows = pq.read_table(ref.path / "scores.parquet").to_pylist()
    controls = pq.read_table(ref.path / "controls.parquet").to_pylist()
    return ref, rows, {(c["scorer"], c["control"]): c for c in controls}


def test_oracle_judge_beats_shuffled_explanations(tmp_path):
    ref, rows, controls = _score(tmp_path, oracle)
    real = [r for r in rows if r["control"] is None and r["latent"] != NO_POSITIVES]
    assert {r["status"] for r in real} == {"ok"}
    # All right on 4 + 4 windows: the interval still admits a weaker judge (it no longer
    # collapses to [1, 1], as the bootstrap did).
    assert all(r["value"] == 1.0 and r["n_valid"] == 8 for r in real)
    assert all(0.5 < r["ci_low"] < 0.9 and r["ci_high"] == 1.0 for r in real)
    for scorer in ("detection", "fuzzing"):
        lift = controls[(scorer, "shuffled")]
        assert lift["n_latents"] == len(KEYWORDS)
        assert lift["lift"] >= 0.4 and lift["ci_low"] > 0 and lift["informative"]
        assert verdict(lift).startswith("explanations beat shuffled ones by 0.50")
        # The top tokens name the keyword: a baseline as good as the oracle's explanations.
        assert controls[(scorer, "top_tokens")]["control_mean"] == 1.0
    summary = json.loads((ref.path / "summary.json").read_text())
    det = summary["scorers"]["detection"]
    assert det["mean"] == det["ci_low"] == det["ci_high"] == 1.0 and det["n_scored"] == 12
    assert det["status_counts"] == {"ok": 12, "unscorable": 1}
    assert det["frequency_weighted"] == 1.0
    # The run's verdict per scorer (no probe can be built from these hand-made windows).
    assert ref.manifest()["verdicts"]["detection"] == summary["verdicts"][0]["verdict"]
    assert summary["verdicts"][0]["case"] == "informative_unprobed"


def test_coin_flip_judge_is_not_informative(tmp_path):
    _ref, rows, controls = _score(tmp_path, coin_flip)
    for scorer in ("detection", "fuzzing"):
        lift = controls[(scorer, "shuffled")]
        assert lift["ci_low"] <= 0 <= lift["ci_high"] and not lift["informative"]
        assert verdict(lift).startswith("the judge cannot tell explanations from shuffled ones")
    for r in rows:
        if r["status"] == "ok":
            assert r["ci_low"] <= r["value"] <= r["ci_high"]


def test_a_latent_without_held_out_positives_is_unscorable(tmp_path):
    _ref, rows, _controls = _score(tmp_path, oracle)
    mine = [r for r in rows if r["latent"] == NO_POSITIVES]
    assert {(r["scorer"], r["control"]) for r in mine} == {("detection", None), ("fuzzing", None)}
    for r in mine:
        assert r["status"] == "unscorable" and "no held-out activating windows" in r["error"]
        assert r["value"] is None and r["balanced_accuracy"] is None and r["predictions"] == []


@pytest.mark.parametrize("answer", ["[RESULT]: 1, 0", "[RESULT]: 1) 1 2) 0 3) 1 4) 0 5) 1"])
def test_malformed_batches_are_failures_never_scores(tmp_path, answer):
    _ref, rows, controls = _score(tmp_path, lambda messages: answer)
    real = [r for r in rows if r["latent"] != NO_POSITIVES]
    assert real and all(r["status"] == "failed" and r["n_valid"] == 0 for r in real)
    assert all(r["value"] is None and "unparseable" in r["error"] for r in real)
    assert all(c["n_latents"] == 0 and not c["informative"] for c in controls.values())


def test_half_the_answers_unparseable_is_insufficient(tmp_path):
    def flaky(messages):  # every other batch (by content) is answered with one label for four
        return oracle(messages) if zlib.crc32(str(messages).encode()) % 2 else "[RESULT]: 1"
    _ref, rows, _controls = _score(tmp_path, flaky)
    by_status = {}
    for r in rows:
        by_status.setdefault(r["status"], []).append(r)
    assert by_status["insufficient"] and by_status["ok"]
    for r in by_status["insufficient"]:   # 4 valid of 8 < score.min_valid_frac 0.8
        assert r["n_valid"] == 4 and r["value"] is None and r["ci_low"] is None
    assert all(r["n_valid"] == 8 for r in by_status["ok"])


def intruder_oracle(messages):
    """Names the example without any keyword inside its marks: the non-activating window."""
    _description, examples = _parts([{"role": "user", "content": "Description: -\n" +
                                      (messages[-2] if messages[-1]["role"] == "assistant"
                                       else messages[-1])["content"]}])
    for i, ex in enumerate(examples, 1):
        if not set(" ".join(re.findall(r"<<(.*?)>>", ex)).split()) & set(KEYWORDS):
            return f"[RESULT]: {i}"
    return "[RESULT]: 1"


@pytest.mark.parametrize("judge, expected", [(intruder_oracle, 1.0), (lambda m: "[RESULT]: 9", None)])
def test_intruder_finds_the_non_activating_window(tmp_path, judge, expected):
    refs = _build(tmp_path)
    with FakeLLMServer(judge) as srv:
        cfg = tiny_config(tmp_path, srv.base_url, score={"scorers": ["intruder"]})
        ref = stage(cfg, "score", **refs)
    rows = [r for r in pq.read_table(ref.path / "scores.parquet").to_pylist()
            if r["latent"] != NO_POSITIVES]
    assert len(rows) == len(KEYWORDS) and all(r["control"] is None for r in rows)
    assert all(r["metric"] == "accuracy" and r["value"] == expected for r in rows)
    if expected is None:   # '9' is not one of the 5 examples: a failure, not a wrong answer
        assert all(r["status"] == "failed" and "unparseable" in r["error"] for r in rows)
    else:
        # 5 of 5 rounds: the exact binomial interval is [0.48, 1]
        assert all(r["n_valid"] == 5 and r["ci_low"] == pytest.approx(0.478, abs=1e-3)
                   and r["ci_high"] == 1.0 for r in rows)


def simulation_oracle(messages):
    """All-at-once simulation: 9 (p 0.9) on the described keyword's tokens, else 0 (p 0.9)."""
    user = messages[-2]["content"]
    named = set(re.findall(r"\w+", re.search(r"Description: (.*)", user).group(1))) & set(KEYWORDS)
    lines = re.findall(r"^(\d+) (.*)$", user.split("Tokens:", 1)[1], re.MULTILINE)
    top = []
    for k, tok in lines:
        d = 9 if tok.strip() in named else 0
        top += [[(k, 0.0)], [(":", 0.0)], [(f" {d}", math.log(0.9)), (f" {9 - d}", math.log(0.1))],
                [("\n", 0.0)]]
    return "".join(t[0][0] for t in top), top


def test_all_at_once_simulation_correlates_with_true_activations(tmp_path):
    refs = _build(tmp_path)
    with FakeLLMServer(simulation_oracle) as srv:
        cfg = tiny_config(tmp_path, srv.base_url, score={"scorers": ["simulation"],
                                                         "controls": ["shuffled"],
                                                         "control_scorers": ["simulation"]})
        ref = stage(cfg, "score", **refs)
    rows = [r for r in pq.read_table(ref.path / "scores.parquet").to_pylist()
            if r["latent"] != NO_POSITIVES]
    real = [r for r in rows if r["control"] is None]
    assert all(r["status"] == "ok" and r["corr"] == pytest.approx(1.0) for r in real)
    assert all(r["ci_low"] == pytest.approx(1.0) and r["metric"] == "corr" for r in real)
    [lift] = pq.read_table(ref.path / "controls.parquet").to_pylist()
    assert lift["informative"] and lift["lift"] == pytest.approx(1.0)  # shuffled: constant, corr 0
