"""The train stage on tiny synthetic collect artifacts, including the planted-dictionary test."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import planted_data

from interp.sae import load_sae, train
from interp.sae.config import SAEConfig


def test_train_writes_artifact_files(make_shards, tmp_path):
    shards = make_shards(torch.randn(60 * 16, 8), seq_len=17, shard_sequences=16)
    cfg = SAEConfig(expansion_factor=4, k=3, batch_size=64, epochs=2, dead_tokens=100)
    metrics = train(cfg, shards, tmp_path / "out")
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"sae.safetensors", "cfg.json", "metrics.json"} <= files
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == metrics
    for key in ("fvu", "l0", "dead_frac", "tokens_seen", "tokens_per_s", "train_seconds"):
        assert key in metrics
    assert metrics["num_latents"] == 32 and metrics["k"] == 3 and metrics["l0"] <= 3
    assert metrics["fvu_split"] == "heldout"
    # 60 sequences, every 20th held out -> 57 x 16 tokens per epoch
    assert metrics["tokens_seen"] == 2 * 57 * 16
    sae = load_sae(tmp_path / "out")
    assert sae.cfg["hookpoint"] == "blocks.0.hook_resid_post" and sae.cfg["model"] == "synthetic"
    # the BOS outlier (1e4) never reached training, so b_dec stays at the data's scale
    assert sae.b_dec.abs().max() < 10


def test_train_is_seeded(make_shards, tmp_path):
    shards = make_shards(torch.randn(45 * 16, 8), seq_len=17)
    cfg = SAEConfig(expansion_factor=2, k=2, batch_size=32, epochs=1)
    a, b = train(cfg, shards, tmp_path / "a"), train(cfg, shards, tmp_path / "b")
    assert a["fvu"] == b["fvu"]
    assert torch.equal(load_sae(tmp_path / "a").W_dec, load_sae(tmp_path / "b").W_dec)


def test_planted_dictionary_is_recovered(make_shards, tmp_path):
    """Data = positive sparse mixes of 64 unit directions in R^32; the SAE must find them."""
    torch.manual_seed(0)
    x, dictionary = planted_data(100_000, d=32, n_dict=64)
    shards = make_shards(x, seq_len=65, shard_sequences=256)
    cfg = SAEConfig(expansion_factor=4, k=4, batch_size=1024, epochs=5, dead_tokens=20_000)
    metrics = train(cfg, shards, tmp_path / "out")
    sae = load_sae(tmp_path / "out")
    best_cos = (dictionary @ sae.W_dec.T).max(dim=1).values
    assert (best_cos >= 0.9).float().mean() >= 0.95, best_cos
    assert metrics["fvu"] < 0.15


def test_a_few_massive_tokens_are_reported_beside_the_pooled_fvu():
    """Planted truth: 2 of 400 tokens 100x the others' scale hold ~all the variance. An SAE that
    reconstructs only them well has a tiny pooled FVU; fvu_typical shows the rest."""
    import torch

    from interp.sae.eval import evaluate, massive_token_fvu

    class OnlyTheGiants:  # stands in for an SAE: exact on the giants, zero elsewhere
        device = "cpu"

        def encode(self, x):
            return torch.ones(len(x), 1), torch.zeros(len(x), 1, dtype=torch.long)

        def reconstruct(self, x, codes):
            return torch.where(x.norm(dim=-1, keepdim=True) > 50, x, torch.zeros_like(x))

    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g)
    x[[10, 300]] *= 100.0
    sae = OnlyTheGiants()
    pooled = evaluate(sae, x)["fvu"]
    m = massive_token_fvu(sae, x)
    assert pooled < 0.1                                  # looks excellent, pooled
    assert m["massive_tokens"] == 2 and m["massive_variance_share"] > 0.9
    assert m["fvu_typical"] == pytest.approx(1.0, abs=0.05)   # explains nothing of the rest
    plain = massive_token_fvu(sae, torch.randn(400, 8, generator=g))
    assert plain["massive_tokens"] == 0 and plain["massive_variance_share"] == 0.0
