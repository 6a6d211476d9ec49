"""Mine stage: per-latent example windows and statistics from one encoder pass over the shards
(stored, or recomputed by the subject model as they are read: collect.store 'tokens').

Windows are fixed, non-overlapping spans of `window` tokens after each sequence's BOS; a window's
activation for a latent is the max over its tokens. Train and test are split by document
(interp/mine/doc_split.py). Per latent we keep top windows (train), quantile samples (test, plus
train_per_quantile in train), random and hard negatives (both splits); the exact rule is in
interp/mine/select.py.

Passes: (1) encode every token once (interp/mine/codes.py), spilling its sparse codes to a temp
directory beside the output; (2) per latent range, window maxima from the spill -> exact top-k and
quantile selection; (3) per latent range, the kept windows' token activations and the negatives'
validation from the spill, written as one row group. Ranges are sized so the working set fits
mine.memory_budget_mb, and the output is the same whatever the ranges.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from interp.artifacts import replaced_atomically, write_parquet_atomic
from interp.collect.documents import DOCUMENTS, backfill_documents, read_doc_starts
from interp.collect.shards import ActivationShards
from interp.collect.stream import StreamedShards, open_activations
from interp.contract import Stage, StageContext, Table
from interp.mine.codes import (
    CodeSpill,
    encode_chunk_bytes,
    encode_chunk_sequences,
    encode_pass,
    iter_encoded,
    release_memory,
    rss_bytes,
)
from interp.mine.doc_split import check_split, held_out_documents, window_splits
from interp.mine.iw import select_extra, wants_extra
from interp.mine.negatives import hard_candidates
from interp.mine.select import (
    HARD,
    KINDS,
    QUANTILE,
    RANDOM,
    TOP,
    Rows,
    choose_negatives,
    gather_acts,
    random_candidates,
    select_positives,
    window_maxima,
)

log = logging.getLogger(__name__)

DEFAULT_WORKING_MB = 512   # working set when mine.memory_budget_mb is None
MIN_WORKING_MB = 32
_TRIPLE_BYTES = 96         # a spilled triple while a chunk is processed (long copies, sort, keys)
_PAIR_BYTES = 200          # a window maximum during selection (measured 185: keys, values,
                           # sorted copies, ranks, hash temporaries)
_ROW_BYTES = 40            # a compact kept row (Rows) and its sort temporaries

__all__ = ["STAGE", "mine_into", "iter_encoded", "KINDS"]


@dataclass(frozen=True)
class Events:
    """Sparse (latent, window, value) triples: the shape interp.mine.negatives reads."""

    latent: torch.Tensor
    window: torch.Tensor
    value: torch.Tensor


@dataclass(frozen=True)
class MemoryPlan:
    """Sizes derived from the budget: encoder chunk, spill read chunk, latent-range working set,
    and with a budget the RSS above which the encode pass hands freed heap back to the OS."""

    encode_seqs: int
    read_triples: int
    range_bytes: int
    trim_above: int | None = None


def plan_memory(m: int, seq_len: int, cfg, working_bytes: int | None = None,
                shard_bytes: int = 0) -> MemoryPlan:
    """Split the working memory (budget minus what the process already holds) between phases.
    `shard_bytes`: what reading one activation shard takes, beside the encoder's chunk."""
    if working_bytes is None:
        if cfg.memory_budget_mb is None:
            working_bytes = DEFAULT_WORKING_MB << 20
        else:
            working_bytes = (cfg.memory_budget_mb << 20) - rss_bytes()
            if working_bytes < MIN_WORKING_MB << 20:
                log.warning("mine.memory_budget_mb=%d leaves %.0f MiB beside the %.0f MiB in use; "
                            "mining with %d MiB", cfg.memory_budget_mb, working_bytes / 2**20,
                            rss_bytes() / 2**20, MIN_WORKING_MB)
                working_bytes = MIN_WORKING_MB << 20
    read_triples = int(min(max(working_bytes // 8 // _TRIPLE_BYTES, 1 << 14), 1 << 22))
    seqs = encode_chunk_sequences(m, seq_len, cfg.batch_size, working_bytes // 2)
    # Between encoder chunks, room for the next one (and the next shard) must stay free.
    trim_above = (None if cfg.memory_budget_mb is None else
                  (cfg.memory_budget_mb << 20) - encode_chunk_bytes(m, seq_len, seqs) - shard_bytes)
    return MemoryPlan(seqs, read_triples, working_bytes - read_triples * _TRIPLE_BYTES, trim_above)


def replan_ranges(plan: MemoryPlan, cfg) -> MemoryPlan:
    """The latent ranges' share of mine.memory_budget_mb from what the process holds after the
    encode pass, not before it: the pass leaves ~110 MiB more resident (2,304 latents: the
    statistics, the split, heap glibc keeps), and ranges sized on the RSS before it let the peak
    pass the budget (605 MB at a 600 MB budget)."""
    if cfg.memory_budget_mb is None:
        return plan
    left = (cfg.memory_budget_mb << 20) - rss_bytes() - plan.read_triples * _TRIPLE_BYTES
    if left < MIN_WORKING_MB << 20:
        log.warning("mine.memory_budget_mb=%d leaves %.0f MiB for latent ranges after the "
                    "encode pass (%.0f MiB in use); mining with %d MiB", cfg.memory_budget_mb,
                    left / 2**20, rss_bytes() / 2**20, MIN_WORKING_MB)
        left = MIN_WORKING_MB << 20
    return replace(plan, range_bytes=left)


def _shard_bytes(shards: ActivationShards) -> int:
    """Reading one shard: its file's bytes and the tensor made of them, fp32 at most (measured:
    +64 MiB for a 19 MiB fp16 shard)."""
    n_seq = max((s.n_seq for s in shards.shards), default=0)
    return n_seq * shards.seq_len * shards.d_model * 4 * 2


def plan_ranges(count_tok: torch.Tensor, cfg, range_bytes: int,
                n_windows: int | None = None) -> list[tuple[int, int]]:
    """Consecutive latent ranges whose estimated working set each fits range_bytes.

    A latent's window maxima are at most its active tokens and at most n_windows; its kept rows
    hold `window` fp32 activations up to five times over (gathered, concatenated, reordered, arrow,
    writer buffers) while a row group is built.
    """
    m = len(count_tok)
    n_pos = cfg.n_top + cfg.n_quantiles * (cfg.per_quantile + cfg.train_per_quantile)
    n_neg = cfg.n_random + (cfg.n_hard if cfg.negatives != "random" else 0)
    per_row = 5 * 4 * cfg.window + _ROW_BYTES
    fixed = m * n_pos * _ROW_BYTES  # every latent's compact positives live until the end
    pairs = count_tok if n_windows is None else count_tok.clamp_max(n_windows)
    # negative candidates: up to 48 x n_random (dense latents) and 4 x n_hard
    n_cand = 48 * cfg.n_random + 4 * (n_neg - cfg.n_random)
    per_latent = pairs.double() * _PAIR_BYTES + (n_pos + n_neg) * per_row + n_cand * _ROW_BYTES
    cap = max(range_bytes - fixed, 1)
    ranges, lo, cum = [], 0, torch.cumsum(per_latent, 0)
    while lo < m:
        base = float(cum[lo - 1]) if lo else 0.0
        hi = int(torch.searchsorted(cum, torch.tensor(base + cap, dtype=cum.dtype), right=True))
        hi = max(hi, lo + 1)
        ranges.append((lo, min(hi, m)))
        lo = hi
    return ranges


EXAMPLES_SCHEMA = pa.schema([
    ("latent", pa.int32()), ("kind", pa.string()), ("split", pa.string()), ("rank", pa.int32()),
    ("quantile", pa.int16()), ("seq_id", pa.int32()), ("start", pa.int16()),
    ("max_act", pa.float32()), ("acts", pa.list_(pa.float32()))])


def _examples_table(pos: Rows, acts: torch.Tensor, neg: Rows, per_seq: int, window: int) -> pa.Table:
    rows = Rows.cat([pos.to("cpu"), neg.to("cpu")])
    acts = torch.cat([acts.cpu(), torch.zeros(len(neg), window)])
    order = np.lexsort((rows.window.numpy(), rows.split.numpy(), rows.rank.numpy(),
                        rows.quantile.numpy(), rows.kind.numpy(), rows.latent.numpy()))
    rows, acts = rows.take(torch.from_numpy(order)), acts[torch.from_numpy(order)]
    n = len(rows)
    return pa.Table.from_pydict({
        "latent": pa.array(rows.latent.int().numpy()),
        "kind": pa.array(KINDS).take(pa.array(rows.kind.long().numpy())),
        "split": pa.array(["train", "test"]).take(pa.array(rows.split.long().numpy())),
        "rank": pa.array(rows.rank.numpy()),
        "quantile": pa.array(rows.quantile.to(torch.int16).numpy()),
        "seq_id": pa.array((rows.window // per_seq).int().numpy()),
        "start": pa.array((1 + (rows.window % per_seq) * window).to(torch.int16).numpy()),
        "max_act": pa.array(acts.amax(1).numpy() if n else np.zeros(0, np.float32)),
        "acts": pa.ListArray.from_arrays(pa.array(np.arange(0, n * window + 1, window, dtype=np.int32)),
                                         pa.array(acts.reshape(-1).numpy())),
    }, schema=EXAMPLES_SCHEMA)


def _latents_table(stats, n_win: torch.Tensor, tok_hist: torch.Tensor, n_tokens: int) -> pa.Table:
    count = stats.count
    return pa.table({
        "latent": pa.array(torch.arange(len(count)).int().numpy()),
        "n_active_tokens": pa.array(count.numpy()),
        "frequency": pa.array((count.double() / n_tokens).numpy()),
        "n_active_windows": pa.array(n_win.numpy()),
        "max_act": pa.array(stats.max_act.numpy()),
        "mean_act": pa.array((stats.sum_act / count.clamp_min(1)).float().numpy()),
        "dead": pa.array((count == 0).numpy()),
        "hist": pa.ListArray.from_arrays(
            pa.array(np.arange(0, tok_hist.numel() + 1, tok_hist.shape[1], dtype=np.int32)),
            pa.array(tok_hist.reshape(-1).numpy())),
    })


def _hard_rows(sae, shards, cfg, positives: Rows, n_windows: int, embed, wsplit) -> Rows:
    """Hard-negative candidates of every latent (interp.mine.negatives needs all latents' windows)."""
    def events(kind: int) -> Events:
        p = positives.take((positives.kind == kind).nonzero().squeeze(1))
        return Events(p.latent, p.window, p.value)

    lat, win, rank = hard_candidates(sae, shards, cfg, events(TOP), events(QUANTILE), n_windows, embed)
    z = torch.zeros_like(lat)
    return Rows.make(lat, win, z.float(), z + HARD, z - 1, wsplit.cpu()[win], rank)


def _in_range(rows: Rows, lo: int, hi: int) -> Rows:
    return rows.take(((rows.latent >= lo) & (rows.latent < hi)).nonzero().squeeze(1))


def mine_into(sae, shards: ActivationShards, cfg, out: Path, device: str = "cpu", embed=None,
              *, working_bytes: int | None = None) -> dict:
    """Mine every latent of `sae` over `shards`; write examples.parquet and latents.parquet to out.

    `embed` (texts -> embeddings) replaces MiniLM for mine.negatives 'similar' (tests);
    `working_bytes` overrides the memory plan (tests force several latent ranges with it).
    """
    if (shards.seq_len - 1) % cfg.window:
        raise ValueError(f"mine.window {cfg.window} must divide seq_len-1 = {shards.seq_len - 1}")
    if shards.n_tokens >= 2**31:
        raise ValueError(f"{shards.n_tokens} tokens: the code spill indexes tokens with int32; "
                         "mine at most 2^31 - 1 tokens per collect artifact")
    m, per_seq = sae.num_latents, (shards.seq_len - 1) // cfg.window
    n_windows = shards.n_sequences * per_seq
    doc_starts = read_doc_starts(shards.path, shards.n_tokens)
    held_out = held_out_documents(doc_starts, shards.n_tokens, cfg.test_fraction, cfg.seed)
    wsplit = window_splits(doc_starts, held_out, n_windows, cfg.window, device)
    split_windows = tuple((wsplit == s).nonzero().squeeze(1).int() for s in (0, 1))
    check_split(doc_starts, held_out, shards.n_tokens, split_windows, cfg.test_fraction)
    spill = CodeSpill(Path(out) / ".code-spill", m)
    # Planned after the split and the spill's writers are made: they hold ~60 MiB (pyarrow's
    # pool, file buffers) that a plan made before them counted as free.
    plan = plan_memory(m, shards.seq_len, cfg, working_bytes, _shard_bytes(shards))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(cfg.threads or threads)
        t0 = time.time()
        stats = encode_pass(sae, shards, spill, plan.encode_seqs, device, encoded=iter_encoded,
                            trim_above=plan.trim_above)
        release_memory()
        if working_bytes is None:
            plan = replan_ranges(plan, cfg)
        t1 = time.time()
        ranges = plan_ranges(stats.count, cfg, plan.range_bytes, n_windows)
        log.info("mine: %d latents in %d ranges, spill %.0f MiB", m, len(ranges), spill.nbytes / 2**20)
        positives, n_win, hist = _select_ranges(spill, ranges, stats.max_act, cfg, plan, device,
                                                wsplit)
        caps = {RANDOM: cfg.n_random}
        hard = None
        if cfg.negatives != "random":
            hard = _hard_rows(sae, shards, cfg, positives, n_windows, embed, wsplit)
            caps[HARD] = cfg.n_hard
        t2 = time.time()
        n_by_kind = _write_examples(spill, ranges, positives, hard, n_win, caps, cfg, split_windows,
                                    n_windows, per_seq, plan, device, Path(out) / "examples.parquet")
        t3 = time.time()
    finally:
        torch.set_num_threads(threads)
        spill.close()
        shutil.rmtree(spill.path, ignore_errors=True)
    write_parquet_atomic(_latents_table(stats, n_win, hist, shards.n_tokens),
                         Path(out) / "latents.parquet")
    return {"n_latents": m, "n_examples": sum(n_by_kind.values()), "dead": int((stats.count == 0).sum()),
            "n_windows": n_windows, "window": cfg.window, "n_by_kind": n_by_kind,
            "n_documents": len(doc_starts), "n_test_documents": int(held_out.sum()),
            "n_windows_by_split": {"train": len(split_windows[0]), "test": len(split_windows[1])},
            "n_ranges": len(ranges), "encode_sequences": plan.encode_seqs,
            "spill_mb": round(spill.nbytes / 2**20, 1),
            "phase_seconds": {"encode": round(t1 - t0, 2), "select": round(t2 - t1, 2),
                              "write": round(t3 - t2, 2)}}


def _select_ranges(spill, ranges, max_act: torch.Tensor, cfg, plan: MemoryPlan, device,
                   wsplit: torch.Tensor) -> tuple[Rows, torch.Tensor, torch.Tensor]:
    """Compact top and quantile rows of every latent, n_active_windows [m], histograms [m, bins]."""
    max_act = max_act.to(device)
    parts, n_win, hist = [], [], []
    for lo, hi in ranges:
        win, lat, val, h = window_maxima(spill, lo, hi, cfg.window, max_act, cfg.hist_bins,
                                         plan.read_triples, device)
        rows, nw = select_positives(win, lat, val, lo, hi, cfg, wsplit)
        if wants_extra(cfg):  # SAEBench's held-out top and importance-weighted windows
            rows = Rows.cat([rows, select_extra(win, lat, val, rows, cfg, wsplit)])
        parts.append(rows.to("cpu"))
        n_win.append(nw.cpu())
        hist.append(h.cpu())
        del win, lat, val, rows
        release_memory()
    return Rows.cat(parts), torch.cat(n_win), torch.cat(hist)


def _write_examples(spill, ranges, positives: Rows, hard: Rows | None, n_win: torch.Tensor, caps,
                    cfg, split_windows, n_windows: int, per_seq: int, plan: MemoryPlan, device,
                    path: Path) -> dict[str, int]:
    """Per latent range: token activations of the kept windows, validated negatives, one row
    group; written under a temp name and renamed, so a half-written file never exists."""
    n_by_kind = dict.fromkeys(KINDS, 0)
    with replaced_atomically(path) as tmp:
        writer = pq.ParquetWriter(tmp, EXAMPLES_SCHEMA)
        try:
            for lo, hi in ranges:
                pos = _in_range(positives, lo, hi).to(device)
                cand = random_candidates(lo, hi, n_windows, n_win[lo:hi], cfg, split_windows, device)
                if hard is not None:
                    cand = Rows.cat([cand, _in_range(hard, lo, hi).to(device)])
                acts, active = gather_acts(spill, lo, hi, cfg.window, pos, cand, plan.read_triples, device)
                neg = choose_negatives(cand, active, caps)
                table = _examples_table(pos, acts, neg, per_seq, cfg.window)
                writer.write_table(table)
                for k, c in zip(*torch.unique(torch.cat([pos.kind, neg.kind]).cpu(), return_counts=True)):
                    n_by_kind[KINDS[int(k)]] += int(c)
                del table, acts, pos, cand, neg
                release_memory()
        finally:
            writer.close()
    return n_by_kind


VERSION = "3"  # 3: train/test split by document; 2: exact quantile bins, hashed sampling


def settings(cfg) -> dict:
    """The mine settings that can change the output (what cannot stays out of the key, so adding
    such a field kept old keys)."""
    settings = cfg.mine.model_dump(mode="json")
    for f in ("memory_budget_mb", "batch_size", "threads"):
        settings.pop(f)
    if cfg.mine.negatives == "random":
        for f in ("negatives", "n_hard", "n_neighbours", "embed_pool"):
            settings.pop(f)
    elif cfg.mine.negatives == "neighbours":
        settings.pop("embed_pool")
    if not cfg.mine.train_per_quantile:
        settings.pop("train_per_quantile")
    for f in ("n_top_test", "n_iw", "n_iw_test"):  # 0 (the default) kept the old keys
        if not settings[f]:
            settings.pop(f)
    return settings


def fill(ctx: StageContext) -> dict:
    """Mine stage: examples.parquet + latents.parquet for every latent of the SAE."""
    from interp.sae import load_sae

    cfg, collect, train = ctx.cfg, ctx.input("collect"), ctx.input("train")
    device = cfg.sae.device or cfg.model.device
    if not (collect.path / DOCUMENTS).is_file():  # collected before documents.parquet
        from transformers import AutoTokenizer

        from interp.models import resolve_hf_source
        backfill_documents(collect.path, AutoTokenizer.from_pretrained(
            resolve_hf_source(cfg.model, cfg.home)))
    shards = open_activations(cfg, collect.path)  # collect.store 'tokens': the model runs
    sae = load_sae(train.path, device=device)
    info = mine_into(sae, shards, cfg.mine, ctx.out, device=device)
    if isinstance(shards, StreamedShards):  # the encode phase includes these forward passes
        info["source"] = {"store": "tokens", "forward_tokens": shards.forward_tokens,
                          "forward_seconds": round(shards.forward_seconds, 2)}
    return {"collect": collect.key, "sae": train.key,
            "config": cfg.mine.model_dump(mode="json"), **info}


_PROVENANCE = (("sae_key", "train"), ("mine_key", "mine"))
STAGE = Stage("mine", VERSION, settings, fill, inputs=("collect", "train"), tables=(
    Table("latents", "latents.parquet", provenance=_PROVENANCE),
    Table("example_rows", "examples.parquet", provenance=(*_PROVENANCE, ("collect_key", "collect")))))
