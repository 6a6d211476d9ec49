"""Transcoders as replacement models: CE/KL with the transcoder's output spliced in place of its
target, the skip connection, and the hook-order check."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from interp.config import build_config
from interp.hooks import check_downstream
from interp.sae import SAE, load_sae, save_sae, train
from interp.sae.eval import eval_replacement


class TinyLM(nn.Module):
    """embedding -> [input hook] -> linear layer -> [output hook] -> residual add -> logits."""

    def __init__(self, vocab: int = 20, d: int = 8):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.emb = nn.Embedding(vocab, d)
        self.layer = nn.Linear(d, d, bias=False)
        self.head = nn.Linear(d, vocab)
        with torch.no_grad():
            self.layer.weight.copy_(torch.randn(d, d, generator=gen) * 2)

    def run(self, tokens, replace=None):
        x = self.emb(tokens)
        y = self.layer(x)
        if replace is not None:
            y = replace(x, y)
        return self.head(x + y)


def _transcoder(model: TinyLM, skip: bool) -> SAE:
    sae = SAE(8, 16, 2, transcode=True, cfg={"skip_connection": skip})
    if skip:
        with torch.no_grad():
            sae.W_skip.copy_(model.layer.weight)  # W_dec is 0: the skip is the whole map
    return sae


def test_replacement_exact_and_zero_transcoders():
    torch.manual_seed(0)
    model, tokens = TinyLM(), torch.randint(0, 20, (4, 12))
    exact = eval_replacement(model.run, _transcoder(model, skip=True), tokens)
    assert abs(exact["ce_loss_recovered"] - 1) < 1e-4 and exact["kl"] < 1e-6
    zero = eval_replacement(model.run, _transcoder(model, skip=False), tokens)
    assert abs(zero["ce_loss_recovered"]) < 1e-4 and zero["kl"] > 1e-4  # = zero ablation


def test_skip_connection_round_trips_and_folds(tmp_path):
    model = TinyLM()
    sae = _transcoder(model, skip=True)
    x = torch.randn(5, 8)
    before = sae.reconstruct(x)
    back = load_sae(save_sae(sae, tmp_path / "tc"))
    assert back.skip and torch.allclose(back.reconstruct(x), before)
    scaled = _transcoder(model, skip=True)
    with torch.no_grad():
        scaled.W_skip.mul_(3.0 / 2.0)  # as trained on (2x -> 3y)
    scaled.fold_scaling(2.0, 3.0)
    assert torch.allclose(scaled.reconstruct(x), before, atol=1e-5)


def test_transcoder_with_skip_learns_a_linear_map(make_shards, tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40 * 16, 8, generator=gen)
    a = torch.randn(8, 8, generator=gen)
    target = "blocks.0.hook_mlp_out"
    shards = make_shards(x, seq_len=17, shard_sequences=8, extra={f"acts.{target}": x @ a})
    from interp.sae.config import SAEConfig
    cfg = SAEConfig(expansion_factor=2, k=2, batch_size=64, epochs=20, transcode_target=target,
                    skip_connection=True, lr=1e-2)
    metrics = train(cfg, shards, tmp_path / "tc")
    assert metrics["fvu"] < 0.05, metrics
    assert load_sae(tmp_path / "tc").skip


def test_target_upstream_of_input_is_a_clear_error():
    check_downstream("blocks.2.ln2.hook_normalized", "blocks.2.hook_mlp_out")
    check_downstream("blocks.2.hook_resid_post", "blocks.3.hook_mlp_out")
    for a, b in [("blocks.2.hook_mlp_out", "blocks.2.ln2.hook_normalized"),
                 ("blocks.3.hook_resid_pre", "blocks.2.hook_mlp_out"),
                 ("blocks.2.hook_mlp_out", "blocks.2.hook_mlp_out")]:
        with pytest.raises(ValueError, match="not downstream"):
            check_downstream(a, b)
    with pytest.raises(Exception, match="not downstream"):
        build_config({"model": {"hookpoint": "blocks.4.hook_resid_post"},
                      "sae": {"transcode_target": "blocks.3.hook_mlp_out"}})
    with pytest.raises(Exception, match="skip_connection needs"):
        build_config({"sae": {"skip_connection": True}})
