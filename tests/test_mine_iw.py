"""SAEBench's extra windows (interp/mine/iw.py): held-out strong windows, importance-weighted
windows drawn with probability proportional to the squared window maximum, no window twice."""
from __future__ import annotations

import pyarrow.parquet as pq
import torch

from interp.collect.shards import ActivationShards
from interp.mine.config import MineConfig
from interp.mine.doc_split import NONE
from interp.mine.iw import select_extra
from interp.mine.select import IW, TOP, select_positives
from interp.mine.stage import mine_into
from tests.builders import TinyTopK, make_shards


def _maxima(values: list[list[float]]):
    """(win, lat, val) of latents 0.. with the given window maxima (window ids 0..)."""
    lat = torch.cat([torch.full((len(v),), i) for i, v in enumerate(values)])
    win = torch.cat([torch.arange(len(v)) for v in values])
    return win, lat, torch.tensor([x for v in values for x in v])


def test_iw_sampling_is_proportional_to_the_squared_maximum():
    # 4000 latents, each with two top windows and two candidates of maxima 1 and 3: one iw draw
    # picks the 3 with probability 9 / 10 (SAEBench squares the activations).
    n = 4000
    win, lat, val = _maxima([[10.0, 9.0, 1.0, 3.0]] * n)
    cfg = MineConfig(n_top=2, n_quantiles=1, per_quantile=1, n_iw=1, seed=5)
    wsplit = torch.zeros(4, dtype=torch.int8)             # every window in a train document
    taken, _ = select_positives(win, lat, val, 0, n, cfg, wsplit)
    # A quantile row takes one of the two candidates: exclude only the top rows, so that the
    # draw is between both.
    top_only = taken.take((taken.kind == TOP).nonzero().squeeze(1))
    rows = select_extra(win, lat, val, top_only, cfg, wsplit)
    assert len(rows) == n and set(rows.kind.tolist()) == {IW}
    frac = (rows.value == 3.0).float().mean().item()
    assert abs(frac - 0.9) < 0.02, frac   # 4000 draws: 3 sigma is 0.014


def test_held_out_top_and_iw_windows_are_disjoint_from_every_other_kind():
    g = torch.Generator().manual_seed(0)
    values = [(torch.rand(30, generator=g) + 0.01).tolist() for _ in range(5)]
    win, lat, val = _maxima(values)
    cfg = MineConfig(n_top=4, n_quantiles=2, per_quantile=2, n_top_test=2, n_iw=5, n_iw_test=2)
    # windows 0-13 in train documents, 14 spans a train and a test one, 15-29 in test ones
    wsplit = torch.tensor([0] * 14 + [NONE] + [1] * 15, dtype=torch.int8)
    taken, _ = select_positives(win, lat, val, 0, 5, cfg, wsplit)
    extra = select_extra(win, lat, val, taken, cfg, wsplit)
    for latent, v in enumerate(values):
        mine = extra.take((extra.latent == latent).nonzero().squeeze(1))
        held = mine.window[(mine.kind == TOP)].tolist()
        iw = mine.window[(mine.kind == IW)]
        used = set(taken.window[taken.latent == latent].tolist())
        # held-out top: the strongest test-document windows no quantile row took, split test
        order = sorted(range(30), key=lambda w: -v[w])
        assert held == [w for w in order if w not in used and wsplit[w] == 1][:2]
        assert (mine.split[mine.kind == TOP] == 1).all()
        assert len(iw) == 5 and not (set(iw.tolist()) & (used | set(held) | {14}))
        # each iw row has its document's split: 2 held out from test documents, 3 from train ones
        assert torch.equal(mine.split[mine.kind == IW].long(), wsplit[iw].long())
        assert (mine.split[mine.kind == IW] == 1).sum() == 2
    again = select_extra(win, lat, val, taken, cfg, wsplit)   # seeded: the same draw every time
    assert torch.equal(again.window, extra.window) and torch.equal(again.split, extra.split)


def test_mining_writes_iw_rows_only_when_asked(tmp_path):
    shards = ActivationShards(make_shards(tmp_path / "c", n_seq=24, seq_len=17, d=8))
    enc = TinyTopK(d=8, m=6, k=3)
    kinds = {}
    for name, extra in (("plain", {}), ("iw", {"n_top_test": 1, "n_iw": 3, "n_iw_test": 1})):
        out = tmp_path / name
        out.mkdir()
        cfg = MineConfig(window=4, n_top=3, n_quantiles=2, per_quantile=2, n_random=4, **extra)
        mine_into(enc, shards, cfg, out)
        rows = pq.read_table(out / "examples.parquet").to_pylist()
        kinds[name] = {(r["kind"], r["split"]) for r in rows}
        keys = [(r["latent"], r["seq_id"], r["start"]) for r in rows]
        assert len(keys) == len(set(keys))           # no window kept twice for a latent
        if name == "iw":
            iw = [r for r in rows if r["kind"] == "iw"]
            assert iw and all(r["max_act"] > 0 and len(r["acts"]) == 4 for r in iw)
    assert ("iw", "train") not in kinds["plain"] and ("top", "test") not in kinds["plain"]
    assert {("iw", "train"), ("iw", "test"), ("top", "test")} <= kinds["iw"]


def test_top_iw_train_set_shows_the_iw_train_windows_and_top_ones_never_held_out():
    from interp.explain.format import training_examples
    from interp.mine.examples import Example

    def ex(kind, split, rank, act):
        return Example(0, kind, split, rank, -1, rank, 1, act, ("a",), (act,))
    rows = [ex("top", "train", r, 10.0 - r) for r in range(10)] + \
           [ex("iw", "train", r, 1.0 + r) for r in range(5)] + \
           [ex("iw", "test", r, 5.0) for r in range(2)] + [ex("top", "test", 0, 9.5)]
    shown = training_examples(rows, "top_iw", 15)
    assert len(shown) == 15 and all(e.split == "train" for e in shown)
    assert sum(e.kind == "iw" for e in shown) == 5          # SAEBench: 10 top + 5 iw
    assert [e.max_act for e in shown] == sorted((e.max_act for e in shown), reverse=True)
    few = training_examples(rows, "top_iw", 8)               # fewer shown: half top, half iw
    assert sum(e.kind == "iw" for e in few) == 4 and sum(e.kind == "top" for e in few) == 4
