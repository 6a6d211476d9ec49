"""SAE evaluation: reconstruction (FVU, L0) on activations, and downstream loss when the SAE's
reconstruction is spliced into the subject model through a model-agnostic callable.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from interp.sae.model import SAE

HookFn = Callable[[Tensor], Tensor]
"""Maps the activations at the SAE's hookpoint [B, T, d] to replacements of the same shape."""
RunModel = Callable[[Tensor, HookFn | None], Tensor]
"""run_model(tokens [B, T], hook_fn or None) -> logits [B, T, vocab]."""
ReplaceFn = Callable[[Tensor, Tensor], Tensor]
"""Maps (input-hookpoint acts [B, T, d_in], output-hookpoint acts [B, T, d_out]) to a replacement
of the output-hookpoint acts (a transcoder standing in for the layer between them)."""
RunReplacement = Callable[[Tensor, ReplaceFn | None], Tensor]
"""run(tokens [B, T], replace_fn or None) -> logits [B, T, vocab]."""


@torch.no_grad()
def evaluate(sae: SAE, x: Tensor, y: Tensor | None = None, batch_size: int = 4096) -> dict[str, float]:
    """FVU of y (default x) pooled over all N tokens, and mean L0, of the SAE on x [N, d_in]."""
    y = x if y is None else y
    sse, l0 = 0.0, 0.0
    for b in range(0, len(x), batch_size):
        xb, yb = x[b:b + batch_size].to(sae.device), y[b:b + batch_size].to(sae.device)
        acts, idx = sae.encode(xb)
        sse += float((sae.reconstruct(xb, (acts, idx)) - yb).pow(2).sum())
        l0 += float((acts > 0).sum())
    total_var = float((y - y.mean(0)).pow(2).sum())
    return {"fvu": sse / max(total_var, 1e-12), "l0": l0 / max(len(x), 1)}


MASSIVE_FACTOR = 10.0  # a token this many times the median distance from the mean is "massive"


@torch.no_grad()
def massive_token_fvu(sae: SAE, x: Tensor, y: Tensor | None = None,
                      factor: float = MASSIVE_FACTOR) -> dict[str, float | int]:
    """FVU without the few massive-activation tokens, and how much of the variance they hold.

    Pooled FVU divides by the total variance, and in SmolLM2's residual stream a handful of
    tokens (attention-sink-like, ‖x‖ ~19,000 against ~170) hold most of it: on the default run 2
    of 1,664 held-out tokens held 94% of the variance, so the pooled FVU (0.04) said how well the
    SAE reconstructs those two, while the other 1,662 had FVU 0.42. `fvu_typical` is the FVU over
    the tokens within `factor` × the median distance from the mean; `massive_tokens` and
    `massive_variance_share` say what was left out."""
    y = x if y is None else y
    if len(y) == 0:
        return {"fvu_typical": float("nan"), "massive_tokens": 0, "massive_variance_share": 0.0}
    dev = (y - y.mean(0)).pow(2).sum(-1)
    typical = dev.sqrt() <= factor * dev.sqrt().median()
    share = float(dev[~typical].sum() / dev.sum().clamp_min(1e-12))
    return {"fvu_typical": evaluate(sae, x[typical], y[typical])["fvu"],
            "massive_tokens": int((~typical).sum()), "massive_variance_share": share}


def _next_token_ce(logits: Tensor, tokens: Tensor) -> Tensor:
    """Mean next-token cross-entropy of logits [B, T, V] on tokens [B, T]."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten())


@torch.no_grad()
def eval_downstream(run_model: RunModel, sae: SAE, tokens: Tensor, *,
                    skip_first: bool = True) -> dict[str, float]:
    """Next-token loss with the hookpoint's activations replaced by the SAE's reconstruction.

    tokens [B, T]. Position 0 (BOS, an outlier the SAE never trained on) keeps its activation
    when skip_first. Returns ce_clean, ce_spliced, ce_zero (activations zeroed), ce_loss_recovered
    = (ce_zero - ce_spliced) / (ce_zero - ce_clean), and kl = mean KL(clean || spliced) per token.
    Transcoders: see `eval_replacement`.
    """
    if sae.transcode:
        raise ValueError("eval_downstream splices autoencoders; a transcoder's output hookpoint "
                         "differs from its input, which this interface cannot express")
    start = 1 if skip_first else 0

    def splice(acts: Tensor) -> Tensor:
        flat = acts[:, start:].reshape(-1, sae.d_in)  # hook_z: [B, T, heads, d_head]
        codes, idx = sae.encode(flat.to(sae.device, sae.W_dec.dtype))
        out = acts.clone()
        out[:, start:] = sae.decode(codes, idx).reshape(out[:, start:].shape).to(acts.dtype)
        return out

    def zero(acts: Tensor) -> Tensor:
        out = acts.clone()
        out[:, start:] = 0
        return out

    return _compare(run_model(tokens, None), run_model(tokens, splice), run_model(tokens, zero),
                    tokens, start)


def _compare(clean: Tensor, spliced: Tensor, zeroed: Tensor, tokens: Tensor,
             start: int) -> dict[str, float]:
    """CE of the clean, spliced and zero-ablated logits [B, T, V], CE loss recovered and mean
    KL(clean || spliced) over positions >= start."""
    ce_clean, ce_spliced, ce_zero = (float(_next_token_ce(lg, tokens))
                                     for lg in (clean, spliced, zeroed))
    logp_clean = clean.float().log_softmax(-1)
    kl = (logp_clean.exp() * (logp_clean - spliced.float().log_softmax(-1))).sum(-1)
    gap = ce_zero - ce_clean
    return {"ce_clean": ce_clean, "ce_spliced": ce_spliced, "ce_zero": ce_zero,
            "ce_loss_recovered": (ce_zero - ce_spliced) / gap if abs(gap) > 1e-12 else float("nan"),
            "kl": float(kl[:, start:].mean())}


@torch.no_grad()
def eval_replacement(run: RunReplacement, sae: SAE, tokens: Tensor, *,
                     skip_first: bool = True) -> dict[str, float]:
    """Next-token loss with a transcoder's output (skip connection included) spliced in place of
    its target hookpoint's activations, computed from its input hookpoint's activations in the
    same forward pass: the transcoder as a replacement for the layer it models.

    Same outputs as `eval_downstream`; ce_zero zero-ablates the target (the layer's output).
    """
    if not sae.transcode:
        raise ValueError("eval_replacement is for transcoders; use eval_downstream")
    start = 1 if skip_first else 0

    def replace(x: Tensor, y: Tensor) -> Tensor:
        flat = x[:, start:].reshape(-1, sae.d_in).to(sae.device, sae.W_dec.dtype)
        out = y.clone()
        out[:, start:] = sae.reconstruct(flat).reshape(out[:, start:].shape).to(y.dtype)
        return out

    def zero(x: Tensor, y: Tensor) -> Tensor:
        out = y.clone()
        out[:, start:] = 0
        return out

    return _compare(run(tokens, None), run(tokens, replace), run(tokens, zero), tokens, start)
