"""Builders for SAE tests: tiny synthetic collect artifacts and planted-dictionary data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

# One thread: these tensors are tiny, and on a shared 2-core machine a second OpenMP thread that
# waits for a busy core makes every op ten times slower.
torch.set_num_threads(1)


def write_shards(path: Path, tokens: torch.Tensor, seq_len: int, *, shard_sequences: int = 64,
                 hookpoint: str = "blocks.0.hook_resid_post", extra: dict | None = None) -> Path:
    """Write tokens [n, d] as a collect artifact (format of interp/collect/shards.py) under path.

    Tokens are cut into sequences of seq_len - 1, each preceded by a fake BOS activation (a large
    outlier, which training must never see). `extra` maps tensor name -> [n, d'] for more hookpoints.
    """
    path.mkdir(parents=True, exist_ok=True)
    d = tokens.shape[1]
    n_seq = tokens.shape[0] // (seq_len - 1)

    def to_seqs(t: torch.Tensor) -> torch.Tensor:
        t = t[: n_seq * (seq_len - 1)].reshape(n_seq, seq_len - 1, -1)
        bos = torch.full((n_seq, 1, t.shape[2]), 1e4)
        return torch.cat([bos, t], dim=1).contiguous()

    acts, others = to_seqs(tokens), {k: to_seqs(v) for k, v in (extra or {}).items()}
    shards = []
    for i, first in enumerate(range(0, n_seq, shard_sequences)):
        n = min(shard_sequences, n_seq - first)
        name = f"shard-{i:05d}.safetensors"
        tensors = {"acts": acts[first:first + n],
                   "tokens": torch.zeros(n, seq_len, dtype=torch.int32)}
        tensors.update({k: v[first:first + n] for k, v in others.items()})
        save_file(tensors, str(path / name))
        shards.append({"file": name, "first_seq": first, "n_seq": n})
    manifest = {"d_model": d, "seq_len": seq_len, "n_sequences": n_seq, "hookpoint": hookpoint,
                "model": "synthetic", "shards": shards}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def planted_data(n: int, d: int = 32, n_dict: int = 64, active: tuple[int, int] = (3, 4),
                 noise: float = 0.01, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(x [n, d], dictionary [n_dict, d]): each x is a positive sparse mix of 3-4 unit directions."""
    gen = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(n_dict, d, generator=gen)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    n_active = torch.randint(active[0], active[1] + 1, (n, 1), generator=gen)
    # a random subset per row: the n_active smallest of random scores
    ranks = torch.rand(n, n_dict, generator=gen).argsort(1).argsort(1)
    coef = torch.rand(n, n_dict, generator=gen) * 1.5 + 0.5
    codes = torch.where(ranks < n_active, coef, torch.zeros(()))
    x = codes @ dictionary + noise * torch.randn(n, d, generator=gen)
    return x, dictionary


@pytest.fixture
def make_shards(tmp_path: Path):
    """make_shards(tokens [n, d], seq_len=17, **kw) -> ActivationShards of a fresh artifact."""
    from interp.collect.shards import ActivationShards
    counter = iter(range(1000))

    def make(tokens: torch.Tensor, seq_len: int = 17, **kw) -> ActivationShards:
        return ActivationShards(write_shards(tmp_path / f"collect{next(counter)}", tokens,
                                             seq_len, **kw))
    return make
