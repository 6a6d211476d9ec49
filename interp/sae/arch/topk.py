"""TopK (Gao et al. 2024): each token keeps its k largest pre-activations, in training and at
inference alike."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from interp.sae.arch.base import Architecture, Codes, SparseCoder


@dataclass(frozen=True)
class TopK(Architecture):
    """Each token keeps its k largest pre-activations."""

    name: str = "topk"
    summary: str = "each token keeps its k largest pre-activations (Gao et al. 2024)"
    options = frozenset({"aux_zipf"})
    saelens_name = "topk"
    saelens_import = True

    def train_codes(self, sae: SparseCoder, x: Tensor, grad: Tensor | None = None) -> Codes:
        values, indices = sae.pre_acts(x).topk(sae.k, dim=1, sorted=False)
        return Codes(sae.select(x, indices, values), indices, x.new_zeros(()))

    def infer_codes(self, sae: SparseCoder, x: Tensor) -> tuple[Tensor, Tensor]:
        values, indices = sae.pre_acts(x).topk(sae.k, dim=1, sorted=False)
        return sae.select(x, indices, values), indices  # differentiable, e.g. for attribution
