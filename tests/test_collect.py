"""Collect with the real embedded subject model on a few hundred tokens: shard format, equality
with a direct forward pass, bad hookpoints, and a transcoder's second hookpoint."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch

from interp.collect.shards import ActivationShards
from interp.config import build_config
from interp.models import load_model
from tests.builders import collect, train_stage

pytestmark = pytest.mark.slow  # the real subject model


def _cfg(tmp_path, model_cache, **sae):
    return build_config({"home": str(tmp_path), "model": {"cache_dir": str(model_cache)},
                         "corpus": {"n_tokens": 256, "seq_len": 33},
                         "collect": {"batch_size": 4, "shard_sequences": 3},
                         "mine": {"window": 16, "n_top": 5}, "explain": {"n_examples": 3},
                         "sae": {"expansion_factor": 1, "k": 4, "batch_size": 64, "epochs": 1,
                                 "eval_sequences": 0, **sae}})


@pytest.fixture(scope="module")
def model(model_cache, tmp_path_factory):
    cfg = _cfg(tmp_path_factory.mktemp("m"), model_cache)
    return load_model(cfg.model, cfg.home)


def test_collect_writes_shards_equal_to_a_direct_forward_pass(tmp_path, model_cache, model):
    cfg = _cfg(tmp_path, model_cache)
    ref = collect(cfg, model=model)
    shards = ActivationShards(ref.path)
    assert (shards.d_model, shards.seq_len, shards.n_sequences) == (576, 33, 8)
    assert [s.n_seq for s in shards.shards] == [3, 3, 2]
    acts, tokens = shards.load_shard(1)
    assert acts.dtype == torch.float32 and shards.load_shard(1, dtype=None)[0].dtype == torch.float16
    assert (tokens[:, 0] == model.tokenizer.bos_token_id).all()
    with torch.inference_mode():
        _, cache = model.bridge.run_with_cache(tokens, names_filter=[cfg.model.hookpoint])
    # Stored as float16 (collect.dtype's default): equal to the forward pass rounded to fp16.
    direct = cache[cfg.model.hookpoint].float()
    assert torch.allclose(acts, direct.half().float(), rtol=2e-3, atol=1e-3)
    seqs = pq.read_table(ref.path / "sequences.parquet").to_pylist()
    assert len(seqs) == 8 and seqs[4]["tokens"] == tokens[1].tolist()
    assert seqs[0]["token_str"] == [model.tokenizer.decode([t]) for t in seqs[0]["tokens"]]
    assert collect(cfg, model=model).key == ref.key  # a second call finds the artifact


def test_bad_hookpoint_names_the_field(tmp_path, model_cache, model):
    cfg = build_config({"home": str(tmp_path), "model": {"hookpoint": "blocks.3.hook_nope"},
                        "corpus": {"n_tokens": 64}})
    with pytest.raises(ValueError, match="model.hookpoint 'blocks.3.hook_nope'"):
        collect(cfg, model=model)
    cfg = build_config({"home": str(tmp_path), "model": {"hookpoint": "blocks.40.hook_resid_post"},
                        "corpus": {"n_tokens": 64}})
    with pytest.raises(ValueError, match="30 layers"):
        collect(cfg, model=model)


def test_transcoder_collects_its_target_and_trains(tmp_path, model_cache, model):
    # built in one go: a target upstream of model.hookpoint is a config error
    base = _cfg(tmp_path, model_cache).model_dump(mode="json")
    base["model"]["hookpoint"] = "blocks.2.ln2.hook_normalized"
    base["sae"].update(transcode_target="blocks.2.hook_mlp_out", holdout_every=0, eval_sequences=2)
    cfg = build_config(base)
    ref = collect(cfg, model=model)
    assert ref.manifest()["extra_hookpoints"] == ["blocks.2.hook_mlp_out"]
    from safetensors.torch import load_file

    t = load_file(str(ref.path / "shard-00000.safetensors"))
    assert t["acts.blocks.2.hook_mlp_out"].shape == t["acts"].shape
    assert not torch.allclose(t["acts.blocks.2.hook_mlp_out"], t["acts"])
    sae = train_stage(cfg, ref)
    metrics = sae.manifest()["metrics"]
    assert metrics["fvu"] < 2.0
    # replacement model: the transcoder's output spliced in place of blocks.2.hook_mlp_out
    assert metrics["eval_sequences"] == 2 and metrics["kl_div"] > 0
    assert metrics["ce_zero"] != metrics["ce_clean"] and "ce_loss_recovered" in metrics
