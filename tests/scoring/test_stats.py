"""Bootstrap intervals, run-level aggregates and controls against naive references."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from interp.scoring import stats
from interp.scoring.controls import control_lifts, derangement, top_tokens_text, verdict
from interp.scoring.metrics import classification_metrics, pearson


def test_vectorised_auc_equals_sklearn_on_each_resample():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 5).round(1), rng.normal(0, 1, 4).round(1)   # rounding makes ties
    c1, c0 = stats._counts(rng, 5, 20), stats._counts(rng, 4, 20)
    wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    fast = np.einsum("bi,ij,bj->b", c1, wins, c0) / 20
    for b in range(20):
        p, n = np.repeat(pos, c1[b].astype(int)), np.repeat(neg, c0[b].astype(int))
        ref = roc_auc_score([1] * len(p) + [0] * len(n), np.concatenate([p, n]))
        assert fast[b] == pytest.approx(ref)


def test_balanced_accuracy_interval_brackets_the_estimate_and_shrinks_with_data():
    labels, preds = [1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 1, 0]
    ba = classification_metrics(labels, preds)["balanced_accuracy"]
    lo, hi = stats.classification_interval(labels, preds, "balanced_accuracy", seed=(0, 3))
    assert lo <= ba <= hi and hi - lo > 0.2
    assert (lo, hi) == stats.classification_interval(labels, preds, "balanced_accuracy", seed=(0, 3))
    lo4, hi4 = stats.classification_interval(labels * 4, preds * 4, "balanced_accuracy", seed=1)
    assert hi4 - lo4 < hi - lo
    assert stats.classification_interval([1, 1], [1, 0], "balanced_accuracy") is None
    # Failed answers (None) are left out, as in the metric itself.
    assert stats.classification_interval([1, 0, 1], [1, 0, None], "auc") == (1.0, 1.0)


def test_pooled_correlation_from_window_sums_equals_pearson():
    rng = np.random.default_rng(1)
    windows = [(rng.random(6), rng.random(6)) for _ in range(5)]
    sums = np.asarray([stats.window_stats(x, y) for x, y in windows])
    ref = pearson(list(np.concatenate([x for x, _ in windows])),
                  list(np.concatenate([y for _, y in windows])))
    assert stats._pearson_from_sums(sums.sum(0)[None])[0] == pytest.approx(ref)
    lo, hi = stats.correlation_interval(sums, seed=0)
    assert -1 <= lo <= hi <= 1
    assert stats._pearson_from_sums(np.asarray([[3, 0, 1, 0, 1, 0]], float))[0] == 0.0


def test_mean_interval_and_frequency_weighting():
    mean, lo, hi = stats.mean_interval([0.5, 0.7, 0.9, None])
    assert mean == pytest.approx(0.7) and lo <= mean <= hi
    assert stats.mean_interval([]) == (None, None, None)
    assert stats.frequency_weighted([1.0, 0.0, None], [3, 1, 5]) == 0.75
    assert stats.frequency_weighted([1.0], [0]) is None


def test_derangement_has_no_fixed_point_and_is_seeded():
    latents = list(range(0, 40, 3))
    d = derangement(latents, seed=0)
    assert sorted(d) == sorted(d.values()) == latents and all(k != v for k, v in d.items())
    assert d == derangement(list(reversed(latents)), seed=0) != derangement(latents, seed=1)
    assert derangement([5], 0) == {}


def test_top_tokens_text_uses_train_activating_tokens_only():
    from interp.mine.examples import Example

    ex = [Example(1, "top", "train", 0, -1, 0, 0, 2.0, (" a", " cat", " cat"), (0.0, 1.0, 2.0)),
          Example(1, "quantile", "test", 0, 0, 1, 0, 1.0, (" dog", " b"), (1.0, 0.0))]
    assert top_tokens_text(ex) == 'the tokens "cat"'
    assert top_tokens_text(ex[1:]) is None


def _rows(real, control):
    rows = []
    for name, values in ((None, real), ("shuffled", control)):
        rows += [{"scorer": "detection", "control": name, "latent": i, "status": "ok",
                  "value": v} for i, v in enumerate(values)]
    return rows


def test_control_lift_is_paired_and_the_verdict_says_so():
    [row] = control_lifts(_rows([0.9, 0.8, 1.0, 0.9], [0.5, 0.6, 0.4, 0.5]))
    assert row["lift"] == pytest.approx(0.4) and row["informative"] and row["n_latents"] == 4
    assert verdict(row) == f"explanations beat shuffled ones by 0.40 [{row['ci_low']:.2f}, " \
                           f"{row['ci_high']:.2f}]"
    [flat] = control_lifts(_rows([0.5, 0.6, 0.4, 0.5], [0.6, 0.5, 0.5, 0.4]))
    assert not flat["informative"] and "carry no information" in verdict(flat)
    # Latents missing on one side are not paired.
    rows = _rows([0.9, 0.8], [0.5]) + [{"scorer": "detection", "control": "shuffled",
                                       "latent": 1, "status": "insufficient", "value": None}]
    assert control_lifts(rows)[0]["n_latents"] == 1
    assert "no latent" in verdict(control_lifts(_rows([0.9], []) + [
        {"scorer": "detection", "control": "shuffled", "latent": 5, "status": "ok", "value": 1}])[0])


def test_summarize_counts_statuses_and_weights_by_frequency():
    rows = [{"scorer": "detection", "control": None, "latent": i, "status": s, "value": v,
             "metric": "balanced_accuracy",
             "f1": v, "n_valid": 8, "n_examples": 8}
            for i, (s, v) in enumerate([("ok", 1.0), ("ok", 0.5), ("unscorable", None)])]
    rows.append({"scorer": "detection", "control": "shuffled", "latent": 0, "status": "ok",
                 "value": 0.0, "f1": 0.0})
    out = stats.summarize(rows, {0: 0.03, 1: 0.01})["detection"]
    assert out["status_counts"] == {"ok": 2, "unscorable": 1} and out["n_scored"] == 2
    assert out["mean"] == 0.75 and out["frequency_weighted"] == pytest.approx(0.875)
    assert out["metric"] == "balanced_accuracy" and out["n_examples"] == 24


def test_unscorable_reason_names_the_missing_held_out_windows():
    from interp.mine.examples import Example
    from interp.scoring.base import unscorable_reason

    def ex(kind, split, act):
        return Example(1, kind, split, 0, 0, 0, 0, act, (" a",), (act,))
    train_top, test_neg = ex("top", "train", 2.0), ex("random", "test", 0.0)
    assert "activating" in unscorable_reason(("positives", "negatives"), [train_top, test_neg])
    assert unscorable_reason(("negatives",), [train_top, test_neg]) is None    # intervention
    assert "non-activating" in unscorable_reason(("negatives",), [train_top])
    assert unscorable_reason(("positives",), [ex("quantile", "test", 1.0)]) is None
