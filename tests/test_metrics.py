"""Scoring metrics and a deterministic keyword-judge sanity check of detection and fuzzing."""
from __future__ import annotations

import random

import pytest

from interp.mine.examples import Example
from interp.scoring.metrics import auc, classification_metrics
from interp.scoring.windows import detection_items, fuzzing_items


@pytest.mark.parametrize("seed", range(6))
def test_auc_equals_sklearn_with_ties(seed):
    roc_auc_score = pytest.importorskip("sklearn.metrics").roc_auc_score
    rng = random.Random(seed)
    n = rng.randint(2, 40)
    labels = [1, 0] + [rng.randint(0, 1) for _ in range(n - 2)]
    scores = [round(rng.random(), 1) for _ in range(n)]  # rounding makes ties
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_metrics_known_values():
    m = classification_metrics([1, 1, 0, 0], [1, 0, 0, 1])
    assert m["balanced_accuracy"] == 0.5 and m["precision"] == 0.5 and m["recall"] == 0.5
    m = classification_metrics([1, 1, 0, 0], [1, 1, 0, 0], [0.9, 0.8, 0.1, 0.2])
    assert m["balanced_accuracy"] == 1.0 and m["f1"] == 1.0 and m["auc"] == 1.0


def test_failed_predictions_are_counted_not_scored():
    m = classification_metrics([1, 0, 1], [None, 0, 1])
    assert m["n_failed"] == 1 and m["balanced_accuracy"] == 1.0
    m = classification_metrics([1, 0], [None, None])
    assert m["n_failed"] == 2 and m["balanced_accuracy"] is None


def _examples(keyword: str, rng: random.Random) -> list[Example]:
    words = ["red", "tree", "river", "stone", "house", "cloud", "bread", "music"]
    out = []
    for i in range(12):  # held-out activating windows: the keyword fires
        toks = [f" {rng.choice(words)}" for _ in range(8)]
        pos = rng.randrange(8)
        toks[pos] = f" {keyword}"
        acts = [5.0 if j == pos else 0.0 for j in range(8)]
        out.append(Example(0, "quantile", "test", i, i % 3, i, 1, 5.0, tuple(toks), tuple(acts)))
    for i in range(12):  # non-activating windows
        toks = tuple(f" {rng.choice(words)}" for _ in range(8))
        out.append(Example(0, "random", "test", i, -1, 100 + i, 1, 0.0, toks, (0.0,) * 8))
    return out


def _keyword_judge(explanation: str, text: str, fuzz: bool) -> int:
    """A deterministic judge: the explanation's keyword in the window (or inside the marks)."""
    if fuzz:
        marked = [seg.split(">>")[0] for seg in text.split("<<")[1:]]
        return int(any(explanation in m for m in marked))
    return int(explanation in text)


@pytest.mark.parametrize("scorer", ["detection", "fuzzing"])
def test_keyword_judge_separates_true_from_shuffled(scorer):
    build = detection_items if scorer == "detection" else fuzzing_items
    rng = random.Random(0)
    exs = _examples("banana", rng)
    items = build(exs, 6, 6, random.Random(1))
    labels = [it.label for it in items]
    true = classification_metrics(labels, [_keyword_judge("banana", it.text, scorer == "fuzzing")
                                           for it in items])
    shuffled = classification_metrics(labels, [_keyword_judge("walnut", it.text, scorer == "fuzzing")
                                               for it in items])
    assert true["balanced_accuracy"] == 1.0
    assert shuffled["balanced_accuracy"] == 0.5
