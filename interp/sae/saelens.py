"""SAELens on-disk format: `sae_weights.safetensors` (W_enc [d, m], b_enc, W_dec [m, d], b_dec,
threshold) + `cfg.json` (d_in, d_sae, architecture, hook_name, ...).

Written so that SAELens 5 (top-level hook_name / model_name) and 6 (`metadata`) both read it. Each
architecture names the SAELens architecture it is exported as (`Architecture.saelens_name`, its
inference rule: batch-level ones are "jumprelu" with their learnt thresholds, as SAELens itself
does for BatchTopK) or refuses export. Our own cfg rides along under metadata.interp so a round
trip is exact.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from interp.artifacts import write_text_atomic
from interp.sae.arch.registry import ARCHITECTURES, get_architecture
from interp.sae.model import SAE, sae_from_tensors

SAELENS_WEIGHTS = "sae_weights.safetensors"
SAELENS_CFG = "cfg.json"  # SAELens's name, which happens to be ours (interp.sae.io.CFG_FILE) too

# SAELens architecture -> ours, for SAELens files not written by us
_FROM_SAELENS = {arch.saelens_name: name for name, arch in ARCHITECTURES.items()
                 if arch.saelens_import and arch.saelens_name}


def save_saelens(sae: SAE, directory: Path) -> Path:
    """Write the SAE in SAELens format into directory; returns it."""
    if sae.transcode:
        raise ValueError("SAELens export of transcoders is not supported; use save_sae")
    lens_name = sae.arch.saelens_name
    if lens_name is None:
        known = sorted({a.saelens_name for a in ARCHITECTURES.values() if a.saelens_name})
        raise ValueError(f"sae.architecture {sae.arch.name!r} has no SAELens equivalent (SAELens "
                         f"architectures we export: {', '.join(known)}); use save_sae (sparsify "
                         f"format) for it")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {"W_enc": sae.encoder.weight.detach().T, "b_enc": sae.encoder.bias.detach(),
               "W_dec": sae.W_dec.detach(), "b_dec": sae.b_dec.detach()}
    threshold = sae.arch.saelens_threshold(sae)
    if threshold is not None:
        tensors["threshold"] = threshold
    save_file({k: v.contiguous().cpu() for k, v in tensors.items()},
              str(directory / SAELENS_WEIGHTS))
    meta = {"model_name": sae.cfg.get("model"), "hook_name": sae.cfg.get("hookpoint"),
            "interp": sae.cfg}
    cfg = {"architecture": lens_name, "d_in": sae.d_in, "d_sae": sae.num_latents,
           "dtype": str(sae.W_dec.dtype).removeprefix("torch."), "device": "cpu",
           "apply_b_dec_to_input": True, "normalize_activations": "none",
           "reshape_activations": "none", "hook_name": meta["hook_name"],
           "model_name": meta["model_name"], "metadata": meta}
    if lens_name == "topk":  # SAELens's TopK reads its k from here
        cfg["k"] = sae.k
        cfg["activation_fn_kwargs"] = {"k": sae.k}
    write_text_atomic(directory / SAELENS_CFG, json.dumps(cfg, indent=2, default=str))
    return directory


def _our_cfg(cfg: dict[str, Any], origin: str) -> dict[str, Any]:
    """Translate a SAELens cfg into ours (or take the embedded original from metadata.interp)."""
    meta = cfg.get("metadata") or {}
    if "interp" in meta:
        return dict(meta["interp"])
    arch = cfg.get("architecture", "standard")
    if arch not in _FROM_SAELENS:
        raise ValueError(f"{origin}: SAELens architecture {arch!r} is not supported "
                         f"(supported: {sorted(_FROM_SAELENS)})")
    if cfg.get("normalize_activations", "none") != "none":
        raise ValueError(f"{origin}: normalize_activations={cfg['normalize_activations']!r} is not "
                         f"supported; fold the scaling factor into the weights first")
    k = cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k") or 1
    return {"architecture": _FROM_SAELENS[arch], "k": int(k), "d_in": cfg["d_in"],
            "hookpoint": meta.get("hook_name", cfg.get("hook_name")),
            "model": meta.get("model_name", cfg.get("model_name")), "source_format": "saelens"}


def load_saelens(directory: Path, device: str | torch.device = "cpu") -> SAE:
    """Load a SAELens-format SAE (standard, topk, jumprelu; or one written by save_saelens)."""
    directory = Path(directory)
    weights_path = directory / SAELENS_WEIGHTS
    raw_cfg = json.loads((directory / SAELENS_CFG).read_text())
    cfg = _our_cfg(raw_cfg, str(directory))
    t = load_file(str(weights_path), device=str(device))
    w_enc, b_enc = t["W_enc"], t["b_enc"]
    if w_enc.shape != (raw_cfg["d_in"], raw_cfg["d_sae"]):
        raise ValueError(f"{weights_path}: W_enc has shape {tuple(w_enc.shape)}, cfg says "
                         f"d_in={raw_cfg['d_in']}, d_sae={raw_cfg['d_sae']}")
    if not raw_cfg.get("apply_b_dec_to_input", True):
        # W(x - b_dec) + b_enc' == W x + b_enc  with  b_enc' = b_enc + W b_dec
        b_enc = b_enc + t["b_dec"] @ w_enc
    ours = {"encoder.weight": w_enc.T.contiguous(), "encoder.bias": b_enc,
            "W_dec": t["W_dec"], "b_dec": t["b_dec"]}
    if "threshold" in t:
        ours.update(get_architecture(cfg["architecture"]).threshold_from_saelens(t["threshold"]))
    return sae_from_tensors(cfg, ours, device, str(weights_path))
