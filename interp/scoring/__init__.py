"""Score stage: each ok explanation judged by every configured scorer on held-out windows."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from interp.artifacts import ArtifactRef, ArtifactStore, artifact_key, stable_hash
from interp.config import RunConfig
from interp.examples import load_examples
from interp.llm import LLMUnavailable
from interp.models import model_identity
from interp.prompts import load_prompt
from interp.resumable import drive, latent_stage, merge_parts
from interp.scoring.base import Outcome, Resources, ScoreContext
from interp.scoring.metrics import classification_metrics
from interp.scoring.registry import SCORERS

log = logging.getLogger(__name__)

STAGE = "score"
VERSION = "2"  # 2: scorer registry, error column
_METRICS = ("balanced_accuracy", "precision", "recall", "f1", "auc", "accuracy")

SCHEMA = pa.schema([
    ("score_id", pa.string()), ("explanation_id", pa.string()), ("latent", pa.int32()),
    ("scorer", pa.string()), ("scorer_model", pa.string()), ("prompt_hash", pa.string()),
    ("settings_hash", pa.string()), ("status", pa.string()), ("error", pa.string()),
    ("n_examples", pa.int32()),
    ("n_failed", pa.int32()), *[(m, pa.float64()) for m in _METRICS], ("corr", pa.float64()),
    ("predictions", pa.list_(pa.struct([("seq_id", pa.int32()), ("start", pa.int32()),
                                        ("quantile", pa.int32()), ("label", pa.int8()),
                                        ("prediction", pa.int8()), ("prob", pa.float64())]))),
    ("created_at", pa.float64())])


def _settings(cfg: RunConfig) -> dict:
    """Score settings that can change results (a disabled scorer's section is left out)."""
    return cfg.score.key_settings()


def score_key(cfg: RunConfig, explain_key: str, mine_key: str) -> str:
    prompts = {s: [load_prompt(p).sha for p in SCORERS[s].prompts(cfg)] for s in cfg.score.scorers}
    config = {"score": _settings(cfg), "llm": cfg.llm.identity()}
    if any(SCORERS[s].uses_subject_model for s in cfg.score.scorers):
        config["model"] = model_identity(cfg.model)  # surprisal / intervention run the model
    return artifact_key(STAGE, VERSION, config, {"explain": explain_key, "mine": mine_key},
                        {"prompts": prompts})


def _row(exp: dict, latent: int, scorer: str, out: Outcome, settings_hash: str) -> dict:
    m = out.metrics
    n_items = m["n_examples"]
    status = "no_examples" if not n_items else ("failed" if m["n_failed"] >= n_items else "ok")
    error = None
    if m["n_failed"] or status != "ok":
        error = (f"{m['n_failed']} of {n_items} examples failed: " if n_items else
                 "no held-out examples for this scorer") + "; ".join(out.errors[:3])
    return {"score_id": stable_hash({"e": exp["explanation_id"], "s": scorer, "h": settings_hash}),
            "explanation_id": exp["explanation_id"], "latent": latent, "scorer": scorer,
            "scorer_model": out.model, "prompt_hash": out.prompt_hash, "settings_hash": settings_hash,
            "status": status, "error": error, "corr": m.get("corr"),
            **{k: m[k] for k in ("n_examples", "n_failed", *_METRICS)},
            "predictions": [p.row() for p in out.predictions], "created_at": time.time()}


def make_work(cfg: RunConfig, explanations: dict[int, dict], llm, resources: Resources | None = None):
    """work(latent, examples) -> one score row per configured scorer (interp.scoring.registry)."""
    settings_hash = stable_hash(_settings(cfg))
    ctx = ScoreContext(cfg, llm, resources or Resources(cfg))

    async def work(latent: int, examples) -> list[dict]:
        exp = explanations[latent]
        rows = []
        for name in cfg.score.scorers:
            try:
                out = await SCORERS[name].run(ctx, latent, exp["text"], examples)
            except LLMUnavailable:
                raise  # no answer is not a score: the latent stays pending for the next run
            except Exception as err:  # noqa: BLE001 - one bad latent must not stop the stage
                log.exception("scorer %s failed on latent %d", name, latent)
                out = Outcome([], classification_metrics([], []), name)
                rows.append(_row(exp, latent, name, out, settings_hash) |
                            {"status": "error", "error": f"{type(err).__name__}: {err}"[:300]})
                continue
            rows.append(_row(exp, latent, name, out, settings_hash))
        return rows
    return work


def score(cfg: RunConfig, explain_ref: ArtifactRef, mine_ref: ArtifactRef, *, llm=None,
          shard: tuple[int, int] | None = None, progress: bool = False) -> ArtifactRef | None:
    """Score stage, resumable per latent. Only explanations with status 'ok' are scored.

    `llm` and `shard` as for interp.explain.explain.
    """
    store = ArtifactStore(cfg.home)
    key = score_key(cfg, explain_ref.key, mine_ref.key)
    # Only what scoring needs (the raw answers stay on disk): ~100 bytes a latent in memory.
    table = pq.read_table(explain_ref.path / "explanations.parquet",
                          columns=["latent", "status", "explanation_id", "text"],
                          filters=[("status", "=", "ok")])
    explanations = {r["latent"]: r for r in table.to_pylist()}
    latents = sorted(explanations)
    resources = Resources(cfg, mine_ref.path)

    def run(partial: Path, part: tuple[int, int] | None) -> dict[str, int]:
        return drive(cfg, latents, lambda client: make_work(cfg, explanations, client, resources),
                     lambda block: load_examples(mine_ref.path, block), partial=partial,
                     schema=SCHEMA, desc=STAGE if part is None else f"{STAGE} {part[0]}/{part[1]}",
                     llm=llm, shard=part, progress=progress)

    def finish(tmp: Path) -> dict:
        scores = merge_parts(tmp, SCHEMA, "scores.parquet", ("latent", "scorer"))
        st = scores.column("status").to_pylist()
        return {"explain": explain_ref.key, "mine": mine_ref.key, "sae": mine_ref.manifest()["sae"],
                "config": _settings(cfg), "llm": cfg.llm.identity(), "latents": latents,
                "status_counts": {s: st.count(s) for s in sorted(set(st))}}
    return latent_stage(store, STAGE, key, {"explain": explain_ref.key, "mine": mine_ref.key},
                        run, finish, shard)
