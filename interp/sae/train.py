"""The train stage: fit an SAE (or transcoder) to a collect artifact and write it with its metrics.

Recipe (after sparsify / Gao et al. 2024): b_dec starts at the geometric median of a data sample,
W_dec rows are unit-norm (gradient's radial part removed, rows renormalised after every step), the
encoder starts as W_dec's transpose, Adam with lr 2e-4/sqrt(m/2^14), linear warm-up and a final
linear decay, AuxK on dead latents. Optional activation scaling is folded into the saved weights.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp.artifacts import write_text_atomic
from interp.collect.shards import ActivationShards
from interp.finite import require_finite
from interp.sae.calibrate import HELDOUT_TOKENS, calibrate_threshold, dead_fraction
from interp.sae.checkpoint import load_checkpoint, save_checkpoint
from interp.sae.config import SAEConfig
from interp.sae.data import count_train_tokens, heldout_tokens, train_batches
from interp.sae.eval import evaluate, massive_token_fvu
from interp.sae.io import save_sae
from interp.sae.model import SAE
from interp.sae.trainer import Trainer, default_lr

log = logging.getLogger(__name__)

INIT_SAMPLE = 4_096       # tokens for the b_dec init and the normalisation scale
CALIBRATION_TOKENS = 16_384  # held-out tokens on which batch-level thresholds are recalibrated
CALIBRATION_MIN = 256        # fewer held-out tokens than this: calibrate on training tokens


def geometric_median(x: Tensor, iters: int = 50, eps: float = 1e-6) -> Tensor:
    """Weiszfeld's geometric median of x [N, d] -> [d]; robust to outlier tokens, unlike the mean."""
    med = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - med).norm(dim=1).clamp_min(eps)
        new = (w[:, None] * x).sum(0) / w.sum()
        if (new - med).norm() < eps * (1 + med.norm()):
            return new
        med = new
    return med


def _unit_scale(x: Tensor) -> float:
    """Factor s with mean ||s x||^2 = 1."""
    return float(1.0 / x.pow(2).sum(1).mean().sqrt().clamp_min(1e-12))


def build_sae(cfg: SAEConfig, shards: ActivationShards, device: str, *, holdout: int
              ) -> tuple[SAE, tuple[float, float]]:
    """A freshly initialised SAE for the shards, and its (input, output) activation scales."""
    target = cfg.transcode_target
    x, y = next(train_batches(shards, INIT_SAMPLE, seed=cfg.seed, holdout_every=holdout,
                              target=target))
    y = x if y is None else y
    scaled = cfg.normalize_activations == "unit_mean_squared_norm"
    s_in, s_out = (_unit_scale(x), _unit_scale(y)) if scaled else (1.0, 1.0)
    if target is None:
        s_out = s_in  # an autoencoder's input and output share one scale
    meta = {"hookpoint": shards.hookpoint, "hookpoint_out": target or shards.hookpoint,
            "model": shards.meta.get("model"), "expansion_factor": cfg.expansion_factor,
            "sparsity_coeff": cfg.sparsity_penalty, "normalisation": None,
            "skip_connection": cfg.skip_connection, **cfg.arch.sae_cfg(cfg)}
    sae = SAE(shards.d_model, cfg.expansion_factor * shards.d_model, cfg.k, cfg=meta,
              architecture=cfg.architecture, transcode=target is not None, d_out=y.shape[1],
              device=device, generator=torch.Generator().manual_seed(cfg.seed))
    with torch.no_grad():
        sae.b_dec.copy_(geometric_median((y * s_out).to(device)))
        if target is not None:  # centre the pre-activations on the input's median instead
            sae.encoder.bias.copy_(-sae.encoder.weight @ geometric_median((x * s_in).to(device)))
        sae.arch.init_from_sample(sae, (x * s_in).to(device))  # e.g. jumprelu's thresholds
    return sae, (s_in, s_out)


def train(cfg: SAEConfig, shards: ActivationShards, out_dir: Path, *, device: str = "cpu",
          progress: bool = False) -> dict[str, Any]:
    """Train an SAE on the shards; write sae.safetensors, cfg.json, metrics.json into out_dir.

    Resumes from out_dir/checkpoint when one exists (see `checkpoint_every`). Returns the metrics:
    fvu and l0 on held-out sequences (every `holdout_every`-th; on training tokens when there are
    too few, see `fvu_split`), fvu_train (mean over the last epoch), dead_frac, tokens_seen,
    tokens_per_s, train_seconds, num_latents, k.
    """
    if not cfg.arch.trainable:
        raise ValueError(f"sae.architecture {cfg.architecture!r} is not trained: "
                         f"{cfg.arch.summary}")
    with _torch_threads(cfg.threads):
        return _train(cfg, shards, Path(out_dir), device, progress)


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op threads. Every op of a training step is a parallel
    region; when another process holds a core, each region waits for the descheduled thread:
    measured 2.7k tokens/s with 2 threads against 14k with 1 on this 2-core machine."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(cfg: SAEConfig, shards: ActivationShards, out_dir: Path, device: str,
           progress: bool) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    holdout = cfg.holdout_every
    holdout = holdout if shards.n_sequences >= 2 * holdout > 0 else 0
    sae, scales = build_sae(cfg, shards, device, holdout=holdout)
    total_steps = cfg.epochs * math.ceil(count_train_tokens(shards, holdout) / cfg.batch_size)
    trainer = Trainer(sae, lr=cfg.lr or default_lr(sae.num_latents), total_steps=total_steps,
                      auxk_alpha=cfg.auxk_alpha, dead_tokens=cfg.dead_tokens,
                      warmup=cfg.lr_warmup_steps, decay_frac=cfg.lr_decay_frac,
                      aux_zipf=cfg.aux_zipf)
    position = load_checkpoint(out_dir / "checkpoint", sae, trainer)
    if position is not None:
        scales = position["scales"]
        log.info("resuming from step %d (epoch %d)", trainer.steps, position["epoch"])
    log.info("training %s SAE: d=%d m=%d k=%d, %d steps of %d tokens", cfg.architecture,
             sae.d_in, sae.num_latents, sae.k, total_steps, cfg.batch_size)
    start, tokens_before = time.perf_counter(), trainer.tokens_seen
    last_fvus = _run_epochs(cfg, shards, trainer, scales, holdout, out_dir, position, progress)
    seconds = time.perf_counter() - start
    sae.fold_scaling(*scales)
    if scales != (1.0, 1.0):
        sae.cfg["normalisation"] = {"method": "unit_mean_squared_norm", "scale_in": scales[0],
                                    "scale_out": scales[1], "folded_into_weights": True}
    calibration = _calibrate(sae, shards, cfg, holdout)
    for name, weight in sae.state_dict().items():  # never save (and so never cache) a NaN SAE
        require_finite(weight, f"trained SAE weight {name!r}", "lower sae.lr and train again")
    metrics = {**_final_metrics(sae, shards, trainer, holdout, cfg.transcode_target), **calibration}
    metrics.update(fvu_train=sum(last_fvus) / max(len(last_fvus), 1),
                   train_seconds=round(seconds, 3),
                   tokens_per_s=(trainer.tokens_seen - tokens_before) / max(seconds, 1e-9))
    save_sae(sae, out_dir)
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    shutil.rmtree(out_dir / "checkpoint", ignore_errors=True)
    return metrics


def _run_epochs(cfg: SAEConfig, shards: ActivationShards, trainer: Trainer,
                scales: tuple[float, float], holdout: int, out_dir: Path,
                position: dict[str, Any] | None, progress: bool) -> list[float]:
    """The training loop; returns the per-step FVUs of the last epoch."""
    every, target = cfg.checkpoint_every, cfg.transcode_target
    gradient = cfg.arch.needs_gradient
    first_epoch, skip = (position["epoch"], position["batch"]) if position else (0, 0)
    fvus: list[float] = position["fvus"] if position else []
    bar = _progress_bar(cfg.epochs * math.ceil(count_train_tokens(shards, holdout) /
                                               cfg.batch_size), trainer.steps, progress)
    device = trainer.sae.device
    for epoch in range(first_epoch, cfg.epochs):
        fvus = fvus if epoch == first_epoch else []
        batches = train_batches(shards, cfg.batch_size, seed=cfg.seed + epoch,
                                holdout_every=holdout, target=target, gradient=gradient)
        for i, (x, y) in enumerate(batches):
            if epoch == first_epoch and i < skip:
                continue  # already trained on before the checkpoint
            x = x.to(device) * scales[0]
            if gradient:  # y is dL/dx: gsae's selection is scale-free, so it is not rescaled
                fvus.append(trainer.step(x, None, grad=y.to(device))["fvu"])
            else:
                y = None if y is None else y.to(device) * scales[1]
                fvus.append(trainer.step(x, y)["fvu"])
            if bar is not None:
                bar.update(1)
                bar.set_postfix(fvu=f"{fvus[-1]:.3f}", refresh=False)
            if every and trainer.steps % every == 0:
                save_checkpoint(out_dir / "checkpoint", trainer,
                                {"epoch": epoch, "batch": i + 1, "fvus": fvus, "scales": scales})
        log.info("epoch %d: mean train fvu %.4f", epoch, sum(fvus) / max(len(fvus), 1))
    if bar is not None:
        bar.close()
    return fvus


def _calibrate(sae: SAE, shards: ActivationShards, cfg: SAEConfig, holdout: int) -> dict[str, Any]:
    """Recalibrate a batch-level SAE's inference threshold on the final (unscaled) weights, on
    every other held-out sequence (half 0); `l0_unseen` is measured on the other half.

    Held-out, not training tokens: the SAE fits its training tokens better, and a threshold set
    there gave held-out L0 35.5 for k = 32 on the default run (training tokens: 32.0-32.6).
    """
    if not sae.arch.learns_threshold:
        return {}
    target = cfg.transcode_target
    x, _ = heldout_tokens(shards, holdout, CALIBRATION_TOKENS, target, half=0) if holdout else \
        (torch.empty(0, shards.d_model), None)
    split = "heldout_half0"
    if len(x) < CALIBRATION_MIN:  # too few held-out tokens: a training sample instead
        x, _ = next(train_batches(shards, CALIBRATION_TOKENS, seed=cfg.seed + 7919,
                                  holdout_every=holdout, target=target))
        split = "train"
    out: dict[str, Any] = {**calibrate_threshold(sae, x), "threshold_calibration_split": split}
    unseen, _ = heldout_tokens(shards, holdout, HELDOUT_TOKENS, target, half=1) if holdout else \
        (torch.empty(0, shards.d_model), None)
    if split != "train" and len(unseen):
        out["l0_unseen"] = evaluate(sae, unseen)["l0"]
    return out


def _final_metrics(sae: SAE, shards: ActivationShards, trainer: Trainer, holdout: int,
                   target: str | None) -> dict[str, Any]:
    """fvu, l0 (under the inference rule) and dead_frac on up to HELDOUT_TOKENS held-out tokens."""
    if holdout:
        x, y = heldout_tokens(shards, holdout, HELDOUT_TOKENS, target)
    else:  # too few sequences to hold any out: evaluate on (a sample of) the training tokens
        x, y = next(train_batches(shards, HELDOUT_TOKENS, seed=0, holdout_every=0, target=target))
    return {**evaluate(sae, x, y), **massive_token_fvu(sae, x, y),
            "fvu_split": "heldout" if holdout else "train",
            "l0_rule": "inference", "dead_frac": dead_fraction(sae, x),
            "dead_tokens_evaluated": min(len(x), HELDOUT_TOKENS),
            "dead_frac_train_window": float(trainer.dead_mask().float().mean()),
            "tokens_seen": trainer.tokens_seen, "num_latents": sae.num_latents, "k": sae.k,
            "architecture": sae.cfg["architecture"]}


def _progress_bar(total: int, done: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=done, desc="train SAE", unit="step")
