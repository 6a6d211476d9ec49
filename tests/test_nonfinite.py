"""NaN / inf never pass silently: collect, the shard reader, training and SAE loading each raise a
message naming where, and the train stage leaves no finished (cached) artifact behind."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from interp.artifacts import ArtifactStore
from interp.collect.shards import ActivationShards
from interp.finite import NonFiniteError
from interp.models import SubjectModel
from interp.sae import SAE, load_sae, save_sae, train
from interp.sae.config import SAEConfig
from interp.sae.trainer import Trainer
from tests.builders import collect, key, train_stage
from tests.conftest import tiny_config


def _poison(collect_dir, value=float("nan"), shard=1):
    path = collect_dir / f"shard-{shard:05d}.safetensors"
    t = load_file(str(path))
    t["acts"][0, 3, 2] = value
    save_file(t, str(path))
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_shard_reader_names_the_file(collected, value):
    path = _poison(collected.path, value)
    with pytest.raises(NonFiniteError, match=path.name):
        ActivationShards(collected.path).load_shard(1)


def test_train_stage_on_nan_activations_caches_nothing(tmp_path, collected):
    _poison(collected.path)
    cfg = tiny_config(tmp_path, "http://127.0.0.1:9/v1")
    with pytest.raises(NonFiniteError, match="shard-00001"):
        train_stage(cfg, collected)
    store = ArtifactStore(cfg.home)
    assert store.get("train", key(cfg, "train", collect=collected.key)) is None


def test_non_finite_loss_stops_training(collected):
    sae = SAE(8, 16, 2)
    trainer = Trainer(sae, lr=1e-3, total_steps=10, auxk_alpha=0.0, dead_tokens=100)
    x = torch.randn(32, 8)
    trainer.step(x)
    before = {k: v.clone() for k, v in sae.state_dict().items()}
    x[5, 1] = float("inf")
    with pytest.raises(NonFiniteError, match="training loss at step 1"):
        trainer.step(x)
    # the bad step raised before the optimiser touched the weights
    assert all(torch.equal(before[k], v) for k, v in sae.state_dict().items())


def test_diverged_weights_are_never_saved(collected, tmp_path, monkeypatch):
    def diverge(self, x, y=None):
        with torch.no_grad():
            self.sae.W_dec[0, 0] = float("nan")
        return {"fvu": 0.5}
    monkeypatch.setattr(Trainer, "step", diverge)
    cfg = SAEConfig(expansion_factor=2, k=2, batch_size=64, epochs=1, eval_sequences=0)
    with pytest.raises(NonFiniteError, match="W_dec"):
        train(cfg, ActivationShards(collected.path), tmp_path / "out")
    assert not (tmp_path / "out" / "sae.safetensors").exists()


def test_a_nan_sae_is_refused_at_load(tmp_path):
    sae = SAE(8, 16, 2)
    with torch.no_grad():
        sae.encoder.bias[3] = float("nan")
    save_sae(sae, tmp_path / "sae")
    with pytest.raises(NonFiniteError, match=r"sae.safetensors: tensor encoder.bias"):
        load_sae(tmp_path / "sae")  # what mining calls: it never sees a NaN SAE


class _Tok:
    bos_token_id, eos_token_id = 1, 2

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [3 + ord(c) % 50 for c in text]}

    def decode(self, ids):
        return "".join(chr(97 + i % 26) for i in ids)


class _NaNModel:
    """A subject model whose activations turn NaN in the second batch."""

    def __init__(self):
        self.calls = 0

    def run_to_hooks(self, tokens, hookpoints):
        self.calls += 1
        acts = torch.randn(*tokens.shape, 4)
        if self.calls == 2:
            acts[0, 1, 0] = float("nan")
        return {h: acts for h in hookpoints}


def test_collect_names_the_shard_and_sequences(tmp_path):
    (tmp_path / "c.txt").write_text("some plain text to tokenise. " * 40)
    cfg = tiny_config(tmp_path / "home", "http://127.0.0.1:9/v1",
                      corpus={"source": str(tmp_path / "c.txt"), "n_tokens": 160},
                      collect={"batch_size": 4, "shard_sequences": 8})
    model = SubjectModel(bridge=None, tokenizer=_Tok(), n_layers=16, d_model=4, device="cpu")
    model.run_to_hooks = _NaNModel().run_to_hooks
    model.check_hookpoint = lambda h: None
    with pytest.raises(NonFiniteError, match=r"shard-00000.safetensors \(sequences 0\.\.7"):
        collect(cfg, model=model)
    assert ArtifactStore(cfg.home).get("collect", key(cfg, "collect")) is None
