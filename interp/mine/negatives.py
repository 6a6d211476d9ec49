"""Hard-negative candidates for the mine stage: windows that look like a latent's activating ones
but do not activate it, so detection scoring tests the explanation's specificity, not just topic.

  similar     windows nearest (cosine of MiniLM embeddings) to the mean embedding of the latent's
              top windows; the candidate pool is embedded once per mine run, not per latent
  neighbours  strongest mined windows (top and quantile, so both splits) of the latents whose
              decoder directions are closest (cosine of W_dec rows)

Both return *candidates* ranked best first; the mine stage reads their activations in its final
pass and keeps only windows where the latent is exactly zero, so a candidate that does activate
the latent is never kept as a negative; a kept one goes to the split of its document.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

log = logging.getLogger(__name__)

Embedder = Callable[[list[str]], np.ndarray]   # texts -> [n, dim] embeddings
CANDIDATE_FACTOR = 4   # candidates per kept negative: similar windows often do activate the latent
_CHUNK = 1024          # latents per similarity block (bounds memory at m x pool)


def minilm_embedder(batch_size: int = 64) -> Embedder:
    """all-MiniLM-L6-v2 on the CPU, loaded once per process by interp.embed."""
    from interp.embed import embed_texts

    return lambda texts: embed_texts(texts, "cpu", batch_size)


def window_texts(sequences: Path, windows: torch.Tensor, per_seq: int, window: int) -> list[str]:
    """Text of each window id (sequence seq = w // per_seq, tokens after BOS)."""
    seq_ids = sorted(set((windows // per_seq).tolist()))
    table = pq.read_table(sequences, columns=["seq_id", "token_str"],
                          filters=[("seq_id", "in", seq_ids)])
    toks = dict(zip(table.column("seq_id").to_pylist(), table.column("token_str").to_pylist()))
    out = []
    for w in windows.tolist():
        start = 1 + (w % per_seq) * window
        out.append("".join(toks[w // per_seq][start:start + window]))
    return out


def _rows_to_candidates(lat: list[int], cand: list[list[int]]) -> tuple[torch.Tensor, ...]:
    latent = torch.tensor([l for l, c in zip(lat, cand) for _ in c], dtype=torch.long)
    window = torch.tensor([w for c in cand for w in c], dtype=torch.long)
    rank = torch.tensor([r for c in cand for r in range(len(c))], dtype=torch.long)
    return latent, window, rank


def _by_latent(latent: torch.Tensor, window: torch.Tensor, value: torch.Tensor,
               m: int) -> list[list[int]]:
    """Windows of each latent, highest value first."""
    order = torch.argsort(-value, stable=True)
    out: list[list[int]] = [[] for _ in range(m)]
    for l, w in zip(latent[order].tolist(), window[order].tolist()):
        out[l].append(w)
    return out


def similar_candidates(embed: Embedder, texts: Callable[[torch.Tensor], list[str]],
                       top_latent: torch.Tensor, top_window: torch.Tensor, top_value: torch.Tensor,
                       known_active: list[set[int]], m: int, n_windows: int,
                       n_cand: int, pool_size: int, seed: int) -> tuple[torch.Tensor, ...]:
    """(latent, window, rank) of the n_cand pool windows nearest each latent's top-window centroid.

    The pool is every window, or a seeded sample of pool_size; top windows are embedded too (for
    the centroids). Windows known to activate the latent are skipped.
    """
    if n_windows <= pool_size:
        pool = torch.arange(n_windows)
    else:
        gen = torch.Generator().manual_seed(seed + 2)
        pool = torch.randperm(n_windows, generator=gen)[:pool_size].sort().values
    needed = torch.unique(torch.cat([pool, top_window]))
    log.info("embedding %d windows for similar negatives", len(needed))
    emb = torch.from_numpy(np.asarray(embed(texts(needed)), dtype=np.float32))
    emb = torch.nn.functional.normalize(emb, dim=1)
    pos = {w: i for i, w in enumerate(needed.tolist())}
    pool_emb = emb[[pos[w] for w in pool.tolist()]]
    tops = _by_latent(top_latent, top_window, top_value, m)
    live = [l for l in range(m) if tops[l]]
    cand: list[list[int]] = []
    for c in range(0, len(live), _CHUNK):
        chunk = live[c:c + _CHUNK]
        cent = torch.stack([emb[[pos[w] for w in tops[l]]].mean(0) for l in chunk])
        sims = torch.nn.functional.normalize(cent, dim=1) @ pool_emb.T          # [c, pool]
        # Enough nearest windows that n_cand remain after dropping the known-active ones.
        k = min(len(pool), n_cand + max(len(known_active[l]) for l in chunk))
        best = sims.topk(k, dim=1).indices
        for l, row in zip(chunk, best.tolist()):
            ws = [int(pool[i]) for i in row if int(pool[i]) not in known_active[l]]
            cand.append(ws[:n_cand])
    return _rows_to_candidates(live, cand)


def neighbour_candidates(w_dec: torch.Tensor, top_latent: torch.Tensor, top_window: torch.Tensor,
                         top_value: torch.Tensor, known_active: list[set[int]],
                         n_neighbours: int, n_cand: int) -> tuple[torch.Tensor, ...]:
    """(latent, window, rank): mined windows of each latent's n_neighbours nearest latents by
    decoder cosine (nearest neighbour first, its strongest window first), minus windows known to
    activate it. top_*: the neighbours' windows to draw from (the mine stage passes top and
    quantile ones: top windows are all in train documents, and test needs candidates too).

    w_dec: [m, d] decoder rows.
    """
    m = w_dec.shape[0]
    unit = torch.nn.functional.normalize(w_dec.detach().float().cpu(), dim=1)
    tops = _by_latent(top_latent, top_window, top_value, m)
    live = [l for l in range(m) if tops[l]]
    cand: list[list[int]] = []
    k = min(n_neighbours + 1, m)
    for c in range(0, len(live), _CHUNK):
        chunk = live[c:c + _CHUNK]
        cos = unit[chunk] @ unit.T                                               # [c, m]
        cos[torch.arange(len(chunk)), torch.tensor(chunk)] = -2.0                # never itself
        nbrs = cos.topk(k, dim=1).indices[:, :n_neighbours]
        for l, row in zip(chunk, nbrs.tolist()):
            seen, ws = set(), []
            for j in row:
                for w in tops[j]:
                    if w not in seen and w not in known_active[l]:
                        seen.add(w)
                        ws.append(w)
            cand.append(ws[:n_cand])
    return _rows_to_candidates(live, cand)


def hard_candidates(sae, shards, cfg, top, quant, n_windows: int, embed: Embedder | None):
    """(latent, window, rank) hard-negative candidates of every latent for cfg.negatives (a
    MineConfig); top and quant are the mined activating Events, whose windows are never candidates."""
    known: list[set[int]] = [set() for _ in range(sae.num_latents)]
    for l, w in zip(torch.cat([top.latent, quant.latent]).tolist(),
                    torch.cat([top.window, quant.window]).tolist()):
        known[l].add(w)
    n_cand = CANDIDATE_FACTOR * cfg.n_hard
    if cfg.negatives == "neighbours":
        if getattr(sae, "W_dec", None) is None:
            raise ValueError("mine.negatives 'neighbours' needs an SAE with decoder rows (W_dec)")
        return neighbour_candidates(sae.W_dec, torch.cat([top.latent, quant.latent]),
                                    torch.cat([top.window, quant.window]),
                                    torch.cat([top.value, quant.value]), known,
                                    cfg.n_neighbours, n_cand)
    per_seq = (shards.seq_len - 1) // cfg.window

    def texts(windows: torch.Tensor) -> list[str]:
        return window_texts(shards.path / "sequences.parquet", windows, per_seq, cfg.window)

    return similar_candidates(embed or minilm_embedder(), texts, top.latent, top.window, top.value,
                              known, sae.num_latents, n_windows, n_cand, cfg.embed_pool, cfg.seed)
