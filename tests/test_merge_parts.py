"""merge_parts publishes a per-latent stage's part files and its ledger: rows sorted by key, a
repeated key refused, and llm_calls.parquet read from the ledger's JSON lines by DuckDB: in call
order, with LEDGER_SCHEMA's types, a torn or foreign line left out, a line written before
purposes were given its stage as purpose, no temp file left behind."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from interp.latent_stage import LEDGER_SCHEMA, merge_parts, write_ledger

SCHEMA = pa.schema([("latent", pa.int64()), ("scorer", pa.string()), ("control", pa.string()),
                    ("score", pa.float64())])
KEYS = ("latent", "scorer", "control")


def _call(i: int, created_at: float, **over) -> dict:
    row = {"call_id": f"{i:016x}", "stage": "score", "purpose": "detection", "latent": i,
           "model": "m", "attempt": 1, "status": "ok", "error": None, "prompt_tokens": 100 + i,
           "completion_tokens": 3, "latency_s": 0.5, "created_at": created_at}
    return row | over


def _lines(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_ledger_lines_become_llm_calls_in_call_order(tmp_path):
    a = [_call(0, 5.0), _call(1, 1.0, status="error", error="HTTP 500", attempt=2),
         _call(2, 3.0, purpose="control:detection")]
    legacy = _call(3, 2.0)
    del legacy["purpose"]  # written before the ledger said what a call was for
    b = [legacy, _call(4, 4.0, stage="explain", purpose="explain", latent=None)]
    (tmp_path / "calls-a.jsonl").write_text(_lines(a) + '{"call_id": "torn", "sta')  # a crash
    (tmp_path / "calls-b.jsonl").write_text("[1, 2]\n\"text\"\n{}\nnot json\n" + _lines(b))
    (tmp_path / "calls-c.jsonl").write_text("")
    out = tmp_path / "llm_calls.parquet"
    write_ledger(sorted(tmp_path.glob("calls-*.jsonl")), out)
    got = pq.read_table(out)
    assert got.schema.remove_metadata().equals(LEDGER_SCHEMA)
    expected = sorted(a + [legacy | {"purpose": "score"}] + b[1:], key=lambda r: r["created_at"])
    assert got.to_pylist() == [{f: r[f] for f in LEDGER_SCHEMA.names} for r in expected]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "calls-a.jsonl", "calls-b.jsonl", "calls-c.jsonl", "llm_calls.parquet"]


def test_no_ledger_files_make_an_empty_llm_calls(tmp_path):
    write_ledger([], tmp_path / "llm_calls.parquet")
    got = pq.read_table(tmp_path / "llm_calls.parquet")
    assert got.num_rows == 0 and got.schema.remove_metadata().equals(LEDGER_SCHEMA)


def _part(tmp_path, name: str, rows: list[tuple]) -> None:
    pq.write_table(pa.Table.from_pylist([dict(zip(SCHEMA.names, r)) for r in rows], schema=SCHEMA),
                   tmp_path / f"part-{name}.parquet")


def test_parts_merge_sorted_by_key_and_a_repeated_key_is_refused(tmp_path):
    _part(tmp_path, "b", [(2, "fuzzing", None, 0.5), (1, "detection", "shuffled", 0.1)])
    _part(tmp_path, "a", [(1, "detection", None, 0.9), (2, "detection", None, 0.7)])
    (tmp_path / "calls-x.jsonl").write_text(_lines([_call(1, 1.0)]))
    table = merge_parts(tmp_path, SCHEMA, "scores.parquet", KEYS)
    assert [tuple(r.values()) for r in table.to_pylist()] == [
        (1, "detection", "shuffled", 0.1), (1, "detection", None, 0.9),
        (2, "detection", None, 0.7), (2, "fuzzing", None, 0.5)]
    assert pq.read_table(tmp_path / "scores.parquet").equals(table)
    assert pq.read_table(tmp_path / "llm_calls.parquet").num_rows == 1
    # The same latent, scorer and control in two parts (None equal to None): never published.
    _part(tmp_path, "c", [(2, "detection", None, 0.2)])
    with pytest.raises(RuntimeError, match="duplicate rows"):
        merge_parts(tmp_path, SCHEMA, "scores.parquet", KEYS)
    _part(tmp_path, "c", [(1, "detection", "shuffled", 0.3)])
    with pytest.raises(RuntimeError, match="duplicate rows"):
        merge_parts(tmp_path, SCHEMA, "scores.parquet", KEYS)
