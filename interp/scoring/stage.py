"""Score stage: each ok explanation judged by every configured scorer on held-out windows, with
controls on a sample of latents and the known-answer probes; the run's verdict per scorer."""
from __future__ import annotations

import logging

import pyarrow.parquet as pq

from interp.config import RunConfig
from interp.contract import Stage, StageContext, Table
from interp.latent_stage import drive, merge_parts
from interp.mine.examples import Example, ExampleReader
from interp.models import model_identity
from interp.prompts import load_prompt
from interp.scoring.probes import build_probes
from interp.scoring.registry import SCORERS
from interp.scoring.resources import StageResources
from interp.scoring.rows import SCHEMA
from interp.scoring.summary import write_summary
from interp.scoring.work import make_work

log = logging.getLogger(__name__)

VERSION = "5"  # 4: probes, controls for every scorer, fair windows, chance levels; 5: letter ids
POOL_LATENTS = 64  # latents whose held-out windows stand in for another's (intruder's control)


def _settings(cfg: RunConfig) -> dict:
    """Score settings that can change results (a disabled scorer's section is left out)."""
    return cfg.score.key_settings()


def _pool(reader, latents: list[int], seed: int) -> list[Example]:
    """Held-out activating windows of a seeded sample of latents (bounded: POOL_LATENTS)."""
    import random

    chosen = sorted(random.Random(f"{seed}:pool").sample(latents, min(POOL_LATENTS, len(latents))))
    return [e for exs in reader(chosen).values() for e in exs
            if e.kind == "quantile" and e.split == "test"]


def fill(ctx: StageContext) -> dict:
    """Score stage, resumable per latent. Only explanations with status 'ok' are scored; the
    known-answer probes run as pseudo-latents < 0 beside them."""
    cfg, explained, mine, collect = ctx.cfg, ctx.input("explain"), ctx.input("mine"), ctx.input("collect")
    # Only what scoring needs (the raw answers stay on disk): ~100 bytes a latent in memory.
    table = pq.read_table(explained.path / "explanations.parquet",
                          columns=["latent", "status", "explanation_id", "text"],
                          filters=[("status", "=", "ok")])
    explanations = {r["latent"]: r for r in table.to_pylist()}
    probes = build_probes(cfg, collect.path) if cfg.score.probes else {}
    for pid, (rule, _) in probes.items():
        explanations[pid] = {"latent": pid, "explanation_id": f"probe-{pid}", "text": rule}
    latents = sorted(explanations, key=lambda l: (l >= 0, abs(l)))  # the probes first
    resources = StageResources(cfg, ctx.input("train").path, collect.path / "sequences.parquet")
    reader = ExampleReader(mine.path, collect.path / "sequences.parquet")
    try:
        pool = _pool(reader, [l for l in latents if l >= 0], cfg.score.seed) \
            if "intruder" in cfg.score.controlled_scorers() else []
    finally:
        reader.close()
    progress = drive(ctx, latents, lambda client: make_work(cfg, explanations, client, resources,
                                                            pool, ctx.key),
                     SCHEMA, given={pid: exs for pid, (_, exs) in probes.items()})
    if ctx.shard is not None:
        return {}
    scores = merge_parts(ctx.out, SCHEMA, "scores.parquet", ("latent", "scorer", "control"))
    summary = write_summary(cfg, scores, ctx.out, mine.path)
    st = [s for s, c in zip(scores.column("status").to_pylist(),
                            scores.column("control").to_pylist()) if c is None]
    return {"explain": explained.key, "mine": mine.key, "sae": ctx.lineage.get("train"),
            "config": _settings(cfg), "llm": cfg.llm.identity(),
            "latents": [l for l in latents if l >= 0], "probes": {p: r for p, (r, _) in probes.items()},
            "status_counts": {s: st.count(s) for s in sorted(set(st))},
            "verdicts": {v["scorer"]: v["verdict"] for v in summary["verdicts"]},
            "progress": progress}


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
            *(Table(name, f"{name}.parquet", optional=True,
                    provenance=(("score_key", "score"), ("sae_key", "train")))
              for name in ("controls", "judge_checks", "verdicts"))))
