"""Checkpoint/resume, activation normalisation, aux_zipf, and the transcoder trainer."""
from __future__ import annotations

import pytest
import torch
from conftest import planted_data

from interp.sae import load_sae, train
from interp.sae.config import SAEConfig
from interp.sae.trainer import Trainer


def test_resume_after_crash_equals_uninterrupted_run(make_shards, tmp_path, monkeypatch):
    shards = make_shards(torch.randn(80 * 16, 8), seq_len=17, shard_sequences=16)
    cfg = SAEConfig(expansion_factor=4, k=2, batch_size=64, epochs=3, dead_tokens=200,
                    checkpoint_every=5, architecture="batchtopk")
    reference = train(cfg, shards, tmp_path / "ref")
    real_step, calls = Trainer.step, {"n": 0}

    def crashing_step(self, x, y=None):
        calls["n"] += 1
        if calls["n"] == 23:  # mid-epoch 2, three steps after the checkpoint at step 20
            raise RuntimeError("simulated crash")
        return real_step(self, x, y)

    monkeypatch.setattr(Trainer, "step", crashing_step)
    with pytest.raises(RuntimeError, match="simulated"):
        train(cfg, shards, tmp_path / "run")
    assert (tmp_path / "run" / "checkpoint" / "trainer.pt").is_file()
    monkeypatch.setattr(Trainer, "step", real_step)
    resumed = train(cfg, shards, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint").exists()
    assert resumed["tokens_seen"] == reference["tokens_seen"]
    assert resumed["fvu"] == pytest.approx(reference["fvu"], abs=1e-6)
    a, b = load_sae(tmp_path / "ref"), load_sae(tmp_path / "run")
    for name, p in a.state_dict().items():
        assert torch.allclose(b.state_dict()[name], p, atol=1e-6), name


def test_normalisation_is_folded_and_scale_free(make_shards, tmp_path):
    x, _ = planted_data(6_000, d=16, n_dict=24, seed=3)
    cfg = SAEConfig(expansion_factor=2, k=3, batch_size=256, epochs=2,
                    normalize_activations="unit_mean_squared_norm")
    small = train(cfg, make_shards(x, seq_len=33), tmp_path / "a")
    big = train(cfg, make_shards(x * 1000, seq_len=33), tmp_path / "b")
    assert big["fvu"] == pytest.approx(small["fvu"], rel=1e-3)
    sae = load_sae(tmp_path / "b")
    assert sae.cfg["normalisation"]["scale_in"] == pytest.approx(
        load_sae(tmp_path / "a").cfg["normalisation"]["scale_in"] / 1000, rel=1e-4)
    raw = x[:100] * 1000  # the saved SAE works on raw activations
    with torch.no_grad():
        fvu = (sae.decode(*sae.encode(raw)) - raw).pow(2).sum() / (raw - raw.mean(0)).pow(2).sum()
    assert float(fvu) < 0.5


def test_aux_zipf_training_runs(make_shards, tmp_path):
    x, _ = planted_data(6_000, d=16, n_dict=24, seed=4)
    cfg = SAEConfig(architecture="mutual_choice", aux_zipf=True, expansion_factor=4, k=3,
                    batch_size=256, epochs=2, dead_tokens=500)
    metrics = train(cfg, make_shards(x, seq_len=33), tmp_path / "z")
    assert metrics["fvu"] < 0.75


def test_transcoder_learns_paired_map(make_shards, tmp_path):
    """x = codes @ D_in and y = codes @ D_out share sparse codes: a transcoder maps x to y."""
    g = torch.Generator().manual_seed(5)
    codes = (torch.rand(12_000, 24, generator=g) < 0.1) * torch.rand(12_000, 24, generator=g)
    d_in, d_out = torch.randn(24, 16, generator=g), torch.randn(24, 16, generator=g)
    x, y = codes @ d_in, codes @ d_out
    target = "blocks.0.hook_mlp_out"
    shards = make_shards(x, seq_len=33, extra={f"acts.{target}": y})
    cfg = SAEConfig(expansion_factor=2, k=4, batch_size=256, epochs=3, transcode_target=target)
    metrics = train(cfg, shards, tmp_path / "tc")
    tc = load_sae(tmp_path / "tc")
    assert tc.transcode and tc.cfg["hookpoint_out"] == target
    assert metrics["fvu"] < 0.3, metrics
    with pytest.raises(ValueError, match="no tensor"):
        bad = SAEConfig(expansion_factor=2, k=4, transcode_target="blocks.0.hook_other")
        train(bad, shards, tmp_path / "bad")
