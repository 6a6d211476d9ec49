"""MLP neurons as a dictionary (sae.architecture 'neurons'): exact codes and decoder, config errors,
and a neurons run beside an SAE run through publish into the comparison query."""
from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
import torch

from interp.config import ConfigError
from interp.sae.io import load_sae, save_sae
from interp.sae.neurons import mlp_output, neurons_sae
from tests.conftest import tiny_config

README = Path(__file__).resolve().parents[2] / "README.md"
HOOK = "blocks.0.mlp.hook_post"


def planted(d_mlp: int = 12, d_model: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(d_mlp, d_model, generator=gen), torch.randn(d_model, generator=gen)


def test_neurons_encode_hook_post_exactly_and_decode_with_W_out(tmp_path):
    W_out, b_out = planted()
    x = torch.randn(40, 12, generator=torch.Generator().manual_seed(1))
    every = neurons_sae(W_out, b_out, 1000)  # k >= width: every positive neuron
    assert every.k == 12
    assert torch.equal(every.encode_dense(x), x.clamp_min(0))
    assert torch.equal(every.W_dec, W_out) and torch.equal(every.b_dec, b_out)
    # the decoder is the MLP's output map: all neurons (signed) give the exact MLP output
    assert torch.allclose(every.decode(x, torch.arange(12).expand(40, 12)), x @ W_out + b_out,
                          atol=1e-5)
    assert torch.allclose(mlp_output(every, x), x @ W_out + b_out, atol=1e-5)

    top3 = neurons_sae(W_out, b_out, 3)
    dense = top3.encode_dense(x)
    ref = torch.zeros_like(x)
    for i, row in enumerate(x):  # naive reference: the 3 largest, kept if positive
        for j in sorted(range(12), key=lambda j: -row[j])[:3]:
            ref[i, j] = max(float(row[j]), 0.0)
    assert torch.equal(dense, ref)
    assert int((dense > 0).sum(1).max()) <= 3

    back = load_sae(save_sae(top3, tmp_path / "n"))
    assert back.cfg["architecture"] == "neurons" and back.transcode
    assert torch.equal(back.encode_dense(x), dense) and torch.equal(back.W_dec, W_out)


def test_neurons_config_names_the_hookpoint_and_conflicts(tmp_path):
    with pytest.raises(ConfigError, match="mlp.hook_post"):
        tiny_config(tmp_path, "http://x", sae={"architecture": "neurons"})
    with pytest.raises(ConfigError, match="sae.path"):
        tiny_config(tmp_path, "http://x", model={"hookpoint": HOOK},
                    sae={"architecture": "neurons", "path": str(tmp_path)})
    with pytest.raises(ConfigError, match="normalize_activations"):
        tiny_config(tmp_path, "http://x", model={"hookpoint": HOOK},
                    sae={"architecture": "neurons",
                         "normalize_activations": "unit_mean_squared_norm"})
    cfg = tiny_config(tmp_path, "http://x", model={"hookpoint": HOOK},
                      sae={"architecture": "neurons"})
    sae = neurons_sae(*planted(), 2)
    with pytest.raises(ValueError, match="not trained"):
        sae.arch.train_codes(sae, torch.zeros(1, 12))
    assert cfg.sae.architecture == "neurons"


def _readme_query() -> str:
    text = README.read_text()
    block = re.search(r"<!-- compare-architectures -->\s*```sql\n(.*?)```", text, re.S)
    assert block, "README lost its SAE-vs-neurons query"
    return block.group(1)


def test_neurons_run_and_sae_run_compare_in_one_query(tmp_path, fake_llm, monkeypatch):
    from interp import stages
    from interp.artifacts import ArtifactRef
    from interp.report import build_report
    from interp.sae import stage as train_stage_mod
    from storage.catalog import publish_run
    from storage.read import queries
    from tests.builders import make_shards

    W_out, b_out = planted(d_mlp=8, d_model=5)
    monkeypatch.setattr(train_stage_mod, "load_mlp_weights", lambda cfg: (W_out, b_out))
    path = make_shards(tmp_path / "artifacts" / "collect" / "mlp0", n_seq=40, d=8, hookpoint=HOOK)
    collected = ArtifactRef("collect", "mlp0", path)
    runs = {}
    for arch in ("neurons", "topk"):
        cfg = tiny_config(tmp_path, fake_llm.base_url, model={"hookpoint": HOOK},
                          sae={"architecture": arch, "k": 3})
        rec = stages.run(cfg, reuse={"collect": collected})
        assert rec.status == "complete"
        publish_run(tmp_path, rec.run_id)
        runs[arch] = rec
    sae = load_sae(tmp_path / "artifacts" / "train" / runs["neurons"].artifacts["train"])
    assert torch.equal(sae.W_dec, W_out) and sae.cfg["hookpoint_out"] == "blocks.0.hook_mlp_out"

    con = duckdb.connect(str(tmp_path / "catalog.duckdb"), read_only=True)
    arch, fvu, metrics = con.execute(
        "SELECT architecture, fvu, metrics FROM saes WHERE sae_key = ?",
        [runs["neurons"].artifacts["train"]]).fetchone()
    assert arch == "neurons" and 0 < fvu < 1 and '"trained": false' in metrics
    # dark matter: the error of the MLP output, whose exact target comes from hook_post
    assert con.execute("SELECT count(*) FROM sae_error_stats WHERE sae_key = ?",
                       [runs["neurons"].artifacts["train"]]).fetchone()[0] == 1
    ids = [runs["neurons"].run_id, runs["topk"].run_id]
    rows = con.execute(queries("compare")["architecture_scores"], {"runs": ids}).fetchall()
    pairs = [(r[0], r[1]) for r in rows]
    scorers = {r[1] for r in rows}
    assert len(pairs) == len(set(pairs)) == 2 * len(scorers) > 0
    assert {a for a, _ in pairs} == {"neurons", "topk"}
    for r in rows:
        assert r[3] > 0 and (r[5] is None or r[5] <= r[4] <= r[6])
    sql = _readme_query().replace("'<neurons run>'", "?").replace("'<sae run>'", "?")
    assert con.execute(sql, ids).fetchall() == [r[:7] for r in rows]
    peers = con.execute(queries("compare")["comparable_runs"], {"id": ids[0]}).fetchall()
    assert peers == [(ids[1],)]
    con.close()
    from storage.read import connect_readonly
    ro = connect_readonly(tmp_path)
    html = build_report(ro, ids[0])
    ro.close()
    table = html.split("Against other architectures")[1].split("</table>")[0]
    assert table.count("<tr><td>") == len(rows) and ids[1] in table
