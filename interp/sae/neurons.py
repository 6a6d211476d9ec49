"""MLP neurons as a dictionary (`sae.architecture: neurons`): the baseline of Paulo et al. 2024
("Automatically Interpreting Millions of Features in LLMs"), labelled by the same pipeline as SAEs.

Read at `blocks.L.mlp.hook_post` (the activations that the MLP's output projection reads), the
neurons form a transcoder that needs no training: encoder = identity (latent i = neuron i), each
token keeps its `sae.k` largest positive activations (the paper's top-k sparsified neurons; a k at
or above the MLP width keeps every positive one), decoder = the output projection W_out [d_mlp,
d_model] and b_dec = its bias, so latent i's decoder direction is row i of W_out, the vector that
neuron writes into the residual stream. Its output hookpoint is `blocks.L.hook_mlp_out`.

Reconstruction is therefore of the MLP's output, which is linear in hook_post: the exact target is
hook_post @ W_out + b_out (`mlp_output`), computed from the collected activations. FVU says how
much of the MLP's output the kept neurons carry; with every neuron kept, what is lost is the
negative activations (a gated MLP's neurons are signed; only their positive side is labelled).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp.hooks import NEURON_HOOK, neurons_hookpoint_error
from interp.sae.model import SAE

log = logging.getLogger(__name__)

MlpWeights = Callable[[], tuple[Tensor, Tensor | None]]
"""Returns (W_out [d_mlp, d_model], b_out [d_model] or None) of the hookpoint's MLP."""


def output_hookpoint(hookpoint: str) -> str:
    """blocks.L.mlp.hook_post -> blocks.L.hook_mlp_out, where the MLP's output is read."""
    return hookpoint[: -len(NEURON_HOOK)] + ".hook_mlp_out"


def neurons_sae(W_out: Tensor, b_out: Tensor | None, k: int, *,
                cfg: dict[str, Any] | None = None) -> SAE:
    """The neuron dictionary of one MLP: W_out [d_mlp, d_model], b_out [d_model] or None.

    k is clamped to d_mlp (k >= d_mlp: every positive neuron activation is kept).
    """
    d_mlp, d_model = W_out.shape
    W_out = W_out.detach().float().cpu()
    sae = SAE(d_mlp, d_mlp, min(k, d_mlp), architecture="neurons", transcode=True,
              d_out=d_model, cfg={"expansion_factor": 1, "normalisation": None, **(cfg or {})})
    with torch.no_grad():
        sae.encoder.weight.copy_(torch.eye(d_mlp))
        sae.encoder.bias.zero_()
        sae.W_dec.copy_(W_out)
        sae.b_dec.copy_(torch.zeros(d_model) if b_out is None else b_out.detach().float().cpu())
    return sae


def mlp_output(sae: SAE, x: Tensor) -> Tensor:
    """The MLP's exact output [N, d_model] from its neuron activations x [N, d_mlp]: every neuron,
    signed (what hook_mlp_out holds; the target a neurons SAE reconstructs)."""
    x = x.to(sae.device, sae.W_dec.dtype)
    return x @ sae.W_dec + sae.b_dec


def model_mlp_weights(model: Any, layer: int) -> tuple[Tensor, Tensor | None]:
    """(W_out [d_mlp, d_model], b_out or None) of block `layer` of a loaded SubjectModel, through
    TransformerLens 4's bridge (`blocks[L].mlp.W_out`, TransformerLens orientation)."""
    mlp = model.bridge.blocks[layer].mlp
    W_out = mlp.W_out.detach().float()
    try:
        b_out = mlp.b_out
    except AttributeError:  # no output bias (LLaMA-style MLPs)
        b_out = None
    b_out = b_out.detach().float() if isinstance(b_out, Tensor) else None
    return W_out, b_out


def build_neurons(k: int, shards: Any, out: Path, weights: MlpWeights, *,
                  holdout_every: int) -> dict[str, Any]:
    """Write the neuron dictionary of the shards' hookpoint into `out` (the train artifact's
    files: sae.safetensors + cfg.json) and return its metrics on held-out tokens.

    fvu is of the MLP's output (`mlp_output`), l0 is the kept neurons per token, dead_frac the
    neurons never positive on the held-out budget; nothing was trained (tokens_seen 0).
    """
    from interp.sae.calibrate import HELDOUT_TOKENS, dead_fraction
    from interp.sae.data import heldout_tokens, train_batches
    from interp.sae.eval import evaluate
    from interp.sae.io import save_sae

    hookpoint = shards.hookpoint
    if (why := neurons_hookpoint_error(hookpoint)) is not None:
        raise ValueError(why)
    W_out, b_out = weights()
    if W_out.shape[0] != shards.d_model:
        raise ValueError(f"the MLP at {hookpoint!r} has {W_out.shape[0]} neurons but the collected "
                         f"activations are {shards.d_model} wide: wrong model for this artifact?")
    sae = neurons_sae(W_out, b_out, k, cfg={
        "hookpoint": hookpoint, "hookpoint_out": output_hookpoint(hookpoint),
        "model": shards.meta.get("model")})
    save_sae(sae, out)
    holdout = holdout_every if shards.n_sequences >= 2 * holdout_every > 0 else 0
    if holdout:
        x, _ = heldout_tokens(shards, holdout, HELDOUT_TOKENS)
    else:
        x, _ = next(train_batches(shards, HELDOUT_TOKENS, seed=0, holdout_every=0))
    metrics = {**evaluate(sae, x, mlp_output(sae, x)),
               "fvu_split": "heldout" if holdout else "train",
               "fvu_target": "mlp_out = hook_post @ W_out + b_out (exact, every neuron)",
               "l0_rule": "inference", "dead_frac": dead_fraction(sae, x),
               "dead_tokens_evaluated": min(len(x), HELDOUT_TOKENS), "tokens_seen": 0,
               "trained": False, "num_latents": sae.num_latents, "k": sae.k,
               "neurons_topk": sae.k < sae.num_latents, "architecture": "neurons"}
    log.info("neurons of %s: %d neurons, k %d, fvu of the MLP output %.4f, l0 %.1f", hookpoint,
             sae.num_latents, sae.k, metrics["fvu"], metrics["l0"])
    return metrics
