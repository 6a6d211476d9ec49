"""Saving and loading SAEs: sparsify's layout (`sae.safetensors` + `cfg.json`, our native format),
format detection, loading either format (SAELens's lives in `interp.sae.saelens`), and
compatibility checks.

sparsify's `SparseCoder.load_from_disk` reads what `save_sae` writes for TopK SAEs: same tensor
names (encoder.weight, encoder.bias, W_dec, b_dec) and config keys, plus our provenance keys.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from interp.artifacts import write_text_atomic
from interp.sae.model import SAE, sae_from_tensors
from interp.sae.saelens import SAELENS_WEIGHTS, load_saelens

SPARSIFY_WEIGHTS = "sae.safetensors"
CFG_FILE = "cfg.json"

# Keys sparsify's SparseCoderConfig expects (d_in is popped by sparsify before parsing the rest).
_SPARSIFY_DEFAULTS: dict[str, Any] = {"activation": "topk", "expansion_factor": 0,
                                      "normalize_decoder": True, "multi_topk": False,
                                      "skip_connection": False, "transcode": False}


def save_sae(sae: SAE, directory: Path) -> Path:
    """Write `sae.safetensors` + `cfg.json` into directory (created if needed); returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: p.detach().contiguous().cpu() for name, p in sae.state_dict().items()}
    save_file(tensors, str(directory / SPARSIFY_WEIGHTS))
    cfg = {**_SPARSIFY_DEFAULTS, **sae.cfg, "normalize_decoder": not sae.transcode}
    if not cfg["expansion_factor"]:
        cfg["expansion_factor"] = max(1, sae.num_latents // sae.d_in)
    write_text_atomic(directory / CFG_FILE, json.dumps(cfg, indent=2, default=str))
    return directory


def load_sae(directory: Path, device: str | torch.device = "cpu") -> SAE:
    """Load an SAE saved by `save_sae` (or by sparsify's `save_to_disk`)."""
    directory = Path(directory)
    cfg_path, weights_path = directory / CFG_FILE, directory / SPARSIFY_WEIGHTS
    if not cfg_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(f"{directory} is not a sparsify-format SAE: it needs "
                                f"{SPARSIFY_WEIGHTS} and {CFG_FILE}")
    cfg = json.loads(cfg_path.read_text())
    return sae_from_tensors(cfg, load_file(str(weights_path), device=str(device)), device,
                            str(weights_path))


def detect_format(path: Path) -> str:
    """'sparsify' or 'saelens' by the weights file present in directory `path`."""
    path = Path(path)
    if (path / SPARSIFY_WEIGHTS).is_file():
        return "sparsify"
    if (path / SAELENS_WEIGHTS).is_file():
        return "saelens"
    subdirs = sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
    hint = f"; it has subdirectories {subdirs[:8]}: pass hookpoint=<one of them>" if subdirs else ""
    raise FileNotFoundError(f"{path} holds neither {SPARSIFY_WEIGHTS} (sparsify/interp) nor "
                            f"{SAELENS_WEIGHTS} (SAELens){hint}")


def load_any_sae(path: Path, device: str | torch.device = "cpu", *,
                 hookpoint: str | None = None) -> SAE:
    """Load an SAE in sparsify/interp or SAELens format, detected from the files in `path`.

    Multi-hookpoint checkpoints (sparsify's one-directory-per-hookpoint layout) need `hookpoint`.
    """
    path = Path(path)
    if hookpoint is not None and (path / hookpoint).is_dir():
        path = path / hookpoint
    if detect_format(path) == "sparsify":
        sae = load_sae(path, device)
    else:
        sae = load_saelens(path, device)
    if hookpoint is not None:
        sae.cfg.setdefault("hookpoint", hookpoint)
    return sae


def check_compatible(sae: SAE, d_model: int, hookpoint: str) -> None:
    """Raise ValueError if the SAE cannot read activations of width d_model at hookpoint."""
    if sae.d_in != d_model:
        raise ValueError(f"SAE expects inputs of width {sae.d_in} but the activations at "
                         f"{hookpoint!r} have width {d_model}: wrong model or hookpoint?")
    trained_at = sae.cfg.get("hookpoint")
    if trained_at is not None and trained_at != hookpoint:
        raise ValueError(f"SAE was trained on hookpoint {trained_at!r}, not {hookpoint!r}; "
                         f"set model.hookpoint to {trained_at!r} or use a matching SAE")
