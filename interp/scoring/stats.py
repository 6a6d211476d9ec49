"""Statistics of scores: per-latent intervals of the headline metrics, run-level means.

Per latent there are a handful of judged items (5 + 5 windows, 5 intruder rounds, 4 intervention
prompts), too few for a bootstrap: with 10 items it cannot see past what it observed (all ten
right gives [1.00, 1.00]), and its 95% intervals of balanced accuracy at 5 + 5 windows cover the
truth 64-86% of the time. The per-latent intervals are therefore analytic, built for small
counts, pure (no seed) and checked for coverage by simulation (tests/scoring/test_stats.py;
figures in the functions' docstrings):
  class_interval      balanced accuracy: Agresti-Caffo (adjusted Wald over the two classes);
                      accuracy (intruder, saebench): exact Clopper-Pearson
  auc_interval        AUC: score-type interval on the Hanley-McNeil variance
  corr_interval       pooled token correlation (simulation): window jackknife on Fisher's z
  mean_interval_small mean of a few values (intervention's per-prompt gains): Student's t
Each has a vectorised core over arrays of counts or latents (`*_batch` / array arguments), which
the coverage tests drive with thousands of simulated latents at once.

The seeded percentile bootstrap (classification_interval, correlation_interval, mean_interval)
remains for run-level means over latents (aggregate.summarize), and for the callers not yet
moved to the intervals above. Above BOOTSTRAP_MAX latents a run-level mean takes Student's t
instead (see mean_interval).
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

N_BOOT = 1000
LEVEL = 0.95
# Run-level means of more values than this take Student's t, not the bootstrap (mean_interval).
BOOTSTRAP_MAX = 10_000
# Resample counts drawn per block (16 MB as float64): never n_boot x n at once.
_BLOCK = 1 << 21
CLASS_NAMES = {1: "activating (label 1)", 0: "non-activating (label 0)"}


# Per-latent intervals for small counts (analytic, pure).

def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2)


def _beta_ppf(q: float, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.special import betaincinv  # lazy: scipy costs ~0.2 s to import

    return betaincinv(a, b, q)


def _t_ppf(q: float, df: np.ndarray) -> np.ndarray:
    from scipy.special import stdtrit

    return stdtrit(df, q)


def binomial_interval(k: Any, n: Any, *, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Clopper-Pearson interval of a binomial proportion from k successes in n >= 1 trials
    (arrays broadcast): exact, its coverage is >= level at every truth (conservative: 0.98-1.0
    with 5 trials, 0.97 with 50)."""
    k, n = np.asarray(k, np.float64), np.asarray(n, np.float64)
    tail = (1 - level) / 2
    # The guards keep Beta's parameters positive where np.where discards the value anyway.
    lo = np.where(k > 0, _beta_ppf(tail, np.maximum(k, 1.0), n - k + 1), 0.0)
    hi = np.where(k < n, _beta_ppf(1 - tail, k + 1, np.maximum(n - k, 1.0)), 1.0)
    return lo, hi


def balanced_accuracy_interval(k1: Any, n1: Any, k0: Any, n0: Any, *,
                               level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Interval of balanced accuracy (TPR + TNR) / 2 from k1 true positives of n1 positives and
    k0 true negatives of n0 negatives (arrays broadcast, n1, n0 >= 1).

    Agresti & Caffo (2000): each class's rate gets z^2/4 pseudo-successes and as many
    pseudo-failures (one each at 95%), then a Wald interval of the average of the two adjusted
    rates, whose variance adds the classes' (a class with one window widens the interval as it
    should), clipped to [0, 1] and widened to hold the observed value. All right at 5 + 5 gives
    [0.68, 1]. Coverage of a nominal 95% interval, exact over all outcomes, averaged over
    TPR and TNR uniform in [0.4, 0.6] / [0.6, 0.85] / [0.8, 0.98]: 0.958 / 0.959 / 0.954 at
    5 + 5, 0.950 / 0.954 / 0.962 at 10 + 10, 0.950 / 0.951 / 0.957 at 50 + 50. At one truth it
    oscillates with the truth, as the coverage of any interval of small counts does (5 + 5:
    0.91-0.98 over TPR, TNR in [0.5, 0.98]; 0.979 at 0.5, 0.5).
    """
    k1, n1, k0, n0 = (np.asarray(x, np.float64) for x in (k1, n1, k0, n0))
    z = _z(level)
    add = z * z / 4
    p1, p0 = (k1 + add) / (n1 + 2 * add), (k0 + add) / (n0 + 2 * add)
    centre = (p1 + p0) / 2
    half = z * np.sqrt(p1 * (1 - p1) / (n1 + 2 * add) + p0 * (1 - p0) / (n0 + 2 * add)) / 2
    observed = (k1 / n1 + k0 / n0) / 2
    return (np.clip(np.minimum(centre - half, observed), 0, 1),
            np.clip(np.maximum(centre + half, observed), 0, 1))


def _hanley_mcneil_var(theta: np.ndarray, n1: np.ndarray, n0: np.ndarray) -> np.ndarray:
    """Variance of the AUC estimate at true AUC theta (Hanley & McNeil 1982, exponential model)."""
    q1 = theta * (1 - theta) ** 2 / (2 - theta)     # Q1 - theta^2, Q1 = theta / (2 - theta)
    q2 = theta ** 2 * (1 - theta) / (1 + theta)     # Q2 - theta^2, Q2 = 2 theta^2 / (1 + theta)
    return (theta * (1 - theta) + (n1 - 1) * q1 + (n0 - 1) * q2) / (n1 * n0)


def _auc_end(auc: Any, n1: Any, n0: Any, z: float, outside: Any, steps: int) -> Any:
    """One end of auc_score_interval by bisection between the estimate (inside: |theta - auc|
    <= z sd(theta) holds there) and `outside` (0 or 1, where the variance is 0). Plain float
    arithmetic, so it runs on Python floats (one row, ~50x cheaper than numpy scalars) and on
    arrays (many rows) alike."""
    inside = auc
    for _ in range(steps):
        mid = (inside + outside) / 2
        ok = abs(mid - auc) <= z * _hanley_mcneil_var(mid, n1, n0) ** 0.5
        inside, outside = inside + ok * (mid - inside), mid + ok * (outside - mid)
    return inside


def auc_score_interval(auc: Any, n1: Any, n0: Any, *, level: float = LEVEL,
                       steps: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Interval of AUC from its estimate and the class sizes n1 (positives), n0 (negatives),
    arrays broadcast: every theta with |theta - auc| <= z sd(theta), sd from the Hanley-McNeil
    variance at theta itself (a score-type interval, as Wilson's for a proportion; Newcombe 2006
    discusses this family). It never collapses at AUC 1 and stays in [0, 1]. Each end is found by
    bisection (`steps` halvings: 32 = 2e-10), all rows at once.
    Coverage of a nominal 95% interval (simulated; judge-like P(1) scores with ties and a
    binormal ROC, or an exponential ROC): 0.95-0.97 at AUC 0.5, 0.7, 0.85 for 5 + 5, 10 + 10
    and 50 + 50 windows. It errs towards width where the model's variance is too large for a
    binormal ROC (0.971 at AUC 0.7 with 5 + 5, 0.973 at AUC 0.95 with 50 + 50).
    """
    auc, n1, n0 = np.broadcast_arrays(*(np.asarray(x, np.float64) for x in (auc, n1, n0)))
    z = _z(level)
    return _auc_end(auc, n1, n0, z, 0.0, steps), _auc_end(auc, n1, n0, z, 1.0, steps)


def auc_interval(labels: Sequence[int], scores: Sequence[float | None], *, level: float = LEVEL,
                 min_per_class: int = 1) -> tuple[float, float] | None:
    """auc_score_interval of one latent's items: labels 0/1, scores continuous (P(1) of a judge
    with log-probabilities, cosine, loss reduction; None = failed, left out). None when a class
    has fewer than max(1, min_per_class) valid items."""
    pairs = [(l, s) for l, s in zip(labels, scores) if s is not None]
    pos = np.array([s for l, s in pairs if l], np.float64)
    neg = np.array([s for l, s in pairs if not l], np.float64)
    if min(len(pos), len(neg)) < max(1, min_per_class):
        return None
    wins = float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
    n1, n0, z = float(len(pos)), float(len(neg)), _z(level)
    return _auc_end(wins, n1, n0, z, 0.0, 32), _auc_end(wins, n1, n0, z, 1.0, 32)


def class_interval(labels: Sequence[int], preds: Sequence[float | None], metric: str, *,
                   level: float = LEVEL, min_per_class: int = 1) -> tuple[float, float] | None:
    """Interval of one latent's classification metric from its items (None = failed, left out).

    labels: 0/1 per item; preds: 0/1 predictions ("balanced_accuracy", "accuracy") or continuous
    scores ("auc", see auc_interval). balanced_accuracy: balanced_accuracy_interval of the
    per-class counts; accuracy (intruder: every label 1, prediction 1 = found; saebench):
    Clopper-Pearson over all valid items, an exact binomial interval (coverage >= level).
    None when a class the metric needs (both; accuracy: any valid item) has fewer than
    max(1, min_per_class) valid items.
    """
    if metric == "auc":
        return auc_interval(labels, preds, level=level, min_per_class=min_per_class)
    pairs = [(l, p) for l, p in zip(labels, preds) if p is not None]
    if metric == "accuracy":
        if len(pairs) < max(1, min_per_class):
            return None
        lo, hi = binomial_interval(sum(l == p for l, p in pairs), len(pairs), level=level)
        return float(lo), float(hi)
    if metric != "balanced_accuracy":
        raise ValueError(f"class_interval: no interval for metric {metric!r} (balanced_accuracy, "
                         "accuracy, auc)")
    n1, n0 = sum(1 for l, _ in pairs if l), sum(1 for l, _ in pairs if not l)
    if min(n1, n0) < max(1, min_per_class):
        return None
    k1, k0 = sum(1 for l, p in pairs if l and p), sum(1 for l, p in pairs if not l and not p)
    lo, hi = balanced_accuracy_interval(k1, n1, k0, n0, level=level)
    return float(lo), float(hi)


def insufficient_reason(labels: Sequence[int], preds: Sequence[Any], metric: str,
                        min_per_class: int) -> str | None:
    """Why a latent's row is `insufficient` under score.min_per_class, or None if it is not.

    balanced_accuracy, auc, corr: each class has at least min_per_class valid items (pred not
    None); any other metric (accuracy, logprob_gain): at least min_per_class valid items in all.
    """
    valid = [int(bool(l)) for l, p in zip(labels, preds) if p is not None]
    if metric not in ("balanced_accuracy", "auc", "corr"):
        if len(valid) < min_per_class:
            return f"{len(valid)} valid item(s), fewer than score.min_per_class = {min_per_class}"
        return None
    for c in (1, 0):
        if (n := valid.count(c)) < min_per_class:
            return (f"{n} valid {CLASS_NAMES[c]} item(s), fewer than score.min_per_class = "
                    f"{min_per_class}")
    return None


def window_stats(sim: Sequence[float], true: Sequence[float]) -> list[float]:
    """Sufficient statistics of one window for a pooled Pearson correlation:
    [n, sum x, sum y, sum xx, sum yy, sum xy]."""
    x, y = np.asarray(sim, dtype=np.float64), np.asarray(true, dtype=np.float64)
    return [len(x), x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum()]


def _pearson_from_sums(t: np.ndarray) -> np.ndarray:
    n, sx, sy, sxx, syy, sxy = np.moveaxis(t, -1, 0)   # t: [..., 6]
    num = n * sxy - sx * sy
    den = np.sqrt(np.clip(n * sxx - sx * sx, 0, None) * np.clip(n * syy - sy * sy, 0, None))
    # A constant side predicts nothing: 0, as interp.scoring.metrics.pearson says.
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def corr_interval_batch(stats: np.ndarray, labels: Sequence[int] | None = None, *,
                        level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Interval of the pooled correlation of many latents with the same window design.

    stats: [..., W, 6] window_stats of W windows per latent; labels: [W] activating or not
    (None: one kind). A delete-one-window jackknife on Fisher's z = atanh(r), within each kind
    (their numbers are fixed by the design), with Student's t on min(windows of a kind) - 1
    degrees of freedom: windows are the independent units (a window's tokens are not), and the
    smaller kind bounds what the data say about the variance. Needs >= 2 windows of each kind.
    Coverage of a nominal 95% interval (simulated: simulated activation = b x true + window
    effect + token noise, clipped at 0; truths 0.24-0.82): 0.94-0.97 at 5 + 5, 10 + 10, 50 + 50
    windows. It undercovers when the truth is near 0: 0.91-0.93 at 5 + 5, 0.93-0.94 at 10 + 10.
    """
    stats = np.asarray(stats, np.float64)
    groups = [np.ones(stats.shape[-2], bool)] if labels is None else \
        [np.asarray(labels) == k for k in (0, 1)]
    total = stats.sum(-2)
    clip = 1 - 1e-12   # r = +-1 exactly (a perfect simulation) would give an infinite z
    z0 = np.arctanh(np.clip(_pearson_from_sums(total), -clip, clip))
    loo = np.arctanh(np.clip(_pearson_from_sums(total[..., None, :] - stats), -clip, clip))
    var = 0.0
    for g in groups:
        zg = loo[..., g]
        var = var + (g.sum() - 1) / g.sum() * ((zg - zg.mean(-1, keepdims=True)) ** 2).sum(-1)
    df = min(int(g.sum()) for g in groups) - 1
    half = _t_ppf(0.5 + level / 2, np.float64(df)) * np.sqrt(var)
    return np.tanh(z0 - half), np.tanh(z0 + half)


def corr_interval(stats: Sequence[Sequence[float]], labels: Sequence[int] | None = None, *,
                  level: float = LEVEL, min_per_class: int = 2) -> tuple[float, float] | None:
    """corr_interval_batch of one latent: `stats` its valid windows' window_stats, `labels`
    their kinds. None with fewer than max(2, min_per_class) windows of a kind, or when the
    simulated (or true) values are constant over all windows: the correlation is then 0 by
    convention (metrics.pearson), not an estimate with an uncertainty."""
    s = np.asarray(stats, np.float64).reshape(-1, 6)
    kinds = [np.ones(len(s), bool)] if labels is None else [np.asarray(labels) == k for k in (0, 1)]
    if min(int(g.sum()) for g in kinds) < max(2, min_per_class):
        return None
    n, sx, sy, sxx, syy, _ = s.sum(0)
    if n * sxx - sx * sx <= 0 or n * syy - sy * sy <= 0:
        return None
    lo, hi = corr_interval_batch(s, labels, level=level)
    return float(lo), float(hi)


def t_interval(values: Any, *, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, lo, hi) of Student's t interval over the last axis of `values` [..., n], n >= 2.
    Exact for normal values; for a few values it is the defensible choice (a bootstrap of 4
    values covers 70-80%, not 95%), but skewed values undercover (4 lognormal(0, 0.5): 0.92)."""
    v = np.asarray(values, np.float64)
    n = v.shape[-1]
    mean = v.mean(-1)
    half = _t_ppf(0.5 + level / 2, np.float64(n - 1)) * v.std(-1, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half


def mean_interval_small(values: Sequence[float | None], *,
                        level: float = LEVEL) -> tuple[float | None, float | None, float | None]:
    """(mean, ci_low, ci_high) of a handful of values (intervention's per-prompt log-prob gains;
    None left out) by Student's t; (mean, None, None) for one value, Nones for none."""
    v = np.asarray([x for x in values if x is not None], np.float64)
    if not len(v):
        return None, None, None
    if len(v) < 2:
        return float(v[0]), None, None
    mean, lo, hi = t_interval(v, level=level)
    return float(mean), float(lo), float(hi)


# The seeded bootstrap: run-level means over latents (and the per-latent callers not yet
# moved to the intervals above).

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


def _resampled_means(rng: np.random.Generator, v: np.ndarray, n_boot: int) -> np.ndarray:
    """[n_boot] means of bootstrap resamples of v, the counts drawn in blocks of rows.

    Generator.multinomial draws row after row from one stream, so blocks drawn in turn are the
    rows of one [n_boot, n] draw exactly (test_stats.py checks it). All n_boot rows are one
    block up to n = _BLOCK / n_boot (2,097 values at 1,000 resamples): the interval is
    bit-identical to the one-shot draw's. Above, a block's row count is a multiple of 64 and
    BLAS may still round a row's dot product differently by block shape (last bit)."""
    n = len(v)
    rows = max(64, _BLOCK // n // 64 * 64)
    p = np.full(n, 1.0 / n)
    return np.concatenate([rng.multinomial(n, p, size=min(rows, n_boot - start)).astype(np.float64)
                           @ v / n for start in range(0, n_boot, rows)])


def mean_interval(values: Sequence[float | None] | np.ndarray, *, seed: Any = 0,
                  n_boot: int = N_BOOT) -> tuple[float | None, float | None, float | None]:
    """(mean, ci_low, ci_high) of values (latents; None left out of a sequence); Nones when
    empty. The seeded percentile bootstrap up to BOOTSTRAP_MAX values, Student's t above.

    The bootstrap costs n_boot x n multinomial draws (0.5 s at 10^4 values, ~50 s at 10^6) and
    buys nothing at that n: a mean of 10^4+ values in [0, 1] is normal to within the CLT's
    O(1/sqrt n), where the two intervals agree to that order; t's coverage on skewed,
    balanced-accuracy-like values at the threshold is 95% (test_stats.py simulates it)."""
    if isinstance(values, np.ndarray):
        v = values.astype(np.float64, copy=False)
    else:
        v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if not len(v):
        return None, None, None
    if len(v) > BOOTSTRAP_MAX:
        mean, lo, hi = t_interval(v)
        return float(mean), float(lo), float(hi)
    lo, hi = _interval(_resampled_means(_rng(seed), v, n_boot))
    return float(v.mean()), lo, hi
