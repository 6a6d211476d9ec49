"""Train/test split of mined windows by document, so a held-out window never shares a document
(or its neighbouring text) with a window the explainer sees.

From the collect artifact's document table (interp/collect/documents.py) the mine stage
  1. orders documents by a seeded hash and puts a prefix of that order holding test_fraction of
     the tokens in test (the document straddling the cut goes where its midpoint lies), so the
     split balances tokens, not document counts, which matters when a few long documents dominate;
  2. gives each window the split of its documents, or NONE when it spans a train and a test
     document: such windows are neither shown to the explainer nor held out;
  3. refuses a split with no train or no held-out window (check_split): no latent could then
     be both explained and scored.
"""
from __future__ import annotations

import logging

import torch

from interp.mine.select import uniform_hash

log = logging.getLogger(__name__)

TRAIN, TEST, NONE = 0, 1, -1
_CHUNK = 1 << 22   # windows per step of window_splits (bounds its int64 temporaries)


def held_out_documents(doc_starts: torch.Tensor, n_tokens: int, fraction: float, seed: int
                   ) -> torch.Tensor:
    """[n_docs] bool: which documents are held out (step 1 of the module's rule)."""
    starts = doc_starts.long().cpu()
    sizes = (torch.cat([starts[1:], torch.tensor([n_tokens])]).clamp_max(n_tokens) - starts).double()
    ids = torch.arange(len(starts))
    order = torch.argsort(uniform_hash(seed + 3, torch.zeros_like(ids), ids), stable=True)
    mid = torch.cumsum(sizes[order], 0) - sizes[order] / 2
    test = torch.zeros(len(starts), dtype=torch.bool)
    test[order] = mid < fraction * float(sizes.sum())
    return test


def window_splits(doc_starts: torch.Tensor, doc_test: torch.Tensor, n_windows: int, window: int,
                  device) -> torch.Tensor:
    """[n_windows] int8 TRAIN / TEST / NONE of window w (tokens [w * window, (w+1) * window))."""
    starts = doc_starts.to(device)
    cum = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(doc_test.long(), 0)]).to(device)
    out = torch.empty(n_windows, dtype=torch.int8, device=device)
    for lo in range(0, n_windows, _CHUNK):
        w = torch.arange(lo, min(lo + _CHUNK, n_windows), device=device)
        first = torch.searchsorted(starts, w * window, right=True) - 1
        last = torch.searchsorted(starts, w * window + window - 1, right=True) - 1
        n_test = cum[last + 1] - cum[first]
        split = torch.full_like(w, NONE)
        split[n_test == 0] = TRAIN
        split[n_test == last - first + 1] = TEST
        out[lo:lo + len(w)] = split.to(torch.int8)
    return out


def warn_if_lopsided(held_out: torch.Tensor, n_train: int, n_test: int, fraction: float) -> None:
    """Log when whole documents could not give each split near its share of the windows (a
    corpus of a few long documents): explanations or scores then rest on few windows."""
    total = max(n_train + n_test, 1)
    if abs(n_test / total - fraction) > 0.25 or not n_train or not n_test:
        log.warning("mine: %d of %d documents held out give %d train and %d test windows "
                    "(mine.test_fraction %.2f): too few documents for a balanced split; "
                    "collect more corpus.n_tokens", int(held_out.sum()), len(held_out), n_train,
                    n_test, fraction)


def check_split(doc_starts: torch.Tensor, held_out: torch.Tensor, n_tokens: int,
                split_windows: tuple[torch.Tensor, torch.Tensor], fraction: float) -> None:
    """Refuse a split with no train or no held-out window (split_windows: the window ids of each
    split, train then test); warn when it is lopsided.

    Explain needs a latent's train windows and scoring its held-out ones, so with either split
    empty no latent is eligible and the run would end with "0 of 0 latents explained". The usual
    cause is a corpus whose first document alone fills corpus.n_tokens (a .txt without blank
    lines is one document), so the message names the documents and tokens of each split.
    """
    n_train, n_test = len(split_windows[0]), len(split_windows[1])
    if n_train and n_test:
        warn_if_lopsided(held_out, n_train, n_test, fraction)
        return
    starts = doc_starts.long().cpu()
    sizes = torch.cat([starts[1:], torch.tensor([n_tokens])]).clamp_max(n_tokens) - starts
    n_docs, n_held = len(starts), int(held_out.sum())
    test_tokens = int(sizes[held_out.cpu()].sum())
    raise ValueError(
        f"mine: the corpus gives {n_docs} document{'' if n_docs == 1 else 's'} in the {n_tokens} "
        f"tokens collected, and the train/test split is by document "
        f"(mine.test_fraction {fraction:g}): "
        f"{n_docs - n_held} train ({n_tokens - test_tokens} tokens, {n_train} windows) and "
        f"{n_held} held out ({test_tokens} tokens, {n_test} windows), so no latent has both "
        "train and held-out windows to explain and score; use a corpus with more documents "
        "(blank lines separate documents in a .txt file) or more tokens (corpus.n_tokens)")
