"""The labelling pipeline as plain functions: the train stage wrapper, the stage keys of a run, and
a Prefect-free runner (flows/label.py wraps the same stage functions as Prefect tasks)."""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from interp.activations import collect, collect_key
from interp.artifacts import ArtifactRef, ArtifactStore, artifact_key, write_text_atomic
from interp.config import RunConfig, dump_config
from interp.explain import explain, explain_key
from interp.mining import mine, mine_key
from interp.scoring import score, score_key
from interp.shards import ActivationShards

log = logging.getLogger(__name__)

TRAIN_STAGE = "train"
TRAIN_VERSION = "1"
STAGES = ("collect", "train", "mine", "explain", "score")


def train_key(cfg: RunConfig, collect_key_: str) -> str:
    return artifact_key(TRAIN_STAGE, TRAIN_VERSION, cfg.sae.model_dump(mode="json", exclude={"device"}),
                        {"collect": collect_key_})


def train_stage(cfg: RunConfig, collect_ref: ArtifactRef, *, progress: bool = False) -> ArtifactRef:
    """Train stage: an SAE on the collected activations (sae.safetensors + cfg.json + metrics.json)."""
    from interp.sae import train

    store = ArtifactStore(cfg.home)
    key = train_key(cfg, collect_ref.key)
    with store.lock(TRAIN_STAGE, key):
        if (ref := store.get(TRAIN_STAGE, key)) is not None:
            return ref
        shards = ActivationShards(collect_ref.path)
        manifest: dict[str, Any] = {"collect": collect_ref.key, "hookpoint": shards.hookpoint,
                                    "model": shards.meta.get("model"),
                                    "config": cfg.sae.model_dump(mode="json")}
        with store.build(TRAIN_STAGE, key, manifest) as tmp:
            manifest["metrics"] = train(cfg.sae, shards, tmp, device=cfg.sae.device or cfg.model.device,
                                        progress=progress)
        return store.require(TRAIN_STAGE, key)


def plan(cfg: RunConfig) -> dict[str, str]:
    """Artifact key of every stage, computed from the config alone (nothing runs)."""
    keys = {"collect": collect_key(cfg)}
    keys["train"] = train_key(cfg, keys["collect"])
    keys["mine"] = mine_key(cfg, keys["collect"], keys["train"])
    keys["explain"] = explain_key(cfg, keys["mine"])
    keys["score"] = score_key(cfg, keys["explain"], keys["mine"])
    return keys


@dataclass
class RunRecord:
    """What one run did: its id, the artifact of each stage, wall time and whether it was cached."""

    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6])
    started_at: float = field(default_factory=time.time)
    artifacts: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    cached: dict[str, bool] = field(default_factory=dict)

    def timed(self, stage: str, cfg: RunConfig, fn: Callable[[], ArtifactRef]) -> ArtifactRef:
        key = plan_one(cfg, stage, self.artifacts)
        self.cached[stage] = ArtifactStore(cfg.home).get(stage, key) is not None
        t0 = time.time()
        ref = fn()
        self.seconds[stage] = round(time.time() - t0, 2)
        self.artifacts[stage] = ref.key
        log.info("%s: %s in %.1fs%s", stage, ref.key, self.seconds[stage],
                 " (cached)" if self.cached[stage] else "")
        return ref


def plan_one(cfg: RunConfig, stage: str, done: dict[str, str]) -> str:
    """Key of one stage given the keys of the stages before it."""
    if stage == "collect":
        return collect_key(cfg)
    if stage == "train":
        return train_key(cfg, done["collect"])
    if stage == "mine":
        return mine_key(cfg, done["collect"], done["train"])
    if stage == "explain":
        return explain_key(cfg, done["mine"])
    return score_key(cfg, done["explain"], done["mine"])


def save_run(cfg: RunConfig, record: RunRecord) -> None:
    """Write the run's resolved config and record under <home>/runs/<run_id>/."""
    d = cfg.home / "runs" / record.run_id
    d.mkdir(parents=True, exist_ok=True)
    write_text_atomic(d / "config.yaml", dump_config(cfg))
    write_text_atomic(d / "run.json", json.dumps({
        "run_id": record.run_id, "started_at": record.started_at, "finished_at": time.time(),
        "artifacts": record.artifacts, "seconds": record.seconds, "cached": record.cached}, indent=2))


def run_pipeline(cfg: RunConfig, *, progress: bool = False) -> RunRecord:
    """All five stages in order, without Prefect; returns the run record (not yet published)."""
    rec = RunRecord()
    c = rec.timed("collect", cfg, lambda: collect(cfg, progress=progress))
    t = rec.timed("train", cfg, lambda: train_stage(cfg, c, progress=progress))
    m = rec.timed("mine", cfg, lambda: mine(cfg, c, t))
    e = rec.timed("explain", cfg, lambda: explain(cfg, m, progress=progress))
    rec.timed("score", cfg, lambda: score(cfg, e, m, progress=progress))
    save_run(cfg, rec)
    return rec
