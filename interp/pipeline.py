"""The labelling pipeline as plain functions: the train stage wrapper, the stage keys of a run, and
a Prefect-free runner (flows/label.py wraps the same stage functions as Prefect tasks)."""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp.activations import collect, collect_key
from interp.artifacts import (ArtifactRef, ArtifactStore, artifact_key, file_hash, stable_hash,
                              write_text_atomic)
from interp.config import RunConfig, dump_config
from interp.explain import explain, explain_key
from interp.mining import mine, mine_key
from interp.scoring import score, score_key
from interp.shards import ActivationShards

log = logging.getLogger(__name__)

TRAIN_STAGE = "train"
TRAIN_VERSION = "1"
STAGES = ("collect", "train", "mine", "explain", "score")


def _dir_hash(path: Path) -> str:
    """Content hash of an external SAE directory (its weight and config files)."""
    files = sorted(p for p in Path(path).rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors"))
    if not files:
        raise ValueError(f"sae.path {path} holds no SAE (expected sae.safetensors or "
                         f"sae_weights.safetensors with cfg.json)")
    return stable_hash({str(f.relative_to(path)): file_hash(f) for f in files})


def train_key(cfg: RunConfig, collect_key_: str) -> str:
    if cfg.sae.path is not None:
        recipe = {"external": _dir_hash(cfg.sae.path), "eval_sequences": cfg.sae.eval_sequences,
                  "holdout_every": cfg.sae.holdout_every}
    else:
        recipe = cfg.sae.model_dump(mode="json", exclude={"device", "threads", "checkpoint_every"})
    return artifact_key(TRAIN_STAGE, TRAIN_VERSION, recipe, {"collect": collect_key_})


def _import_sae(cfg: RunConfig, shards: ActivationShards, out: Path) -> dict[str, Any]:
    """Copy an SAE trained elsewhere into a train artifact, after checking it fits the model."""
    from interp.sae import check_compatible, evaluate, load_any_sae, save_sae
    from interp.sae.data import heldout_tokens

    sae = load_any_sae(cfg.sae.path, hookpoint=shards.hookpoint)
    check_compatible(sae, shards.d_model, shards.hookpoint)
    save_sae(sae, out)
    x, _ = heldout_tokens(shards, max(cfg.sae.holdout_every, 1), max_tokens=65_536)
    metrics: dict[str, Any] = evaluate(sae, x)
    fired = torch.zeros(sae.num_latents, dtype=torch.bool)
    with torch.inference_mode():
        for b in range(0, len(x), 4096):
            acts, idx = sae.encode(x[b:b + 4096])
            fired[idx[acts > 0].unique()] = True
    metrics.update(dead_frac=float(1 - fired.float().mean()), num_latents=sae.num_latents,
                   k=sae.k, imported_from=str(cfg.sae.path))
    return metrics


def _downstream(cfg: RunConfig, shards: ActivationShards, sae_dir: Path) -> dict[str, float]:
    """CE loss recovered and KL with the SAE spliced in, on held-out sequences."""
    from interp.models import load_model
    from interp.sae import eval_downstream, load_sae

    every = max(cfg.sae.holdout_every, 1)
    seqs = []
    for seq_ids, _acts, tokens in shards.iter_sequences():
        seqs.append(tokens[seq_ids % every == 0])
    tokens = torch.cat(seqs)[: cfg.sae.eval_sequences]
    model = load_model(cfg.model, cfg.home)
    sae = load_sae(sae_dir, device=cfg.model.device)
    run = model.run_model(shards.hookpoint)
    pooled = {"ce_clean": 0.0, "ce_spliced": 0.0, "ce_zero": 0.0, "kl": 0.0}
    for b in range(0, len(tokens), 8):  # a few sequences at a time keeps logits memory small
        part = eval_downstream(run, sae, tokens[b:b + 8])
        for k in pooled:
            pooled[k] += part[k] * len(tokens[b:b + 8]) / len(tokens)
    gap = pooled["ce_zero"] - pooled["ce_clean"]
    return {"ce_clean": pooled["ce_clean"], "ce_spliced": pooled["ce_spliced"],
            "ce_zero": pooled["ce_zero"], "kl_div": pooled["kl"], "eval_sequences": len(tokens),
            "ce_loss_recovered": (pooled["ce_zero"] - pooled["ce_spliced"]) / gap if gap else None}


def train_stage(cfg: RunConfig, collect_ref: ArtifactRef, *, progress: bool = False) -> ArtifactRef:
    """Train stage: an SAE on the collected activations (or an imported one), with its metrics."""
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
        # Resumable: a crashed training run continues from its last checkpoint.
        with store.build(TRAIN_STAGE, key, manifest, resumable=cfg.sae.path is None) as tmp:
            if cfg.sae.path is not None:
                metrics = _import_sae(cfg, shards, tmp)
            else:
                metrics = train(cfg.sae, shards, tmp, device=cfg.sae.device or cfg.model.device,
                                progress=progress)
            if cfg.sae.eval_sequences and not cfg.sae.transcode_target:
                metrics.update(_downstream(cfg, shards, tmp))
            write_text_atomic(tmp / "metrics.json", json.dumps(metrics, indent=2))
            manifest["metrics"] = metrics
        return store.require(TRAIN_STAGE, key)


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
