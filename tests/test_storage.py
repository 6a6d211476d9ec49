"""The catalogue's write side on small hand-made artifacts: numbered migrations (and adopting a
catalogue made before them), BY NAME inserts of a match artifact, the scorers table, stale temp
files of killed publishes, and damaged files detected with a message that says what to do."""
from __future__ import annotations

import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from interp.scoring.registry import SCORERS
from storage.catalog import publish
from storage.read import LATEST_VERSION, CatalogError, connect_readonly, migrations

MIGRATIONS = [p for _, _, p in migrations()]


def _match_artifact(home, key="m1", n=40_000):
    """A match artifact whose Parquet columns are in another order than the table's."""
    d = home / "artifacts" / "match" / key
    d.mkdir(parents=True)
    pq.write_table(pa.table({"cosine": pa.array([0.5] * n, pa.float32()),
                             "latent_b": pa.array(range(n), pa.int32()), "sae_b": ["b"] * n,
                             "latent_a": pa.array(range(n), pa.int32()), "sae_a": ["a"] * n}),
                   d / "matches.parquet")
    (d / "manifest.json").write_text(json.dumps({"stage": "match", "key": key}))
    return key


def _rows(home, sql):
    con = connect_readonly(home)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_migrations_are_numbered_and_recorded_once(tmp_path):
    assert [int(p.name[:3]) for p in MIGRATIONS] == list(range(1, LATEST_VERSION + 1))
    publish(tmp_path, {}, [])
    publish(tmp_path, {}, [])
    assert [r[0] for r in _rows(tmp_path, "SELECT version FROM schema_version ORDER BY 1")] == \
        list(range(1, LATEST_VERSION + 1))


def test_a_catalogue_from_before_migrations_is_adopted_and_old_ones_refused(tmp_path):
    con = duckdb.connect(str(tmp_path / "catalog.duckdb"))
    con.execute(MIGRATIONS[0].read_text())  # the base tables only: no error column, no versions
    con.close()
    with pytest.raises(CatalogError, match="schema version 0.*interp publish"):
        connect_readonly(tmp_path)
    publish(tmp_path, {}, [])
    cols = [r[0] for r in _rows(
        tmp_path, "SELECT column_name FROM duckdb_columns() WHERE table_name = 'scores'")]
    assert "error" in cols
    assert _rows(tmp_path, "SELECT max(version) FROM schema_version") == [(LATEST_VERSION,)]


def test_match_artifact_inserted_by_name_and_scorers_from_the_registry(tmp_path):
    publish(tmp_path, {"match": _match_artifact(tmp_path, n=3)}, [])
    assert _rows(tmp_path, "SELECT sae_a, latent_a, sae_b, latent_b, cosine FROM latent_matches "
                           "ORDER BY latent_a LIMIT 1") == [("a", 0, "b", 0, 0.5)]
    assert dict(_rows(tmp_path, "SELECT scorer, headline_metric FROM scorers")) == \
        {name: s.headline for name, s in SCORERS.items()}
    assert all(d for (d,) in _rows(tmp_path, "SELECT description FROM scorers"))


def test_next_publish_removes_temp_files_of_killed_publishes(tmp_path):
    publish(tmp_path, {}, [])
    stale = [tmp_path / ".catalog.duckdb.dead0001.tmp", tmp_path / ".catalog.duckdb.dead0001.tmp.wal"]
    for p in stale:
        p.write_bytes(b"half a catalogue")
    keep = tmp_path / "notes.tmp"
    keep.write_text("not ours")
    publish(tmp_path, {}, [])
    assert not any(p.exists() for p in stale) and keep.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.duckdb", "catalog.lock", "notes.tmp"]


@pytest.mark.parametrize("cut", ["tail", "header"])
def test_damaged_catalogue_is_named_with_the_rebuild_command(tmp_path, cut):
    from interp.cli import app

    run = {"run_id": "r1", "started_at": 0.0, "finished_at": 1.0,
           "artifacts": {"match": _match_artifact(tmp_path)}}
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    (tmp_path / "runs" / "r1" / "run.json").write_text(json.dumps(run))
    publish(tmp_path, run["artifacts"], [run])
    path = tmp_path / "catalog.duckdb"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 300_000] if cut == "tail" else data[:100])
    before = path.read_bytes()
    with pytest.raises(CatalogError, match="damaged.*interp publish --rebuild"):
        connect_readonly(tmp_path)
    with pytest.raises(CatalogError, match="interp publish --rebuild"):
        publish(tmp_path, {}, [])
    cli = CliRunner()
    for args in (["query", "select count(*) from latent_matches"], ["publish"]):
        r = cli.invoke(app, [*args, "--home", str(tmp_path)])
        assert r.exit_code == 2 and "interp publish --rebuild" in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert path.read_bytes() == before  # a failed publish leaves the file as it was
    r = cli.invoke(app, ["publish", "--rebuild", "--home", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert _rows(tmp_path, "SELECT count(*) FROM latent_matches") == [(40_000,)]
