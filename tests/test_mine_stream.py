"""collect.store 'tokens': mining (and the imported SAE's metrics, dark_matter) recompute the
activations with the real embedded subject model as they read them, and give exactly what the
stored activations of the same tokens give; keys and refusals."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch

from interp.collect.shards import ActivationShards
from interp.collect.stream import StreamedShards, open_activations
from interp.config import ConfigError, build_config
from interp.models import load_model
from interp.sae import SAE, save_sae
from tests.builders import collect, key, mine, stage, train_stage

pytestmark = pytest.mark.slow  # the real subject model

HOOK = "blocks.2.hook_resid_post"  # a shallow hook: the forward pass stops after block 2


def _cfg(home, model_cache, sae_path, store: str, **over):
    data = {"home": str(home), "model": {"cache_dir": str(model_cache), "hookpoint": HOOK},
            # short documents, so the split by document gives both splits windows
            "corpus": {"source": str(home / "docs.txt"), "n_tokens": 128, "seq_len": 17},
            # shards of 3 sequences in batches of 2: the stream must replay the 2 + 1 batches
            "collect": {"batch_size": 2, "shard_sequences": 3, "store": store},
            "sae": {"path": str(sae_path), "holdout_every": 3, "eval_sequences": 0},
            "mine": {"window": 8, "n_top": 4, "n_quantiles": 2, "per_quantile": 2, "n_random": 3,
                     "negatives": "neighbours", "n_hard": 3, "n_neighbours": 4},
            "explain": {"n_examples": 3, "min_heldout": 2}}
    for k, v in over.items():
        data[k].update(v)
    return build_config(data)


@pytest.fixture(scope="module")
def runs(model_cache, tmp_path_factory):
    """The same tokens and imported SAE through collect -> train (import) -> mine, stored and
    streamed, in one home."""
    home = tmp_path_factory.mktemp("stream")
    (home / "docs.txt").write_text("\n\n".join(
        f"The {animal} of the {place} walked to the river on day {i} and drank some water."
        for i, (animal, place) in enumerate(zip(["cat", "dog", "horse", "owl", "fox", "deer"] * 2,
                                                ["hill", "farm", "town", "wood"] * 3))) + "\n")
    sae = SAE(576, 48, 4, generator=torch.Generator().manual_seed(3), cfg={"hookpoint": HOOK})
    save_sae(sae, home / "ext_sae")
    out = {}
    model = None
    for store in ("dense", "tokens"):
        cfg = _cfg(home, model_cache, home / "ext_sae", store)
        model = model or load_model(cfg.model, cfg.home)
        c = collect(cfg, model=model)
        t = train_stage(cfg, c)
        out[store] = {"cfg": cfg, "collect": c, "train": t, "mine": mine(cfg, c, t), "model": model}
    return out


def test_streamed_mining_equals_mining_the_stored_activations(runs):
    dense, tokens = runs["dense"], runs["tokens"]
    assert dense["collect"].key != tokens["collect"].key
    assert key(tokens["cfg"], "mine", collect=tokens["collect"].key,
               train=tokens["train"].key) == tokens["mine"].key
    for name in ("examples.parquet", "latents.parquet"):
        a = pq.read_table(dense["mine"].path / name)
        b = pq.read_table(tokens["mine"].path / name)
        assert a.num_rows > 0 and a.equals(b), name
    kinds = set(pq.read_table(tokens["mine"].path / "examples.parquet")["kind"].to_pylist())
    assert {"top", "quantile", "random", "hard"} <= kinds
    n = tokens["collect"].manifest()["n_sequences"]
    assert tokens["mine"].manifest()["source"]["forward_tokens"] == n * 17  # one pass: once each
    assert "source" not in dense["mine"].manifest()


def test_tokens_artifact_holds_no_activations_and_the_same_sequences(runs):
    dense, tokens = runs["dense"]["collect"], runs["tokens"]["collect"]
    a, b = ActivationShards(dense.path), ActivationShards(tokens.path)
    assert (a.store, b.store) == ("dense", "tokens") and a.shards == b.shards
    assert pq.read_table(a.path / "sequences.parquet").equals(pq.read_table(b.path / "sequences.parquet"))
    assert torch.equal(a.load_tokens(1), b.load_tokens(1))
    size = {k: sum(p.stat().st_size for p in r.path.glob("shard-*")) for k, r in
            (("dense", dense), ("tokens", tokens))}
    assert size["tokens"] * 50 < size["dense"]
    with pytest.raises(ValueError, match="collect.store: tokens"):
        b.load_shard(0)
    streamed = open_activations(runs["tokens"]["cfg"], tokens.path, model=runs["tokens"]["model"])
    assert isinstance(streamed, StreamedShards)
    assert torch.equal(streamed.load_shard(1, dtype=None)[0], a.load_shard(1, dtype=None)[0])


def test_imported_sae_metrics_and_dark_matter_work_from_the_stream(runs):
    dense, tokens = runs["dense"], runs["tokens"]
    m_dense, m_tok = dense["train"].manifest()["metrics"], tokens["train"].manifest()["metrics"]
    for k in ("fvu", "dead_frac", "l0"):
        assert m_dense[k] == m_tok[k], k
    stats = [stage(r["cfg"], "dark_matter", collect=r["collect"], train=r["train"]).manifest()["stats"]
             for r in (dense, tokens)]
    assert stats[0]["eval_tokens"] > 0 and stats[0] == {**stats[1], "sae_key": stats[0]["sae_key"]}


def test_keys_follow_the_model_and_hookpoint_and_a_mismatch_is_refused(runs, model_cache):
    cfg = runs["tokens"]["cfg"]
    home, sae = cfg.home, cfg.sae.path
    base = key(cfg, "collect")
    other_hook = _cfg(home, model_cache, sae, "tokens", model={"hookpoint": "blocks.3.hook_resid_post"})
    other_model = _cfg(home, model_cache, sae, "tokens", model={"dtype": "bfloat16"})
    keys = {base, key(other_hook, "collect"), key(other_model, "collect"),
            key(runs["dense"]["cfg"], "collect")}
    assert len(keys) == 4
    mines = {key(c, "mine", collect=key(c, "collect"), train=key(c, "train", collect=key(c, "collect")))
             for c in (cfg, other_hook, other_model)}
    assert len(mines) == 3
    with pytest.raises(ValueError, match="same model at the same hookpoint"):
        open_activations(other_hook, runs["tokens"]["collect"].path)


def test_tokens_store_refuses_training_an_sae(runs, tmp_path, model_cache):
    with pytest.raises(ConfigError, match="collect.store 'tokens' needs sae.path"):
        build_config({"home": str(tmp_path), "collect": {"store": "tokens"}})
    # a tokens artifact handed to a training config (as rescore's reuse could): refused by name
    training = build_config({"home": str(tmp_path), "model": {"cache_dir": str(model_cache),
                                                              "hookpoint": HOOK},
                             "corpus": {"n_tokens": 128, "seq_len": 17},
                             "mine": {"window": 8, "n_top": 4},
                             "explain": {"n_examples": 3, "min_heldout": 2}})
    with pytest.raises(ValueError, match="collect.store 'tokens'"):
        train_stage(training, runs["tokens"]["collect"])
