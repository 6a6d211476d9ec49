"""Reader for the collect stage's activation shards.

Layout of a collect artifact directory:
  shard-00000.safetensors  tensors "acts" float16 (collect.dtype; older artifacts float32)
                           [n_seq, seq_len, d_model], "tokens" int32 [n_seq, seq_len]; for a
                           transcoder also "acts.<target hookpoint>", for an SAE trained on loss
                           gradients (sae.architecture gsae) "grad.<hookpoint>" (dL/dx)
  sequences.parquet        seq_id, tokens (list<int32>), token_str (list<string>)
  documents.parquet        doc, start, n_tokens: where each document starts in the token stream
                           with BOS dropped (interp/mine/doc_split.py; absent in artifacts collected
                           before it existed, which mining refuses)
  manifest.json            d_model, seq_len, n_sequences, n_documents, hookpoint, model,
                           dtype (absent = float32), shards [{file, first_seq, n_seq}],
                           store (absent = dense)
With collect.store 'tokens' a shard holds "tokens" only; interp/collect/stream.py recomputes its "acts".
Each tensor carries its dtype in the safetensors header, so readers accept either storage.
Position 0 of every sequence is the BOS token; its activation is an outlier (attention sink) and is
excluded from training and mining.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from interp.finite import require_finite


def gradient_tensor_name(hookpoint: str) -> str:
    """Name of the shard tensor holding dL/dx at `hookpoint` (written by collect for an
    architecture that trains on loss gradients)."""
    return f"grad.{hookpoint}"


@dataclass(frozen=True)
class ShardInfo:
    file: str
    first_seq: int
    n_seq: int


class ActivationShards:
    """Read-only view of a collect artifact."""

    def __init__(self, path: Path):
        self.path = Path(path)
        meta = json.loads((self.path / "manifest.json").read_text())
        self.meta = meta
        self.d_model: int = meta["d_model"]
        self.seq_len: int = meta["seq_len"]
        self.n_sequences: int = meta["n_sequences"]
        self.hookpoint: str = meta["hookpoint"]
        self.shards = [ShardInfo(**s) for s in meta["shards"]]

    @property
    def n_tokens(self) -> int:
        """Tokens usable for training (BOS excluded)."""
        return self.n_sequences * (self.seq_len - 1)

    @property
    def store(self) -> str:
        """'dense' (activations on disk) or 'tokens' (token ids only: collect.store)."""
        return self.meta.get("store", "dense")

    def load_tokens(self, i: int) -> torch.Tensor:
        """tokens [n_seq, seq_len] int64 of shard i, without reading its activations."""
        with safe_open(str(self.path / self.shards[i].file), framework="pt") as f:
            return f.get_tensor("tokens").long()

    def load_shard(self, i: int, dtype: torch.dtype | None = torch.float32
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """(acts [n_seq, seq_len, d], tokens [n_seq, seq_len] int64) of shard i; acts in `dtype`,
        or as stored when dtype is None (the miner upcasts chunk by chunk, halving its memory)."""
        path = self.path / self.shards[i].file
        if self.store != "dense":
            raise ValueError(f"collect artifact {self.path} holds token ids only (collect.store: "
                             f"{self.store}): open it with interp.collect.stream.open_activations, which "
                             f"recomputes the activations with the subject model")
        t = load_file(str(path))
        acts = t["acts"] if dtype is None else t["acts"].to(dtype)
        require_finite(acts, f"activation shard {path}", "collect it again (delete this artifact)")
        return acts, t["tokens"].long()

    def iter_sequences(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield (seq_ids [n], acts [n, seq_len, d], tokens [n, seq_len]) shard by shard."""
        for i, s in enumerate(self.shards):
            acts, tokens = self.load_shard(i)
            yield torch.arange(s.first_seq, s.first_seq + s.n_seq), acts, tokens
