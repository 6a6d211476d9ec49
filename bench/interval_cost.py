"""Cost per score row of the per-latent intervals (issue 20) against the seeded bootstrap they
replace, on one latent's items at the default sizes: detection 5 + 5 windows (balanced accuracy
and AUC), intruder 5 rounds, simulation 5 + 5 windows of 32 tokens, intervention 4 prompts.
Each call is timed with timeit's autorange, best of 5 repeats; the ratio is bootstrap / new.

    python bench/interval_cost.py
"""
from __future__ import annotations

import timeit

import numpy as np

from interp.scoring import stats


def best_us(fn) -> float:
    timer = timeit.Timer(fn)
    n, _ = timer.autorange()
    return min(timer.repeat(5, n)) / n * 1e6


def cases() -> list[tuple[str, object, object]]:
    rng = np.random.default_rng(0)
    labels = [1] * 5 + [0] * 5
    preds = [1, 1, 1, 0, 1, 0, 0, 1, 0, 0]
    probs = list(rng.random(10).round(2))
    rounds = [1, 1, 0, 1, None]
    sums = [stats.window_stats(rng.random(32), rng.random(32)) for _ in range(10)]
    gains = [0.1, -0.2, 0.5, 0.3]
    seed = (0, 17, "detection", "")
    return [
        ("balanced accuracy, 5 + 5",
         lambda: stats.classification_interval(labels, preds, "balanced_accuracy", seed=seed),
         lambda: stats.class_interval(labels, preds, "balanced_accuracy")),
        ("AUC, 5 + 5",
         lambda: stats.classification_interval(labels, probs, "auc", seed=seed),
         lambda: stats.class_interval(labels, probs, "auc")),
        ("intruder accuracy, 5 rounds",
         lambda: stats.classification_interval([1] * 5, rounds, "accuracy", seed=seed),
         lambda: stats.class_interval([1] * 5, rounds, "accuracy")),
        ("simulation correlation, 5 + 5 windows",
         lambda: stats.correlation_interval(sums, labels, seed=seed),
         lambda: stats.corr_interval(sums, labels)),
        ("intervention mean, 4 prompts",
         lambda: stats.mean_interval(gains, seed=seed),
         lambda: stats.mean_interval_small(gains)),
    ]


def main() -> None:
    stats.class_interval([1, 0], [1, 0], "accuracy")   # scipy.special's one-off import
    print(f"{'interval':40s} {'bootstrap us':>12s} {'new us':>8s} {'ratio':>6s}")
    for name, old, new in cases():
        b, n = best_us(old), best_us(new)
        print(f"{name:40s} {b:12.0f} {n:8.0f} {b / n:6.1f}")


if __name__ == "__main__":
    main()
