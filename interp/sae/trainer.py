"""One SAE's optimiser, lr schedule and latent-usage bookkeeping; `step` is one update.

Kept apart from the stage function (`interp.sae.train`) so that the update rule can be tested and
benchmarked on any iterator of tensors, without shards or artifacts.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from interp.finite import require_finite
from interp.sae.model import SAE

THRESHOLD_RATE = 0.01   # EMA rate of the batch-level architectures' inference thresholds
FREQ_RATE = 0.01        # EMA rate of per-latent firing frequencies (aux_zipf)
ZIPF_SLACK = 0.5        # a latent firing below half its Zipf-expected frequency is underused


def lr_lambda(total_steps: int, warmup: int | None, decay_frac: float):
    """Multiplier on the base lr at step s: linear warm-up, constant, linear decay to 0."""
    warmup = max(1, min(1_000, int(0.05 * total_steps))) if warmup is None else max(warmup, 1)
    decay = max(1, int(decay_frac * total_steps))

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return min(1.0, max(0.0, (total_steps - step) / decay)) if decay_frac > 0 else 1.0
    return f


def underused_mask(freq: Tensor, slack: float = ZIPF_SLACK) -> Tensor:
    """[m] bool: latents firing below `slack` x the frequency that a Zipf law, fitted to the
    rank-frequency curve of the more frequent half of live latents, predicts at their rank (dead
    latents always included). Fitting the head only keeps a collapsing tail from bending the law.

    Our reading of aux_zipf_loss (Ayonrinde 2024): AuxK generalised from dead latents to the
    underused tail of the usage distribution.
    """
    sorted_f, order = freq.sort(descending=True)
    live = sorted_f > 0
    mask = freq <= 0
    if int(live.sum()) < 2:
        return mask
    log_r = torch.arange(1, len(freq) + 1, device=freq.device, dtype=freq.dtype).log()
    head = max(int(live.sum()) // 2, 2)
    x, y = log_r[:head], sorted_f[:head].log()
    slope = ((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).pow(2).sum().clamp_min(1e-12)
    expected = (y.mean() + slope * (log_r - x.mean())).exp()
    mask[order] |= sorted_f < slack * expected
    return mask


class Trainer:
    """Adam on one SAE with the sparsify recipe: unit-norm decoder rows, AuxK on dead latents."""

    def __init__(self, sae: SAE, *, lr: float, total_steps: int, auxk_alpha: float,
                 dead_tokens: int, warmup: int | None = None, decay_frac: float = 0.2,
                 aux_zipf: bool = False):
        self.sae, self.auxk_alpha, self.dead_tokens, self.aux_zipf = sae, auxk_alpha, dead_tokens, aux_zipf
        # fused Adam updates all parameters in one multithreaded kernel; on CPU the default
        # per-tensor loop costs a sizeable fraction of a training step at these sizes.
        self.opt = torch.optim.Adam(sae.parameters(), lr=lr, fused=True)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(total_steps, warmup,
                                                                           decay_frac))
        self.since_fired = torch.zeros(sae.num_latents, dtype=torch.long, device=sae.device)
        self.freq = torch.zeros(sae.num_latents, device=sae.device)
        self.tokens_seen = 0
        self.steps = 0

    def dead_mask(self) -> Tensor:
        """[m] bool: latents that have not fired in the last min(dead_tokens, seen) tokens."""
        window = min(self.dead_tokens, max(self.tokens_seen, 1))
        return self.since_fired >= window

    def aux_mask(self) -> Tensor | None:
        """Latents the AuxK loss trains this step, or None before a dead window has passed."""
        if self.auxk_alpha <= 0 or self.tokens_seen < self.dead_tokens:
            return None
        mask = self.dead_mask()
        return mask | underused_mask(self.freq) if self.aux_zipf else mask

    def step(self, x: Tensor, y: Tensor | None = None, grad: Tensor | None = None
             ) -> dict[str, float]:
        """One optimiser step on x [N, d_in] (target y [N, d_out], default x; grad [N, d_in] the
        loss gradient at x, for architectures that select by it)."""
        sae = self.sae
        out = sae(x, y, dead_mask=self.aux_mask(), grad=grad)
        loss = out.fvu + self.auxk_alpha * out.auxk_loss + out.sparsity_loss
        # One scalar sync per step; a NaN step would otherwise poison every weight via Adam.
        require_finite(loss.detach(), f"SAE training loss at step {self.steps}",
                       "lower sae.lr, or check the activations for outliers")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if not sae.transcode:
            sae.remove_parallel_grad()
        self.opt.step()
        self.sched.step()
        if not sae.transcode:
            sae.normalize_decoder()
        with torch.no_grad():
            l0 = self._bookkeep(out.top_acts.detach(), out.top_indices, len(x))
        return {"fvu": float(out.fvu.detach()), "auxk_loss": float(out.auxk_loss.detach()),
                "sparsity_loss": float(out.sparsity_loss.detach()), "l0": l0}

    def _bookkeep(self, acts: Tensor, indices: Tensor, n: int) -> float:
        """Update firing counters, frequencies and thresholds; returns the batch's mean L0."""
        active = acts > 0
        fired = indices[active]
        self.since_fired += n
        self.since_fired[fired] = 0
        rate = max(1.0 / (self.steps + 1), FREQ_RATE)  # running mean first, then an EMA
        counts = torch.bincount(fired, minlength=self.sae.num_latents).to(self.freq.dtype)
        self.freq += rate * (counts / n - self.freq)
        if self.sae.arch.learns_threshold:
            self.sae.arch.update_threshold(self.sae, acts, indices,
                                           max(1.0 / (self.steps + 1), THRESHOLD_RATE))
        self.tokens_seen += n
        self.steps += 1
        return float(active.sum()) / n

    def state_dict(self) -> dict[str, Any]:
        """Everything but the SAE's weights needed to resume exactly."""
        return {"opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "since_fired": self.since_fired, "freq": self.freq,
                "tokens_seen": self.tokens_seen, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.since_fired.copy_(state["since_fired"])
        self.freq.copy_(state["freq"])
        self.tokens_seen, self.steps = int(state["tokens_seen"]), int(state["steps"])


def default_lr(num_latents: int) -> float:
    """sparsify's width-scaled Adam lr: 2e-4 / sqrt(m / 2^14)."""
    return 2e-4 / math.sqrt(num_latents / 2**14)
