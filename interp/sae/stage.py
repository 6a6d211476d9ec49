"""The train stage: an SAE trained on a collect artifact (or an imported one), with its metrics.

The artifact holds `sae.safetensors` + `cfg.json` (the SAE describes itself) and `metrics.json`
(FVU, L0, dead fraction on held-out tokens; CE loss recovered and KL with the SAE spliced in).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from interp.artifacts import file_hash, stable_hash, write_text_atomic
from interp.collect.shards import ActivationShards
from interp.collect.stream import open_activations
from interp.config import RunConfig
from interp.contract import Stage, StageContext, Table

VERSION = "3"  # 3: batch thresholds recalibrated on held-out tokens, one dead_frac definition
NEURONS_VERSION = "1"  # of the neurons build (interp.sae.neurons), in its keys only


def _dir_hash(path: Path) -> str:
    """Content hash of an external SAE directory (its weight and config files)."""
    files = sorted(p for p in Path(path).rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors"))
    if not files:
        raise ValueError(f"sae.path {path} holds no SAE (expected sae.safetensors or "
                         f"sae_weights.safetensors with cfg.json)")
    return stable_hash({str(f.relative_to(path)): file_hash(f) for f in files})


def settings(cfg: RunConfig) -> dict[str, Any]:
    """What of the config can change the SAE: its recipe (an imported SAE: its files' hash)."""
    if cfg.sae.architecture == "neurons":  # read from the model (its key is in collect's)
        recipe = {"architecture": "neurons", "k": cfg.sae.k, "holdout_every": cfg.sae.holdout_every,
                  "eval_sequences": cfg.sae.eval_sequences, "neurons_version": NEURONS_VERSION}
    elif cfg.sae.path is not None:
        recipe = {"external": _dir_hash(cfg.sae.path), "eval_sequences": cfg.sae.eval_sequences,
                  "holdout_every": cfg.sae.holdout_every}
    else:
        # gsae_beta only where the architecture uses it, so the others kept their keys
        skip = {"device", "threads", "checkpoint_every"} | ({"gsae_beta"} - cfg.sae.arch.options)
        recipe = cfg.sae.model_dump(mode="json", exclude=skip)
    return recipe


def _import_sae(cfg: RunConfig, shards: ActivationShards, out: Path) -> dict[str, Any]:
    """Copy an SAE trained elsewhere into a train artifact, after checking it fits the model."""
    from interp.sae.calibrate import HELDOUT_TOKENS, dead_fraction
    from interp.sae.data import heldout_tokens
    from interp.sae.eval import evaluate
    from interp.sae.io import check_compatible, load_any_sae, save_sae

    sae = load_any_sae(cfg.sae.path, hookpoint=shards.hookpoint)
    check_compatible(sae, shards.d_model, shards.hookpoint)
    save_sae(sae, out)
    x, _ = heldout_tokens(shards, max(cfg.sae.holdout_every, 1), max_tokens=HELDOUT_TOKENS)
    metrics: dict[str, Any] = evaluate(sae, x)
    # the same dead_frac as trained SAEs: never firing on the held-out budget, inference rule
    metrics.update(dead_frac=dead_fraction(sae, x), dead_tokens_evaluated=min(len(x), HELDOUT_TOKENS),
                   l0_rule="inference", num_latents=sae.num_latents, k=sae.k,
                   imported_from=str(cfg.sae.path))
    return metrics


def load_mlp_weights(cfg: RunConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(W_out, b_out) of the MLP at model.hookpoint, from the subject model (a seam that tests
    replace with planted weights)."""
    from interp.models import load_model
    from interp.sae.neurons import model_mlp_weights

    return model_mlp_weights(load_model(cfg.model, cfg.home), cfg.model.layer)


def _build_neurons(cfg: RunConfig, shards: ActivationShards, out: Path) -> dict[str, Any]:
    """The MLP's neurons as the train artifact's dictionary (nothing trained)."""
    from interp.sae.neurons import build_neurons

    return build_neurons(cfg.sae.k, shards, out, lambda: load_mlp_weights(cfg),
                         holdout_every=cfg.sae.holdout_every)


def _downstream(cfg: RunConfig, shards: ActivationShards, sae_dir: Path) -> dict[str, float]:
    """CE loss recovered and KL with the SAE spliced in (a transcoder: its output in place of its
    target hookpoint's), on held-out sequences."""
    from interp.models import load_model
    from interp.sae.eval import eval_downstream, eval_replacement
    from interp.sae.io import load_sae

    every = max(cfg.sae.holdout_every, 1)
    seqs = []
    for i, info in enumerate(shards.shards):  # token ids only: no activations are read
        seq_ids = torch.arange(info.first_seq, info.first_seq + info.n_seq)
        seqs.append(shards.load_tokens(i)[seq_ids % every == 0])
    tokens = torch.cat(seqs)[: cfg.sae.eval_sequences]
    model = load_model(cfg.model, cfg.home)
    sae = load_sae(sae_dir, device=cfg.model.device)
    if sae.transcode:  # the transcoder replaces its target, computed from its input hookpoint
        run = model.run_replacement(shards.hookpoint, sae.cfg["hookpoint_out"])
        evaluate = eval_replacement
    else:
        run, evaluate = model.run_model(shards.hookpoint), eval_downstream
    pooled = {"ce_clean": 0.0, "ce_spliced": 0.0, "ce_zero": 0.0, "kl": 0.0}
    for b in range(0, len(tokens), 8):  # a few sequences at a time keeps logits memory small
        part = evaluate(run, sae, tokens[b:b + 8])
        for k in pooled:
            pooled[k] += part[k] * len(tokens[b:b + 8]) / len(tokens)
    gap = pooled["ce_zero"] - pooled["ce_clean"]
    return {"ce_clean": pooled["ce_clean"], "ce_spliced": pooled["ce_spliced"],
            "ce_zero": pooled["ce_zero"], "kl_div": pooled["kl"], "eval_sequences": len(tokens),
            "ce_loss_recovered": (pooled["ce_zero"] - pooled["ce_spliced"]) / gap if gap else None}


def _write_head_shares(key: str, shards: ActivationShards, out: Path) -> None:
    """head_shares.parquet (sae_key, latent, head, share) for an SAE on a per-head hook (hook_z)."""
    from interp.artifacts import write_parquet_atomic
    from interp.hooks import is_head_hook
    from interp.sae.heads import head_share_table
    from interp.sae.io import load_sae

    n_heads = int(shards.meta.get("n_heads") or 0)
    if not is_head_hook(shards.hookpoint) or not n_heads:
        return
    sae = load_sae(out)
    write_parquet_atomic(head_share_table(key, sae.W_dec, n_heads), out / "head_shares.parquet")


def fill(ctx: StageContext) -> dict[str, Any]:
    """Train stage: an SAE on the collected activations (or an imported one), with its metrics."""
    from interp.sae.train import train

    cfg, tmp, collect = ctx.cfg, ctx.out, ctx.input("collect")
    # collect.store 'tokens': the imported SAE's metrics run the model on held-out shards
    shards = open_activations(cfg, collect.path)
    if cfg.sae.path is None and shards.store != "dense":
        raise ValueError(f"collect artifact {collect.key} holds token ids only "
                         f"(collect.store 'tokens'): training needs stored activations; set "
                         f"sae.path to label an imported SAE, or collect.store 'dense'")
    if cfg.sae.architecture == "neurons":
        metrics = _build_neurons(cfg, shards, tmp)
    elif cfg.sae.path is not None:
        metrics = _import_sae(cfg, shards, tmp)
    else:
        metrics = train(cfg.sae, shards, tmp, device=cfg.sae.device or cfg.model.device,
                        progress=ctx.progress)
    if cfg.sae.eval_sequences:  # transcoders: CE with the replacement spliced in
        metrics.update(_downstream(cfg, shards, tmp))
    write_text_atomic(tmp / "metrics.json", json.dumps(metrics, indent=2))
    _write_head_shares(ctx.key, shards, tmp)
    return {"collect": collect.key, "hookpoint": shards.hookpoint,
            "model": shards.meta.get("model"), "config": cfg.sae.model_dump(mode="json"),
            "metrics": metrics}


def saes_row(path: Path, man: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The catalogue's `saes` row of a train artifact: its shape and metrics."""
    cfg = json.loads((path / "cfg.json").read_text())
    m = man.get("metrics", {})
    return {"saes": [{
        "sae_key": man["key"], "collect_key": (man.get("inputs") or {}).get("collect", man.get("collect")),
        "model": json.dumps(man.get("model")), "hookpoint": man.get("hookpoint"),
        "architecture": cfg.get("architecture", "topk"), "d_in": cfg.get("d_in"),
        "num_latents": cfg.get("num_latents"), "k": cfg.get("k"),
        "tokens_seen": m.get("tokens_seen"), "fvu": m.get("fvu"), "l0": m.get("l0"),
        "dead_frac": m.get("dead_frac"), "ce_loss_recovered": m.get("ce_loss_recovered"),
        "kl_div": m.get("kl_div"), "metrics": json.dumps(m), "created_at": man.get("created_at")}]}


STAGE = Stage(
    "train", VERSION, settings, fill, inputs=("collect",),
    # Resumable when training: a crashed run continues from its last checkpoint.
    resumable=lambda cfg: cfg.sae.path is None and cfg.sae.arch.trainable,
    rows=saes_row,
    tables=(Table("head_shares", "head_shares.parquet", "sae_key, latent, head, share",
                  optional=True),))  # an SAE of attention head outputs (hook_z)
