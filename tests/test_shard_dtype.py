"""16-bit activation shards: old float32 and new float16 shards read alike, and an SAE trained on
float16 shards reaches the FVU of one trained on the float32 originals (within seed noise)."""
from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

from interp.collect.shards import ActivationShards
from interp.sae import train
from interp.sae.config import SAEConfig


def _write(path, x: torch.Tensor, seq_len: int, dtype: torch.dtype) -> ActivationShards:
    """x [n, d] as a collect artifact of one dtype, BOS rows prepended."""
    path.mkdir(parents=True)
    n_seq = len(x) // (seq_len - 1)
    seqs = x[: n_seq * (seq_len - 1)].view(n_seq, seq_len - 1, -1)
    acts = torch.cat([torch.full((n_seq, 1, x.shape[1]), 50.0), seqs], 1)
    shards = []
    for i, first in enumerate(range(0, n_seq, 64)):
        name = f"shard-{i:05d}.safetensors"
        save_file({"acts": acts[first:first + 64].to(dtype).contiguous(),
                   "tokens": torch.zeros(len(acts[first:first + 64]), seq_len, dtype=torch.int32)},
                  str(path / name))
        shards.append({"file": name, "first_seq": first, "n_seq": len(acts[first:first + 64])})
    (path / "manifest.json").write_text(json.dumps({
        "d_model": x.shape[1], "seq_len": seq_len, "n_sequences": n_seq, "hookpoint": "h",
        "model": "synthetic", "dtype": str(dtype).removeprefix("torch."), "shards": shards}))
    return ActivationShards(path)


def _planted(n: int, d: int = 16, n_dict: int = 48, seed: int = 0) -> torch.Tensor:
    """Sparse positive mixes of 3 unit directions plus noise: a dictionary an SAE can learn."""
    gen = torch.Generator().manual_seed(seed)
    dictionary = torch.nn.functional.normalize(torch.randn(n_dict, d, generator=gen), dim=1)
    pick = torch.rand(n, n_dict, generator=gen).argsort(1)[:, :3]
    coef = torch.zeros(n, n_dict).scatter_(1, pick, torch.rand(n, 3, generator=gen) * 3 + 0.5)
    return coef @ dictionary + 0.02 * torch.randn(n, d, generator=gen)


def test_fp16_and_fp32_shards_read_alike(tmp_path):
    x = torch.randn(16 * 10, 8)
    old = _write(tmp_path / "f32", x, 17, torch.float32)
    new = _write(tmp_path / "f16", x, 17, torch.float16)
    a, b = old.load_shard(0)[0], new.load_shard(0)[0]
    assert a.dtype == b.dtype == torch.float32
    assert torch.equal(b, a.half().float())
    assert new.load_shard(0, dtype=None)[0].dtype == torch.float16
    assert (b - a).abs().max() <= 2e-3 * a.abs().max()


def test_fvu_is_unchanged_by_fp16_storage(tmp_path):
    x = _planted(24_000)
    cfg = SAEConfig(expansion_factor=4, k=3, batch_size=256, epochs=2, dead_tokens=5_000,
                    eval_sequences=0)
    fvu = {}
    for name, dtype, seed in [("f32", torch.float32, 0), ("f16", torch.float16, 0),
                              ("f32_seed1", torch.float32, 1)]:
        shards = _write(tmp_path / name, x, 33, dtype)
        fvu[name] = train(cfg.model_copy(update={"seed": seed}), shards, tmp_path / f"o_{name}")["fvu"]
    noise = abs(fvu["f32"] - fvu["f32_seed1"])
    # fp16 keeps ~3 significant digits: its effect must be far below the run-to-run spread.
    assert abs(fvu["f16"] - fvu["f32"]) <= max(0.005, noise), fvu
