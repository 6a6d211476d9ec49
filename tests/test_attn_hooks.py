"""Attention-output hookpoints on the real embedded model: hook_z is collected as heads x d_head
(concatenated, head-major) and a hook_z SAE's train artifact carries its head shares."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch

from interp.collect.shards import ActivationShards
from interp.config import build_config
from tests.builders import collect, train_stage

pytestmark = pytest.mark.slow  # the real subject model


def _cfg(tmp_path, model_cache, hookpoint):
    return build_config({"home": str(tmp_path), "model": {"cache_dir": str(model_cache),
                                                          "hookpoint": hookpoint},
                         "corpus": {"n_tokens": 256, "seq_len": 33},
                         "collect": {"batch_size": 4, "shard_sequences": 4, "dtype": "float32"},
                         "mine": {"window": 16, "n_top": 5}, "explain": {"n_examples": 3},
                         "sae": {"expansion_factor": 1, "k": 4, "batch_size": 64, "epochs": 1,
                                 "eval_sequences": 2, "holdout_every": 4}})


def test_hook_z_is_collected_per_head_and_attributed(tmp_path, model_cache):
    from interp.models import load_model

    cfg = _cfg(tmp_path, model_cache, "blocks.2.attn.hook_z")
    model = load_model(cfg.model, cfg.home)
    ref = collect(cfg, model=model)
    shards = ActivationShards(ref.path)
    assert shards.meta["n_heads"] == 9 and shards.d_model == 9 * 64
    acts, tokens = shards.load_shard(0)
    with torch.inference_mode():
        _, cache = model.bridge.run_with_cache(tokens, names_filter=["blocks.2.attn.hook_z"])
    z = cache["blocks.2.attn.hook_z"].float()
    assert z.shape[2:] == (9, 64) and torch.allclose(acts, z.flatten(2), atol=1e-4)
    sae = train_stage(cfg, ref)
    shares = pq.read_table(sae.path / "head_shares.parquet").to_pandas()
    assert len(shares) == sae.manifest()["metrics"]["num_latents"] * 9
    assert abs(shares.groupby("latent")["share"].sum() - 1).max() < 1e-4
    assert "ce_loss_recovered" in sae.manifest()["metrics"]  # splicing reshapes to heads


def test_hook_attn_out_collects(tmp_path, model_cache):
    cfg = _cfg(tmp_path, model_cache, "blocks.2.hook_attn_out")
    shards = ActivationShards(collect(cfg).path)
    assert shards.d_model == 576
