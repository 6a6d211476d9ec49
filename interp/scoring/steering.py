"""Steering a latent, shared by the intervention scorers.

Per latent: prompts = the first `prompt_tokens` tokens of its held-out non-activating windows
(after BOS). The latent is steered by adding alpha * its unit decoder direction to every
non-BOS position at the SAE's output hookpoint; alpha is found by bisection so that the mean
KL(clean || steered) of the next-token distribution over the prompts equals `target_kl`. Greedy
continuations are generated clean and steered (`continuations`): about 20 + 2 x new_tokens
forward passes of the subject model over the prompts (batched), no KV cache.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from pydantic import Field

from interp.config_base import _Strict
from interp.mine.examples import Example
from interp.scoring.base import ScoreContext

log = logging.getLogger(__name__)


class SteeringConfig(_Strict):
    """How a latent is steered for the intervention scorers."""

    n_prompts: int = Field(4, gt=0, description="Held-out non-activating windows whose first "
                           "tokens prompt clean and steered generation (2 judge calls each).")
    prompt_tokens: int = Field(8, gt=0, description="Window tokens per prompt (after BOS).")
    new_tokens: int = Field(16, gt=0, description="Greedy tokens generated per prompt.")
    target_kl: float = Field(0.5, gt=0, description="Steering strength is bisected until the "
                             "mean next-token KL(clean || steered) over the prompts is this many nats.")
    bisection_steps: int = Field(8, ge=0, description="Bisection steps of the calibration.")


_MAX_ALPHA = 1e4   # give up growing the bracket: the target KL is unreachable by steering


def steering_hook(direction: torch.Tensor, alpha: float):
    """acts [B, T, d] -> acts with alpha * direction added at every position but BOS."""
    def hook(acts: torch.Tensor) -> torch.Tensor:
        out = acts.clone()
        out[:, 1:] += alpha * direction.to(acts.device, acts.dtype)
        return out
    return hook


def mean_kl(run, tokens: torch.Tensor, clean_logp: torch.Tensor, direction, alpha: float) -> float:
    """Mean over prompts of KL(clean || steered) at the last position, in nats."""
    steered = F.log_softmax(run(tokens, steering_hook(direction, alpha))[:, -1].float(), -1)
    return float((clean_logp.exp() * (clean_logp - steered)).sum(-1).mean())


def calibrate(run, tokens: torch.Tensor, direction: torch.Tensor, target: float,
              steps: int) -> tuple[float, float]:
    """(alpha, its KL): grow alpha x4 until KL >= target, then bisect (geometric) `steps` times."""
    clean_logp = F.log_softmax(run(tokens, None)[:, -1].float(), -1)
    lo, hi = 0.0, 1.0
    kl_hi = mean_kl(run, tokens, clean_logp, direction, hi)
    while kl_hi < target and hi < _MAX_ALPHA:
        lo, hi = hi, hi * 4
        kl_hi = mean_kl(run, tokens, clean_logp, direction, hi)
    if kl_hi < target:
        log.warning("steering cannot reach KL %.2f (%.3f at alpha %.0f)", target, kl_hi, hi)
        return hi, kl_hi
    best = (hi, kl_hi)
    for _ in range(steps):
        mid = (lo * hi) ** 0.5 if lo > 0 else hi / 2
        kl = mean_kl(run, tokens, clean_logp, direction, mid)
        if abs(kl - target) < abs(best[1] - target):
            best = (mid, kl)
        lo, hi = (mid, hi) if kl < target else (lo, mid)
    return best


@torch.inference_mode()
def greedy(run, tokens: torch.Tensor, n_new: int, hook=None) -> torch.Tensor:
    """n_new greedy tokens [B, n_new] after prompts [B, T] (full forward per step)."""
    out = tokens
    for _ in range(n_new):
        nxt = run(out, hook)[:, -1].argmax(-1, keepdim=True).to(out.device)
        out = torch.cat([out, nxt], 1)
    return out[:, tokens.shape[1]:]


def continuations(ctx: ScoreContext, latent: int, prompts: list[Example],
                  steer) -> tuple[list[str], list[str]]:
    """(clean, steered) greedy continuations of the prompts, steered at the calibrated strength."""
    res = ctx.resources
    model, sae = res.subject_model(), res.sae()
    hookpoint = sae.cfg.get("hookpoint_out") or ctx.cfg.model.hookpoint
    run = model.run_model(hookpoint)
    direction = sae.W_dec[latent].detach().float()
    direction = direction / direction.norm().clamp_min(1e-8)
    tokens = torch.tensor([[res.token_ids()[e.seq_id][0]] +
                           res.window_ids(e)[:steer.prompt_tokens] for e in prompts])
    with torch.inference_mode():
        alpha, kl = calibrate(run, tokens, direction, steer.target_kl, steer.bisection_steps)
    clean = greedy(run, tokens, steer.new_tokens)
    steered = greedy(run, tokens, steer.new_tokens, steering_hook(direction, alpha))
    log.debug("latent %d: alpha %.2f gives KL %.3f", latent, alpha, kl)
    decode = model.tokenizer.decode
    return [decode(t).strip() for t in clean.tolist()], [decode(t).strip() for t in steered.tolist()]


def prompt_windows(examples: list[Example], n: int) -> list[Example]:
    return [e for e in examples if e.split == "test" and not e.active][:n]
