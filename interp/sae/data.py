"""Token batches for SAE training, with a held-out split of whole sequences for evaluation.

A bounded shuffle buffer (a few shards at a time, whatever the token count); every `holdout_every`-th
sequence (seq_id % holdout_every == 0) is kept out of training, so the reported FVU is measured on
tokens the SAE never saw. Holding out whole sequences (not random tokens) keeps neighbouring,
correlated tokens on the same side of the split.

Transcoders read a second tensor per shard, `acts.<target hookpoint>` [n_seq, seq_len, d_out],
written by collect beside `acts`; batches are then (x [B, d_in], y [B, d_out]) pairs. A g-SAE
reads `grad.<hookpoint>` (the loss gradient at x) the same way (`gradient=True`): y is then dL/dx.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from safetensors import safe_open
from torch import Tensor

from interp.collect.shards import ActivationShards, gradient_tensor_name
from interp.finite import require_finite


def target_tensor_name(hookpoint: str) -> str:
    """Name of a shard tensor holding a second hookpoint's activations."""
    return f"acts.{hookpoint}"


def second_tensor(shards: ActivationShards, target: str | None, gradient: bool) -> str | None:
    """The shard tensor read beside `acts`: a transcoder's target or a g-SAE's gradient."""
    if target is not None and gradient:
        raise ValueError("a transcoder target and loss gradients cannot be read together")
    return gradient_tensor_name(shards.hookpoint) if gradient else \
        (target_tensor_name(target) if target else None)


def _load(shards: ActivationShards, i: int, name: str | None) -> Tensor:
    """Shard i as [n_seq, seq_len, d_in (+ d_out)]: input and second tensor side by side."""
    if name is None:
        return shards.load_shard(i)[0]
    with safe_open(str(shards.path / shards.shards[i].file), framework="pt") as f:
        if name not in f.keys():
            raise ValueError(f"shard {shards.shards[i].file} has no tensor {name!r}: collect it "
                             f"first (a transcoder's target, or gradients for sae.architecture "
                             f"gsae)")
        both = torch.cat([f.get_tensor("acts").float(), f.get_tensor(name).float()], dim=2)
    require_finite(both, f"activation shard {shards.path / shards.shards[i].file}",
                   "collect it again (delete this artifact)")
    return both


def load_pairs(shards: ActivationShards, i: int, target: str | None) -> tuple[Tensor, Tensor]:
    """Shard i as (x [n_seq, seq_len, d_in], y [n_seq, seq_len, d_out]); y is x without a target."""
    both = _load(shards, i, second_tensor(shards, target, False))
    return (both[..., :shards.d_model], both[..., shards.d_model:]) if target else (both, both)


def _shard_tokens(shards: ActivationShards, i: int, holdout_every: int, heldout: bool,
                  name: str | None, half: int | None = None) -> Tensor:
    """Tokens [n, width] of shard i (BOS dropped) from the training or the held-out sequences
    (`half` 0 or 1: only every other held-out sequence); `name`: a second tensor read beside."""
    acts = _load(shards, i, name)[:, 1:]
    info = shards.shards[i]
    seq_ids = torch.arange(info.first_seq, info.first_seq + info.n_seq)
    if holdout_every > 0:
        keep = (seq_ids % holdout_every == 0) == heldout
        if heldout and half is not None:
            keep &= (seq_ids // holdout_every) % 2 == half
        acts = acts[keep]
    elif heldout:
        acts = acts[:0]
    return acts.reshape(-1, acts.shape[-1])


def split(tokens: Tensor, d_in: int, paired: bool) -> tuple[Tensor, Tensor | None]:
    """[n, d_in (+ d_out)] -> (x [n, d_in], y [n, d_out] or None)."""
    return (tokens[:, :d_in], tokens[:, d_in:]) if paired else (tokens, None)


def train_batches(shards: ActivationShards, batch_size: int, *, seed: int, holdout_every: int,
                  target: str | None = None, buffer_shards: int = 2, gradient: bool = False
                  ) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Yield shuffled (x [B, d_in], y [B, d_out] or None) batches; the last one may be smaller.
    With `gradient`, y is the loss gradient at x [B, d_in] (g-SAE)."""
    gen = torch.Generator().manual_seed(seed)
    paired, name = target is not None or gradient, second_tensor(shards, target, gradient)
    order = torch.randperm(len(shards.shards), generator=gen).tolist()
    leftover: Tensor | None = None
    for start in range(0, len(order), buffer_shards):
        parts = [_shard_tokens(shards, i, holdout_every, False, name)
                 for i in order[start:start + buffer_shards]]
        buf = torch.cat(parts if leftover is None else [leftover, *parts])
        buf = buf[torch.randperm(len(buf), generator=gen)]
        n_full = len(buf) // batch_size * batch_size
        for b in range(0, n_full, batch_size):
            yield split(buf[b:b + batch_size], shards.d_model, paired)
        leftover = buf[n_full:]
    if leftover is not None and len(leftover):
        yield split(leftover, shards.d_model, paired)


def heldout_tokens(shards: ActivationShards, holdout_every: int, max_tokens: int,
                   target: str | None = None, half: int | None = None, gradient: bool = False
                   ) -> tuple[Tensor, Tensor | None]:
    """Up to max_tokens held-out (x, y-or-None) tokens, in shard order (empty if holdout is off);
    `half` 0 or 1 takes every other held-out sequence only; `gradient`: y = dL/dx (g-SAE)."""
    parts, total = [], 0
    paired, name = target is not None or gradient, second_tensor(shards, target, gradient)
    for i in range(len(shards.shards)):
        if total >= max_tokens or holdout_every <= 0:
            break
        parts.append(_shard_tokens(shards, i, holdout_every, True, name, half))
        total += len(parts[-1])
    if not parts:
        return torch.empty(0, shards.d_model), None
    return split(torch.cat(parts)[:max_tokens], shards.d_model, paired)


def count_train_tokens(shards: ActivationShards, holdout_every: int) -> int:
    """Training tokens per epoch (sequences not held out, BOS excluded)."""
    n_held = 0
    if holdout_every > 0:
        for s in shards.shards:
            ids = torch.arange(s.first_seq, s.first_seq + s.n_seq)
            n_held += int((ids % holdout_every == 0).sum())
    return (shards.n_sequences - n_held) * (shards.seq_len - 1)
