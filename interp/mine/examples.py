"""Example records: mined windows with their text, read a block of latents at a time for the LLM
stages, and marked for display (activating tokens as <<...>>)."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from interp import duck

# Mined example rows of a set of latents (token text is attached from the token index).
_EXAMPLES_SQL = """
SELECT latent, kind, split, rank, quantile, seq_id, start, max_act, acts
FROM read_parquet($examples)
WHERE latent IN (SELECT unnest($latents))
ORDER BY latent, kind, quantile, rank
"""


@dataclass(frozen=True)
class Example:
    """One window of one latent: its tokens and per-token activations."""

    latent: int
    kind: str          # top | quantile | random | hard
    split: str         # train (may be shown to explainers) | test (held out for scoring)
    rank: int
    quantile: int
    seq_id: int
    start: int
    max_act: float
    tokens: tuple[str, ...]
    acts: tuple[float, ...]

    @property
    def active(self) -> bool:
        return self.max_act > 0


class TokenIndex:
    """The token strings of a collect artifact's sequences.parquet, held as one int32 code per
    token into a table of distinct strings (~4 bytes a token: 40 MB at 10^7 tokens), so a window's
    text is a slice, not a join.

    Joining each block's examples with sequences.parquet in SQL scanned every token string of
    the corpus per block: 0.36-0.51 s per 64 latents at 10^7 tokens against 0.07-0.11 s this way
    (bench/example_reads.py), on every block of a million-latent stage. The codes come from
    Arrow's dictionary reading of the column itself, so a window's tokens are exactly the stored
    strings (no tokenizer involved).
    """

    def __init__(self, sequences: Path):
        t = pq.read_table(sequences, columns=["seq_id", "token_str"],
                          read_dictionary=["token_str.list.element"])
        lists = t.column("token_str")
        flat = pc.list_flatten(lists).unify_dictionaries() if lists.num_chunks else None
        self.strings: list[str] = (flat.chunk(0).dictionary.to_pylist()
                                   if flat is not None and flat.num_chunks else [])
        self.codes = (np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in flat.chunks])
                      .astype(np.int32, copy=False) if self.strings else np.zeros(0, np.int32))
        lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
        self.offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        seq_ids = t.column("seq_id").to_numpy()
        self.row = np.full(int(seq_ids.max()) + 2 if len(seq_ids) else 1, -1, np.int64)
        self.row[seq_ids] = np.arange(len(seq_ids))

    def windows(self, seq_ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> list[tuple[str, ...]]:
        """The token strings of each window (clipped at its sequence's end, like list_slice)."""
        known = (seq_ids >= 0) & (seq_ids < len(self.row))
        rows = self.row[np.where(known, seq_ids, len(self.row) - 1)]  # the last entry is -1
        if len(rows) and rows.min() < 0:
            raise ValueError(f"sequence {int(seq_ids[rows.argmin()])} of an example is not in "
                             "sequences.parquet: the mine and collect artifacts do not match")
        lo = self.offsets[rows] + starts
        hi = np.minimum(lo + lengths, self.offsets[rows + 1])
        n = np.maximum(hi - lo, 0)
        idx = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(int(n.sum()))
        words = self.strings
        flat = [words[c] for c in self.codes[idx].tolist()]
        ends = np.cumsum(n).tolist()
        return [tuple(flat[a:b]) for a, b in zip([0, *ends[:-1]], ends)]


class ExampleReader:
    """Examples of blocks of latents from one mine artifact: `reader(latents)`. The token index
    and a DuckDB connection are made once, on the first call (a stage calls this for every
    block, in a worker thread; opening a connection alone took 16-20 ms of a ~30 ms block)."""

    def __init__(self, mine_dir: Path, sequences: Path):
        self.mine_dir = Path(mine_dir)
        self.sequences = Path(sequences)  # the sequences.parquet of the mine's collect input
        self._tokens: TokenIndex | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def tokens(self) -> TokenIndex:
        with self._lock:
            if self._tokens is None:
                self._tokens = TokenIndex(self.sequences)
            return self._tokens

    def _rows(self, latents: list[int]) -> pa.Table:
        with self._lock:  # one connection, one query at a time
            if self._con is None:
                self._con = duck.connect()
            return self._con.sql(_EXAMPLES_SQL, params={
                "examples": str(self.mine_dir / "examples.parquet"), "latents": latents}).to_arrow_table()

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def __call__(self, latents: list[int]) -> dict[int, list[Example]]:
        tokens = self.tokens()
        t = self._rows(latents)
        out: dict[int, list[Example]] = {l: [] for l in latents}
        if not t.num_rows:
            return out
        acts = t.column("acts").combine_chunks()
        lengths = pc.list_value_length(acts).to_numpy(zero_copy_only=False)
        texts = tokens.windows(t.column("seq_id").to_numpy(), t.column("start").to_numpy(), lengths)
        cols = [t.column(c).to_pylist() for c in
                ("latent", "kind", "split", "rank", "quantile", "seq_id", "start", "max_act")]
        for *r, a, text in zip(*cols, _tuples(acts, lengths), texts):
            out[r[0]].append(Example(*r, text, a))
        return out


def _tuples(lists: pa.ListArray, lengths: np.ndarray) -> list[tuple[float, ...]]:
    """Each list of a float list array as a tuple of Python floats, what `to_pylist` gives at
    a third of its cost (it makes a scalar object per value): the values flattened through
    numpy and sliced by `lengths` (the lists' value lengths)."""
    flat = pc.list_flatten(lists)
    if lists.null_count or flat.null_count:  # numpy would make a null value NaN
        return [tuple(a) for a in lists.to_pylist()]
    flat = flat.to_numpy(zero_copy_only=False).tolist()
    ends = np.cumsum(lengths).tolist()
    return [tuple(flat[a:b]) for a, b in zip([0, *ends[:-1]], ends)]


def load_examples(mine_dir: Path, collect_dir: Path, latents: list[int]) -> dict[int, list[Example]]:
    """Examples of the given latents of a mine artifact, grouped by latent, with token text from
    its collect artifact (one call; a stage reading many blocks keeps one ExampleReader)."""
    reader = ExampleReader(mine_dir, Path(collect_dir) / "sequences.parquet")
    try:
        return reader(latents)
    finally:
        reader.close()


def visible(tok: str) -> str:
    return tok.replace("\n", "\\n")


def mark_tokens(tokens: tuple[str, ...], marked: list[bool]) -> str:
    """Text with runs of marked tokens wrapped as <<...>> (leading spaces kept outside)."""
    out, run = [], []
    for tok, m in zip(tokens, marked):
        if m:
            run.append(visible(tok))
            continue
        if run:
            out.append(wrap_marked("".join(run)))
            run = []
        out.append(visible(tok))
    if run:
        out.append(wrap_marked("".join(run)))
    return "".join(out).strip()


def wrap_marked(text: str) -> str:
    """`text` as a marked run: <<text>>, its leading spaces kept outside."""
    stripped = text.lstrip()
    return text[: len(text) - len(stripped)] + f"<<{stripped}>>"
