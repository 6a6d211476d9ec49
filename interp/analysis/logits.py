"""Logits stage: the output side of every latent. Each decoder direction (for a transcoder, its
output direction) goes through the subject model's final norm and unembedding (the logit lens);
the top-k promoted and suppressed tokens with their values go to latent_logits.parquet.

Memory stays bounded at 10^6 latents: decoder rows are read from the safetensors file a block at a
time, each block's [block, vocab] logits are reduced to top-k at once and written as a row group,
so no latents x vocab matrix and no whole decoder is ever held.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from interp.config import RunConfig
from interp.contract import Stage, StageContext, Table

log = logging.getLogger(__name__)

VERSION = "1"
FILE = "latent_logits.parquet"
SCHEMA = pa.schema([("sae_key", pa.string()), ("latent", pa.int32()), ("direction", pa.string()),
                    ("rank", pa.int16()), ("token_id", pa.int32()), ("token", pa.string()),
                    ("value", pa.float32())])


@dataclass(frozen=True)
class Readout:
    """What the logit lens needs of a model: W_U [d_model, vocab], the final norm's scale
    gamma [d_model] (None = no norm), whether the norm centres (LayerNorm) and a token decoder."""

    W_U: torch.Tensor
    gamma: torch.Tensor | None
    center: bool
    decode: Any  # callable: list[int] -> list[str]


def readout_of(model: Any) -> Readout:
    """The Readout of a loaded SubjectModel, through TransformerLens 4's TransformerBridge
    (`bridge.W_U`, `bridge.ln_final`). Only the norm's scale (and centring) is applied: its bias
    would add the same vector to every latent, and its division by the residual's norm depends on
    the token, not the latent (it rescales all of a latent's values alike, so ranks are unchanged)."""
    bridge = model.bridge
    W_U = bridge.W_U.detach().float()
    norm = getattr(bridge, "ln_final", None)
    inner = getattr(norm, "original_component", None) or norm
    weight = getattr(inner, "weight", None)
    gamma = weight.detach().float() if isinstance(weight, torch.Tensor) else None
    center = isinstance(inner, torch.nn.LayerNorm)
    tok = model.tokenizer
    return Readout(W_U, gamma, center, lambda ids: [tok.decode([i]) for i in ids])


def load_readout(cfg: RunConfig) -> Readout:
    """Load the subject model and take its readout (a seam tests replace with a planted one)."""
    from interp.models import load_model

    return readout_of(load_model(cfg.model, cfg.home))


def top_tokens(w_dec: torch.Tensor, readout: Readout, k: int) -> tuple[torch.Tensor, ...]:
    """Top-k promoted and suppressed tokens of decoder rows w_dec [b, d_model].

    Returns (promoted ids [b, k], promoted values [b, k], suppressed ids, suppressed values);
    suppressed values are the most negative logits, most negative first.
    """
    x = w_dec.to(readout.W_U.device, torch.float32)
    if readout.gamma is not None:
        x = x * readout.gamma
    if readout.center:
        x = x - x.mean(dim=-1, keepdim=True)
    logits = x @ readout.W_U  # [b, vocab]: the only vocab-wide tensor, one block at a time
    k = min(k, logits.shape[1])
    pv, pi = logits.topk(k, dim=1)
    nv, ni = logits.topk(k, dim=1, largest=False)
    return pi, pv, ni, nv


def _rows(sae_key: str, start: int, parts: tuple[torch.Tensor, ...], names: dict[int, str]) -> pa.Table:
    """One block's rows: latent-major, promoted ranks 1..k then suppressed ranks 1..k."""
    pi, pv, ni, nv = (t.cpu().numpy() for t in parts)
    b, k = pi.shape
    ids = np.concatenate([pi, ni], axis=1)                      # [b, 2k]
    vals = np.concatenate([pv, nv], axis=1)
    latent = np.repeat(np.arange(start, start + b, dtype=np.int32), 2 * k)
    direction = np.tile(np.array(["promoted"] * k + ["suppressed"] * k), b)
    rank = np.tile(np.concatenate([np.arange(1, k + 1)] * 2).astype(np.int16), b)
    flat = ids.reshape(-1)
    return pa.table({"sae_key": pa.array([sae_key] * len(flat), pa.string()),
                     "latent": latent, "direction": direction, "rank": rank,
                     "token_id": flat.astype(np.int32),
                     "token": [names[int(i)] for i in flat],
                     "value": vals.reshape(-1).astype(np.float32)}, schema=SCHEMA)


def project(train_dir: Path, sae_key: str, readout: Readout, out: Path, *, k: int,
            block: int) -> dict[str, Any]:
    """Write `out` (latent_logits.parquet) for the SAE in train_dir; returns manifest fields."""
    from safetensors import safe_open

    names: dict[int, str] = {}
    with safe_open(str(Path(train_dir) / "sae.safetensors"), framework="pt") as f:
        dec = f.get_slice("W_dec")
        n, d = dec.get_shape()
        if d != readout.W_U.shape[0]:
            # e.g. a transcoder onto hook_mlp_post: its outputs are not residual-stream vectors
            log.warning("logits: decoder width %d is not d_model %d; no logit lens", d,
                        readout.W_U.shape[0])
            pq.write_table(SCHEMA.empty_table(), out)
            return {"rows": 0, "num_latents": n, "skipped": "decoder width is not d_model"}
        with pq.ParquetWriter(out, SCHEMA) as writer, torch.inference_mode():
            for start in range(0, n, block):
                parts = top_tokens(dec[start:start + block], readout, k)
                new = sorted({int(i) for t in (parts[0], parts[2]) for i in t.flatten().tolist()}
                             - names.keys())
                names.update(zip(new, readout.decode(new)))
                writer.write_table(_rows(sae_key, start, parts, names))
    return {"rows": n * 2 * min(k, readout.W_U.shape[1]), "num_latents": n}


def fill(ctx: StageContext) -> dict[str, Any]:
    """latent_logits.parquet: top promoted / suppressed tokens of every latent of the SAE."""
    cfg, train = ctx.cfg, ctx.input("train")
    device = cfg.logits.device or cfg.model.device
    if cfg.logits.k == 0:  # skip without loading the model (tests on synthetic activations)
        pq.write_table(SCHEMA.empty_table(), ctx.out / FILE)
        return {"train": train.key, "sae": train.key, "k": 0, "rows": 0}
    readout = load_readout(cfg)
    readout = Readout(readout.W_U.to(device), None if readout.gamma is None else
                      readout.gamma.to(device), readout.center, readout.decode)
    man = project(train.path, train.key, readout, ctx.out / FILE, k=cfg.logits.k,
                  block=cfg.logits.block)
    return {"train": train.key, "sae": train.key, "k": cfg.logits.k, **man}


STAGE = Stage("logits", VERSION, lambda cfg: {"k": cfg.logits.k}, fill, inputs=("train",),
              tables=(Table("latent_logits", FILE,
                            "sae_key, latent, direction, rank, token_id, token, value"),))
