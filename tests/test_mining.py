"""Mining: streaming selection equals a brute-force reference on tiny data."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch

from interp.config import MineConfig
from interp.mining import keep_lowest, mine_into, quantile_lookup
from interp.shards import ActivationShards
from tests.builders import TinyTopK, make_shards


def test_keep_lowest_matches_naive():
    gen = torch.Generator().manual_seed(1)
    group = torch.randint(0, 7, (300,), generator=gen)
    prio = torch.rand(300, generator=gen)
    kept = keep_lowest(group, prio, 4)
    for g in range(7):
        members = (group == g).nonzero().squeeze(1)
        expect = set(members[prio[members].argsort()[:4]].tolist())
        assert set(kept[group[kept] == g].tolist()) == expect


def test_quantile_lookup_equal_mass():
    hist = torch.zeros(1, 128, dtype=torch.long)
    hist[0, :100] = 1  # uniform mass over the first 100 fine bins
    q = quantile_lookup(hist, 4)[0, :100]
    assert [int((q == i).sum()) for i in range(4)] == [25, 25, 25, 25]


def _dense_windows(enc, shards, window):
    """Reference: per-token codes and window maxima computed naively."""
    codes = []
    for _ids, acts, _tok in shards.iter_sequences():
        x = acts[:, 1:]
        codes.append(enc.encode_dense(x.reshape(-1, x.shape[-1])).view(x.shape[0], x.shape[1], -1))
    codes = torch.cat(codes)                                   # [S, T-1, m]
    s, t, m = codes.shape
    win = codes.view(s, t // window, window, m).amax(2)        # [S, W, m]
    return codes, win.reshape(-1, m)


@pytest.mark.parametrize("batch_size", [3, 64])
def test_mine_matches_bruteforce(tmp_path, batch_size):
    shards = ActivationShards(make_shards(tmp_path / "c", n_seq=24, seq_len=17, d=8))
    enc = TinyTopK(d=8, m=12, k=3)
    cfg = MineConfig(window=4, n_top=5, n_quantiles=3, per_quantile=2, n_random=3, batch_size=batch_size)
    out = tmp_path / "m"
    out.mkdir()
    stats = mine_into(enc, shards, cfg, out)
    ex = pq.read_table(out / "examples.parquet").to_pylist()
    lat = pq.read_table(out / "latents.parquet").to_pylist()
    codes, win = _dense_windows(enc, shards, 4)
    per_seq = 4
    assert stats["n_windows"] == len(win)
    for row in lat:
        col = codes[..., row["latent"]]
        assert row["n_active_tokens"] == int((col > 0).sum())
        assert row["max_act"] == pytest.approx(float(col.max()), rel=1e-5)
        assert sum(row["hist"]) == row["n_active_tokens"]
    for l in range(12):
        rows = [r for r in ex if r["latent"] == l]
        top = [r for r in rows if r["kind"] == "top"]
        expect = win[:, l].sort(descending=True).values[:5]
        expect = expect[expect > 0]
        assert [r["max_act"] for r in top] == pytest.approx(expect.tolist(), rel=1e-5)
        top_windows = {(r["seq_id"], r["start"]) for r in top}
        for r in rows:
            w = r["seq_id"] * per_seq + (r["start"] - 1) // 4
            # stored per-token activations equal the reference codes of that window
            ref = codes[r["seq_id"], r["start"] - 1:r["start"] + 3, l]
            assert r["acts"] == pytest.approx(ref.tolist(), rel=1e-5, abs=1e-6)
            if r["kind"] == "quantile":
                assert r["split"] == "test" and win[w, l] > 0
                assert (r["seq_id"], r["start"]) not in top_windows
            if r["kind"] == "random":
                assert win[w, l] == 0
        assert len([r for r in rows if r["kind"] == "random"]) <= 3
        quant = [r for r in rows if r["kind"] == "quantile"]
        available = int((win[:, l] > 0).sum()) - len(top)
        for q in range(3):
            assert len([r for r in quant if r["quantile"] == q]) <= 2
        assert min(available, 2) <= len(quant) <= min(available, 6)
