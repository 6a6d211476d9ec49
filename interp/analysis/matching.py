"""Decoder matching: the best decoder-cosine match of every latent of one SAE among another's.

Two SAEs of one model and hookpoint learn many of the same directions; matching their W_dec rows
lets the catalogue compare the explanations of matched latents. Exact top-1 is quadratic
(m_a x m_b dot products), so it runs in row blocks of A against all of B with torch on the given
device: memory is block x m_b floats, and on a GPU two 65k-latent SAEs take seconds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

COLUMNS = ("sae_a", "latent_a", "sae_b", "latent_b", "cosine")


def _unit(w: torch.Tensor) -> torch.Tensor:
    return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def best_matches(w_a, w_b, *, device: str = "cpu",
                 block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """For each row of w_a [m_a, d], the row of w_b [m_b, d] with the highest cosine similarity.

    Arrays or tensors in; returns (index [m_a] int64, cosine [m_a] float32) as NumPy. Ties go to
    the lowest index of w_b (argmax semantics), as the naive reference does.
    """
    a = _unit(torch.as_tensor(w_a).to(device=device, dtype=torch.float32))
    b = _unit(torch.as_tensor(w_b).to(device=device, dtype=torch.float32))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"decoder widths differ ({a.shape[1]} vs {b.shape[1]}); cannot match")
    idx = torch.empty(len(a), dtype=torch.int64, device=device)
    cos = torch.empty(len(a), dtype=torch.float32, device=device)
    for i in range(0, len(a), block):
        cos[i:i + block], idx[i:i + block] = (a[i:i + block] @ b.T).max(dim=1)
    return idx.cpu().numpy(), cos.cpu().numpy()


def load_decoder(train_dir: Path) -> torch.Tensor:
    """W_dec [num_latents, d_out] of a train artifact (as save_sae writes it), without the model."""
    from safetensors import safe_open

    with safe_open(str(Path(train_dir) / "sae.safetensors"), framework="pt") as f:
        return f.get_tensor("W_dec")


def decoder_matches(train_dir_a: Path, train_dir_b: Path, sae_a: str, sae_b: str, *,
                    device: str = "cpu") -> pa.Table:
    """latent_matches rows (sae_a, latent_a, sae_b, latent_b, cosine) in both directions."""
    w_a, w_b = load_decoder(train_dir_a), load_decoder(train_dir_b)
    parts = []
    for (ka, wa), (kb, wb) in (((sae_a, w_a), (sae_b, w_b)), ((sae_b, w_b), (sae_a, w_a))):
        j, c = best_matches(wa, wb, device=device)
        parts.append(pa.table({
            "sae_a": pa.array([ka] * len(j), pa.string()),
            "latent_a": pa.array(np.arange(len(j), dtype=np.int32)),
            "sae_b": pa.array([kb] * len(j), pa.string()),
            "latent_b": pa.array(j.astype(np.int32)),
            "cosine": pa.array(c.astype(np.float32))}))
    return pa.concat_tables(parts)
