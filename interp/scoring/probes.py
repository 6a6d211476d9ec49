"""Known-answer probes: test the judge before believing it.

Each score run also scores a few probes whose answer is known by construction, built from the
run's own held-out corpus (the test split's windows, as mining splits them by document): a rule
such as 'the word "the"', digits, capitalised words or the corpus's most frequent proper noun,
given to the judge as the explanation, with windows where the rule holds (its tokens marked as
activating, as a latent's are) and windows where it does not. Every scorer with a probe design
judges them exactly as it judges a latent (`Scorer.probed`), so a judge that fails them cannot
be telling good explanations from bad ones either: its scores say nothing about the
explanations. Probes are pseudo-latents with negative ids (resumable like latents; rows with
control 'probe'); `judge_checks` pools them per scorer.
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from interp.collect.documents import read_doc_starts
from interp.mine.doc_split import TEST, held_out_documents, window_splits
from interp.mine.examples import Example

SAMPLE_WINDOWS = 4000  # held-out windows read to build the probes: bounded at any corpus size


@dataclass(frozen=True)
class Probe:
    """A rule with a known answer: its explanation text and which tokens it marks."""

    name: str
    description: str
    matches: Callable[[tuple[str, ...], int], bool]  # (window tokens, position) -> marked


def _word(tok: str) -> str:
    return tok.strip()


def _whole_word(toks: tuple[str, ...], i: int) -> bool:
    """Whether token i is a word by itself: it starts one (a leading space, or after a
    non-alphanumeric token) and the next token does not continue it. ' Aber' followed by 'deen'
    is not the name "Aber", and ' the' followed by 'ory' is not the word "the"."""
    tok = toks[i]
    starts = tok[:1].isspace() or (i > 0 and not toks[i - 1][-1:].isalnum())
    nxt = toks[i + 1] if i + 1 < len(toks) else " "
    return starts and not nxt[:1].isalnum()


RULES: dict[str, Callable[[Counter], Probe | None]] = {
    "the": lambda counts: Probe("the", 'the word "the"', lambda ts, i: (
        _word(ts[i]).lower() == "the" and _whole_word(ts, i))),
    "digits": lambda counts: Probe("digits", "digits: numbers, years and dates",
                                   lambda ts, i: any(c.isdigit() for c in ts[i])),
    "capitalised": lambda counts: Probe("capitalised", "words that start with a capital letter",
                                        lambda ts, i: _word(ts[i])[:1].isupper()),
    "proper_noun": lambda counts: _proper_noun(counts),
}


def _proper_noun(counts: Counter) -> Probe | None:
    """The most frequent capitalised whole word (4+ letters) never seen in lower case in the
    sample (`counts` counts whole words only, so a name's first word piece is never chosen)."""
    lower = {w for w in counts if w.islower()}
    names = [(n, w) for w, n in counts.items()
             if len(w) >= 4 and w.isalpha() and w[0].isupper() and w.lower() not in lower]
    if not names:
        return None
    word = max(names)[1]
    return Probe("proper_noun", f'the name "{word}"',
                 lambda ts, i, w=word: _word(ts[i]) == w and _whole_word(ts, i))


def _held_out_windows(collect_dir: Path, window: int, fraction: float, seed: int,
                      rng: random.Random) -> list[tuple[int, int, tuple[str, ...]]]:
    """(seq_id, start, tokens) of up to SAMPLE_WINDOWS held-out windows, tiled as mining tiles
    them (after each sequence's BOS) and split by document as mining splits them."""
    seqs_file = pq.ParquetFile(Path(collect_dir) / "sequences.parquet")
    first = next(seqs_file.iter_batches(batch_size=1, columns=["tokens"]), None)
    seq_len = len(first.column("tokens")[0].as_py()) if first is not None and first.num_rows else 0
    per_seq, n_seq = (seq_len - 1) // window, seqs_file.metadata.num_rows
    n_tokens = n_seq * (seq_len - 1)
    if not per_seq or not n_seq:
        return []
    starts = read_doc_starts(collect_dir, n_tokens)
    test = window_splits(starts, held_out_documents(starts, n_tokens, fraction, seed),
                         n_seq * per_seq, window, "cpu")
    ids = [int(w) for w in (test == TEST).nonzero().flatten().tolist()]
    ids = sorted(rng.sample(ids, min(SAMPLE_WINDOWS, len(ids))))
    seqs = sorted({w // per_seq for w in ids})
    t = pq.read_table(Path(collect_dir) / "sequences.parquet", columns=["seq_id", "token_str"],
                      filters=[("seq_id", "in", seqs)])
    text = dict(zip(t.column("seq_id").to_pylist(), t.column("token_str").to_pylist()))
    out = []
    for w in ids:
        s, start = w // per_seq, 1 + (w % per_seq) * window
        out.append((s, start, tuple(text[s][start:start + window])))
    return out


def build_probes(cfg: Any, collect_dir: Path) -> dict[int, tuple[str, list[Example]]]:
    """Probe id (-1, -2, ...) -> (the rule's description, its examples): score.probe_windows
    held-out windows where the rule holds (kind 'quantile', split 'test'; two also as 'top' for
    SAEBench's scorer) and as many where it does not (kind 'random'), for each configured probe
    the corpus allows (a rule no window satisfies is left out)."""
    rng = random.Random(f"{cfg.score.seed}:probes")
    windows = _held_out_windows(collect_dir, cfg.mine.window, cfg.mine.test_fraction,
                                cfg.mine.seed, rng)
    counts = Counter(_word(t) for _, _, toks in windows for i, t in enumerate(toks)
                     if _whole_word(toks, i))
    out: dict[int, tuple[str, list[Example]]] = {}
    for name in cfg.score.probes:
        probe, pid = RULES[name](counts), -1 - len(out)
        examples = _probe_examples(probe, windows, cfg.score.probe_windows,
                                   cfg.mine.n_quantiles, rng, pid) if probe else []
        if examples:
            out[pid] = (probe.description, examples)
    return out


def _probe_examples(probe: Probe, windows, n: int, n_quantiles: int, rng: random.Random,
                    latent: int) -> list[Example]:
    hits, misses = [], []
    for seq, start, toks in windows:
        acts = tuple(1.0 if probe.matches(toks, i) else 0.0 for i in range(len(toks)))
        (hits if any(acts) else misses).append((seq, start, toks, acts))
    if not hits or not misses:
        return []
    hits, misses = rng.sample(hits, min(n, len(hits))), rng.sample(misses, min(n, len(misses)))
    out = [Example(latent, "quantile", "test", i, i % n_quantiles, s, st, 1.0, toks, acts)
           for i, (s, st, toks, acts) in enumerate(hits)]
    out += [Example(latent, "top", "test", i, -1, s, st, 1.0, toks, acts)
            for i, (s, st, toks, acts) in enumerate(hits[:2])]
    out += [Example(latent, "random", "test", i, -1, s, st, 0.0, toks, acts)
            for i, (s, st, toks, acts) in enumerate(misses)]
    return out
