"""Mining: the one-pass, range-wise miner equals a naive dense reference on tiny seeded data."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file

from interp.collect.shards import ActivationShards
from interp.mine.config import MineConfig
from interp.mine.select import lexsort, select_positives, uniform_hash
from interp.mine.stage import mine_into, plan_ranges
from tests.builders import TinyTopK, make_shards, write_random_documents
from tests.mining_reference import reference

PER_SEQ, WINDOW = 4, 4


def _mine(tmp_path, name, shards, enc, cfg, **kw):
    out = tmp_path / name
    out.mkdir()
    stats = mine_into(enc, shards, cfg, out, **kw)
    return stats, pq.read_table(out / "examples.parquet"), pq.read_table(out / "latents.parquet")


def _wid(r) -> int:
    return r["seq_id"] * PER_SEQ + (r["start"] - 1) // WINDOW


def _check_against_reference(ex, lat, enc, shards, cfg):
    ref = reference(enc, shards, cfg)
    codes = ref["codes"]
    for row in lat.to_pylist():
        want = ref["latents"][row["latent"]]
        assert row["n_active_tokens"] == want["n_active_tokens"]
        assert row["n_active_windows"] == want["n_active_windows"]
        assert row["max_act"] == pytest.approx(want["max_act"], rel=1e-6)
        assert row["frequency"] == want["n_active_tokens"] / shards.n_tokens
        assert sum(row["hist"]) == row["n_active_tokens"]
    rows = ex.to_pylist()
    for l, want in ref["latents"].items():
        mine = [r for r in rows if r["latent"] == l]
        top = [r for r in mine if r["kind"] == "top"]
        assert [_wid(r) for r in top] == want["top"]
        assert [r["rank"] for r in top] == list(range(len(top)))
        got_q: dict = {}
        for r in mine:
            if r["kind"] == "quantile":
                got_q.setdefault((r["quantile"], r["split"]), set()).add(_wid(r))
        assert got_q == {k: v for k, v in want["quantile"].items() if v}
        for q, split in got_q:  # rank: by maximum, descending, within the group
            grp = [r for r in mine if r["kind"] == "quantile" and (r["quantile"], r["split"]) == (q, split)]
            assert [r["rank"] for r in grp] == list(range(len(grp)))
            assert [r["max_act"] for r in grp] == sorted((r["max_act"] for r in grp), reverse=True)
        for split, ws in want["random"].items():
            random = sorted((r for r in mine if r["kind"] == "random" and r["split"] == split),
                            key=lambda r: r["rank"])
            assert [_wid(r) for r in random] == ws
            assert [r["rank"] for r in random] == list(range(len(random)))
        for r in mine:  # stored per-token activations are the reference codes of that window
            assert r["split"] == ref["split"][_wid(r)]  # every row in the split of its documents
            ref_acts = codes[r["seq_id"], r["start"] - 1:r["start"] - 1 + WINDOW, l]
            assert r["acts"] == pytest.approx(ref_acts.tolist(), rel=1e-6, abs=1e-7)
            assert r["max_act"] == pytest.approx(want["values"][_wid(r)], rel=1e-6)
    return ref["split"]


@pytest.mark.parametrize("batch_size, working_bytes", [(3, None), (64, None), (5, 1)])
def test_mine_matches_naive_reference(tmp_path, batch_size, working_bytes):
    shards = ActivationShards(make_shards(tmp_path / "c", n_seq=24, seq_len=17, d=8))
    enc = TinyTopK(d=8, m=12, k=3)
    cfg = MineConfig(window=WINDOW, n_top=5, n_quantiles=3, per_quantile=2, train_per_quantile=1,
                     n_random=3, batch_size=batch_size, seed=7)
    stats, ex, lat = _mine(tmp_path, "m", shards, enc, cfg, working_bytes=working_bytes)
    # working_bytes=1 forces one latent per range: the output must not depend on ranges.
    assert stats["n_ranges"] == (12 if working_bytes == 1 else 1)
    assert stats["n_windows"] == 24 * PER_SEQ
    ref_split = _check_against_reference(ex, lat, enc, shards, cfg)
    assert set(ref_split) == {"train", "test", None}   # windows spanning both are exercised
    assert set(ex.column("split").to_pylist()) == {"train", "test"}


def test_output_is_identical_across_batch_sizes_and_ranges(tmp_path):
    shards = ActivationShards(make_shards(tmp_path / "c", n_seq=30, seq_len=17, d=8, seed=3))
    enc = TinyTopK(d=8, m=20, k=4, seed=2)
    cfg = MineConfig(window=WINDOW, n_top=4, n_quantiles=2, per_quantile=2, n_random=4)
    _, a, la = _mine(tmp_path, "a", shards, enc, cfg.model_copy(update={"batch_size": 64}))
    _, b, lb = _mine(tmp_path, "b", shards, enc, cfg.model_copy(update={"batch_size": 7}),
                     working_bytes=1)
    assert a.equals(b) and la.equals(lb)


def _write_collect(path, acts, dtype=torch.float32):
    """A collect artifact holding exactly `acts` [n_seq, seq_len, d] (BOS at position 0)."""
    path.mkdir(parents=True)
    n, t, d = acts.shape
    tokens = torch.ones(n, t, dtype=torch.int32)
    save_file({"acts": acts.to(dtype).contiguous(), "tokens": tokens}, str(path / "shard-00000.safetensors"))
    import pyarrow as pa
    pq.write_table(pa.table({"seq_id": list(range(n)), "tokens": tokens.tolist(),
                             "token_str": [["x"] * t] * n}), path / "sequences.parquet")
    write_random_documents(path, n * (t - 1))
    (path / "manifest.json").write_text(json.dumps({
        "d_model": d, "seq_len": t, "n_sequences": n, "hookpoint": "h",
        "shards": [{"file": "shard-00000.safetensors", "first_seq": 0, "n_seq": n}]}))
    return ActivationShards(path)


def test_ties_go_to_the_earliest_window(tmp_path):
    one = torch.randn(1, 17, 8, generator=torch.Generator().manual_seed(0))
    shards = _write_collect(tmp_path / "c", one.repeat(10, 1, 1))   # 10 identical sequences
    enc = TinyTopK(d=8, m=6, k=2)
    cfg = MineConfig(window=WINDOW, n_top=3, n_quantiles=2, per_quantile=1, n_random=1)
    _, ex, _ = _mine(tmp_path, "m", shards, enc, cfg)
    _check_against_reference(ex, _mine(tmp_path, "m2", shards, enc, cfg)[2], enc, shards, cfg)
    for l in range(6):  # the strongest window ties with every copy of it: earliest copies first
        tops = sorted((r for r in ex.to_pylist() if r["kind"] == "top" and r["latent"] == l),
                      key=lambda r: r["rank"])
        same = [r["seq_id"] for r in tops if r["start"] == tops[0]["start"]]
        assert len(same) > 1 and same == sorted(same)


def test_fp16_shards_mine_like_their_fp32_values(tmp_path):
    acts = torch.randn(12, 17, 8, generator=torch.Generator().manual_seed(1))
    half = _write_collect(tmp_path / "h", acts, torch.float16)
    full = _write_collect(tmp_path / "f", acts.half().float())      # the same values, stored fp32
    assert half.load_shard(0)[0].dtype == torch.float32
    assert torch.equal(half.load_shard(0)[0], full.load_shard(0)[0])
    enc = TinyTopK(d=8, m=10, k=3)
    cfg = MineConfig(window=WINDOW, n_top=3, n_quantiles=2, per_quantile=1, n_random=2)
    _, a, la = _mine(tmp_path, "a", half, enc, cfg)
    _, b, lb = _mine(tmp_path, "b", full, enc, cfg)
    assert a.equals(b) and la.equals(lb)


def test_quantile_samples_are_uniform_within_each_bin():
    """Over seeds, every non-top window of a bin is drawn equally often (the hash is unbiased)."""
    n, n_q, per_q, n_top = 60, 3, 4, 6
    cfg = MineConfig(window=4, n_top=n_top, n_quantiles=n_q, train_per_quantile=per_q)
    win = torch.arange(n)
    val = torch.linspace(5, 0.1, n)          # window w has rank w
    train = torch.zeros(n, dtype=torch.int8)  # all in train documents: the top ones are not drawn
    hits = torch.zeros(n)
    seeds = 400
    for seed in range(seeds):
        rows, _ = select_positives(win, torch.zeros(n, dtype=torch.long), val, 0, 1,
                                   cfg.model_copy(update={"seed": seed}), train)
        q_rows = rows.kind == 1
        hits[rows.window[q_rows]] += 1
    assert hits[:n_top].sum() == 0
    for q in range(n_q):  # bin q holds ranks r with (n-1-r)*n_q//n == q; minus the top ones
        members = [r for r in range(n_top, n) if (n - 1 - r) * n_q // n == q]
        p = per_q / len(members)
        freq = hits[members] / seeds
        sd = (p * (1 - p) / seeds) ** 0.5
        assert (freq - p).abs().max() < 4.5 * sd, (q, freq, p)


def test_uniform_hash_is_device_and_shape_independent():
    lat = torch.arange(50).repeat_interleave(20)
    j = torch.arange(20).repeat(50)
    h = uniform_hash(3, lat, j)
    assert h.min() >= 0 and h.max() < 2**32
    assert torch.equal(h[100:120], uniform_hash(3, lat[100:120], j[100:120]))
    assert not torch.equal(h, uniform_hash(4, lat, j))


def test_lexsort_matches_python_sort():
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randint(0, 4, (200,), generator=g) for _ in range(3))
    order = lexsort(a, -b, c).tolist()
    assert order == sorted(range(200), key=lambda i: (int(a[i]), -int(b[i]), int(c[i]), i))


def test_plan_ranges_cover_every_latent_in_budgeted_pieces():
    cfg = MineConfig(window=32)
    count = torch.randint(0, 1000, (5000,), generator=torch.Generator().manual_seed(0))
    ranges = plan_ranges(count, cfg, range_bytes=40 << 20)
    assert ranges[0][0] == 0 and ranges[-1][1] == 5000 and len(ranges) > 1
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert plan_ranges(count, cfg, range_bytes=1 << 40) == [(0, 5000)]


def test_memory_budget_below_current_use_still_mines(tmp_path, caplog):
    shards = ActivationShards(make_shards(tmp_path / "c", n_seq=8, seq_len=17, d=8))
    cfg = MineConfig(window=WINDOW, n_top=2, n_random=1, memory_budget_mb=1)
    stats, ex, _ = _mine(tmp_path, "m", shards, TinyTopK(d=8, m=6, k=2), cfg)
    assert "memory_budget_mb=1" in caplog.text and ex.num_rows > 0


def test_latent_ranges_are_sized_on_what_the_encode_pass_left_in_use(tmp_path, monkeypatch):
    """The encode pass leaves memory resident (statistics, heap glibc keeps: +110 MiB at 2,304
    latents); ranges sized on the RSS measured before it let the peak pass the budget (605 MB
    at mine.memory_budget_mb=600). Here the process 'holds' 100 MiB before and 400 after."""
    import interp.mine.stage as stage
    held = {"rss": 100 << 20}
    monkeypatch.setattr(stage, "rss_bytes", lambda: held["rss"])
    real_encode, real_plan, planned = stage.encode_pass, stage.plan_ranges, []

    def encode_then_hold_more(*a, **k):
        stats = real_encode(*a, **k)
        held["rss"] = 400 << 20
        return stats
    monkeypatch.setattr(stage, "encode_pass", encode_then_hold_more)
    monkeypatch.setattr(stage, "plan_ranges", lambda count, cfg, range_bytes, *a:
                        planned.append(range_bytes) or real_plan(count, cfg, range_bytes, *a))
    shards = ActivationShards(make_shards(tmp_path / "c", n_seq=8, seq_len=17, d=8))
    cfg = MineConfig(window=WINDOW, n_top=2, n_random=1, memory_budget_mb=500)
    _mine(tmp_path, "m", shards, TinyTopK(d=8, m=6, k=2), cfg)
    assert planned and 0 < planned[0] <= (500 - 400) << 20


def test_all_dead_latents_give_negatives_only(tmp_path):
    shards = _write_collect(tmp_path / "c", torch.zeros(6, 17, 8))   # relu(0 @ W) = 0 everywhere
    cfg = MineConfig(window=WINDOW, n_top=2, n_random=2)
    stats, ex, lat = _mine(tmp_path, "m", shards, TinyTopK(d=8, m=5, k=2), cfg)
    assert stats["dead"] == 5 and all(lat.column("dead").to_pylist())
    assert set(ex.column("kind").to_pylist()) == {"random"}
    assert ex.num_rows == 5 * 2 and all(max(a) == 0 for a in ex.column("acts").to_pylist())


def test_code_spill_buckets_return_each_latents_triples_in_token_order(tmp_path):
    from interp.mine.codes import CodeSpill
    spill = CodeSpill(tmp_path / "s", num_latents=10, n_buckets=3)   # 4 latents per bucket
    g = torch.Generator().manual_seed(0)
    parts = []
    for first in range(0, 40, 8):  # five chunks of 8 tokens, 3 codes each
        tok = torch.arange(first, first + 8).repeat_interleave(3)
        lat = torch.randint(0, 10, (24,), generator=g)
        act = torch.rand(24, generator=g)
        spill.append(tok, lat, act)
        parts.append((tok, lat, act))
    spill.close()
    tok, lat, act = (torch.cat(x) for x in zip(*parts))
    assert spill.n_triples == 120
    for lo, hi, cap in [(0, 10, 1000), (3, 6, 5), (5, 9, 30)]:
        got = [tuple(t) for t in spill.chunks(lo, hi, cap, "cpu")]
        t, l, a = (torch.cat(x) for x in zip(*got))
        keep = (l >= lo) & (l < hi)
        for latent in range(lo, hi):  # per latent: exactly its triples, in token order
            mine = (l == latent) & keep
            want = lat == latent
            assert t[mine].tolist() == tok[want].tolist()
            assert torch.equal(a[mine], act[want].float())


def test_code_spill_on_a_full_disk_raises_naming_the_file(tmp_path):
    """Every spill file is /dev/full (every write: ENOSPC). ndarray.tofile lost that error for
    small writes, and mining went on over a spill with triples missing."""
    import os

    from interp.mine.codes import _FILES, CodeSpill
    (tmp_path / "s").mkdir()
    for b in range(2):
        for name, _ in _FILES:
            os.symlink("/dev/full", tmp_path / "s" / f"{b:04d}.{name}")
    spill = CodeSpill(tmp_path / "s", num_latents=4, n_buckets=2)
    with pytest.raises(OSError) as err:
        spill.append(torch.arange(6), torch.tensor([0, 1, 2, 3, 0, 1]), torch.rand(6))
        spill.close()
    assert err.value.errno == 28 and str(tmp_path / "s") in err.value.filename
    spill.close()  # again (mine_into's cleanup): every file is closed already


def test_no_window_is_kept_twice_for_a_latent_across_kinds(tmp_path):
    shards = ActivationShards(make_shards(tmp_path / "c", n_seq=12, seq_len=17, d=8))
    enc = TinyTopK(d=8, m=10, k=4)
    enc.W_dec = torch.randn(10, 8, generator=torch.Generator().manual_seed(3))
    # Many negatives on few windows: random and hard candidates must collide, and be deduplicated.
    cfg = MineConfig(window=WINDOW, n_top=3, n_quantiles=2, per_quantile=2, n_random=12,
                     negatives="neighbours", n_hard=6, n_neighbours=4)
    _, ex, _ = _mine(tmp_path, "m", shards, enc, cfg)
    rows = ex.to_pylist()
    keys = [(r["latent"], _wid(r)) for r in rows]
    assert len(keys) == len(set(keys))
    assert {r["kind"] for r in rows} == {"top", "quantile", "random", "hard"}
