"""A naive, obviously-correct miner for equivalence tests: dense codes of every token, dense window
maxima, then per latent plain Python sorting, following the rule written in interp/mine_select.py."""
from __future__ import annotations

import math

import torch

from interp.mine_select import uniform_hash


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


def reference(enc, shards, cfg) -> dict:
    """{latent: {"top": [w...], "quantile": {(q, split): {w...}}, "random": [w...],
    "n_active_windows", "max_act", "n_active_tokens"}} by the documented rule."""
    codes = dense_codes(enc, shards)
    win = window_max(codes, cfg.window)
    n_windows, m = win.shape
    out = {}
    for l in range(m):
        col = win[:, l].tolist()
        active = sorted((w for w in range(n_windows) if col[w] > 0), key=lambda w: (-col[w], w))
        n = len(active)
        top = active[:cfg.n_top]
        bins: dict[int, list[int]] = {}
        rank = {w: r for r, w in enumerate(active)}
        for r, w in enumerate(active):
            if r >= cfg.n_top:
                bins.setdefault((n - 1 - r) * cfg.n_quantiles // n, []).append(w)
        quant = {}
        for q, ws in bins.items():
            ws = sorted(ws, key=lambda w: (_h(cfg.seed, l, w), rank[w]))
            quant[(q, "test")] = set(ws[:cfg.per_quantile])
            extra = ws[cfg.per_quantile:cfg.per_quantile + cfg.train_per_quantile]
            if extra:
                quant[(q, "train")] = set(extra)
        base = 3 * cfg.n_random
        n_cand = min(max(math.ceil(base * n_windows / max(n_windows - n, 1)), base), 16 * base)
        cands = [_h(cfg.seed + 1, l, j) % n_windows for j in range(n_cand)]
        random, seen = [], set()
        for w in cands:
            if col[w] == 0 and w not in seen:
                seen.add(w)
                random.append(w)
        tok = codes[..., l]
        out[l] = {"top": top, "quantile": quant, "random": random[:cfg.n_random],
                  "n_active_windows": n, "max_act": float(tok.max()),
                  "n_active_tokens": int((tok > 0).sum()), "values": col}
    return {"latents": out, "codes": codes, "win": win}
