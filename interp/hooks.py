"""Hookpoint names of TransformerLens models: where in a block a hook sits (so a transcoder's target
can be checked to lie downstream of its input) and which hooks carry per-head activations.

No imports from the rest of interp: config validation uses it before anything is loaded.
"""
from __future__ import annotations

# Order of the hooks inside one transformer block (TransformerLens / TransformerBridge names).
_BLOCK_ORDER = (
    "hook_resid_pre", "ln1.", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_rot_",
    "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "attn.hook_result",
    "attn.hook_out", "hook_attn_out", "hook_resid_mid", "ln2.", "hook_mlp_in", "mlp.hook_in",
    "mlp.hook_pre", "mlp.hook_post", "mlp.hook_out", "hook_mlp_out", "hook_resid_post",
)

HEAD_HOOKS = ("attn.hook_z",)  # [batch, pos, n_heads, d_head]: flattened to heads x d_head


def hook_position(hookpoint: str) -> tuple[int, int] | None:
    """(layer, rank within the block) of 'blocks.<L>.<name>', or None for an unknown name."""
    parts = hookpoint.split(".", 2)
    if len(parts) < 3 or parts[0] != "blocks" or not parts[1].isdigit():
        return None
    rest = parts[2]
    for rank, name in enumerate(_BLOCK_ORDER):
        if rest == name or (name.endswith((".", "_")) and rest.startswith(name)):
            return int(parts[1]), rank
    return None


def check_downstream(hook_in: str, hook_out: str) -> None:
    """Raise ValueError unless hook_out is computed after hook_in in the forward pass (a
    transcoder replaces hook_out with a function of hook_in, so the input must exist first)."""
    a, b = hook_position(hook_in), hook_position(hook_out)
    if a is None or b is None:
        return  # unknown names: the runtime check in SubjectModel.run_replacement still applies
    if b <= a:
        raise ValueError(f"sae.transcode_target {hook_out!r} is not downstream of "
                         f"model.hookpoint {hook_in!r}: a transcoder maps an earlier hookpoint "
                         f"to a later one (e.g. blocks.L.ln2.hook_normalized -> "
                         f"blocks.L.hook_mlp_out)")


def is_head_hook(hookpoint: str) -> bool:
    """True for hooks whose activations are per attention head (hook_z)."""
    return any(hookpoint.endswith(h) for h in HEAD_HOOKS)


NEURON_HOOK = ".mlp.hook_post"  # the MLP's neurons: what its output projection W_out reads


def neurons_hookpoint_error(hookpoint: str) -> str | None:
    """Why `hookpoint` cannot carry MLP neurons as latents (sae.architecture 'neurons'), or None."""
    if hookpoint.endswith(NEURON_HOOK):
        return None
    return (f"sae.architecture 'neurons' needs model.hookpoint 'blocks.<L>{NEURON_HOOK}' (got "
            f"{hookpoint!r}): only there do the activations reach the MLP's output linearly "
            f"through W_out, which gives neuron i its decoder direction (row i of W_out); "
            f"mlp.hook_pre is before the nonlinearity and residual-stream hooks hold no neurons")
