"""Which held-out windows a scorer shows, and how: the items of detection (activating windows
spread over the quantiles and non-activating ones, unmarked), of fuzzing (activating windows
marked correctly or at as many random other tokens), and their numbered listing."""
from __future__ import annotations

import random
from dataclasses import dataclass

from interp.mine.examples import Example, mark_tokens


@dataclass(frozen=True)
class Item:
    """One window to judge: its text as shown, its true label, and where it came from."""

    text: str
    label: int
    seq_id: int
    start: int
    quantile: int


def spread(examples: list[Example], n: int, rng: random.Random) -> list[Example]:
    """Up to n examples taken round-robin across quantiles, so every activation level is tested.

    Each quantile bin is shuffled first (seeded): taking a bin's windows in mined rank order put
    the strongest of every bin first, so detection's positives sat at the top of their bins and
    fuzzing's correctly marked windows (the first round) were stronger than its wrong ones.
    """
    by_q: dict[int, list[Example]] = {}
    for e in examples:
        by_q.setdefault(e.quantile, []).append(e)
    for q in sorted(by_q):
        rng.shuffle(by_q[q])
    out, qs = [], sorted(by_q)
    while len(out) < n and any(by_q[q] for q in qs):
        for q in qs:
            if by_q[q] and len(out) < n:
                out.append(by_q[q].pop(0))
    return out


def plain(e: Example) -> str:
    return mark_tokens(e.tokens, [False] * len(e.tokens))


def held_out_positives(examples: list[Example]) -> list[Example]:
    """The held-out activating windows the scorers judge: the test split's quantile samples."""
    return [e for e in examples if e.kind == "quantile" and e.split == "test"]


def detection_items(examples: list[Example], n_pos: int, n_neg: int, rng: random.Random, *,
                    hard: bool = True) -> list[Item]:
    """n_pos held-out activating windows over the quantiles (label 1) and n_neg held-out
    non-activating ones (label 0), unmarked, shuffled. Hard negatives (mine.negatives) come first
    unless `hard` is False (the embedding scorer: MiniLM chose the 'similar' ones)."""
    pos = spread(held_out_positives(examples), n_pos, rng)
    kinds = ("hard", "random") if hard else ("random",)
    neg = sorted((e for e in examples if e.kind in kinds and e.split == "test"),
                 key=lambda e: e.kind != "hard")[:n_neg]
    items = [Item(plain(e), 1, e.seq_id, e.start, e.quantile) for e in pos] + \
            [Item(plain(e), 0, e.seq_id, e.start, -1) for e in neg]
    rng.shuffle(items)
    return items


def fuzzed_marks(e: Example, rng: random.Random) -> list[bool]:
    """As many marks as the window has activating tokens, placed on non-activating tokens."""
    active = [a > 0 for a in e.acts]
    n = max(1, sum(active))
    others = [i for i, a in enumerate(active) if not a] or list(range(len(active)))
    chosen = set(rng.sample(others, min(n, len(others))))
    return [i in chosen for i in range(len(active))]


def fuzzing_items(examples: list[Example], n_pos: int, n_neg: int, rng: random.Random) -> list[Item]:
    """n_pos held-out activating windows marked on their activating tokens (label 1) and n_neg
    marked on as many other tokens (label 0). Both sets come round-robin over the shuffled
    quantile bins, so neither is stronger by construction."""
    acts = spread(held_out_positives(examples), n_pos + n_neg, rng)
    if not acts:
        return []
    correct, wrong = acts[:n_pos], acts[n_pos:] or acts  # reuse windows when too few are held out
    items = [Item(mark_tokens(e.tokens, [a > 0 for a in e.acts]), 1, e.seq_id, e.start, e.quantile)
             for e in correct]
    items += [Item(mark_tokens(e.tokens, fuzzed_marks(e, rng)), 0, e.seq_id, e.start, e.quantile)
              for e in wrong[:n_neg]]
    rng.shuffle(items)
    return items


def format_items(items: list[Item]) -> str:
    """One item is shown bare (per-example prompts); several are numbered."""
    if len(items) == 1:
        return items[0].text
    return "\n".join(f"Example {i}: {it.text}" for i, it in enumerate(items, 1))

