"""Inference thresholds of the batch-level architectures, set once on the final weights, and the one
definition of a dead latent that trained and imported SAEs share.

During training the thresholds are an EMA of the smallest selected activation; with a running-mean
start most of that average comes from the first, untrained steps, so held-out inference L0 drifts
far from k. `calibrate_threshold` replaces it by the threshold that reproduces the training rule's
allocation (N*k matches) on a token sample under the final weights.
"""
from __future__ import annotations

import torch
from torch import Tensor

from interp.sae.model import SAE

HELDOUT_TOKENS = 65_536  # the fixed held-out budget on which fvu, l0 and dead_frac are measured
ROW_CAP = 8              # candidates per token, as a multiple of k, for the global threshold


def _pre_batches(sae: SAE, x: Tensor, batch_size: int):
    for b in range(0, len(x), batch_size):
        yield sae.pre_acts(x[b:b + batch_size].to(sae.device, sae.W_dec.dtype))


def _global_threshold(sae: SAE, x: Tensor, batch_size: int) -> float:
    """Threshold between the (N*k)-th and (N*k+1)-th largest pre-activations of x (batchtopk's
    selection over the whole sample). Each token's ROW_CAP*k largest are candidates, exact unless
    one token would place more than that many latents among the selected."""
    cap = min(ROW_CAP * sae.k, sae.num_latents)
    cands = torch.cat([pre.topk(cap, dim=1, sorted=False).values.reshape(-1)
                       for pre in _pre_batches(sae, x, batch_size)])
    n = len(x) * sae.k
    if n >= len(cands):
        return 0.0
    top = cands.topk(n + 1).values
    return max(float(top[n - 1] + top[n]) / 2, 0.0)


def _per_latent_thresholds(sae: SAE, x: Tensor, batch_size: int) -> Tensor:
    """Per-latent thresholds giving latent j its share of N*k tokens of x (feature choice):
    floor(N*k/m) each, one more for the r = N*k mod m latents with the largest next value."""
    n, m = len(x), sae.num_latents
    base, extra = divmod(n * sae.k, m)
    keep = min(base + 2, n)
    best = None
    for pre in _pre_batches(sae, x, batch_size):  # running top-`keep` per latent, [keep, m]
        both = pre if best is None else torch.cat([best, pre])
        best = both.topk(min(keep, len(both)), dim=0).values
    assert best is not None
    pad = torch.full((keep + 1 - len(best), m), -torch.inf, dtype=best.dtype, device=best.device)
    best = torch.cat([best, pad]) if len(pad) else best
    counts = torch.full((m,), base, dtype=torch.long, device=best.device)
    if extra:
        counts[best[base].topk(extra).indices] += 1
    cols = torch.arange(m, device=best.device)
    below = best[counts.clamp_max(len(best) - 1), cols]
    above = torch.where(counts > 0, best[(counts - 1).clamp_min(0), cols], torch.inf)
    # midpoint between the last kept and the first dropped value; a latent kept nowhere gets +inf,
    # one kept on every token (nothing dropped) fires whenever positive
    theta = torch.where(torch.isfinite(below), (above + below) / 2, -torch.inf)
    return theta.clamp_min(0.0)


@torch.no_grad()
def calibrate_threshold(sae: SAE, x: Tensor, batch_size: int = 4096) -> dict[str, float]:
    """Set sae.threshold (batch-level architectures) from tokens x [N, d_in] so that the inference
    rule makes the training rule's N*k matches on x. Returns what was done, for metrics.json;
    a no-op (empty dict) for architectures without a learnt batch threshold."""
    if not sae.arch.learns_threshold or len(x) == 0:
        return {}
    before = sae.threshold.clone()
    if sae.cfg["architecture"] == "feature_choice":
        sae.threshold.copy_(_per_latent_thresholds(sae, x, batch_size))
    else:
        sae.threshold.fill_(_global_threshold(sae, x, batch_size))
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
