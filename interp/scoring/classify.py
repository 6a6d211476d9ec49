"""Detection and fuzzing scorers (delphi's definitions).

detection: the scorer LLM sees held-out windows (activating ones from every quantile, and
           non-activating ones) and says which ones the explanation describes.
fuzzing:   the scorer sees activating windows whose marked tokens are either the truly activating
           ones or the same number of random other tokens, and says which are marked correctly.
Windows are judged in batches; an answer that does not give exactly one 0/1 per window, in order,
fails the whole batch (predictions None), which is counted, never scored as 0.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from interp.mine.examples import Example, mark_tokens

_RESULT = re.compile(r"\[?\s*RESULT\s*\]?\s*:(.*)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Item:
    """One window to judge: its text as shown, its true label, and where it came from."""

    text: str
    label: int
    seq_id: int
    start: int
    quantile: int


_ANSWER = {"1": 1, "0": 0, "yes": 1, "no": 0}
# One numbered answer: "1) 1", "2. no", "Example 3: 0", "#4 - yes". The number is captured so it
# can be checked against the item's position: a label is never taken from an item number.
_NUMBERED = re.compile(r"(?:example\s*)?#?(\d+)\s*[).:\-=]\s*(1|0|yes|no)\b", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s,;.\[\]]*")


def parse_labels(raw: str, n: int) -> list[int] | None:
    """Exactly n 0/1 (or yes/no) answers after the [RESULT]: marker, in item order; else None.

    Accepted bodies (up to the first blank line): a bare list ("1, 0, 1", "[1 0 1]", one per
    line) of exactly n answers, or exactly n numbered answers "1) 1", "Example 2: 0", "3. yes"
    numbered 1..n in order. Anything else in the body (extra answers, prose, item numbers
    without a clear answer) is a parse failure: a shifted label would be scored, a failure is
    only counted.
    """
    m = _RESULT.search(raw)
    if not m:
        return None
    body = m.group(1).split("\n\n")[0].strip()
    numbered = list(_NUMBERED.finditer(body))
    if numbered:
        rest = _NUMBERED.sub(" ", body)
        if not _SEPARATORS.fullmatch(rest):
            return None
        if [int(x.group(1)) for x in numbered] != list(range(1, n + 1)):
            return None
        return [_ANSWER[x.group(2).lower()] for x in numbered]
    tokens = [t for t in re.split(r"[\s,;\[\]]+", body.rstrip(".")) if t]
    if len(tokens) != n or any(t.lower() not in _ANSWER for t in tokens):
        return None
    return [_ANSWER[t.lower()] for t in tokens]


_LABEL_WORDS = {"1": 1, "yes": 1, "0": 0, "no": 0}


def label_from_logprobs(top: list[list[tuple[str, float]]]) -> tuple[int, float] | None:
    """(prediction, P(1)) from the first generated position that answers 0/1 (or yes/no).

    P(1) is the probability mass of the "1" answers over that of all answers at that position;
    it gives an AUC even when a small judge always answers 1.
    """
    import math

    for alternatives in top:
        best = alternatives[0][0].strip().lower() if alternatives else ""
        if not best:
            continue  # a whitespace token: the answer comes next
        if best not in _LABEL_WORDS:
            return None
        mass = {0: 0.0, 1: 0.0}
        for tok, lp in alternatives:
            label = _LABEL_WORDS.get(tok.strip().lower())
            if label is not None:
                mass[label] += math.exp(lp)
        p1 = mass[1] / (mass[0] + mass[1])
        return int(p1 >= 0.5), p1
    return None


def _spread(examples: list[Example], n: int) -> list[Example]:
    """Up to n examples taken round-robin across quantiles, so every activation level is tested."""
    by_q: dict[int, list[Example]] = {}
    for e in examples:
        by_q.setdefault(e.quantile, []).append(e)
    out, qs = [], sorted(by_q)
    while len(out) < n and any(by_q[q] for q in qs):
        for q in qs:
            if by_q[q] and len(out) < n:
                out.append(by_q[q].pop(0))
    return out


def _plain(e: Example) -> str:
    return mark_tokens(e.tokens, [False] * len(e.tokens))


def detection_items(examples: list[Example], n_pos: int, n_neg: int, rng: random.Random) -> list[Item]:
    pos = _spread([e for e in examples if e.kind == "quantile" and e.split == "test"], n_pos)
    # Hard negatives (mine.negatives similar/neighbours) first; random ones fill in.
    neg = sorted((e for e in examples if e.kind in ("hard", "random") and e.split == "test"),
                 key=lambda e: e.kind != "hard")[:n_neg]
    items = [Item(_plain(e), 1, e.seq_id, e.start, e.quantile) for e in pos] + \
            [Item(_plain(e), 0, e.seq_id, e.start, -1) for e in neg]
    rng.shuffle(items)
    return items


def _fuzzed_marks(e: Example, rng: random.Random) -> list[bool]:
    """As many marks as the window has activating tokens, placed on non-activating tokens."""
    active = [a > 0 for a in e.acts]
    n = max(1, sum(active))
    others = [i for i, a in enumerate(active) if not a] or list(range(len(active)))
    chosen = set(rng.sample(others, min(n, len(others))))
    return [i in chosen for i in range(len(active))]


def fuzzing_items(examples: list[Example], n_pos: int, n_neg: int, rng: random.Random) -> list[Item]:
    acts = _spread([e for e in examples if e.kind == "quantile" and e.split == "test"], n_pos + n_neg)
    if not acts:
        return []
    correct, wrong = acts[:n_pos], acts[n_pos:] or acts  # reuse windows when too few are held out
    items = [Item(mark_tokens(e.tokens, [a > 0 for a in e.acts]), 1, e.seq_id, e.start, e.quantile)
             for e in correct]
    items += [Item(mark_tokens(e.tokens, _fuzzed_marks(e, rng)), 0, e.seq_id, e.start, e.quantile)
              for e in wrong[:n_neg]]
    rng.shuffle(items)
    return items


def format_items(items: list[Item]) -> str:
    """One item is shown bare (per-example prompts); several are numbered."""
    if len(items) == 1:
        return items[0].text
    return "\n".join(f"Example {i}: {it.text}" for i, it in enumerate(items, 1))


BUILDERS = {"detection": detection_items, "fuzzing": fuzzing_items}
