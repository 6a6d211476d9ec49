"""Head attribution of hook_z SAEs: a latent planted in one head's block gets >= 95% of its norm."""
from __future__ import annotations

import torch

from interp.sae import load_sae, train
from interp.sae.config import SAEConfig
from interp.sae.heads import head_share_table, head_shares

N_HEADS, D_HEAD = 4, 8


def test_shares_sum_to_one_and_follow_the_blocks():
    w = torch.zeros(3, N_HEADS * D_HEAD)
    w[0, 2 * D_HEAD:3 * D_HEAD] = 1.0       # head 2 only
    w[1, :D_HEAD], w[1, D_HEAD:2 * D_HEAD] = 1.0, 3 ** 0.5  # heads 0 and 1, squared norms 1:3
    shares = head_shares(w, N_HEADS)
    assert torch.allclose(shares[0], torch.tensor([0.0, 0, 1, 0]))
    assert torch.allclose(shares[1], torch.tensor([0.25, 0.75, 0, 0]))
    assert float(shares[2].sum()) == 0.0  # a zero row
    table = head_share_table("k", w, N_HEADS).to_pylist()
    assert len(table) == 12 and table[6] == {"sae_key": "k", "latent": 1, "head": 2, "share": 0.0}


def test_trained_single_head_latents_get_their_head(make_shards, tmp_path):
    """Planted directions each living in one head's block; the matching latents' decoder norm
    must be >= 95% in that head."""
    gen = torch.Generator().manual_seed(2)
    heads = torch.arange(32) % N_HEADS
    planted = torch.zeros(32, N_HEADS, D_HEAD)
    planted[torch.arange(32), heads] = torch.randn(32, D_HEAD, generator=gen)
    planted = planted.reshape(32, -1) / planted.reshape(32, -1).norm(dim=1, keepdim=True)
    ranks = torch.rand(40_000, 32, generator=gen).argsort(1).argsort(1)
    codes = torch.where(ranks < 3, torch.rand(40_000, 32, generator=gen) * 1.5 + 0.5, torch.zeros(()))
    x = codes @ planted + 0.01 * torch.randn(40_000, N_HEADS * D_HEAD, generator=gen)
    shards = make_shards(x, seq_len=65, shard_sequences=128)
    cfg = SAEConfig(expansion_factor=2, k=4, batch_size=1024, epochs=8, dead_tokens=20_000)
    train(cfg, shards, tmp_path / "sae")
    w = load_sae(tmp_path / "sae").W_dec
    best = (planted @ w.T).argmax(dim=1)
    shares = head_shares(w[best], N_HEADS)[torch.arange(32), heads]
    assert float(shares.median()) >= 0.95 and float(shares.min()) >= 0.8, shares
