"""The score summary as it was computed row by row (scores.to_pylist(), Python dicts, a one-shot
[n_boot, n] bootstrap): the naive reference that the columnar write_summary must equal."""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from interp.scoring import stats
from interp.scoring.controls import ALPHA, PROBE, lift_test, verdict
from interp.scoring.summary import judge_checks, verdicts


def mean_interval(values, *, seed: Any = 0, n_boot: int = stats.N_BOOT):
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if not len(v):
        return None, None, None
    lo, hi = stats._interval(stats._counts(stats._rng(seed), len(v), n_boot) @ v / len(v))
    return float(v.mean()), lo, hi


def frequency_weighted(values, weights):
    pairs = [(v, w) for v, w in zip(values, weights) if v is not None and w]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total > 0 else None


def summarize(rows, frequencies=None, *, seed=0, n_boot=stats.N_BOOT):
    freq = frequencies or {}
    out = {}
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
            "frequency_weighted_f1": frequency_weighted([r.get("f1") for r in ok], weights),
            "n_valid": sum(r.get("n_valid") or 0 for r in mine),
            "n_examples": sum(r.get("n_examples") or 0 for r in mine)}
    return out


def _values(rows, scorer, control):
    return {r["latent"]: r["value"] for r in rows if r["scorer"] == scorer
            and r["control"] == control and r["status"] == "ok" and r["value"] is not None}


def control_lifts(rows, *, seed=0):
    out = []
    pairs = sorted({(r["scorer"], r["control"]) for r in rows if r["control"] is not None})
    for scorer, control in pairs:
        real, ctrl = _values(rows, scorer, None), _values(rows, scorer, control)
        both = sorted(set(real) & set(ctrl))
        test = lift_test([real[l] for l in both], [ctrl[l] for l in both],
                         seed=(seed, scorer, control))
        metric = next(r.get("metric") for r in rows if r["scorer"] == scorer)
        row = {"scorer": scorer, "control": control, "metric": metric, "n_latents": len(both),
               "real_mean": sum(real[l] for l in both) / len(both) if both else None,
               "control_mean": sum(ctrl[l] for l in both) / len(both) if both else None,
               **{k: test[k] for k in ("lift", "ci_low", "ci_high", "p_value", "informative")},
               "alpha": ALPHA}
        out.append(row | {"verdict": verdict(row)})
    return out


def summary(cfg: Any, scores: pa.Table, frequencies: dict[int, float]) -> dict:
    """What write_summary returned (and wrote to summary.json) before it went columnar."""
    rows = scores.to_pylist()
    seed, n_boot = cfg.score.seed, cfg.score.n_bootstrap
    plain = [r for r in rows if r["control"] != PROBE]
    controls = control_lifts([{k: v for k, v in r.items() if k != "predictions"} for r in plain],
                             seed=seed)
    checks = judge_checks(rows)
    found = verdicts(list(cfg.score.scorers), checks, controls)
    return {"scorers": summarize(plain, frequencies, seed=seed, n_boot=n_boot),
            "controls": controls, "judge_checks": checks, "verdicts": found, "level": 0.95,
            "n_bootstrap": n_boot}
