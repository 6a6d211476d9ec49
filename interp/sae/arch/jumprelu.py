"""JumpReLU (Rajamanoharan et al. 2024): per-latent thresholds exp(log_threshold) trained with
straight-through estimators (a rectangle kernel whose bandwidth, cfg "jumprelu_bandwidth", is in
pre-activation units) and a straight-through L0 penalty; dense training path."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from interp.sae.arch.base import Architecture, Codes, SparseCoder, dense_codes, threshold_codes


class _JumpReLU(torch.autograd.Function):
    """pre * H(pre - theta): exact gradient for pre, rectangle-kernel pseudo-gradient for theta."""

    @staticmethod
    def forward(ctx, pre: Tensor, theta: Tensor, bandwidth: float):
        ctx.save_for_backward(pre, theta)
        ctx.bandwidth = bandwidth
        return pre * (pre > theta)

    @staticmethod
    def backward(ctx, grad: Tensor):
        pre, theta = ctx.saved_tensors
        near = ((pre - theta).abs() < ctx.bandwidth / 2).to(grad.dtype)
        grad_theta = (-(theta / ctx.bandwidth) * near * grad).sum(0)
        return grad * (pre > theta), grad_theta, None


class _Step(torch.autograd.Function):
    """H(pre - theta) with the rectangle-kernel pseudo-gradient for theta only (the L0 count)."""

    @staticmethod
    def forward(ctx, pre: Tensor, theta: Tensor, bandwidth: float):
        ctx.save_for_backward(pre, theta)
        ctx.bandwidth = bandwidth
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        pre, theta = ctx.saved_tensors
        near = ((pre - theta).abs() < ctx.bandwidth / 2).to(grad.dtype)
        return None, (-(1.0 / ctx.bandwidth) * near * grad).sum(0), None


@dataclass(frozen=True)
class JumpReLU(Architecture):
    """Per-latent learnt thresholds (the parameter log_threshold [m]) and an L0 penalty."""

    name: str = "jumprelu"
    summary: str = ("per-latent learnt thresholds and a straight-through L0 penalty "
                    "(sae.sparsity_coeff; Rajamanoharan et al. 2024)")
    default_sparsity_coeff = 1e-3  # tuned on normalised activations
    options = frozenset({"sparsity_coeff"})
    saelens_name = "jumprelu"
    saelens_import = True

    def train_codes(self, sae: SparseCoder, x: Tensor, grad: Tensor | None = None) -> Codes:
        pre = sae.dense_pre_acts(x)
        theta = sae.log_threshold.exp()
        bandwidth = float(sae.cfg.get("jumprelu_bandwidth", 1e-3))
        acts = _JumpReLU.apply(pre, theta, bandwidth)
        l0 = _Step.apply(pre, theta, bandwidth).sum(1).mean()
        return dense_codes(acts, sae.sparsity_coeff * l0)

    def infer_codes(self, sae: SparseCoder, x: Tensor) -> tuple[Tensor, Tensor]:
        return threshold_codes(sae.pre_acts(x), sae.log_threshold.exp())

    def add_state(self, sae: SparseCoder, device: str | torch.device, dtype: torch.dtype) -> None:
        init = float(sae.cfg.get("init_threshold", 1e-3))
        sae.log_threshold = nn.Parameter(torch.full((sae.num_latents,), math.log(init),
                                                    device=device, dtype=dtype))

    def init_from_sample(self, sae: SparseCoder, x: Tensor) -> None:
        """Thresholds at each latent's (1 - k/m) quantile on x, so training starts near L0 = k
        (a fixed tiny threshold starts near L0 = m/2 and takes many thousands of steps to come
        down); the straight-through kernel's bandwidth is a tenth of the median threshold."""
        pre = sae.pre_acts(x)
        rank = max(1, min(len(x), round(len(x) * (1 - sae.k / sae.num_latents))))
        theta = pre.kthvalue(rank, dim=0).values.clamp_min(1e-6)
        sae.log_threshold.copy_(theta.log())
        sae.cfg["jumprelu_bandwidth"] = float(0.1 * theta.median())

    def fold_scaling(self, sae: SparseCoder, scale_out: float) -> None:
        sae.log_threshold.sub_(math.log(scale_out))

    def saelens_threshold(self, sae: SparseCoder) -> Tensor | None:
        return sae.log_threshold.detach().exp()

    def threshold_from_saelens(self, threshold: Tensor) -> dict[str, Tensor]:
        return {"log_threshold": threshold.clamp_min(1e-12).log()}
