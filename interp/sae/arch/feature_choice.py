"""Feature choice (Ayonrinde 2024): each latent keeps its best tokens across the batch, N*k matches
in all. Its inference rule is a per-latent threshold, an EMA while training and recalibrated on the
final weights (`calibrate_threshold`) so each latent keeps its share of N*k matches on a sample.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.sae.arch.base import (
    Architecture,
    Codes,
    SparseCoder,
    pairs_to_padded,
    pre_act_batches,
    threshold_codes,
)


def feature_choice_pairs(pre: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Feature choice on pre [N, m]: exactly N*k (value, token, latent) matches, [N*k] each.

    Each latent takes its floor(N*k/m) best tokens; the r = N*k mod m latents whose next-best
    value is largest take one more, so the batch's allocation is exactly N*k (a ceil per latent
    would give up to m-1 extra matches, ~5% over k at default sizes).
    """
    n, m = pre.shape
    base, extra = divmod(min(n * k, n * m), m)
    take = min(base + (1 if extra else 0), n)
    values, tokens = pre.topk(take, dim=0)  # sorted: row i holds each latent's (i+1)-th best
    latents = torch.arange(m, device=pre.device).expand_as(tokens)
    keep = torch.ones_like(values, dtype=torch.bool)
    if extra:
        keep[base] = False
        keep[base, values[base].topk(extra).indices] = True
    return values[keep], tokens[keep], latents[keep]


def per_latent_thresholds(sae: SparseCoder, x: Tensor, batch_size: int) -> Tensor:
    """Per-latent thresholds [m] giving latent j its share of N*k tokens of x (feature choice):
    floor(N*k/m) each, one more for the r = N*k mod m latents with the largest next value."""
    n, m = len(x), sae.num_latents
    base, extra = divmod(n * sae.k, m)
    keep = min(base + 2, n)
    best = None
    for pre in pre_act_batches(sae, x, batch_size):  # running top-`keep` per latent, [keep, m]
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


@dataclass(frozen=True)
class FeatureChoice(Architecture):
    """Each latent keeps its best positive pre-activations across the batch, N*k in all."""

    name: str = "feature_choice"
    summary: str = ("each latent keeps its best tokens across the batch, N*k matches in all; "
                    "per-latent learnt thresholds at inference (Ayonrinde 2024)")
    learns_threshold = True
    options = frozenset({"aux_zipf"})
    saelens_name = "jumprelu"

    def train_codes(self, sae: SparseCoder, x: Tensor, grad: Tensor | None = None) -> Codes:
        values, tokens, latents = feature_choice_pairs(sae.pre_acts(x), sae.k)
        values, indices = pairs_to_padded(tokens, latents, values.clamp_min(0), x.shape[0])
        return Codes(sae.select(x, indices, values), indices, x.new_zeros(()))

    def infer_codes(self, sae: SparseCoder, x: Tensor) -> tuple[Tensor, Tensor]:
        return threshold_codes(sae.pre_acts(x), sae.threshold)

    def update_threshold(self, sae: SparseCoder, acts: Tensor, indices: Tensor,
                         rate: float) -> None:
        """Per latent: the smallest positive activation it kept in this batch; latents not selected
        keep their threshold."""
        pos = acts > 0
        if not bool(pos.any()):
            return
        smallest = torch.full_like(sae.threshold, math.inf)
        smallest.scatter_reduce_(0, indices[pos], acts[pos].detach(), reduce="amin")
        hit = torch.isfinite(smallest)
        sae.threshold[hit] += rate * (smallest[hit] - sae.threshold[hit])

    def calibrate_threshold(self, sae: SparseCoder, x: Tensor, batch_size: int) -> None:
        sae.threshold.copy_(per_latent_thresholds(sae, x, batch_size))
