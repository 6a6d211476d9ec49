"""Inference thresholds of the batch-level architectures, set once on the final weights, and the one
definition of a dead latent that trained and imported SAEs share.

During training the thresholds are an EMA of the smallest selected activation; with a running-mean
start most of that average comes from the first, untrained steps, so held-out inference L0 drifts
far from k. `calibrate_threshold` replaces it by the threshold that reproduces the training rule's
allocation (N*k matches) on a token sample under the final weights (each architecture knows its
rule: `Architecture.calibrate_threshold`).
"""
from __future__ import annotations

import torch
from torch import Tensor

from interp.sae.model import SAE

HELDOUT_TOKENS = 65_536  # the fixed held-out budget on which fvu, l0 and dead_frac are measured


@torch.no_grad()
def calibrate_threshold(sae: SAE, x: Tensor, batch_size: int = 4096) -> dict[str, float]:
    """Set sae.threshold (batch-level architectures) from tokens x [N, d_in] so that the inference
    rule makes the training rule's N*k matches on x. Returns what was done, for metrics.json;
    a no-op (empty dict) for architectures without a learnt batch threshold."""
    if not sae.arch.learns_threshold or len(x) == 0:
        return {}
    before = sae.threshold.clone()
    sae.arch.calibrate_threshold(sae, x, batch_size)
    finite = torch.isfinite(sae.threshold)
    return {"threshold_calibration_tokens": len(x),
            "threshold_ema_mean": float(before.mean()),
            "threshold_calibrated_mean": float(sae.threshold[finite].mean()) if finite.any() else 0.0}


@torch.no_grad()
def fired_mask(sae: SAE, x: Tensor, batch_size: int = 4096) -> Tensor:
    """[m] bool: latents that fire at least once on x [N, d_in] under the inference rule."""
    fired = torch.zeros(sae.num_latents, dtype=torch.bool, device=sae.device)
    for b in range(0, len(x), batch_size):
        acts, idx = sae.encode(x[b:b + batch_size].to(sae.device, sae.W_dec.dtype))
        fired[idx[acts > 0]] = True
    return fired


def dead_fraction(sae: SAE, x: Tensor) -> float:
    """Share of latents that never fire on held-out tokens x (at most HELDOUT_TOKENS of them) under
    the inference rule: the one `dead_frac` of trained and imported SAEs."""
    return float(1 - fired_mask(sae, x[:HELDOUT_TOKENS]).float().mean())
