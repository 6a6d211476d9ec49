"""Quantile training windows and hard negatives (similar by embedding, decoder neighbours) in the
mine stage, against brute-force references on tiny data; detection scoring reads them."""
from __future__ import annotations

import random

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from interp.collect.shards import ActivationShards
from interp.mine.config import MineConfig
from interp.mine.examples import Example
from interp.mine.negatives import CANDIDATE_FACTOR
from interp.mine.select import split_caps
from interp.mine.stage import mine_into
from interp.scoring.windows import detection_items
from tests.builders import TinyTopK, make_shards
from tests.mining_reference import split_of_windows

PER_SEQ, WINDOW = 4, 4


def _mine(tmp_path, name: str, embed=None, **over):
    shards = ActivationShards(make_shards(tmp_path / "c", n_seq=24, seq_len=17, d=8))
    enc = TinyTopK(d=8, m=12, k=3)
    enc.W_dec = torch.randn(12, 8, generator=torch.Generator().manual_seed(3))
    cfg = MineConfig(**{"window": WINDOW, "n_top": 4, "n_quantiles": 2, "per_quantile": 2,
                        "n_random": 2, "batch_size": 5, **over})
    out = tmp_path / name
    out.mkdir()
    stats = mine_into(enc, shards, cfg, out, embed=embed)
    return enc, shards, cfg, stats, pq.read_table(out / "examples.parquet").to_pylist()


def _window_max(enc, shards) -> torch.Tensor:
    """[n_windows, m] window maxima, computed densely."""
    rows = []
    for _ids, acts, _tok in shards.iter_sequences():
        x = acts[:, 1:]
        codes = enc.encode_dense(x.reshape(-1, x.shape[-1])).view(x.shape[0], x.shape[1], -1)
        rows.append(codes.view(x.shape[0], PER_SEQ, WINDOW, -1).amax(2).reshape(-1, codes.shape[-1]))
    return torch.cat(rows)


def _wid(r) -> int:
    return r["seq_id"] * PER_SEQ + (r["start"] - 1) // WINDOW


_TOKEN_VECS = np.random.default_rng(0).standard_normal((50, 16)).astype(np.float32)


def _bag_embed(texts: list[str]) -> np.ndarray:
    """Sum of fixed random token vectors (t0..t49): windows sharing tokens are similar, and
    distinct token multisets never tie."""
    out = np.stack([_TOKEN_VECS[[int(tok) for tok in t.split("t")[1:]]].sum(0) for t in texts])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_quantile_train_windows_leave_the_test_set_unchanged(tmp_path):
    *_, base = _mine(tmp_path, "base")
    *_, ex = _mine(tmp_path, "more", train_per_quantile=3)
    test = lambda rows: sorted((r["latent"], r["seq_id"], r["start"]) for r in rows  # noqa: E731
                               if r["kind"] == "quantile" and r["split"] == "test")
    assert test(ex) == test(base) and test(base)
    train = [r for r in ex if r["kind"] == "quantile" and r["split"] == "train"]
    assert train and all(r["max_act"] > 0 for r in train)
    keys = {(r["latent"], r["seq_id"], r["start"]) for r in train}
    assert not keys & set(test(ex))                          # never both shown and held out
    tops = {(r["latent"], r["seq_id"], r["start"]) for r in ex if r["kind"] == "top"}
    assert not keys & tops
    for l in range(12):
        for q in range(2):
            n = [r for r in train if r["latent"] == l and r["quantile"] == q]
            assert len(n) <= 3 and sorted(r["rank"] for r in n) == list(range(len(n)))


def _check_hard(ex, win, cfg, shards, expected_candidates):
    split = split_of_windows(shards, cfg, len(win))
    for l in range(12):
        rows = [r for r in ex if r["latent"] == l]
        known = {_wid(r) for r in rows if r["kind"] in ("top", "quantile")}
        cands = [w for w in expected_candidates(l, known)][: CANDIDATE_FACTOR * cfg.n_hard]
        for name, cap in zip(("train", "test"), split_caps(cfg.n_hard)):
            expect = [w for w in cands if win[w, l] == 0 and split[w] == name][:cap]
            hard = sorted((r for r in rows if r["kind"] == "hard" and r["split"] == name),
                          key=lambda r: r["rank"])
            assert [_wid(r) for r in hard] == expect
            assert all(max(r["acts"]) == 0 for r in hard)


def test_similar_negatives_match_bruteforce(tmp_path):
    enc, shards, cfg, stats, ex = _mine(tmp_path, "sim", embed=_bag_embed, negatives="similar",
                                        n_hard=3)
    win = _window_max(enc, shards)
    seqs = pq.read_table(shards.path / "sequences.parquet").to_pylist()
    texts = ["".join(seqs[w // PER_SEQ]["token_str"][1 + (w % PER_SEQ) * WINDOW:][:WINDOW])
             for w in range(len(win))]
    emb = torch.from_numpy(_bag_embed(texts))

    def nearest(l, known):
        tops = [_wid(r) for r in ex if r["latent"] == l and r["kind"] == "top"]
        cent = torch.nn.functional.normalize(emb[tops].mean(0), dim=0)
        order = torch.argsort(emb @ cent, descending=True, stable=True).tolist()
        return [w for w in order if w not in known]

    _check_hard(ex, win, cfg, shards, nearest)
    assert stats["n_by_kind"]["hard"] > 0


def test_neighbour_negatives_match_bruteforce(tmp_path):
    enc, shards, cfg, stats, ex = _mine(tmp_path, "nb", negatives="neighbours", n_hard=3,
                                        n_neighbours=3)
    win = _window_max(enc, shards)
    unit = torch.nn.functional.normalize(enc.W_dec, dim=1)

    def neighbour_tops(l, known):
        cos = (unit @ unit[l]).tolist()
        nbrs = sorted((j for j in range(12) if j != l), key=lambda j: -cos[j])[:3]
        out = []
        for j in nbrs:  # the neighbour's mined windows (top and quantile), strongest first
            mined = sorted((r for r in ex if r["latent"] == j and r["kind"] in ("top", "quantile")),
                           key=lambda r: (-r["max_act"], _wid(r)))
            out += [_wid(r) for r in mined if _wid(r) not in known and _wid(r) not in out]
        return out

    _check_hard(ex, win, cfg, shards, neighbour_tops)
    assert stats["n_by_kind"]["hard"] > 0


def test_neighbours_need_a_decoder(tmp_path):
    shards = ActivationShards(make_shards(tmp_path / "c", n_seq=8, seq_len=17, d=8))
    (tmp_path / "o").mkdir()
    with pytest.raises(ValueError, match="W_dec"):
        mine_into(TinyTopK(d=8, m=6, k=2), shards,
                  MineConfig(window=4, n_top=2, negatives="neighbours"), tmp_path / "o")


def _ex(kind: str, split: str, rank: int, act: float = 0.0, q: int = -1) -> Example:
    return Example(0, kind, split, rank, q, rank, 1, act, ("a", "b"), (act, 0.0))


def test_detection_uses_held_out_hard_negatives_first():
    exs = [_ex("quantile", "test", i, 1.0, q=i % 2) for i in range(4)] + \
          [_ex("random", "test", i) for i in range(3)] + [_ex("hard", "test", i + 10) for i in range(2)] + \
          [_ex("hard", "train", 99), _ex("random", "train", 98)]
    items = detection_items(exs, 2, 3, random.Random(0))
    negs = sorted(it.seq_id for it in items if it.label == 0)
    assert negs == [0, 10, 11]   # both held-out hard ones, then the first random; no train window
