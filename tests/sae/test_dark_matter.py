"""Dark matter (Engels et al.): planted linear / noise errors, per-token norms, the stage artifact."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import torch
from conftest import planted_data, write_shards

from interp.analysis.dark_matter import error_norm_correlation, error_stats
from interp.artifacts import ArtifactRef
from interp.config import RunConfig
from interp.sae import SAE, save_sae
from tests.builders import stage


def _x(n: int, d: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * 2 + 1


def test_error_linear_in_x_gives_r2_one():
    a = torch.randn(16, 16, generator=torch.Generator().manual_seed(1))
    x_fit, x_eval = _x(4000), _x(1000, seed=2)
    stats, _ = error_stats(x_fit, x_fit @ a + 3, x_eval, x_eval @ a + 3)
    assert stats["r2_error"] > 0.999 and stats["nonlinear_frac"] < 1e-3


def test_noise_error_gives_r2_zero():
    gen = torch.Generator().manual_seed(3)
    x_fit, x_eval = _x(4000), _x(1000, seed=2)
    noise = lambda n: torch.randn(n, 16, generator=gen)  # noqa: E731
    stats, _ = error_stats(x_fit, noise(4000), x_eval, noise(1000))
    assert abs(stats["r2_error"]) < 0.03 and abs(stats["r2_norm"]) < 0.05
    assert stats["nonlinear_frac"] > 0.97


def test_norm_r2_when_error_norm_scales_with_input():
    """e = (x·v) u + small noise: the norm |x·v| is not linear, the vector is (R² high)."""
    x_fit, x_eval = _x(4000), _x(1000, seed=2)
    v = torch.randn(16, generator=torch.Generator().manual_seed(5))
    u = torch.randn(16, generator=torch.Generator().manual_seed(6))
    stats, _ = error_stats(x_fit, (x_fit @ v)[:, None] * u, x_eval, (x_eval @ v)[:, None] * u)
    assert stats["r2_error"] > 0.999


def test_stage_writes_stats_and_token_errors(tmp_path):
    x, _ = planted_data(60 * 16, d=8, n_dict=16)
    collect = write_shards(tmp_path / "collect", x, 17, shard_sequences=16)
    sae = SAE(8, 32, 2, cfg={"hookpoint": "blocks.0.hook_resid_post"},
              generator=torch.Generator().manual_seed(0))
    save_sae(sae, tmp_path / "train")
    cfg = RunConfig(home=tmp_path / "home")
    ref = stage(cfg, "dark_matter", collect=ArtifactRef("collect", "c", collect),
                train=ArtifactRef("train", "t", tmp_path / "train"))
    row = json.loads((ref.path / "sae_error_stats.json").read_text())
    assert row["sae_key"] == "t" and row["eval_split"] == "heldout"
    assert {"r2_error", "r2_norm", "nonlinear_frac"} <= set(row)
    assert pq.read_table(ref.path / "sae_error_stats.parquet").num_rows == 1
    tok = pq.read_table(ref.path / "token_errors.parquet").to_pylist()
    assert len(tok) == 60 * 16 and {t["split"] for t in tok} == {"train", "heldout"}
    held = [t for t in tok if t["split"] == "heldout"]
    assert all(t["seq_id"] % 20 == 0 for t in held) and len(held) == 3 * 16
    # one token's stored norm equals a direct computation
    t0 = held[5]
    xi = x[t0["seq_id"] * 16 + t0["position"] - 1][None]
    with torch.no_grad():
        direct = float((xi - sae.reconstruct(xi)).norm())
    assert abs(t0["error_norm"] - direct) < 1e-4 * max(direct, 1)
    same = error_norm_correlation(ref.path, ref.path)
    assert same["n_tokens"] == 48 and same["pearson"] > 0.9999 and same["spearman"] > 0.9999


def test_error_norm_correlation_separates_what_the_input_norm_explains():
    """Two SAEs whose errors only scale with ‖x‖ (independent otherwise) correlate highly in raw
    error norms, but not once ‖x‖ is held fixed; a shared hard-token component survives it."""
    import pyarrow as pa

    g = torch.Generator().manual_seed(0)
    n = 4000
    x_norm = 1 + 9 * torch.rand(n, generator=g, dtype=torch.float64)
    hard = torch.rand(n, generator=g, dtype=torch.float64)  # tokens both SAEs find hard

    def table(err):
        return pa.table({"seq_id": list(range(n)), "position": [1] * n, "split": ["heldout"] * n,
                         "error_norm": err.numpy(), "x_norm": x_norm.numpy()})
    noise = lambda: 0.1 * torch.rand(n, generator=g, dtype=torch.float64)  # noqa: E731
    a, b = table(x_norm * (0.2 + noise())), table(x_norm * (0.2 + noise()))
    scale_only = error_norm_correlation(a, b)
    assert scale_only["pearson"] > 0.9 and abs(scale_only["pearson_given_x_norm"]) < 0.1
    assert abs(scale_only["pearson_rel_error"]) < 0.1
    shared = error_norm_correlation(table(x_norm * (0.2 + hard + noise())),
                                    table(x_norm * (0.2 + hard + noise())))
    assert shared["pearson_given_x_norm"] > 0.5 and shared["pearson_rel_error"] > 0.9
