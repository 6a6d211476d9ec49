"""Exact per-latent selection of example windows from the spilled codes of one latent range.

All of it is sorting and scatter/segment operations on the device; nothing is a dense
windows x latents buffer. Every window has the split of its documents (interp/mine/doc_split.py):
train, test, or none when it spans a train and a test document (never kept, in any kind). The
rule, for each latent l and split s, with the latent's n_s activating windows of that split
(window maximum > 0) ordered by (maximum descending, window id ascending) as ranks r = 0..n_s-1:
  top       train windows with r < n_top                                           split train
  quantile  bin q = floor((n_s - 1 - r) * n_quantiles / n_s)  (equal-count bins over the split's
            windows, q = n_quantiles - 1 the strongest); within a (bin, split), the windows that
            are not top ordered by priority = uniform_hash(seed, l, window) (ties by rank r): the
            first per_quantile (test) or train_per_quantile (train) are kept
  random    c_s = split_caps(n_random)[s] per split; candidates j = 0..k-1 at window
            W_s[uniform_hash(seed + 1, 2l + s, j) mod |W_s|], W_s the split's windows ascending,
            k = clamp(ceil(3 * c_s * n_windows / (n_windows - n_active_windows)), 3 * c_s,
            48 * c_s): more candidates for dense latents, whose random windows are often active
  hard      candidates from interp.mine.negatives, ranked best first, in the split of their window
A negative candidate is kept when the latent is zero on the whole window, and its (latent, window)
was not already kept, hard before random (a window has one split, so this also deduplicates
across splits); per (kind, split) the first split_caps(n_random or n_hard)[s] by rank survive,
re-ranked densely. Nothing depends on batch sizes, devices or how latents are split into ranges.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from interp.mine.codes import CodeSpill

_MASK = 0xFFFFFFFF
TOP, QUANTILE, RANDOM, HARD, IW = 0, 1, 2, 3, 4
KINDS = ("top", "quantile", "random", "hard", "iw")  # iw: importance-weighted (interp/mine/iw.py)


def _mix32(x: torch.Tensor) -> torch.Tensor:
    # A 32-bit integer hash (Mueller's); int64 arithmetic with masks, so no overflow anywhere.
    x = x & _MASK
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK
    return (x >> 16) ^ x


def uniform_hash(seed: int, latent: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """A seeded pseudo-random integer in [0, 2^32) per (latent, j), the same on every device and
    whatever else is computed alongside it (unlike a generator's stream)."""
    s = _mix32(torch.tensor(seed & _MASK, device=latent.device))
    return _mix32(_mix32(s ^ latent) + (j & _MASK))


def lexsort(*keys: torch.Tensor) -> torch.Tensor:
    """Permutation sorting rows by keys[0], then keys[1], ... (all ascending)."""
    order = torch.arange(len(keys[0]), device=keys[0].device)
    for k in reversed(keys):
        order = order[torch.argsort(k[order], stable=True)]
    return order


def group_rank(sorted_group: torch.Tensor) -> torch.Tensor:
    """0-based position of each row within its run of equal values (rows sorted by group)."""
    n = len(sorted_group)
    pos = torch.arange(n, device=sorted_group.device)
    start = torch.ones(n, dtype=torch.bool, device=sorted_group.device)
    start[1:] = sorted_group[1:] != sorted_group[:-1]
    return pos - torch.cummax(torch.where(start, pos, torch.zeros_like(pos)), 0).values


@dataclass
class Rows:
    """Compact kept-example rows (~26 bytes each); token activations are read at the end."""

    latent: torch.Tensor    # int64
    window: torch.Tensor    # int64, global window id = seq_id * windows_per_seq + index
    value: torch.Tensor     # float32 window maximum (0 for negatives)
    kind: torch.Tensor      # int8, index into KINDS
    quantile: torch.Tensor  # int8, -1 outside kind quantile
    split: torch.Tensor     # int8, 0 train, 1 test
    rank: torch.Tensor      # int32

    def take(self, idx: torch.Tensor) -> Rows:
        return Rows(*(getattr(self, f.name)[idx] for f in fields(self)))

    def to(self, device) -> Rows:
        return Rows(*(getattr(self, f.name).to(device) for f in fields(self)))

    @staticmethod
    def cat(parts: list[Rows]) -> Rows:
        return Rows(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(Rows)))

    @staticmethod
    def make(latent, window, value, kind, quantile, split, rank) -> Rows:
        return Rows(latent.long(), window.long(), value.float(), kind.to(torch.int8),
                    quantile.to(torch.int8), split.to(torch.int8), rank.int())

    def __len__(self) -> int:
        return len(self.latent)


def window_maxima(spill: CodeSpill, lo: int, hi: int, window: int, max_act: torch.Tensor,
                  hist_bins: int, max_triples: int, device) -> tuple[torch.Tensor, ...]:
    """Window maxima of latents [lo, hi) as (window, latent, value), each latent's in window order,
    and the token-activation histogram [hi - lo, hist_bins] over (0, max_act] of each latent."""
    r = hi - lo
    hist = torch.zeros(r * hist_bins, dtype=torch.long, device=device)
    keys, vals = [], []
    for tok, lat, act in spill.chunks(lo, hi, max_triples, device):
        sel = (lat >= lo) & (lat < hi)
        tok, lat, act = tok[sel].long(), lat[sel].long() - lo, act[sel]
        hist += torch.bincount(lat * hist_bins + fine_bin(act, max_act[lat + lo], hist_bins),
                               minlength=r * hist_bins)
        # Chunks hold whole sequences, so a window's tokens are all in this chunk; a latent's
        # chunks come in token order, so its windows come out ascending.
        uniq, inv = torch.unique(tok // window * r + lat, return_inverse=True)
        keys.append(uniq)
        vals.append(torch.zeros(len(uniq), device=device).scatter_reduce_(0, inv, act, "amax"))
    key = torch.cat(keys) if keys else torch.empty(0, dtype=torch.long, device=device)
    val = torch.cat(vals) if vals else torch.empty(0, device=device)
    return key // r, key % r + lo, val, hist.view(r, hist_bins)


def fine_bin(value: torch.Tensor, max_act: torch.Tensor, bins: int) -> torch.Tensor:
    """Bin of each value within (0, max_act] of its latent (the max lands in the last bin)."""
    return (value / max_act.clamp_min(1e-12) * bins).ceil().clamp(1, bins).long() - 1


def _desc_value_key(val: torch.Tensor) -> torch.Tensor:
    """31-bit integers that sort positive float32 values descending (their bit patterns are
    monotone in the value), so one integer sort replaces a sort per key."""
    return 0x7FFFFFFF - val.float().view(torch.int32).long()


def split_caps(n: int) -> tuple[int, int]:
    """(train, test) share of n negatives per latent: ceil and floor of half."""
    return n - n // 2, n // 2


def select_positives(win: torch.Tensor, lat: torch.Tensor, val: torch.Tensor, lo: int, hi: int,
                     cfg, wsplit: torch.Tensor) -> tuple[Rows, torch.Tensor]:
    """Top and quantile rows of latents [lo, hi) by the module's rule, and n_active_windows.

    win, lat, val: window maxima, each latent's in ascending window order (window_maxima's);
    wsplit: [n_windows] int8 split of every window (interp.mine.doc_split.window_splits).
    """
    n_win = torch.bincount(lat - lo, minlength=hi - lo)
    split = wsplit[win].long()
    ok = (split >= 0).nonzero().squeeze(1)
    win, lat, val, split = win[ok], lat[ok], val[ok], split[ok]
    g = (lat - lo) * 2 + split  # (latent, split)
    # One stable sort: (latent, split), then maximum descending; ties keep window order.
    order = torch.argsort((g << 31) | _desc_value_key(val), stable=True)
    win, lat, val, split, g = win[order], lat[order], val[order], split[order], g[order]
    r = group_rank(g)
    n = torch.bincount(g, minlength=2 * (hi - lo))[g]
    top = (split == 0) & (r < cfg.n_top)
    q = (n - 1 - r) * cfg.n_quantiles // n
    # Quantile samples: the non-top windows of each (latent, split, bin) by seeded hash priority;
    # the stable sort leaves equal priorities in rank order.
    e = (~top).nonzero().squeeze(1)
    group = g[e] * cfg.n_quantiles + q[e]
    e = e[torch.argsort((group << 32) | uniform_hash(cfg.seed, lat[e], win[e]), stable=True)]
    s = group_rank(g[e] * cfg.n_quantiles + q[e])
    quota = torch.tensor([cfg.train_per_quantile, cfg.per_quantile], device=s.device)
    e = e[s < quota[split[e]]]
    # A quantile row's rank: within (latent, split, bin) by maximum descending, window ascending,
    # which is position order in the sorted rows.
    e = torch.sort(e).values
    group = g[e] * cfg.n_quantiles + q[e]
    o = torch.argsort(group, stable=True)
    e, group = e[o], group[o]
    t = top.nonzero().squeeze(1)
    rows = Rows.make(torch.cat([lat[t], lat[e]]), torch.cat([win[t], win[e]]),
                     torch.cat([val[t], val[e]]),
                     torch.cat([torch.full_like(t, TOP), torch.full_like(e, QUANTILE)]),
                     torch.cat([torch.full_like(t, -1), q[e]]),
                     torch.cat([torch.zeros_like(t), split[e]]),
                     torch.cat([r[t], group_rank(group)]))
    return rows, n_win


def random_candidates(lo: int, hi: int, n_windows: int, n_active_windows: torch.Tensor, cfg,
                      split_windows: tuple[torch.Tensor, torch.Tensor], device) -> Rows:
    """Candidate windows for random negatives of latents [lo, hi), by the module's hash rule.

    n_active_windows [hi - lo]: a latent active on a fraction f of the windows gets
    3 * c_s / (1 - f) candidates per split (at most 16x that), so dense latents still find theirs;
    split_windows: the (train, test) window ids, ascending.
    """
    free = (n_windows - n_active_windows.to(device)).clamp_min(1).double()
    parts = []
    for s, cap in enumerate(split_caps(cfg.n_random)):
        pool = split_windows[s].to(device)
        if cap == 0 or len(pool) == 0:
            continue
        base = 3 * cap
        count = (base * n_windows / free).ceil().long().clamp(base, 16 * base)
        lat = torch.arange(lo, hi, device=device).repeat_interleave(count)
        j = group_rank(lat)
        win = pool[uniform_hash(cfg.seed + 1, lat * 2 + s, j) % len(pool)]
        z = torch.zeros_like(lat)
        parts.append(Rows.make(lat, win, z.float(), z + RANDOM, z - 1, z + s, j))
    if not parts:
        z = torch.zeros(0, dtype=torch.long, device=device)
        return Rows.make(z, z, z.float(), z, z, z, z)
    return Rows.cat(parts)


def gather_acts(spill: CodeSpill, lo: int, hi: int, window: int, pos: Rows, neg: Rows,
                max_triples: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token activations [len(pos), window] of the positive rows, and whether each negative
    candidate's latent is active anywhere in its window ([len(neg)] bool); latents in [lo, hi)."""
    r = hi - lo
    pos_key = pos.window * r + (pos.latent - lo)
    pos_sorted, pos_order = torch.sort(pos_key)
    neg_key, neg_inv = torch.unique(neg.window * r + (neg.latent - lo), return_inverse=True)
    acts = torch.zeros(len(pos), window, device=device)
    hit = torch.zeros(len(neg_key), dtype=torch.bool, device=device)
    for tok, lat, act in spill.chunks(lo, hi, max_triples, device):
        sel = (lat >= lo) & (lat < hi)
        tok, act = tok[sel].long(), act[sel]
        key = tok // window * r + (lat[sel].long() - lo)
        i, found = _lookup(pos_sorted, key)
        acts[pos_order[i[found]], tok[found] % window] = act[found]
        i, found = _lookup(neg_key, key)
        hit[i[found]] = True
    return acts, hit[neg_inv]


def _lookup(sorted_keys: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of each key in sorted_keys and whether it is there."""
    if len(sorted_keys) == 0:
        return torch.zeros_like(key), torch.zeros(len(key), dtype=torch.bool, device=key.device)
    i = torch.searchsorted(sorted_keys, key).clamp_max(len(sorted_keys) - 1)
    return i, sorted_keys[i] == key


def choose_negatives(cand: Rows, active: torch.Tensor, caps: dict[int, int]) -> Rows:
    """Per latent, kind and split the first split_caps(caps[kind]) candidates (by rank) that are
    zero on their window, in a split, and not already kept for this latent by a hard candidate or
    a better-ranked one; re-ranked densely within (latent, kind, split)."""
    ok = ~active & (cand.split >= 0) & \
        torch.isin(cand.kind.long(), torch.tensor(list(caps), device=active.device))
    cand = cand.take(ok.nonzero().squeeze(1))
    # Hard before random, then by rank: the first occurrence of a (latent, window) wins.
    order = lexsort(cand.latent, cand.window, -cand.kind.long(), cand.rank)
    cand = cand.take(order)
    first = torch.ones(len(cand), dtype=torch.bool, device=cand.latent.device)
    first[1:] = (cand.latent[1:] != cand.latent[:-1]) | (cand.window[1:] != cand.window[:-1])
    cand = cand.take(first.nonzero().squeeze(1))
    cand = cand.take(lexsort(cand.latent, cand.kind.long(), cand.split.long(), cand.rank))
    cell = cand.kind.long() * 2 + cand.split.long()
    rank = group_rank(cand.latent * 8 + cell)
    cap = torch.zeros(8, dtype=torch.long, device=rank.device)
    for kind, c in caps.items():
        cap[2 * kind], cap[2 * kind + 1] = split_caps(c)
    keep = rank < cap[cell]
    cand, rank = cand.take(keep.nonzero().squeeze(1)), rank[keep]
    cand.rank = rank.int()
    return cand
