"""Statistics of scores: bootstrap intervals of the headline metrics, run-level means.

Every interval is a seeded percentile bootstrap (95%), vectorised with numpy: a resample is drawn
as multinomial counts over the observed items, so one matrix product gives every resample's
statistic. Per latent, positives and negatives are resampled separately (stratified), so every
resample has both classes and a balanced accuracy or AUC. Run-level means resample latents.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

N_BOOT = 1000
LEVEL = 0.95


def _rng(seed: Any) -> np.random.Generator:
    """A generator from an int or a tuple such as (score.seed, latent, scorer): stable across
    processes (crc32, not Python's salted str hash), so intervals are reproducible."""
    parts = seed if isinstance(seed, (list, tuple)) else (seed,)
    return np.random.default_rng([zlib.crc32(str(p).encode()) for p in parts])


def _counts(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """[n_boot, n] how often each of n items is drawn in each resample (with replacement)."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def _interval(samples: np.ndarray) -> tuple[float, float]:
    tail = (1 - LEVEL) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def classification_interval(labels: Sequence[int], values: Sequence[float | None], metric: str,
                            *, seed: Any = 0, n_boot: int = N_BOOT) -> tuple[float, float] | None:
    """Stratified bootstrap interval of balanced accuracy (values = 0/1 predictions) or AUC
    (values = continuous scores) over one latent's valid items; None without both classes.
    Accuracy (intruder: one class) resamples all valid items together."""
    pairs = [(l, v) for l, v in zip(labels, values) if v is not None]
    if metric == "accuracy":
        if not pairs:
            return None
        hits = np.array([float(l == v) for l, v in pairs])
        return _interval(_counts(_rng(seed), len(hits), n_boot) @ hits / len(hits))
    pos = np.array([v for l, v in pairs if l], dtype=np.float64)
    neg = np.array([v for l, v in pairs if not l], dtype=np.float64)
    if not len(pos) or not len(neg):
        return None
    rng = _rng(seed)
    c1, c0 = _counts(rng, len(pos), n_boot), _counts(rng, len(neg), n_boot)
    if metric == "balanced_accuracy":
        tpr = c1 @ pos / len(pos)
        tnr = 1 - c0 @ neg / len(neg)
        return _interval((tpr + tnr) / 2)
    if metric == "auc":
        # AUC of a resample = sum_ij c1_i c0_j [pos_i > neg_j] (ties 1/2) / (n1 n0).
        wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return _interval(np.einsum("bi,ij,bj->b", c1, wins, c0) / (len(pos) * len(neg)))
    raise ValueError(f"no bootstrap for metric {metric!r}")


def window_stats(sim: Sequence[float], true: Sequence[float]) -> list[float]:
    """Sufficient statistics of one window for a pooled Pearson correlation:
    [n, sum x, sum y, sum xx, sum yy, sum xy]."""
    x, y = np.asarray(sim, dtype=np.float64), np.asarray(true, dtype=np.float64)
    return [len(x), x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum()]


def _pearson_from_sums(t: np.ndarray) -> np.ndarray:
    n, sx, sy, sxx, syy, sxy = t.T
    num = n * sxy - sx * sy
    den = np.sqrt(np.clip(n * sxx - sx * sx, 0, None) * np.clip(n * syy - sy * sy, 0, None))
    # A constant side predicts nothing: 0, as interp.scoring.metrics.pearson says.
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def correlation_interval(stats: Sequence[Sequence[float]], labels: Sequence[int] | None = None,
                         *, seed: Any = 0, n_boot: int = N_BOOT) -> tuple[float, float] | None:
    """Bootstrap interval of the pooled (all tokens) correlation, resampling whole windows
    (tokens of one window are not independent). `stats`: window_stats of each valid window;
    with `labels` (activating or not), each kind is resampled separately, like the other
    per-latent intervals, so no resample is made of non-activating windows only."""
    if len(stats) < 2:
        return None
    s = np.asarray(stats, dtype=np.float64)
    groups = [np.asarray(labels) == k for k in (0, 1)] if labels is not None else [np.ones(len(s), bool)]
    rng = _rng(seed)
    total = sum(_counts(rng, int(g.sum()), n_boot) @ s[g] for g in groups if g.any())
    return _interval(_pearson_from_sums(total))


def mean_interval(values: Sequence[float], *, seed: Any = 0,
                  n_boot: int = N_BOOT) -> tuple[float | None, float | None, float | None]:
    """(mean, ci_low, ci_high) of values (latents) by the bootstrap; Nones when empty."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if not len(v):
        return None, None, None
    lo, hi = _interval(_counts(_rng(seed), len(v), n_boot) @ v / len(v))
    return float(v.mean()), lo, hi


def frequency_weighted(values: Sequence[float | None], weights: Sequence[float | None]) -> float | None:
    """delphi's frequency-weighted aggregate: per-latent metric weighted by how often the
    latent fires (its firing count or frequency; only the ratios matter). None if no weight."""
    pairs = [(v, w) for v, w in zip(values, weights) if v is not None and w]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total > 0 else None


def _f1(row: dict[str, Any]) -> float | None:
    return row.get("f1")


def summarize(rows: list[dict[str, Any]], frequencies: dict[int, float] | None = None, *,
              seed: int = 0, n_boot: int = N_BOOT) -> dict[str, dict[str, Any]]:
    """Run-level figures per scorer over the real explanations' rows (control None): status
    counts, the headline metric's mean over ok latents with its bootstrap interval, and delphi's
    frequency-weighted aggregates (headline and F1) when latent frequencies are given."""
    freq = frequencies or {}
    out: dict[str, dict[str, Any]] = {}
    for scorer in sorted({r["scorer"] for r in rows}):
        mine = [r for r in rows if r["scorer"] == scorer and r.get("control") is None]
        ok = [r for r in mine if r["status"] == "ok" and r.get("value") is not None]
        mean, lo, hi = mean_interval([r["value"] for r in ok], seed=(seed, scorer), n_boot=n_boot)
        statuses = [r["status"] for r in mine]
        weights = [freq.get(r["latent"]) for r in ok]
        out[scorer] = {
            "metric": mine[0].get("metric") if mine else None, "n_latents": len(mine),
            "n_scored": len(ok),
            "status_counts": {s: statuses.count(s) for s in sorted(set(statuses))},
            "mean": mean, "ci_low": lo, "ci_high": hi,
            "frequency_weighted": frequency_weighted([r["value"] for r in ok], weights),
            "frequency_weighted_f1": frequency_weighted([_f1(r) for r in ok], weights),
            "n_valid": sum(r.get("n_valid") or 0 for r in mine),
            "n_examples": sum(r.get("n_examples") or 0 for r in mine)}
    return out
