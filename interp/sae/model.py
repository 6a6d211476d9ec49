"""The SAE module, in sparsify's parameter names and layout, for every architecture in
`interp.sae.arch` and for transcoders (input at one hookpoint, target at another).

Parameters: encoder.weight [m, d_in], encoder.bias [m], W_dec [m, d_out] (unit-norm rows unless
transcoding), b_dec [d_out]; plus what the architecture adds (`Architecture.add_state`: the
parameter log_threshold [m] of a jumprelu, the buffer threshold [m] of a batch-level one). Codes
are padded (acts [N, K], indices [N, K]) pairs.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interp.finite import require_finite
from interp.sae.arch.registry import get_architecture
from interp.sae.kernels import gather_preacts, sparse_decode


class ForwardOutput(NamedTuple):
    """What `SAE.forward` returns; losses are scalars normalised by the batch's total variance."""

    recon: Tensor          # [N, d_out] reconstruction
    top_acts: Tensor       # [N, K] activations of the selected latents (K = k for topk)
    top_indices: Tensor    # [N, K] int64 latent indices
    fvu: Tensor            # fraction of variance unexplained
    auxk_loss: Tensor      # AuxK loss of dead latents (0 if no dead mask / none dead)
    sparsity_loss: Tensor  # the architecture's penalty (L1, L0), already weighted; else 0


class SAE(nn.Module):
    """Sparse autoencoder / transcoder: acts = codes(encoder(x - b_dec)), recon = acts @ W_dec + b_dec.

    `cfg` describes the SAE (architecture, d_in, num_latents, k, hookpoint, model, ...) and is
    written verbatim to cfg.json; it is a plain dict so that extra provenance keys survive.
    `forward` is the training pass (`arch.train_codes`: a batch-level selection for batchtopk &
    co); `encode` is the per-token inference rule that mining and evaluation use.
    """

    def __init__(self, d_in: int, num_latents: int, k: int, *, architecture: str = "topk",
                 transcode: bool = False, d_out: int | None = None,
                 cfg: dict[str, Any] | None = None, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None):
        super().__init__()
        arch = get_architecture(architecture)
        if not 0 < k <= num_latents:
            raise ValueError(f"k ({k}) must be in 1..num_latents ({num_latents})")
        d_out = d_in if d_out is None else d_out
        if d_out != d_in and not transcode:
            raise ValueError(f"d_out ({d_out}) differs from d_in ({d_in}): only a transcoder can")
        self.cfg: dict[str, Any] = {"activation": "topk", "sparsity_coeff": 0.0, **(cfg or {}),
                                    "architecture": architecture, "transcode": transcode,
                                    "d_in": d_in, "d_out": d_out, "num_latents": num_latents, "k": k}
        self.arch = arch
        self.encoder = nn.Linear(d_in, num_latents, device=device, dtype=dtype)
        w = torch.randn(num_latents, d_in, generator=generator, dtype=dtype).to(device)
        w /= w.norm(dim=1, keepdim=True)
        # Encoder starts as the decoder's transpose (tied init), bias 0: each latent initially
        # responds to its own decoder direction, which avoids most dead latents at the start.
        # A transcoder's decoder starts at 0 instead (sparsify): input and output spaces differ.
        self.encoder.weight.data.copy_(w)
        self.encoder.bias.data.zero_()
        self.W_dec = nn.Parameter(torch.zeros(num_latents, d_out, device=device, dtype=dtype)
                                  if transcode else w.clone())
        self.b_dec = nn.Parameter(torch.zeros(d_out, device=device, dtype=dtype))
        self.arch.add_state(self, device, dtype)
        if self.skip:
            # sparsify's layout: [d_out, d_in], zero at the start so latents learn first
            self.W_skip = nn.Parameter(torch.zeros(d_out, d_in, device=device, dtype=dtype))

    @property
    def d_in(self) -> int:
        return int(self.cfg["d_in"])

    @property
    def d_out(self) -> int:
        return int(self.cfg["d_out"])

    @property
    def num_latents(self) -> int:
        return int(self.cfg["num_latents"])

    @property
    def k(self) -> int:
        return int(self.cfg["k"])

    @property
    def transcode(self) -> bool:
        return bool(self.cfg["transcode"])

    @property
    def skip(self) -> bool:
        """True when a linear skip connection (W_skip) adds x @ W_skip.T to the output."""
        return bool(self.cfg.get("skip_connection"))

    @property
    def sparsity_coeff(self) -> float:
        return float(self.cfg["sparsity_coeff"])

    @property
    def device(self) -> torch.device:
        return self.encoder.weight.device

    def _centre(self, x: Tensor) -> Tensor:
        # An autoencoder subtracts b_dec so pre-activations start centred; a transcoder's b_dec
        # lives in the output space, so its input is used as is.
        return x if self.transcode else x - self.b_dec

    def pre_acts(self, x: Tensor) -> Tensor:
        """Dense pre-activations [N, m] of x [N, d_in], without gradient."""
        with torch.no_grad():
            return F.linear(self._centre(x), self.encoder.weight, self.encoder.bias)

    def dense_pre_acts(self, x: Tensor) -> Tensor:
        """Dense pre-activations [N, m] with gradient (dense training paths, e.g. relu)."""
        return F.linear(self._centre(x), self.encoder.weight, self.encoder.bias)

    def select(self, x: Tensor, indices: Tensor, values: Tensor) -> Tensor:
        """Differentiable relu(pre-activation) [N, K] of x at `indices` [N, K]; `values` = their
        no-grad pre-activations (from `pre_acts`)."""
        b_dec = None if self.transcode else self.b_dec
        return F.relu(gather_preacts(x, b_dec, self.encoder.weight, self.encoder.bias, indices,
                                     values))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [N, d_in] -> (acts [N, K], indices [N, K] int64) by the per-token inference rule.

        K = k for topk; for threshold-based architectures K is the largest active count in the
        batch and unused slots hold act 0.
        """
        return self.arch.infer_codes(self, x)

    def encode_dense(self, x: Tensor) -> Tensor:
        """Dense codes [N, m]: the selected activations scattered into zeros."""
        acts, indices = self.encode(x)
        return torch.zeros(x.shape[0], self.num_latents, dtype=acts.dtype,
                           device=acts.device).scatter_add(1, indices, acts)

    def decode(self, top_acts: Tensor, top_indices: Tensor) -> Tensor:
        """(acts [N, K], indices [N, K]) -> [N, d_out]; reads only the selected W_dec rows."""
        return sparse_decode(top_acts, top_indices, self.W_dec) + self.b_dec

    def reconstruct(self, x: Tensor, codes: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """x [N, d_in] -> output [N, d_out] by the inference rule (plus the skip connection);
        `codes` = sae.encode(x) when the caller already has them."""
        out = self.decode(*(self.encode(x) if codes is None else codes))
        return out + x @ self.W_skip.T if self.skip else out

    def forward(self, x: Tensor, y: Tensor | None = None, *,
                dead_mask: Tensor | None = None, grad: Tensor | None = None) -> ForwardOutput:
        """Training pass: reconstruct y (default x) [N, d_out] from x [N, d_in].

        dead_mask [m] bool selects latents for the AuxK loss (dead or, with aux_zipf, underused).
        grad [N, d_in]: the loss gradient at x, for architectures that select by it (gsae).
        """
        y = x if y is None else y
        codes = self.arch.train_codes(self, x, grad)
        if codes.dense is not None:
            recon = codes.dense @ self.W_dec + self.b_dec
        else:
            recon = self.decode(codes.acts, codes.indices)
        if self.skip:
            recon = recon + x @ self.W_skip.T
        err = y - recon
        total_variance = (y - y.mean(0)).pow(2).sum()
        fvu = err.pow(2).sum() / total_variance
        auxk = self.auxk_loss(x, err, dead_mask, total_variance)
        return ForwardOutput(recon, codes.acts, codes.indices, fvu, auxk, codes.penalty)

    def auxk_loss(self, x: Tensor, err: Tensor, dead_mask: Tensor | None,
                  total_variance: Tensor) -> Tensor:
        """AuxK (Gao et al. 2024, App. B.1): the top k_aux = d/2 masked latents predict the residual.

        err [N, d_out] residual. Only the masked columns are computed, which is far cheaper than
        masking the whole [N, m] matrix when few latents are dead.
        """
        if dead_mask is None or not bool(dead_mask.any()):
            return err.new_zeros(())
        dead = dead_mask.nonzero().squeeze(1)
        k_aux = max(err.shape[1] // 2, 1)
        scale = min(len(dead) / k_aux, 1.0)  # shrink the loss when only a few latents are dead
        with torch.no_grad():
            pre = F.linear(self._centre(x), self.encoder.weight[dead], self.encoder.bias[dead])
        values, local = pre.topk(min(k_aux, len(dead)), dim=1, sorted=False)
        indices = dead[local]
        acts = self.select(x, indices, values)
        # b_dec is already in the residual's reference, so the aux reconstruction omits it
        err_hat = sparse_decode(acts, indices, self.W_dec)
        return scale * (err_hat - err.detach()).pow(2).sum() / total_variance

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale W_dec rows to unit norm (rows that are exactly 0 stay 0)."""
        eps = torch.finfo(self.W_dec.dtype).eps
        self.W_dec.data.div_(torch.linalg.vector_norm(self.W_dec.data, dim=1, keepdim=True) + eps)

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Drop the W_dec gradient component along each row, so a step mostly rotates the rows
        (the renormalisation after the step then changes little)."""
        if self.W_dec.grad is None:
            return
        # vecdot + addcmul_: two passes over [m, d], no temporaries of that size
        parallel = torch.linalg.vecdot(self.W_dec.grad, self.W_dec.data, dim=1)
        self.W_dec.grad.addcmul_(parallel.unsqueeze(1), self.W_dec.data, value=-1)

    @torch.no_grad()
    def fold_scaling(self, scale_in: float, scale_out: float) -> None:
        """Make an SAE trained on (scale_in * x -> scale_out * y) act on raw x and y.

        Pre-activations, codes and thresholds all shrink by 1/scale_out; W_dec stays unit-norm.
        """
        if not self.transcode and scale_in != scale_out:
            raise ValueError("an autoencoder has one scale: scale_in must equal scale_out")
        self.encoder.weight.mul_(scale_in / scale_out)
        self.encoder.bias.div_(scale_out)
        self.b_dec.div_(scale_out)
        if self.skip:
            self.W_skip.mul_(scale_in / scale_out)
        self.arch.fold_scaling(self, scale_out)


def sae_from_tensors(cfg: dict[str, Any], tensors: dict[str, torch.Tensor],
                     device: str | torch.device, origin: str) -> SAE:
    """Build an SAE from a cfg dict and a state dict in our (sparsify) naming, as both on-disk
    formats load them; shapes and finiteness checked, `origin` (a path) named in errors."""
    if cfg.get("activation", "topk") != "topk":
        raise ValueError(f"{origin}: sparsify option activation={cfg.get('activation')!r} is "
                         f"not supported")
    num_latents, d_in = tensors["encoder.weight"].shape
    if cfg.get("d_in", d_in) != d_in:
        raise ValueError(f"{origin}: cfg d_in {cfg['d_in']} disagrees with encoder.weight {d_in}")
    cfg = {**cfg, "num_latents": num_latents}  # sparsify stores 0 when expansion_factor set it
    sae = SAE(d_in, num_latents, int(cfg.get("k") or 1), cfg=cfg,
              architecture=cfg.get("architecture", "topk"), transcode=bool(cfg.get("transcode")),
              d_out=tensors["W_dec"].shape[1], device=device, dtype=tensors["encoder.weight"].dtype)
    expected = sae.state_dict()
    missing = set(expected) - set(tensors)
    if missing:
        raise ValueError(f"{origin} lacks tensors {sorted(missing)}")
    for name, ref in expected.items():
        if tensors[name].shape != ref.shape:
            raise ValueError(f"{origin}: tensor {name} has shape {tuple(tensors[name].shape)}, "
                             f"expected {tuple(ref.shape)}")
        require_finite(tensors[name], f"{origin}: tensor {name}", "this SAE cannot be used")
    sae.load_state_dict({k: tensors[k] for k in expected})
    return sae
