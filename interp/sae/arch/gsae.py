"""g-SAE (Olmo et al. 2024, "Features that Make a Difference"): TopK whose selection also weighs
each latent's downstream effect, through the gradient of the subject model's loss at the hookpoint.

While training, a token keeps the k latents with the largest score
    z + beta * z * |W_dec g| / mean(|W_dec g|)
where z are the pre-activations and g = dL/dx is the gradient of the summed next-token loss with
respect to the activation x (collected beside x, see `interp.collect.stage`). The kept latents'
activations are relu(z) as in TopK: the gradient only decides *which* latents fire.

Our one departure from the paper's formula: |W_dec g| is divided by its batch mean, so that beta
is dimensionless (the raw gradient's scale depends on the loss reduction, on the depth of the
hookpoint and on activation normalisation; a fixed beta would mean something else for each).

At inference (mining, explanations, downstream evaluation) no gradient exists: the g-SAE encodes
with plain TopK on z, which is the paper's selection rule with beta = 0 (and SAELens's "topk").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from interp.sae.arch.base import Architecture, Codes, SAESettings, SparseCoder


def gradient_scores(pre: Tensor, W_dec: Tensor, grad: Tensor, beta: float) -> Tensor:
    """Selection scores [N, m]: pre [N, m] raised by each latent's normalised downstream effect.

    W_dec [m, d]; grad [N, d] = dL/dx per token. effect = |grad @ W_dec.T| is how much the loss
    changes per unit of the latent (first order); divided by its batch mean so beta is unitless.
    """
    with torch.no_grad():
        effect = (grad.to(W_dec.dtype) @ W_dec.T).abs()
        effect = effect / effect.mean().clamp_min(torch.finfo(effect.dtype).tiny)
        return pre + beta * pre * effect


@dataclass(frozen=True)
class GradientTopK(Architecture):
    """g-SAE: TopK on gradient-weighted scores while training, plain TopK at inference."""

    name: str = "gsae"
    summary: str = ("TopK selecting by activation and loss gradient while training (sae.gsae_beta; "
                    "collect then also records the gradient), plain TopK at inference "
                    "(Olmo et al. 2024)")
    needs_gradient = True
    options = frozenset({"gsae_beta", "aux_zipf"})
    saelens_name = "topk"

    def train_codes(self, sae: SparseCoder, x: Tensor, grad: Tensor | None = None) -> Codes:
        if grad is None:
            raise ValueError("sae.architecture 'gsae' trains on loss gradients: collect them "
                             "(collect does so when sae.architecture is gsae) and pass grad=")
        pre = sae.pre_acts(x)
        scores = gradient_scores(pre, sae.W_dec, grad, float(sae.cfg.get("gsae_beta", 1.0)))
        indices = scores.topk(sae.k, dim=1, sorted=False).indices
        values = pre.gather(1, indices)
        return Codes(sae.select(x, indices, values), indices, x.new_zeros(()))

    def infer_codes(self, sae: SparseCoder, x: Tensor) -> tuple[Tensor, Tensor]:
        values, indices = sae.pre_acts(x).topk(sae.k, dim=1, sorted=False)
        return sae.select(x, indices, values), indices

    def check(self, cfg: SAESettings) -> None:
        if cfg.transcode_target:
            raise ValueError("sae.architecture gsae autoencodes model.hookpoint: drop "
                             "sae.transcode_target (gradients are collected at the input only)")

    def sae_cfg(self, cfg: SAESettings) -> dict[str, Any]:
        return {"gsae_beta": cfg.gsae_beta}
