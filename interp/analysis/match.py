"""Match stage: each latent of a new SAE against the latents of the other SAEs of the same model
and hookpoint already in the artifact store (best decoder cosine, both directions), so the
catalogue can compare their explanations (`latent_match_compare`). Its own cached stage, so
publish only inserts rows and never does this quadratic work under the catalogue lock.

Two SAEs of one model and hookpoint learn many of the same directions. Exact top-1 is quadratic
(m_a x m_b dot products), so it runs in row blocks of A against all of B with torch on the given
device: memory is block x m_b floats, and on a GPU two 65k-latent SAEs take seconds.

The peers are found in the store when the key is computed, and their keys are part of it: a new
SAE of the same hookpoint later makes a new match artifact for the SAEs trained after it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from interp.artifacts import ArtifactStore, write_parquet_atomic
from interp.config import RunConfig
from interp.contract import Stage, StageContext, Table

VERSION = "1"
SCHEMA = pa.schema([("sae_a", pa.string()), ("latent_a", pa.int32()), ("sae_b", pa.string()),
                    ("latent_b", pa.int32()), ("cosine", pa.float32())])
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


def peers(cfg: RunConfig, train_key: str, store: ArtifactStore) -> list[str]:
    """Other trained SAEs of the same model, hookpoint and width (the newest match.max_peers)."""
    me = store.require("train", train_key).manifest()
    found = []
    for key in store.keys("train"):
        if key == train_key:
            continue
        man = store.require("train", key).manifest()
        if (man.get("hookpoint"), man.get("model")) == (me.get("hookpoint"), me.get("model")):
            found.append((man.get("created_at", 0.0), key))
    return [k for _, k in sorted(found, reverse=True)[:cfg.match.max_peers]]


def fill(ctx: StageContext) -> dict[str, Any]:
    """matches.parquet: the best match of every latent in each peer SAE, both directions."""
    cfg, train = ctx.cfg, ctx.input("train")
    store = ArtifactStore(cfg.home)
    device = cfg.match.device or cfg.sae.device or cfg.model.device
    width = load_decoder(train.path).shape[1]
    tables, used = [], []
    for key in peers(cfg, train.key, store):
        peer = store.require("train", key)
        if load_decoder(peer.path).shape[1] != width:
            continue  # a transcoder of another target: decodes to another space
        tables.append(decoder_matches(train.path, peer.path, train.key, key,
                                      device=device).cast(SCHEMA))
        used.append(key)
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    write_parquet_atomic(table, ctx.out / "matches.parquet")
    return {"train": train.key, "peers": used, "rows": table.num_rows}


STAGE = Stage(
    "match", VERSION, lambda cfg: {"max_peers": cfg.match.max_peers}, fill, inputs=("train",),
    extra=lambda k: {"peers": sorted(peers(k.cfg, k.inputs["train"], k.store))},
    tables=(Table("latent_matches", "matches.parquet", "sae_a, latent_a, sae_b, latent_b, cosine"),))
