"""What an SAE architecture is: the base class every architecture module subclasses, the padded
codes they produce, and the helpers they share.

Every architecture maps pre-activations [N, m] to padded codes (acts [N, K], indices [N, K]; unused
slots have act 0). They differ in who chooses the token-latent matches (Ayonrinde 2024) and in what
they need around the model: a learnt threshold, a penalty, loss gradients, config options. An
architecture says all of that about itself here, so that the config, the model, the trainer, the
calibration and the SAELens format ask it instead of testing its name.

Architecture modules never import `interp.sae.model` or `interp.sae.config`: both look
architectures up in the registry. They see the SAE through `SparseCoder` and the config through
`SAESettings`.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol

import torch
from torch import Tensor

from interp.sae.kernels import argsort_ints


class Codes(NamedTuple):
    """Training-time codes: acts [N, K] (differentiable), indices [N, K], sparsity penalty (scalar),
    and for dense architectures the dense acts [N, m], decoded by a plain matmul (early in training
    a ReLU SAE has thousands of active latents per token, where a sparse decode is slower)."""

    acts: Tensor
    indices: Tensor
    penalty: Tensor
    dense: Tensor | None = None


class SparseCoder(Protocol):
    """The SAE as an architecture computes with it (`interp.sae.model.SAE`)."""

    cfg: dict[str, Any]
    W_dec: Tensor
    threshold: Tensor      # [m], only if the architecture's `add_state` registered it
    log_threshold: Tensor  # [m], likewise (jumprelu)

    @property
    def k(self) -> int: ...
    @property
    def num_latents(self) -> int: ...
    @property
    def sparsity_coeff(self) -> float: ...
    @property
    def device(self) -> torch.device: ...
    def pre_acts(self, x: Tensor) -> Tensor: ...
    def dense_pre_acts(self, x: Tensor) -> Tensor: ...
    def select(self, x: Tensor, indices: Tensor, values: Tensor) -> Tensor: ...
    def register_buffer(self, name: str, tensor: Tensor | None) -> None: ...


class SAESettings(Protocol):
    """The SAE config section as an architecture checks it (`interp.sae.config.SAEConfig`)."""

    architecture: str
    path: Path | None
    transcode_target: str | None
    skip_connection: bool
    normalize_activations: str
    gsae_beta: float
    sparsity_coeff: float | None
    aux_zipf: bool


@dataclass(frozen=True)
class Architecture:
    """One SAE architecture. Subclasses implement `train_codes` and `infer_codes`, and override the
    class attributes and hooks below that differ from these defaults (a plain TopK-like SAE)."""

    name: str      # the value of sae.architecture
    summary: str   # one line for sae.architecture's description: what it does, and its source

    # A per-token inference rule derived from a batch-level training rule: a `threshold` buffer
    # [m], an EMA while training (`update_threshold`), recalibrated after (`calibrate_threshold`).
    learns_threshold: ClassVar[bool] = False
    trainable: ClassVar[bool] = True            # False: built, not trained (see `summary`)
    needs_gradient: ClassVar[bool] = False      # trains on dL/dx: collect stores it beside acts
    default_sparsity_coeff: ClassVar[float] = 0.0  # penalty weight when sae.sparsity_coeff is None
    # SAEConfig fields only some architectures use: each one's name here if this one accepts it
    # set away from its default (the config rejects it otherwise, naming the ones that do).
    options: ClassVar[frozenset[str]] = frozenset()
    # The SAELens architecture (inference rule) this one is exported as; None: export refused.
    saelens_name: ClassVar[str | None] = None
    saelens_import: ClassVar[bool] = False  # a SAELens file of `saelens_name` loads as this one

    def train_codes(self, sae: SparseCoder, x: Tensor, grad: Tensor | None = None) -> Codes:
        """Codes of x [N, d_in] by the training rule (grad [N, d_in] only if `needs_gradient`)."""
        raise NotImplementedError

    def infer_codes(self, sae: SparseCoder, x: Tensor) -> tuple[Tensor, Tensor]:
        """(acts [N, K], indices [N, K]) of x [N, d_in] by the per-token inference rule."""
        raise NotImplementedError

    def check(self, cfg: SAESettings) -> None:
        """Raise ValueError naming the field if cfg is inconsistent for this architecture (beyond
        `options`, which the config checks)."""

    def hookpoint_error(self, hookpoint: str) -> str | None:
        """Why this architecture cannot read model.hookpoint, or None."""
        return None

    def sae_cfg(self, cfg: SAESettings) -> dict[str, Any]:
        """Settings of this architecture recorded in the trained SAE's cfg.json."""
        return {}

    def add_state(self, sae: SparseCoder, device: str | torch.device, dtype: torch.dtype) -> None:
        """Register the parameters or buffers this architecture adds to a new SAE."""
        if self.learns_threshold:
            sae.register_buffer("threshold", torch.zeros(sae.num_latents, device=device,
                                                         dtype=dtype))

    def init_from_sample(self, sae: SparseCoder, x: Tensor) -> None:
        """Initialise that state from a data sample x [N, d_in] before training (no grad)."""

    def update_threshold(self, sae: SparseCoder, acts: Tensor, indices: Tensor,
                         rate: float) -> None:
        """Move the threshold toward this batch's selection (EMA with `rate`): codes acts [N, K],
        indices [N, K]; only called if `learns_threshold`."""

    def calibrate_threshold(self, sae: SparseCoder, x: Tensor, batch_size: int) -> None:
        """Set the threshold so the inference rule reproduces the training rule on x [N, d_in]."""

    def fold_scaling(self, sae: SparseCoder, scale_out: float) -> None:
        """Thresholds are in pre-activation units, which shrink by 1/scale_out when an activation
        scaling is folded into the weights (`SAE.fold_scaling`)."""
        if self.learns_threshold:
            sae.threshold.div_(scale_out)

    def saelens_threshold(self, sae: SparseCoder) -> Tensor | None:
        """The `threshold` tensor [m] of the SAELens export (JumpReLU semantics), or None."""
        return sae.threshold.detach().clone() if self.learns_threshold else None

    def threshold_from_saelens(self, threshold: Tensor) -> dict[str, Tensor]:
        """Our state tensors from a SAELens `threshold` [m] (inverse of `saelens_threshold`)."""
        return {"threshold": threshold} if self.learns_threshold else {}


def pairs_to_padded(rows: Tensor, cols: Tensor, values: Tensor, n_rows: int
                    ) -> tuple[Tensor, Tensor]:
    """Scatter (row, col, value) matches into padded per-row (values [N, K], cols [N, K]).

    K is the largest number of matches of any row; padding slots get value 0 and column 0.
    """
    order = argsort_ints(rows)
    rows, cols, values = rows[order], cols[order], values[order]
    counts = torch.bincount(rows, minlength=n_rows)
    width = max(int(counts.max()) if len(counts) else 0, 1)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(rows), device=rows.device) - starts[rows]
    out_vals = values.new_zeros(n_rows, width)
    out_cols = torch.zeros(n_rows, width, dtype=torch.long, device=rows.device)
    out_vals[rows, slot] = values
    out_cols[rows, slot] = cols
    return out_vals, out_cols


def dense_to_padded(dense: Tensor) -> tuple[Tensor, Tensor]:
    """Nonzeros of dense [N, m] as padded (values [N, K], indices [N, K]); K = max row count."""
    width = max(int((dense != 0).sum(1).max()) if len(dense) else 0, 1)
    return dense.topk(width, dim=1, sorted=False)


def threshold_codes(pre: Tensor, threshold: Tensor) -> tuple[Tensor, Tensor]:
    """JumpReLU-style inference codes: pre where pre > threshold (and > 0), padded."""
    keep = (pre > threshold) & (pre > 0)
    return dense_to_padded(torch.where(keep, pre, torch.zeros((), dtype=pre.dtype)))


def dense_codes(acts: Tensor, penalty: Tensor) -> Codes:
    """Padded view of dense differentiable acts [N, m] (gradients flow through the gather)."""
    with torch.no_grad():
        values, indices = dense_to_padded(acts.detach())
    return Codes(values, indices, penalty, dense=acts)


def pre_act_batches(sae: SparseCoder, x: Tensor, batch_size: int) -> Iterator[Tensor]:
    """Pre-activations [B, m] of x [N, d_in], batch by batch, on the SAE's device and dtype."""
    for b in range(0, len(x), batch_size):
        yield sae.pre_acts(x[b:b + batch_size].to(sae.device, sae.W_dec.dtype))
