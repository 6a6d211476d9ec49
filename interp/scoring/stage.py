"""Score stage: each ok explanation judged by every configured scorer on held-out windows."""
from __future__ import annotations

import functools
import json
import logging
import random
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from interp.artifacts import stable_hash, write_parquet_atomic, write_text_atomic
from interp.config import RunConfig
from interp.contract import Stage, StageContext, Table
from interp.llm import LLMUnavailable
from interp.models import model_identity
from interp.prompts import load_prompt
from interp.resumable import drive, in_order, merge_parts
from interp.scoring.base import Outcome, ScoreContext, unscorable_reason
from interp.scoring.resources import StageResources
from interp.scoring.controls import control_lifts, control_texts, derangement
from interp.scoring.metrics import classification_metrics
from interp.scoring.registry import SCORERS
from interp.scoring.stats import classification_interval, summarize

log = logging.getLogger(__name__)

VERSION = "3"  # 3: intervals, n_valid, unscorable/insufficient, controls
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


def _settings(cfg: RunConfig) -> dict:
    """Score settings that can change results (a disabled scorer's section is left out)."""
    return cfg.score.key_settings()


def _interval(cfg: RunConfig, key: tuple, metric: str, out: Outcome) -> tuple[float, float] | None:
    """The headline metric's 95% interval: the scorer's own (simulation's correlation), or a
    stratified bootstrap over the latent's judged windows."""
    if "ci_low" in out.metrics:
        lo, hi = out.metrics["ci_low"], out.metrics["ci_high"]
        return None if lo is None else (lo, hi)
    if metric not in ("balanced_accuracy", "auc", "accuracy"):
        return None
    labels = [p.label for p in out.predictions]
    values = [p.prob if metric == "auc" else p.prediction for p in out.predictions]
    return classification_interval(labels, values, metric, seed=(cfg.score.seed, *key),
                                   n_boot=cfg.score.n_bootstrap)


def _status(cfg: RunConfig, m: dict, unscorable: str | None) -> tuple[str, str | None]:
    n_items, n_failed = m["n_examples"], m["n_failed"]
    if unscorable or not n_items:
        return "unscorable", unscorable or "no held-out examples for this scorer"
    if n_failed >= n_items:
        return "failed", None
    if n_items - n_failed < cfg.score.min_valid_frac * n_items:
        return "insufficient", None
    return "ok", None


def _row(cfg: RunConfig, exp: dict, latent: int, scorer: str, out: Outcome, settings_hash: str,
         control: str | None = None, control_text: str | None = None,
         unscorable: str | None = None) -> dict:
    m = dict(out.metrics)
    n_items = m["n_examples"]
    status, error = _status(cfg, m, unscorable)
    if m["n_failed"] or status in ("failed", "insufficient"):
        error = f"{m['n_failed']} of {n_items} examples failed: " + "; ".join(out.errors[:3])
    # The registry is the one definition of a scorer's headline metric (also the `scorers` table).
    metric, ci = SCORERS[scorer].headline, None
    if status == "ok":
        ci = _interval(cfg, (latent, scorer, control or ""), metric, out)
    else:  # too few valid answers (or none) is not a score
        m.update({k: None for k in (*_METRICS, "corr")})
    sid = {"e": exp["explanation_id"], "s": scorer, "h": settings_hash}
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


def make_work(cfg: RunConfig, explanations: dict[int, dict], llm,
              resources: StageResources | None = None):
    """work(latent, examples) -> one score row per configured scorer (interp.scoring.registry),
    plus one per control (interp.scoring.controls) for the scorers in score.control_scorers."""
    settings_hash = stable_hash(_settings(cfg))
    ctx = ScoreContext(cfg, llm, resources or StageResources(cfg))
    other = derangement(list(explanations), cfg.score.seed) if "shuffled" in cfg.score.controls else {}
    shuffled = {l: explanations[o]["text"] for l, o in other.items()}
    n = cfg.score.control_latents
    controlled = set(explanations) if n is None or n >= len(explanations) else \
        set(random.Random(f"{cfg.score.seed}:controls").sample(sorted(explanations), n))

    async def judge(name: str, latent: int, exp: dict, text: str, examples, control: str | None):
        extra = {"control": control, "control_text": text if control else None}
        try:
            out = await SCORERS[name].run(ctx, latent, text, examples)
        except LLMUnavailable:
            raise  # no answer is not a score: the latent stays pending for the next run
        except Exception as err:  # noqa: BLE001 - one bad latent must not stop the stage
            log.exception("scorer %s failed on latent %d", name, latent)
            out = Outcome([], classification_metrics([], []), name)
            return _row(cfg, exp, latent, name, out, settings_hash, **extra) | {
                "status": "error", "error": f"{type(err).__name__}: {err}"[:300]}
        return _row(cfg, exp, latent, name, out, settings_hash, **extra)

    async def work(latent: int, examples) -> list[dict]:
        exp = explanations[latent]
        rows, steps = [], []
        for name in cfg.score.scorers:
            reason = unscorable_reason(SCORERS[name].needs, examples)
            if reason:  # recorded, never scored on what is left (e.g. negatives only)
                empty = Outcome([], classification_metrics([], []), name)
                rows.append(_row(cfg, exp, latent, name, empty, settings_hash, unscorable=reason))
                continue
            steps.append(functools.partial(judge, name, latent, exp, exp["text"], examples, None))
            if name in cfg.score.control_scorers and latent in controlled:
                for control, text in control_texts(cfg.score.controls, latent, shuffled,
                                                   examples).items():
                    steps.append(functools.partial(judge, name, latent, exp, text, examples, control))
        # Scorers one after another (each keeps its prompt prefix hot), all at once in the tail.
        return rows + await in_order(steps)
    return work


CONTROLS_SCHEMA = pa.schema([
    ("scorer", pa.string()), ("control", pa.string()), ("metric", pa.string()),
    ("n_latents", pa.int32()), ("real_mean", pa.float64()), ("control_mean", pa.float64()),
    ("lift", pa.float64()), ("ci_low", pa.float64()), ("ci_high", pa.float64()),
    ("informative", pa.bool_()), ("verdict", pa.string())])


def _frequencies(mine_dir: Path) -> dict[int, float]:
    path = Path(mine_dir) / "latents.parquet"
    if not path.is_file():
        return {}
    t = pq.read_table(path, columns=["latent", "frequency"])
    return dict(zip(t.column("latent").to_pylist(), t.column("frequency").to_pylist()))


def write_summary(cfg: RunConfig, scores: pa.Table, out: Path, mine_dir: Path) -> dict:
    """summary.json (per scorer: mean with interval, frequency-weighted aggregates; the control
    lifts with verdicts) and controls.parquet (one row per scorer and control) into `out`."""
    rows = scores.drop_columns(["predictions"]).to_pylist()
    seed, n_boot = cfg.score.seed, cfg.score.n_bootstrap
    controls = control_lifts(rows, seed=seed, n_boot=n_boot)
    summary = {"scorers": summarize(rows, _frequencies(mine_dir), seed=seed, n_boot=n_boot),
               "controls": controls, "level": 0.95, "n_bootstrap": n_boot}
    write_parquet_atomic(pa.Table.from_pylist(controls, schema=CONTROLS_SCHEMA),
                         out / "controls.parquet")
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def fill(ctx: StageContext) -> dict:
    """Score stage, resumable per latent. Only explanations with status 'ok' are scored."""
    cfg, explained, mine = ctx.cfg, ctx.input("explain"), ctx.input("mine")
    # Only what scoring needs (the raw answers stay on disk): ~100 bytes a latent in memory.
    table = pq.read_table(explained.path / "explanations.parquet",
                          columns=["latent", "status", "explanation_id", "text"],
                          filters=[("status", "=", "ok")])
    explanations = {r["latent"]: r for r in table.to_pylist()}
    latents = sorted(explanations)
    resources = StageResources(cfg, ctx.input("train").path,
                          ctx.input("collect").path / "sequences.parquet")
    progress = drive(ctx, latents, lambda client: make_work(cfg, explanations, client, resources),
                     SCHEMA)
    if ctx.shard is not None:
        return {}
    scores = merge_parts(ctx.out, SCHEMA, "scores.parquet", ("latent", "scorer", "control"))
    summary = write_summary(cfg, scores, ctx.out, mine.path)
    st = [s for s, c in zip(scores.column("status").to_pylist(),
                            scores.column("control").to_pylist()) if c is None]
    return {"explain": explained.key, "mine": mine.key, "sae": ctx.lineage.get("train"),
            "config": _settings(cfg), "llm": cfg.llm.identity(), "latents": latents,
            "status_counts": {s: st.count(s) for s in sorted(set(st))},
            "verdicts": [c["verdict"] for c in summary["controls"]], "progress": progress}


def settings(cfg: RunConfig) -> dict:
    """What of the config can change a score: the score settings, the judge, and the subject
    model when a scorer runs it (surprisal, intervention)."""
    config = {"score": _settings(cfg), "llm": cfg.llm.identity()}
    if any(SCORERS[s].uses_subject_model for s in cfg.score.scorers):
        config["model"] = model_identity(cfg.model)
    return config


def _prompts(cfg: RunConfig) -> dict:
    return {"prompts": {s: [load_prompt(p).sha for p in SCORERS[s].prompts(cfg.score)]
                        for s in cfg.score.scorers}}


_PROVENANCE = (("score_key", "score"), ("explain_key", "explain"), ("sae_key", "train"))
STAGE = Stage(
    "score", VERSION, settings, fill, inputs=("explain", "mine"), reads=("collect", "train"),
    extra=lambda k: _prompts(k.cfg), uses_llm=True, per_latent=True,
    tables=(Table("scores", "scores.parquet", "* EXCLUDE (predictions)", provenance=_PROVENANCE),
            Table("predictions", "scores.parquet", "score_id, explanation_id, latent, scorer, "
                  "unnest(predictions, recursive := true)"),
            Table("controls", "controls.parquet", optional=True,
                  provenance=(("score_key", "score"), ("sae_key", "train")))))
