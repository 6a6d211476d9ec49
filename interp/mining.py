"""Mine stage: per-latent example windows and statistics, streamed over the activation shards.

Windows are fixed, non-overlapping spans of `window` tokens after each sequence's BOS; a window's
activation for a latent is the max over its tokens. For every latent we keep
  top       the n_top highest windows                              (split "train": shown to explainers)
  quantile  per_quantile random windows from each of n_quantiles   (split "test": held out for scoring)
            equal-count bins of the latent's activating windows, excluding top windows;
            plus train_per_quantile more per bin in split "train" (for quantile training sets)
  random    n_random windows where the latent is zero              (half "train", half "test")
  hard      n_hard hard negatives (interp.negatives), zero as well  (half "train", half "test")
Memory is bounded by latents x kept examples, never by tokens: candidates are merged batch by batch
with `keep_lowest`, a sort-based per-group bounded selection (top-k = lowest -activation, uniform
sampling = lowest random priority).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from interp.artifacts import ArtifactRef, ArtifactStore, artifact_key, write_parquet_atomic
from interp.negatives import hard_candidates
from interp.shards import ActivationShards

log = logging.getLogger(__name__)

FINE_BINS = 128  # resolution of the window-level histogram that defines the quantile edges


def keep_lowest(group: torch.Tensor, priority: torch.Tensor, cap: int) -> torch.Tensor:
    """Indices of the `cap` lowest-priority rows of every group (ties broken by position).

    group, priority: [E]. Returns a 1-D index tensor into the rows, grouped by ascending group.
    """
    if group.numel() == 0:
        return torch.empty(0, dtype=torch.long)
    order = torch.argsort(priority, stable=True)
    order = order[torch.argsort(group[order], stable=True)]
    g = group[order]
    pos = torch.arange(len(g))
    is_start = torch.ones(len(g), dtype=torch.bool)
    is_start[1:] = g[1:] != g[:-1]
    first = torch.cummax(torch.where(is_start, pos, torch.zeros_like(pos)), 0).values
    return order[(pos - first) < cap]


@dataclass
class Events:
    """Sparse (latent, window, value) triples."""

    latent: torch.Tensor
    window: torch.Tensor
    value: torch.Tensor

    @staticmethod
    def empty() -> Events:
        return Events(torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long),
                      torch.empty(0))

    def cat(self, other: Events) -> Events:
        return Events(torch.cat([self.latent, other.latent]), torch.cat([self.window, other.window]),
                      torch.cat([self.value, other.value]))

    def take(self, idx: torch.Tensor) -> Events:
        return Events(self.latent[idx], self.window[idx], self.value[idx])


@dataclass
class EncodedBatch:
    """SAE codes of a batch of sequences (BOS dropped)."""

    first_seq: int                # global id of the batch's first sequence
    top_acts: torch.Tensor        # [S, T-1, k]
    top_idx: torch.Tensor         # [S, T-1, k]
    windows: Events               # window-level maxima, window ids global


def iter_encoded(sae, shards: ActivationShards, window: int, batch_size: int,
                 device: str) -> Iterator[EncodedBatch]:
    """Encode every sequence once, yielding sparse codes and window-level maxima."""
    m = sae.num_latents
    per_seq = (shards.seq_len - 1) // window
    for seq_ids, acts, _tokens in shards.iter_sequences():
        for b in range(0, len(seq_ids), batch_size):
            x = acts[b:b + batch_size, 1:]
            s, t, d = x.shape
            with torch.inference_mode():
                vals, idx = sae.encode(x.reshape(-1, d).to(device))
            vals, idx = vals.float().cpu().view(s, t, -1), idx.cpu().view(s, t, -1)
            tok_win = (torch.arange(s * t) // window).view(s, t, 1).expand_as(idx)
            dense = torch.zeros(s * per_seq * m)
            dense.scatter_reduce_(0, (tok_win * m + idx).flatten(), vals.flatten().clamp_min(0),
                                  reduce="amax")
            nz = dense.nonzero().squeeze(1)
            first = int(seq_ids[b])
            ev = Events(nz % m, nz // m + first * per_seq, dense[nz])
            yield EncodedBatch(first, vals, idx, ev)


def quantile_lookup(fine_hist: torch.Tensor, n_quantiles: int) -> torch.Tensor:
    """[m, FINE_BINS] -> quantile index of each fine bin, giving equal-count bins per latent."""
    cdf = fine_hist.cumsum(1).float()
    total = cdf[:, -1:].clamp_min(1)
    # A fine bin belongs to the quantile its cumulative mass starts in.
    start_mass = (cdf - fine_hist) / total
    return (start_mass * n_quantiles).floor().clamp(0, n_quantiles - 1).long()


def fine_bin(value: torch.Tensor, max_act: torch.Tensor, bins: int) -> torch.Tensor:
    """Bin of each value within (0, max_act] of its latent (max lands in the last bin)."""
    return (value / max_act.clamp_min(1e-12) * bins).ceil().clamp(1, bins).long() - 1


def gather_token_acts(batch: EncodedBatch, seq_local: torch.Tensor, start: torch.Tensor,
                      latent: torch.Tensor, window: int) -> torch.Tensor:
    """Per-token activations [E, window] of `latent` in windows starting at `start` (BOS-relative 1)."""
    out = []
    pos = torch.arange(window)
    for c in range(0, len(latent), 4096):
        sl, st, lt = seq_local[c:c + 4096], start[c:c + 4096], latent[c:c + 4096]
        tok = (st - 1).unsqueeze(1) + pos                          # [e, W] positions without BOS
        idx = batch.top_idx[sl.unsqueeze(1), tok]                  # [e, W, k]
        vals = batch.top_acts[sl.unsqueeze(1), tok]
        out.append((vals * (idx == lt.view(-1, 1, 1))).sum(-1).clamp_min(0))
    return torch.cat(out) if out else torch.empty(0, window)


# ----------------------------------------------------------------------------- the stage


def _stats_and_top(sae, shards, cfg, device):
    m = sae.num_latents
    count_tok = torch.zeros(m, dtype=torch.long)
    sum_act = torch.zeros(m, dtype=torch.float64)
    n_win = torch.zeros(m, dtype=torch.long)
    max_act = torch.zeros(m)
    top = Events.empty()
    for batch in iter_encoded(sae, shards, cfg.window, cfg.batch_size, device):
        live = batch.top_acts > 0
        count_tok += torch.bincount(batch.top_idx[live], minlength=m)
        sum_act += torch.bincount(batch.top_idx[live], weights=batch.top_acts[live].double(), minlength=m)
        ev = batch.windows
        n_win += torch.bincount(ev.latent, minlength=m)
        max_act.scatter_reduce_(0, ev.latent, ev.value, reduce="amax")
        top = top.cat(ev)
        top = top.take(keep_lowest(top.latent, -top.value, cfg.n_top))
    return count_tok, sum_act, n_win, max_act, top


def _histograms(sae, shards, cfg, device, max_act):
    m = sae.num_latents
    fine = torch.zeros(m * FINE_BINS, dtype=torch.long)
    tok_hist = torch.zeros(m * cfg.hist_bins, dtype=torch.long)
    for batch in iter_encoded(sae, shards, cfg.window, cfg.batch_size, device):
        ev = batch.windows
        fine += torch.bincount(ev.latent * FINE_BINS + fine_bin(ev.value, max_act[ev.latent], FINE_BINS),
                               minlength=m * FINE_BINS)
        live = batch.top_acts > 0
        lat, val = batch.top_idx[live], batch.top_acts[live]
        tok_hist += torch.bincount(lat * cfg.hist_bins + fine_bin(val, max_act[lat], cfg.hist_bins),
                                   minlength=m * cfg.hist_bins)
    return fine.view(m, FINE_BINS), tok_hist.view(m, cfg.hist_bins)


def _quantile_samples(sae, shards, cfg, device, max_act, lookup, top, n_windows):
    gen = torch.Generator().manual_seed(cfg.seed)
    top_keys = top.latent * n_windows + top.window
    cap = cfg.per_quantile + cfg.train_per_quantile
    kept, kept_q, kept_prio = Events.empty(), torch.empty(0, dtype=torch.long), torch.empty(0)
    for batch in iter_encoded(sae, shards, cfg.window, cfg.batch_size, device):
        ev = batch.windows
        fresh = ~torch.isin(ev.latent * n_windows + ev.window, top_keys)
        ev = ev.take(fresh.nonzero().squeeze(1))
        q = lookup[ev.latent, fine_bin(ev.value, max_act[ev.latent], FINE_BINS)]
        prio = torch.rand(len(q), generator=gen)
        kept, kept_q, kept_prio = kept.cat(ev), torch.cat([kept_q, q]), torch.cat([kept_prio, prio])
        keep = keep_lowest(kept.latent * cfg.n_quantiles + kept_q, kept_prio, cap)
        kept, kept_q, kept_prio = kept.take(keep), kept_q[keep], kept_prio[keep]
    # The per_quantile lowest priorities are the held-out set whatever train_per_quantile is
    # (they are the same windows a smaller cap keeps), so training sets never move the test set.
    test = _rank_within(kept.latent * cfg.n_quantiles + kept_q, kept_prio) < cfg.per_quantile
    return kept, kept_q, test


def _plan_rows(m: int, top: Events, quant: Events, quant_q: torch.Tensor, quant_test: torch.Tensor,
               n_windows: int, cfg, n_random_candidates: int) -> dict[str, torch.Tensor]:
    """All candidate example rows (negatives not yet validated), before activations are read."""
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    neg_lat = torch.arange(m).repeat_interleave(n_random_candidates)
    neg_win = torch.randint(0, n_windows, (len(neg_lat),), generator=gen)
    rank_top = _rank_within(top.latent, -top.value)
    rank_q = _rank_within((quant.latent * cfg.n_quantiles + quant_q) * 2 + quant_test.long(),
                          -quant.value)
    kind = torch.cat([torch.zeros(len(top.latent)), torch.ones(len(quant.latent)),
                      torch.full((len(neg_lat),), 2.0)]).long()
    return {"latent": torch.cat([top.latent, quant.latent, neg_lat]),
            "window": torch.cat([top.window, quant.window, neg_win]),
            "kind": kind,
            "rank": torch.cat([rank_top, rank_q, torch.arange(len(neg_lat)) % n_random_candidates]),
            "quantile": torch.cat([torch.full_like(top.latent, -1), quant_q, torch.full_like(neg_lat, -1)]),
            # 0 train, 1 test; negatives (-1) are assigned after validation.
            "split": torch.cat([torch.zeros_like(top.latent), quant_test.long(),
                                torch.full_like(neg_lat, -1)])}


def _append_hard(rows: dict[str, torch.Tensor], latent: torch.Tensor, window: torch.Tensor,
                 rank: torch.Tensor) -> dict[str, torch.Tensor]:
    """Hard-negative candidates as rows of kind 3, ranked best first within their latent."""
    new = {"latent": latent, "window": window, "kind": torch.full_like(latent, 3), "rank": rank,
           "quantile": torch.full_like(latent, -1), "split": torch.full_like(latent, -1)}
    return {k: torch.cat([rows[k], new[k]]) for k in rows}


def _rank_within(group: torch.Tensor, priority: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row within its group by ascending priority."""
    order = keep_lowest(group, priority, cap=len(group) + 1)
    g = group[order]
    pos = torch.arange(len(g))
    is_start = torch.ones(len(g), dtype=torch.bool)
    is_start[1:] = g[1:] != g[:-1]
    first = torch.cummax(torch.where(is_start, pos, torch.zeros_like(pos)), 0).values
    rank = torch.empty_like(group)
    rank[order] = pos - first
    return rank


def _read_acts(sae, shards, cfg, device, rows: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-token activations [E, window] of every planned row (one more pass over the shards)."""
    per_seq = (shards.seq_len - 1) // cfg.window
    seq = rows["window"] // per_seq
    start = 1 + (rows["window"] % per_seq) * cfg.window
    acts = torch.zeros(len(seq), cfg.window)
    for batch in iter_encoded(sae, shards, cfg.window, cfg.batch_size, device):
        n = batch.top_idx.shape[0]
        sel = ((seq >= batch.first_seq) & (seq < batch.first_seq + n)).nonzero().squeeze(1)
        if len(sel):
            acts[sel] = gather_token_acts(batch, seq[sel] - batch.first_seq, start[sel],
                                          rows["latent"][sel], cfg.window)
    return acts


def _select_negatives(rows: dict[str, torch.Tensor], acts: torch.Tensor, n_windows: int,
                      caps: dict[int, int]) -> torch.Tensor:
    """Boolean mask of the rows to keep: all positives, and per latent and negative kind the
    first caps[kind] distinct candidate windows (by rank) where the latent is truly zero."""
    mask = rows["kind"] < 2
    for kind, cap in caps.items():
        neg = rows["kind"] == kind
        valid = neg & (acts.amax(1) == 0)
        key = rows["latent"] * n_windows + rows["window"]
        idx = valid.nonzero().squeeze(1)
        idx = idx[torch.argsort(rows["rank"][idx], stable=True)]  # the best-ranked duplicate wins
        _, first = _first_occurrence(key[idx])
        idx = idx[first]
        mask[idx[keep_lowest(rows["latent"][idx], rows["rank"][idx].float(), cap)]] = True
    return mask


def _first_occurrence(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    uniq, inverse = torch.unique(key, return_inverse=True)
    first = torch.full((len(uniq),), len(key), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(key)), reduce="amin")
    return uniq, first


KINDS = ("top", "quantile", "random", "hard")


def _examples_table(rows, acts, mask, per_seq: int, window: int):
    r = {k: v[mask] for k, v in rows.items()}
    a = acts[mask]
    # Re-rank negatives densely after validation; alternate them between train and test.
    neg = r["kind"] >= 2
    r["rank"][neg] = _rank_within(r["latent"][neg] * 4 + r["kind"][neg], r["rank"][neg].float())
    split = torch.where(neg, r["rank"] % 2, r["split"])
    order = torch.from_numpy(np.lexsort((r["rank"].numpy(), r["quantile"].numpy(),
                                         r["kind"].numpy(), r["latent"].numpy())))
    r = {k: v[order] for k, v in r.items()}
    a, split = a[order], split[order]
    return pa.table({
        "latent": pa.array(r["latent"].int().numpy()),
        "kind": pa.array([KINDS[i] for i in r["kind"].tolist()]),
        "split": pa.array(["train" if s == 0 else "test" for s in split.tolist()]),
        "rank": pa.array(r["rank"].int().numpy()),
        "quantile": pa.array(r["quantile"].to(torch.int16).numpy()),
        "seq_id": pa.array((r["window"] // per_seq).int().numpy()),
        "start": pa.array((1 + (r["window"] % per_seq) * window).to(torch.int16).numpy()),
        "max_act": pa.array(a.amax(1).numpy()),
        "acts": pa.array(list(a.numpy()), pa.list_(pa.float32())),
    })


def _latents_table(count_tok, sum_act, n_win, max_act, tok_hist, n_tokens: int):
    return pa.table({
        "latent": pa.array(torch.arange(len(count_tok)).int().numpy()),
        "n_active_tokens": pa.array(count_tok.numpy()),
        "frequency": pa.array((count_tok.double() / n_tokens).numpy()),
        "n_active_windows": pa.array(n_win.numpy()),
        "max_act": pa.array(max_act.numpy()),
        "mean_act": pa.array((sum_act / count_tok.clamp_min(1)).float().numpy()),
        "dead": pa.array((count_tok == 0).numpy()),
        "hist": pa.array(list(tok_hist.numpy()), pa.list_(pa.int64())),
    })


def mine_into(sae, shards: ActivationShards, cfg, out: Path, device: str = "cpu",
              embed=None) -> dict:
    """Run all mining passes and write examples.parquet and latents.parquet into `out`.

    `embed` (texts -> embeddings) replaces MiniLM for mine.negatives 'similar' (tests).
    """
    if (shards.seq_len - 1) % cfg.window:
        raise ValueError(f"mine.window {cfg.window} must divide seq_len-1 = {shards.seq_len - 1}")
    m, per_seq = sae.num_latents, (shards.seq_len - 1) // cfg.window
    n_windows = shards.n_sequences * per_seq
    count_tok, sum_act, n_win, max_act, top = _stats_and_top(sae, shards, cfg, device)
    fine, tok_hist = _histograms(sae, shards, cfg, device, max_act)
    lookup = quantile_lookup(fine, cfg.n_quantiles)
    quant, quant_q, quant_test = _quantile_samples(sae, shards, cfg, device, max_act, lookup, top,
                                                   n_windows)
    rows = _plan_rows(m, top, quant, quant_q, quant_test, n_windows, cfg,
                      n_random_candidates=3 * cfg.n_random)
    caps = {2: cfg.n_random}
    if cfg.negatives != "random":
        rows = _append_hard(rows, *hard_candidates(sae, shards, cfg, top, quant, n_windows, embed))
        caps[3] = cfg.n_hard
    acts = _read_acts(sae, shards, cfg, device, rows)
    mask = _select_negatives(rows, acts, n_windows, caps)
    write_parquet_atomic(_examples_table(rows, acts, mask, per_seq, cfg.window), out / "examples.parquet")
    write_parquet_atomic(_latents_table(count_tok, sum_act, n_win, max_act, tok_hist, shards.n_tokens),
                         out / "latents.parquet")
    kept = rows["kind"][mask]
    return {"n_latents": m, "n_examples": int(mask.sum()), "dead": int((count_tok == 0).sum()),
            "n_windows": n_windows, "window": cfg.window,
            "n_by_kind": {KINDS[k]: int((kept == k).sum()) for k in range(len(KINDS))}}


STAGE = "mine"
VERSION = "1"


def mine_key(cfg, collect_key: str, sae_key: str) -> str:
    settings = cfg.mine.model_dump(mode="json")
    # Fields that cannot change the output stay out of the key (so adding them kept old keys).
    if cfg.mine.negatives == "random":
        for f in ("negatives", "n_hard", "n_neighbours", "embed_pool"):
            settings.pop(f)
    elif cfg.mine.negatives == "neighbours":
        settings.pop("embed_pool")
    if not cfg.mine.train_per_quantile:
        settings.pop("train_per_quantile")
    return artifact_key(STAGE, VERSION, settings, {"collect": collect_key, "sae": sae_key})


def mine(cfg, collect_ref: ArtifactRef, sae_ref: ArtifactRef) -> ArtifactRef:
    """Mine stage: examples.parquet + latents.parquet for every latent of the SAE."""
    from interp.sae import load_sae

    def fill(tmp: Path) -> dict:
        shards = ActivationShards(collect_ref.path)
        sae = load_sae(sae_ref.path, device=cfg.model.device)
        return {"collect": collect_ref.key, "sae": sae_ref.key,
                "config": cfg.mine.model_dump(mode="json"),
                **mine_into(sae, shards, cfg.mine, tmp, device=cfg.model.device)}
    return ArtifactStore(cfg.home).build_once(
        STAGE, mine_key(cfg, collect_ref.key, sae_ref.key), fill,
        inputs={"collect": collect_ref.key, "train": sae_ref.key})
