"""ExampleReader attaches each window's token text from an in-memory token index: the same
examples, in the same order, as joining examples.parquet with sequences.parquet in SQL (the
reference below), across row groups with different dictionaries, windows clipped at a
sequence's end, and latents without examples."""
from __future__ import annotations

import json
import random
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from interp.mine.examples import Example, ExampleReader, load_examples
from interp.mine.stage import EXAMPLES_SCHEMA

_JOIN = """
SELECT e.latent, e.kind, e.split, e.rank, e.quantile, e.seq_id, e.start, e.max_act, e.acts,
       list_slice(s.token_str, e.start + 1, e.start + len(e.acts)) AS tokens
FROM read_parquet($examples) e JOIN read_parquet($sequences) s USING (seq_id)
WHERE e.latent IN (SELECT unnest($latents))
ORDER BY e.latent, e.kind, e.quantile, e.rank
"""


def examples_by_join(examples: Path, sequences: Path, latents: list[int]) -> dict[int, list[Example]]:
    """The reference: examples of `latents` with their text joined in SQL (also used by
    bench/example_reads.py)."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    rows = con.execute(_JOIN, {"examples": str(examples), "sequences": str(sequences),
                               "latents": latents}).fetchall()
    con.close()
    out: dict[int, list[Example]] = {l: [] for l in latents}
    for r in rows:
        out[r[0]].append(Example(*r[:8], tuple(r[9]), tuple(r[8])))
    return out


def _by_join(mine: Path, collect: Path, latents: list[int]) -> dict[int, list[Example]]:
    return examples_by_join(mine / "examples.parquet", collect / "sequences.parquet", latents)


def _artifacts(tmp_path: Path, n_seq: int = 40, seq_len: int = 12) -> tuple[Path, Path]:
    rng = random.Random(0)
    collect, mine = tmp_path / "collect", tmp_path / "mine"
    collect.mkdir()
    mine.mkdir()
    # Two row groups whose dictionaries differ (words unique to each half), seq_ids not in order.
    words = [[f"w{rng.randrange(30)}" if i < n_seq // 2 else f"v{rng.randrange(30)}\n"
              for _ in range(seq_len)] for i in range(n_seq)]
    order = list(range(n_seq))
    rng.shuffle(order)
    pq.write_table(pa.table({"seq_id": pa.array(order, pa.int32()),
                             "tokens": [[0] * seq_len for _ in order],
                             "token_str": [words[s] for s in order]}),
                   collect / "sequences.parquet", row_group_size=n_seq // 2)
    rows = []
    for latent in (0, 1, 2, 5):
        for rank in range(6):
            width = rng.randrange(1, 8)
            start = rng.randrange(seq_len - 2) if rank else seq_len - 3  # runs past the end
            rows.append({"latent": latent, "kind": rng.choice(["top", "quantile", "random"]),
                         "split": rng.choice(["train", "test"]), "rank": rank,
                         "quantile": rng.randrange(3), "seq_id": rng.randrange(n_seq),
                         "start": start, "max_act": rng.random(),
                         "acts": [rng.random() for _ in range(width)]})
    pq.write_table(pa.Table.from_pylist(rows, schema=EXAMPLES_SCHEMA), mine / "examples.parquet",
                   row_group_size=7)
    (mine / "manifest.json").write_text(json.dumps({"inputs": {"collect": "c"}}))
    return mine, collect


def test_same_examples_as_the_sql_join(tmp_path):
    mine, collect = _artifacts(tmp_path)
    reader = ExampleReader(mine, collect / "sequences.parquet")
    for latents in ([0, 1, 2, 5], [5, 3], [2]):
        got = reader(latents)
        assert got == _by_join(mine, collect, latents)
        assert list(got) == latents  # every latent asked for, in order, empty when it has none
    assert not reader([3])[3]
    clipped = [e for e in reader([0, 1, 2, 5]).values() for e in e if e.rank == 0]
    assert any(len(e.tokens) < len(e.acts) for e in clipped)  # the test does reach the clipping
    assert load_examples(mine, collect, [1]) == _by_join(mine, collect, [1])


def test_an_example_of_a_missing_sequence_is_a_clear_error(tmp_path):
    mine, collect = _artifacts(tmp_path, n_seq=10)
    t = pq.read_table(mine / "examples.parquet")
    t = t.set_column(t.schema.get_field_index("seq_id"), "seq_id",
                     pa.array([99] * t.num_rows, pa.int32()))
    pq.write_table(t, mine / "examples.parquet")
    with pytest.raises(ValueError, match="sequence 99 .*do not match"):
        ExampleReader(mine, sequences=collect / "sequences.parquet")([0])


def test_act_tuples_are_to_pylists_values():
    """The reader's acts, flattened through numpy, are to_pylist's: on a sliced array, empty
    lists, and (by falling back to to_pylist) null values."""
    import pyarrow.compute as pc

    from interp.mine.examples import _tuples

    rng = random.Random(3)
    values = [[rng.uniform(-3, 3) for _ in range(rng.randrange(0, 6))] for _ in range(50)]
    cases = [pa.array(values, pa.list_(pa.float32())),
             pa.array(values, pa.list_(pa.float32())).slice(7, 30),
             pa.array([[1.5, None], [2.0]], pa.list_(pa.float32()))]
    for lists in cases:
        lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
        got = _tuples(lists, lengths)
        assert got == [tuple(a) for a in lists.to_pylist()]
        assert all(type(v) is float for a in got for v in a if v is not None)
