"""Logit lens of decoder directions: a planted direction (a token's unembedding row) puts that
token first, the blocked kernel equals a naive full projection, and the stage's rows reach the
catalogue's latent_logits table."""
from __future__ import annotations

import duckdb
import pyarrow.parquet as pq
import pytest
import torch

from interp.analysis import logits as logit_lens
from interp.analysis.logits import Readout, project, top_tokens
from interp.artifacts import ArtifactRef
from interp.sae.io import save_sae
from interp.sae.model import SAE
from storage.catalog import publish
from tests.builders import stage
from tests.conftest import tiny_config

D, V, N = 16, 50, 12


def _readout(seed: int = 0, *, gamma: bool = True) -> Readout:
    g = torch.Generator().manual_seed(seed)
    W_U = torch.randn(D, V, generator=g)
    scale = torch.rand(D, generator=g) + 0.5 if gamma else None
    return Readout(W_U, scale, False, lambda ids: [f"tok{i}" for i in ids])


def _planted_sae(tmp_path, readout: Readout, planted: dict[int, int]):
    """An SAE whose latent l has decoder row = unembedding row of token planted[l] (divided by
    gamma, so the final norm's scale maps it back onto that row)."""
    sae = SAE(D, N, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for latent, tok in planted.items():
            sae.W_dec[latent] = readout.W_U[:, tok] / readout.gamma
    return save_sae(sae, tmp_path / "artifacts" / "train" / "t0")


def test_planted_direction_puts_its_token_first(tmp_path):
    readout = _readout()
    planted = {0: 7, 5: 31, 11: 2}
    train_dir = _planted_sae(tmp_path, readout, planted)
    out = tmp_path / "ll.parquet"
    project(train_dir, "t0", readout, out, k=3, block=4)  # blocks of 4 over 12 latents
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == N * 2 * 3
    top = {r["latent"]: r["token"] for r in rows if r["direction"] == "promoted" and r["rank"] == 1}
    for latent, tok in planted.items():
        assert top[latent] == f"tok{tok}"
    sup = [r for r in rows if r["latent"] == 5 and r["direction"] == "suppressed"]
    assert [r["rank"] for r in sup] == [1, 2, 3]
    assert sup[0]["value"] <= sup[1]["value"] <= sup[2]["value"] < 0


def test_blocked_top_k_equals_naive_projection():
    readout = _readout(3)
    w = torch.randn(37, D, generator=torch.Generator().manual_seed(4))
    full = (w * readout.gamma) @ readout.W_U
    for b in (1, 5, 37):
        got = [top_tokens(w[i:i + b], readout, 4) for i in range(0, len(w), b)]
        pi = torch.cat([g[0] for g in got])
        nv = torch.cat([g[3] for g in got])
        assert torch.equal(pi, full.topk(4, dim=1).indices)
        assert torch.allclose(nv, full.topk(4, dim=1, largest=False).values)


def test_layer_norm_centres_the_direction():
    readout = Readout(torch.eye(D), None, True, lambda ids: [str(i) for i in ids])
    w = torch.ones(1, D)  # a constant direction is erased by LayerNorm's centring
    _, pv, _, _ = top_tokens(w, readout, 2)
    assert torch.allclose(pv, torch.zeros_like(pv), atol=1e-6)


def test_stage_publishes_latent_logits(tmp_path, monkeypatch):
    readout = _readout()
    train_dir = _planted_sae(tmp_path, readout, {3: 9})
    (train_dir / "manifest.json").write_text('{"stage": "train", "key": "t0"}')
    monkeypatch.setattr(logit_lens, "load_readout", lambda cfg: readout)
    cfg = tiny_config(tmp_path, "http://127.0.0.1:9/v1", logits={"k": 4, "block": 5})
    ref = stage(cfg, "logits", train=ArtifactRef("train", "t0", train_dir))
    assert ref.manifest()["rows"] == N * 8
    publish(tmp_path, {"logits": ref.key}, [])
    con = duckdb.connect(str(tmp_path / "catalog.duckdb"), read_only=True)
    got = con.execute("SELECT token FROM latent_logits WHERE sae_key = 't0' AND latent = 3 "
                      "AND direction = 'promoted' ORDER BY rank").fetchall()
    assert got[0] == ("tok9",) and len(got) == 4
    assert con.execute("SELECT count(*) FROM latent_logits").fetchone()[0] == N * 8


@pytest.mark.parametrize("k", [0])
def test_k_zero_skips_the_model(tmp_path, monkeypatch, k):
    monkeypatch.setattr(logit_lens, "load_readout", lambda cfg: pytest.fail("model loaded"))
    cfg = tiny_config(tmp_path, "http://127.0.0.1:9/v1", logits={"k": k})
    ref = stage(cfg, "logits", train=ArtifactRef("train", "t0", tmp_path))
    assert pq.read_table(ref.path / "latent_logits.parquet").num_rows == 0


@pytest.mark.slow  # the real subject model
def test_readout_of_the_embedded_model_through_the_bridge(tmp_path, model_cache):
    """TransformerLens 4's bridge gives W_U [d_model, vocab] and the RMSNorm's scale; the
    unembedding row of ' cat' (divided by that scale) puts ' cat' first."""
    from interp.config import ModelConfig
    from interp.models import load_model

    model = load_model(ModelConfig(cache_dir=str(model_cache)), tmp_path)
    readout = logit_lens.readout_of(model)
    assert readout.W_U.shape == (model.d_model, len(model.tokenizer))
    assert readout.gamma is not None and readout.gamma.shape == (model.d_model,)
    assert not readout.center  # SmolLM2's final norm is an RMSNorm
    cat = model.tokenizer.encode(" cat")[0]
    pi, pv, ni, nv = top_tokens((readout.W_U[:, cat] / readout.gamma)[None], readout, 3)
    assert int(pi[0, 0]) == cat and readout.decode([cat]) == [" cat"]
    assert float(nv[0, 0]) < 0 < float(pv[0, 0])


def test_explainer_sees_promoted_tokens_with_output_tokens_on(tmp_path, collected, monkeypatch):
    """explain.output_tokens with the explain_output prompt shows each latent's promoted tokens
    (from the logits artifact); with the default prompt, which has no line for them, the switch
    is an error rather than silently ignored."""
    from tests.builders import explain, key, mine, stage, train_stage
    from tests.fakeserver import FakeLLMServer

    g = torch.Generator().manual_seed(0)
    readout = Readout(torch.randn(8, 30, generator=g), None, False,
                      lambda ids: [f"out{i}" for i in ids])
    monkeypatch.setattr(logit_lens, "load_readout", lambda cfg: readout)
    seen: list = []

    def answer(messages):
        seen.append(messages[-2]["content"])
        return "[EXPLANATION]: the marked tokens"
    with FakeLLMServer(answer) as srv:
        base = tiny_config(tmp_path, srv.base_url, logits={"k": 3})
        cfg = tiny_config(tmp_path, srv.base_url, logits={"k": 3},
                          explain={"prompt": "explain_output", "output_tokens": True})
        sae = train_stage(cfg, collected)
        logits = stage(cfg, "logits", train=sae)
        mined = mine(cfg, collected, sae)
        off = tiny_config(tmp_path, srv.base_url, explain={"output_tokens": True})
        with pytest.raises(ValueError, match="explain.prompt: explain_output"):
            # the default prompt has no line to show them on
            key(off, "explain", mine=mined.key, collect=collected.key)
        exp = explain(cfg, mined, collected, logits=logits)
    rows = pq.read_table(exp.path / "explanations.parquet").to_pylist()
    table = pq.read_table(logits.path / "latent_logits.parquet").to_pylist()
    assert rows and len(seen) == len(rows)
    assert all("Next tokens this neuron makes more likely: \"out" in u for u in seen)
    for r in rows:  # each explained latent's own top promoted token was shown (in some request)
        first = next(t["token"] for t in table if t["latent"] == r["latent"]
                     and t["direction"] == "promoted" and t["rank"] == 1)
        assert any(f'"{first}"' in u for u in seen)
    assert key(cfg, "explain", mine=mined.key, collect=collected.key, logits=logits.key) != \
        key(base, "explain", mine=mined.key, collect=collected.key)
