"""ReLU SAE: plain ReLU codes with an L1 penalty weighted by decoder norms, trained through the
dense [N, m] path (SAELens "standard")."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from interp.sae.arch.base import Architecture, Codes, SparseCoder, dense_codes, dense_to_padded


@dataclass(frozen=True)
class ReLU(Architecture):
    """Plain ReLU codes with an L1 penalty weighted by decoder norms (dense training path)."""

    name: str = "relu"
    summary: str = "ReLU codes with an L1 penalty (sae.sparsity_coeff), trained densely"
    default_sparsity_coeff = 0.3  # tuned on normalised activations
    options = frozenset({"sparsity_coeff"})
    saelens_name = "standard"
    saelens_import = True

    def train_codes(self, sae: SparseCoder, x: Tensor, grad: Tensor | None = None) -> Codes:
        acts = F.relu(sae.dense_pre_acts(x))
        # L1 in units of x, divided by the batch's RMS deviation: scale-free like the FVU
        scale = (x - x.mean(0)).pow(2).sum(1).mean().sqrt().clamp_min(1e-12) * x.shape[0]
        penalty = sae.sparsity_coeff * (acts * sae.W_dec.norm(dim=1)).sum() / scale
        return dense_codes(acts, penalty)

    def infer_codes(self, sae: SparseCoder, x: Tensor) -> tuple[Tensor, Tensor]:
        return dense_to_padded(sae.pre_acts(x).relu())
