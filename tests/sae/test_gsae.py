"""g-SAE: the gradient-weighted selection against a naive reference, planted-direction recovery
beside TopK, and collect's loss gradients checked by finite differences on the real model."""
from __future__ import annotations

import pytest
import torch
from conftest import planted_data, write_shards

from interp.collect.shards import ActivationShards, gradient_tensor_name
from interp.sae import SAE, load_any_sae, load_sae, save_saelens, train
from interp.sae.arch.gsae import gradient_scores
from interp.sae.config import SAEConfig

HOOK = "blocks.0.hook_resid_post"


def _sae(d: int = 12, m: int = 48, k: int = 3, beta: float = 1.0) -> SAE:
    sae = SAE(d, m, k, architecture="gsae", cfg={"gsae_beta": beta},
              generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sae.encoder.bias.normal_(std=0.1, generator=torch.Generator().manual_seed(1))
    return sae


def test_selection_matches_naive_reference():
    sae, gen = _sae(beta=2.0), torch.Generator().manual_seed(2)
    x, g = torch.randn(16, 12, generator=gen), torch.randn(16, 12, generator=gen)
    codes = sae.arch.train_codes(sae, x, g)
    pre = (x - sae.b_dec) @ sae.encoder.weight.T + sae.encoder.bias
    effect = torch.stack([torch.stack([(g[n] @ sae.W_dec[j]).abs() for j in range(48)])
                          for n in range(16)])
    score = pre * (1 + 2.0 * effect / effect.mean())
    assert torch.allclose(gradient_scores(pre, sae.W_dec, g, 2.0), score, atol=1e-5)
    want = score.topk(3, dim=1).indices.sort(1).values
    assert torch.equal(codes.indices.sort(1).values, want)
    got = torch.gather(pre.relu(), 1, codes.indices)
    assert torch.allclose(codes.acts, got, atol=1e-5)
    # the gradient changes which latents fire here (else the test would not test it) ...
    assert not torch.equal(want, pre.topk(3, dim=1).indices.sort(1).values)
    # ... and inference, which has no gradient, is plain TopK
    acts, idx = sae.encode(x)
    assert torch.equal(idx.sort(1).values, pre.topk(3, dim=1).indices.sort(1).values)


def test_beta_zero_is_topk_and_missing_gradient_is_refused():
    sae, x = _sae(beta=0.0), torch.randn(8, 12)
    codes = sae.arch.train_codes(sae, x, torch.randn(8, 12))
    pre = (x - sae.b_dec) @ sae.encoder.weight.T + sae.encoder.bias
    assert torch.equal(codes.indices.sort(1).values, pre.topk(3, dim=1).indices.sort(1).values)
    with pytest.raises(ValueError, match="gradients"):
        sae(x)


def test_config_checks_name_the_field():
    with pytest.raises(ValueError, match="gsae_beta"):
        SAEConfig(architecture="topk", gsae_beta=2.0)
    with pytest.raises(ValueError, match="transcode_target"):
        SAEConfig(architecture="gsae", transcode_target="blocks.1.hook_resid_post")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Planted data whose "loss gradient" weighs a third of the directions 10x more."""
    x, dictionary = planted_data(100_000, d=32, n_dict=64)
    gen = torch.Generator().manual_seed(4)
    weight = torch.where(torch.arange(64) % 3 == 0, 10.0, 1.0)
    grad = (torch.randn(len(x), 64, generator=gen) * weight) @ dictionary
    path = write_shards(tmp_path_factory.mktemp("gsae") / "collect", x, 65, shard_sequences=256,
                        hookpoint=HOOK, extra={gradient_tensor_name(HOOK): grad})
    return ActivationShards(path), dictionary


def test_planted_directions_recovered_like_topk(planted, tmp_path):
    shards, dictionary = planted
    recovered = {}
    for arch in ("topk", "gsae"):
        cfg = SAEConfig(architecture=arch, expansion_factor=4, k=4, batch_size=1024, epochs=5,
                        dead_tokens=20_000)
        metrics = train(cfg, shards, tmp_path / arch)
        sae = load_sae(tmp_path / arch)
        best_cos = (dictionary @ sae.W_dec.T).max(dim=1).values
        recovered[arch] = float((best_cos >= 0.9).float().mean())
        assert metrics["fvu"] < 0.15, (arch, metrics)
    assert recovered["gsae"] >= 0.95 and recovered["gsae"] >= recovered["topk"] - 0.05, recovered
    sae = load_sae(tmp_path / "gsae")
    assert sae.cfg["gsae_beta"] == 1.0
    back = load_any_sae(save_saelens(sae, tmp_path / "lens"))  # exported as SAELens topk
    x = torch.randn(20, 32)
    assert torch.allclose(back.encode_dense(x), sae.encode_dense(x), atol=1e-5)


@pytest.mark.slow  # the real subject model
def test_collected_gradient_matches_finite_differences(tmp_path, model_cache):
    """collect records dL/dx of the summed next-token loss; a central difference along it on
    the real embedded model agrees, and plain SAEs' collect keys do not change."""
    from interp.config import build_config
    from interp.models import load_model
    from tests.builders import collect, key

    def cfg(arch):
        return build_config({"home": str(tmp_path), "model": {"cache_dir": str(model_cache)},
                             "corpus": {"n_tokens": 64, "seq_len": 17},
                             "collect": {"batch_size": 4, "grad_batch_size": 2},
                             "mine": {"window": 16, "n_top": 5}, "explain": {"n_examples": 3},
                             "sae": {"architecture": arch}})
    assert key(cfg("gsae"), "collect") != key(cfg("topk"), "collect")
    model = load_model(cfg("gsae").model, tmp_path)
    shards = ActivationShards(collect(cfg("gsae"), model=model).path)
    assert shards.meta["gradient"] is True
    from safetensors.torch import load_file
    t = load_file(str(shards.path / shards.shards[0].file))
    grad, tokens = t[gradient_tensor_name(shards.hookpoint)], t["tokens"].long()[:1]
    assert grad.dtype == torch.bfloat16 and grad.shape == t["acts"].shape
    assert (grad[:, -1] == 0).all() and grad[:, :-1].abs().amax() > 0  # last token: no target
    pos = 5
    g = grad[0, pos].float()
    eps = 0.05 * float(t["acts"][0, pos].float().norm()) / float(g.norm())

    def loss(sign: float) -> float:
        def nudge(acts):
            acts = acts.clone()
            acts[:, pos] += sign * eps * g.to(acts.dtype)
            return acts
        logits = model.run_model(shards.hookpoint)(tokens, nudge)
        return float(torch.nn.functional.cross_entropy(logits[0, :-1], tokens[0, 1:],
                                                       reduction="sum"))
    slope = (loss(1.0) - loss(-1.0)) / (2 * eps)
    assert slope == pytest.approx(float(g @ g), rel=0.05)
