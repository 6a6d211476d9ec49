"""A naive, obviously-correct miner for equivalence tests: dense codes of every token, dense window
maxima, then per latent plain Python sorting, following the rule written in interp/mine/select.py."""
from __future__ import annotations

import math

import torch

from interp.mine.select import uniform_hash


def dense_codes(enc, shards) -> torch.Tensor:
    """[n_seq, seq_len - 1, m] codes of every token (BOS dropped), clamped at 0."""
    out = []
    for _ids, acts, _tok in shards.iter_sequences():
        x = acts[:, 1:]
        out.append(enc.encode_dense(x.reshape(-1, x.shape[-1])).view(x.shape[0], x.shape[1], -1))
    return torch.cat(out).clamp_min(0)


def window_max(codes: torch.Tensor, window: int) -> torch.Tensor:
    """[n_windows, m]; window id = seq * per_seq + index."""
    s, t, m = codes.shape
    return codes.view(s, t // window, window, m).amax(2).reshape(-1, m)


def _h(seed: int, latent: int, j: int) -> int:
    return int(uniform_hash(seed, torch.tensor([latent]), torch.tensor([j]))[0])


def split_of_windows(shards, cfg, n_windows: int) -> list[str | None]:
    """'train' / 'test' / None per window, by the rule of interp/mine/doc_split.py, token by token."""
    import pyarrow.parquet as pq

    n_tokens = shards.n_tokens
    starts = pq.read_table(shards.path / "documents.parquet").column("start").to_pylist()
    sizes = [min(b, n_tokens) - a for a, b in zip(starts, starts[1:] + [n_tokens])]
    order = sorted(range(len(starts)), key=lambda i: (_h(cfg.seed + 3, 0, i), i))
    test, cum = set(), 0
    for i in order:
        if cum + sizes[i] / 2 < cfg.test_fraction * sum(sizes):
            test.add(i)
        cum += sizes[i]
    doc = [d for d, size in enumerate(sizes) for _ in range(size)]
    out = []
    for w in range(n_windows):
        held = {doc[t] in test for t in range(w * cfg.window, (w + 1) * cfg.window)}
        out.append(None if len(held) == 2 else "test" if held == {True} else "train")
    return out


def reference(enc, shards, cfg) -> dict:
    """{latent: {"top": [w...], "quantile": {(q, split): {w...}}, "random": {split: [w...]},
    "n_active_windows", "max_act", "n_active_tokens"}} by the documented rule; "split": the
    split of every window."""
    codes = dense_codes(enc, shards)
    win = window_max(codes, cfg.window)
    n_windows, m = win.shape
    split = split_of_windows(shards, cfg, n_windows)
    out = {}
    for l in range(m):
        col = win[:, l].tolist()
        n = sum(v > 0 for v in col)
        top, quant, random = [], {}, {}
        for s, name in enumerate(("train", "test")):
            mine = [w for w in range(n_windows) if split[w] == name]
            active = sorted((w for w in mine if col[w] > 0), key=lambda w: (-col[w], w))
            n_s = len(active)
            tops = active[:cfg.n_top] if name == "train" else []
            top += tops
            bins: dict[int, list[int]] = {}
            rank = {w: r for r, w in enumerate(active)}
            for r, w in enumerate(active):
                if w not in tops:
                    bins.setdefault((n_s - 1 - r) * cfg.n_quantiles // n_s, []).append(w)
            quota = cfg.train_per_quantile if name == "train" else cfg.per_quantile
            for q, ws in bins.items():
                ws = sorted(ws, key=lambda w: (_h(cfg.seed, l, w), rank[w]))
                if ws[:quota]:
                    quant[(q, name)] = set(ws[:quota])
            cap = (cfg.n_random + 1) // 2 if name == "train" else cfg.n_random // 2
            n_cand = min(max(math.ceil(3 * cap * n_windows / max(n_windows - n, 1)), 3 * cap),
                         48 * cap)
            cands = [mine[_h(cfg.seed + 1, 2 * l + s, j) % len(mine)] for j in range(n_cand)] \
                if mine else []
            kept: list[int] = []
            for w in cands:
                if col[w] == 0 and w not in kept:
                    kept.append(w)
            random[name] = kept[:cap]
        tok = codes[..., l]
        out[l] = {"top": top, "quantile": quant, "random": random,
                  "n_active_windows": n, "max_act": float(tok.max()),
                  "n_active_tokens": int((tok > 0).sum()), "values": col}
    return {"latents": out, "codes": codes, "win": win, "split": split}
