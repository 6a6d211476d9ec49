"""Classification metrics for scorers: pure functions over (label, prediction) lists."""
from __future__ import annotations

from typing import Any


def classification_metrics(labels: list[int], preds: list[int | None],
                           probs: list[float | None] | None = None) -> dict[str, Any]:
    """Balanced accuracy, precision, recall, F1 (and AUC when probabilities exist).

    Examples whose prediction is None (unparseable or failed answers) are counted in n_failed and
    left out of the metrics; they are never treated as a 0.
    """
    pairs = [(l, p) for l, p in zip(labels, preds) if p is not None]
    out: dict[str, Any] = {"n_examples": len(labels), "n_failed": len(labels) - len(pairs),
                           "balanced_accuracy": None, "precision": None, "recall": None,
                           "f1": None, "auc": None, "accuracy": None}
    if not pairs:
        return out
    tp = sum(1 for l, p in pairs if l and p)
    fp = sum(1 for l, p in pairs if not l and p)
    fn = sum(1 for l, p in pairs if l and not p)
    tn = sum(1 for l, p in pairs if not l and not p)
    pos, neg = tp + fn, tn + fp
    tpr = tp / pos if pos else None
    tnr = tn / neg if neg else None
    out["accuracy"] = (tp + tn) / len(pairs)
    if tpr is not None and tnr is not None:
        out["balanced_accuracy"] = (tpr + tnr) / 2
    out["recall"] = tpr
    out["precision"] = tp / (tp + fp) if tp + fp else 0.0
    if out["recall"] is not None:
        pr, rc = out["precision"], out["recall"]
        out["f1"] = 2 * pr * rc / (pr + rc) if pr + rc else 0.0
    if probs is not None:
        scored = [(l, q) for l, q in zip(labels, probs) if q is not None]
        if len({l for l, _ in scored}) == 2:
            out["auc"] = auc([l for l, _ in scored], [q for _, q in scored])
    return out


def auc(labels: list[int], scores: list[float]) -> float:
    """ROC AUC of scores against 0/1 labels, both classes present: the Mann-Whitney statistic
    from tie-averaged ranks, equal to sklearn's roc_auc_score (tested) at ~1/500 of its cost
    per call (sklearn's input validation dominated the score stage's CPU per latent)."""
    order = sorted(range(len(scores)), key=scores.__getitem__)
    rank_sum, i = 0.0, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        mid = (i + j) / 2 + 1  # the average 1-based rank of a run of tied scores
        rank_sum += mid * sum(1 for k in order[i:j + 1] if labels[k])
        i = j + 1
    n1 = sum(1 for l in labels if l)
    n0 = len(labels) - n1
    return (rank_sum - n1 * (n1 + 1) / 2) / (n1 * n0)


def ranking_metrics(labels: list[int], scores: list[float | None]) -> tuple[list[int | None], dict[str, Any]]:
    """Predictions and metrics for a scorer that only ranks examples (embedding, surprisal).

    AUC uses the raw scores. For balanced accuracy & co. an example is predicted positive when
    its score is above the median score of this latent's examples: with as many positives as
    negatives that is the threshold a calibrated judge would pick, and it needs no tuning set.
    """
    valid = sorted(s for s in scores if s is not None)
    if not valid:
        return [None] * len(scores), classification_metrics(labels, [None] * len(scores))
    mid = len(valid) // 2
    median = valid[mid] if len(valid) % 2 else (valid[mid - 1] + valid[mid]) / 2
    preds = [None if s is None else int(s > median) for s in scores]
    return preds, classification_metrics(labels, preds, scores)


def pearson(x: list[float], y: list[float]) -> float | None:
    """Pearson correlation; 0.0 when one side is constant (it predicts nothing), None if empty."""
    import numpy as np

    if len(x) < 2:
        return None
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0
