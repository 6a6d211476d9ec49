"""One row of scores.parquet: a scorer's outcome on one explanation (or a control's stand-in, or
a probe) as status, metrics, headline value with its interval, chance level and predictions."""
from __future__ import annotations

import time
from typing import Any

import pyarrow as pa

from interp.artifacts import stable_hash
from interp.scoring.base import Outcome
from interp.scoring.registry import SCORERS
from interp.scoring.stats import class_interval, insufficient_reason

_METRICS = ("balanced_accuracy", "precision", "recall", "f1", "auc", "accuracy")

SCHEMA = pa.schema([
    ("score_id", pa.string()), ("explanation_id", pa.string()), ("latent", pa.int32()),
    ("scorer", pa.string()), ("scorer_model", pa.string()), ("prompt_hash", pa.string()),
    ("settings_hash", pa.string()), ("status", pa.string()), ("error", pa.string()),
    # None for the LLM's explanation; 'shuffled' / 'top_tokens' for a control (control_text).
    ("control", pa.string()), ("control_text", pa.string()),
    ("n_examples", pa.int32()), ("n_failed", pa.int32()), ("n_valid", pa.int32()),
    *[(m, pa.float64()) for m in _METRICS], ("corr", pa.float64()),
    # The scorer's headline metric (its `headline` in the registry), its value and 95% interval.
    ("metric", pa.string()), ("value", pa.float64()),
    ("ci_low", pa.float64()), ("ci_high", pa.float64()),
    ("chance", pa.float64()),  # the headline's value for a judge that knows nothing
    ("predictions", pa.list_(pa.struct([("seq_id", pa.int32()), ("start", pa.int32()),
                                        ("quantile", pa.int32()), ("label", pa.int8()),
                                        ("prediction", pa.int8()), ("prob", pa.float64())]))),
    ("created_at", pa.float64())])


def _interval(cfg: Any, metric: str, out: Outcome) -> tuple[float, float] | None:
    """The headline metric's 95% interval: the scorer's own (simulation's correlation,
    intervention's mean gain), else the small-count interval of the latent's judged windows
    (interp/scoring/stats.py: per-class for balanced accuracy, exact binomial for accuracy,
    a score interval for AUC)."""
    if "ci_low" in out.metrics:
        lo, hi = out.metrics["ci_low"], out.metrics["ci_high"]
        return None if lo is None else (lo, hi)
    if metric not in ("balanced_accuracy", "auc", "accuracy"):
        return None
    labels = [p.label for p in out.predictions]
    values = [p.prob if metric == "auc" else p.prediction for p in out.predictions]
    return class_interval(labels, values, metric, min_per_class=cfg.score.min_per_class)


def _status(cfg: Any, metric: str, out: Outcome, unscorable: str | None) -> tuple[str, str | None]:
    """ok, or why not: unscorable (nothing to judge), failed (no valid answer), insufficient
    (valid answers below score.min_valid_frac of the items, or a class the metric needs below
    score.min_per_class)."""
    m = out.metrics
    n_items, n_failed = m["n_examples"], m["n_failed"]
    if unscorable or not n_items:
        return "unscorable", unscorable or "no held-out examples for this scorer"
    if n_failed >= n_items:
        return "failed", None
    if n_items - n_failed < cfg.score.min_valid_frac * n_items:
        return "insufficient", None
    values = [p.prob if metric == "auc" else p.prediction for p in out.predictions]
    why = insufficient_reason([p.label for p in out.predictions], values, metric,
                              cfg.score.min_per_class)
    return ("insufficient", why) if why else ("ok", None)


def score_row(cfg: Any, exp: dict, latent: int, scorer: str, out: Outcome, settings_hash: str,
              control: str | None = None, control_text: str | None = None,
              unscorable: str | None = None, score_key: str = "") -> dict:
    """The scores.parquet row of one scorer's outcome on one explanation (or stand-in). Its id
    hashes the score run's key: a re-score whose settings hash is unchanged (a new stage
    version, prompt file or judge) makes new rows, never a second row with an old row's id."""
    m = dict(out.metrics)
    n_items = m["n_examples"]
    # The registry is the one definition of a scorer's headline metric (also the `scorers` table).
    metric, ci = SCORERS[scorer].headline, None
    status, error = _status(cfg, metric, out, unscorable)
    if m["n_failed"] or status == "failed" or (status == "insufficient" and not error):
        failed = f"{m['n_failed']} of {n_items} examples failed: " + "; ".join(out.errors[:3])
        error = f"{error}; {failed}" if error else failed
    if status == "ok" and m.get(metric) is None:
        # e.g. every answer about one class failed: no balanced accuracy. Never 'ok' without a
        # value, which the means would drop without a word.
        status = "insufficient"
        error = f"no {metric} from the {n_items - m['n_failed']} valid answers: " + \
            ("; ".join(out.errors[:3]) or "one class has no valid answer")
    if status == "ok":
        ci = _interval(cfg, metric, out)
    else:  # too few valid answers (or none) is not a score
        m.update({k: None for k in (*_METRICS, "corr")})
    sid = {"e": exp["explanation_id"], "s": scorer, "h": settings_hash, "k": score_key}
    return {"score_id": stable_hash(sid if control is None else sid | {"c": control}),
            "explanation_id": exp["explanation_id"], "latent": latent, "scorer": scorer,
            "scorer_model": out.model, "prompt_hash": out.prompt_hash, "settings_hash": settings_hash,
            "status": status, "error": error, "control": control, "control_text": control_text,
            "corr": m.get("corr"), **{k: m[k] for k in ("n_examples", "n_failed", *_METRICS)},
            "n_valid": n_items - m["n_failed"], "metric": metric,
            "value": m.get(metric) if status == "ok" else None,
            "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None,
            "chance": SCORERS[scorer].chance(cfg.score),
            "predictions": [p.row() for p in out.predictions], "created_at": time.time()}
