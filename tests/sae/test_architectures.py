"""Every architecture trains and round-trips; batch-level selections match dense references."""
from __future__ import annotations

import pytest
import torch
from conftest import planted_data

from interp.sae import SAE, load_any_sae, load_sae, save_saelens, train
from interp.sae.arch.base import pairs_to_padded, threshold_codes
from interp.sae.arch.registry import TRAINABLE
from interp.sae.config import SAEConfig
from interp.sae.trainer import underused_mask


def _dense(acts: torch.Tensor, idx: torch.Tensor, m: int) -> torch.Tensor:
    return torch.zeros(acts.shape[0], m).scatter_add(1, idx, acts.detach())


def _sae(arch: str, d: int = 12, m: int = 48, k: int = 3) -> SAE:
    sae = SAE(d, m, k, architecture=arch, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sae.encoder.bias.normal_(std=0.1, generator=torch.Generator().manual_seed(1))
    return sae


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    from conftest import write_shards

    from interp.collect.shards import ActivationShards
    x, dictionary = planted_data(24_000, d=32, n_dict=64, seed=1)
    path = write_shards(tmp_path_factory.mktemp("planted") / "collect", x, 65, shard_sequences=64)
    return ActivationShards(path), dictionary


@pytest.mark.parametrize("arch", sorted(TRAINABLE - {"gsae"}))  # gsae: test_gsae.py
def test_architecture_trains_and_round_trips(arch, planted, tmp_path):
    shards, dictionary = planted
    cfg = SAEConfig(architecture=arch, expansion_factor=4, k=4, batch_size=512, epochs=3,
                    dead_tokens=5_000, normalize_activations="unit_mean_squared_norm")
    metrics = train(cfg, shards, tmp_path / "sae")
    assert metrics["fvu"] < 0.75, metrics  # the best constant (b_dec) scores 1
    assert 0.5 < metrics["l0"] < 40, metrics
    sae = load_sae(tmp_path / "sae")
    assert sae.cfg["architecture"] == arch and sae.cfg["normalisation"]["folded_into_weights"]
    if sae.arch.learns_threshold:
        assert (sae.threshold > 0).any()
    x = torch.randn(20, 32)
    acts, idx = sae.encode(x)
    assert acts.shape == idx.shape and (acts >= 0).all()
    back = load_any_sae(save_saelens(sae, tmp_path / "lens"))
    assert torch.allclose(back.encode_dense(x), sae.encode_dense(x), atol=1e-5)


def test_batchtopk_matches_dense_reference():
    sae, x = _sae("batchtopk"), torch.randn(16, 12)
    codes = sae.arch.train_codes(sae, x)
    pre = torch.relu((x - sae.b_dec) @ sae.encoder.weight.T + sae.encoder.bias).flatten()
    top = pre.topk(16 * 3)
    ref = torch.zeros_like(pre).scatter(0, top.indices, top.values).view(16, 48)
    assert torch.allclose(_dense(codes.acts, codes.indices, 48), ref, atol=1e-5)


def test_feature_choice_matches_dense_reference():
    sae, x = _sae("feature_choice"), torch.randn(16, 12)
    codes = sae.arch.train_codes(sae, x)
    pre = torch.relu((x - sae.b_dec) @ sae.encoder.weight.T + sae.encoder.bias)
    top = pre.topk(1, dim=0)  # ceil(16 * 3 / 48) = 1 token per latent
    ref = torch.zeros_like(pre).scatter(0, top.indices, top.values)
    assert torch.allclose(_dense(codes.acts, codes.indices, 48), ref, atol=1e-5)


def test_pairs_to_padded_and_threshold_codes_match_dense():
    torch.manual_seed(0)
    dense = torch.where(torch.rand(9, 20) < 0.3, torch.rand(9, 20), torch.zeros(()))
    rows, cols = dense.nonzero(as_tuple=True)
    vals, idx = pairs_to_padded(rows, cols, dense[rows, cols], 9)
    assert torch.equal(_dense(vals, idx, 20), dense)
    pre = torch.randn(9, 20)
    theta = torch.rand(20) * 0.5
    vals, idx = threshold_codes(pre, theta)
    assert torch.equal(_dense(vals, idx, 20), torch.where(pre > theta, pre, 0.0).clamp_min(0))


def test_auxk_on_dead_columns_matches_masked_reference():
    """Searching only dead columns equals sparsify's -inf masking of the full matrix."""
    sae, x = _sae("topk"), torch.randn(10, 12)
    dead = torch.zeros(48, dtype=torch.bool)
    dead[torch.randperm(48, generator=torch.Generator().manual_seed(0))[:20]] = True
    err = torch.randn(10, 12)
    tv = torch.tensor(50.0)
    ours = sae.auxk_loss(x, err, dead, tv)
    pre = torch.relu((x - sae.b_dec) @ sae.encoder.weight.T + sae.encoder.bias)
    vals, idx = torch.where(dead, pre, -torch.inf).topk(6, dim=1)  # k_aux = d/2 = 6
    ref = _dense(torch.relu(vals), idx, 48) @ sae.W_dec
    assert torch.allclose(ours, (ref - err).pow(2).sum() / tv, atol=1e-5)


def test_jumprelu_pseudo_gradients():
    """Rectangle-kernel STE: d acts/d theta = -(theta/eps) K, d L0/d theta = -(1/eps) K."""
    sae = _sae("jumprelu", d=4, m=3)
    sae.cfg["sparsity_coeff"], sae.cfg["jumprelu_bandwidth"] = 1.0, 0.2
    with torch.no_grad():
        sae.log_threshold.fill_(0.0)  # theta = 1
    pre = torch.tensor([[1.05, 0.5, 2.0], [0.95, 1.5, 1.08]])
    sae.dense_pre_acts = lambda x: pre.clone().requires_grad_()  # type: ignore[method-assign]
    codes = sae.arch.train_codes(sae, torch.zeros(2, 4))
    (codes.dense.sum() + codes.penalty).backward()
    near = torch.tensor([[1, 0, 0], [1, 0, 1]], dtype=torch.float)  # |pre - 1| < 0.1
    expected = (-(1 / 0.2) * near).sum(0) + (-(1 / 0.2) * near).sum(0) / 2  # acts + mean L0
    # chain rule through theta = exp(log_threshold) with theta = 1
    assert torch.allclose(sae.log_threshold.grad, expected)


@pytest.mark.parametrize("arch", ["topk", "jumprelu", "batchtopk"])
def test_fold_scaling_is_exact(arch):
    sae, x = _sae(arch), torch.randn(8, 12)
    if arch == "batchtopk":
        sae.threshold.fill_(0.05)
    s = 7.5
    before = sae.decode(*sae.encode(x * s)) / s
    sae.fold_scaling(s, s)
    assert torch.allclose(sae.decode(*sae.encode(x)), before, atol=1e-5)


def test_underused_mask_flags_dead_and_tail_latents():
    freq = 1.0 / torch.arange(1, 41, dtype=torch.float)  # Zipf law
    freq[-5:-1] *= 0.05  # a tail that falls off far faster than the law
    freq[-1] = 0.0       # dead
    mask = underused_mask(freq)
    assert mask[-5:].all() and not mask[:30].any()


def test_recipe_rejects_conflicting_options():
    with pytest.raises(ValueError, match="sparsity_coeff"):
        SAEConfig(architecture="topk", sparsity_coeff=1.0)
    with pytest.raises(ValueError, match="aux_zipf"):
        SAEConfig(architecture="relu", aux_zipf=True)


@pytest.mark.parametrize("row_cap", [2, 6, 48])
def test_batch_topk_prefilter_is_exact(row_cap):
    """Row-capped candidates + global topk == one topk over the flattened matrix, including the
    fallback when a row saturates its cap (row_cap=2)."""
    from interp.sae.arch.batchtopk import batch_topk
    g = torch.Generator().manual_seed(0)
    pre = torch.randn(16, 48, generator=g) + 3 * torch.randn(16, 1, generator=g)
    values, rows, cols = batch_topk(pre, 40, row_cap)
    ref = torch.zeros_like(pre).reshape(-1)
    top = pre.reshape(-1).topk(40)
    ref[top.indices] = top.values
    got = torch.zeros_like(pre).index_put_((rows, cols), values)
    assert torch.equal(got, ref.view(16, 48))
