"""Architecture defaults that are not config fields: the sparsity penalty per architecture."""
from __future__ import annotations

from interp.sae.config import SAEConfig

# Sparsity penalty weights used when sae.sparsity_coeff is None (tuned on normalised activations).
DEFAULT_SPARSITY_COEFF = {"relu": 0.3, "jumprelu": 1e-3}


def sparsity_coeff(cfg: SAEConfig) -> float:
    """The effective sparsity penalty weight (0 for architectures that do not use one)."""
    value = cfg.sparsity_coeff
    return DEFAULT_SPARSITY_COEFF.get(cfg.architecture, 0.0) if value is None else float(value)
