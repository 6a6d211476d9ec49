"""The catalogue under concurrency: two publishers at once (both land, or the second fails naming
the lock holder), readers querying during publishes (never an error, never a half-published run),
and `interp query` refusing every statement that writes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from interp.rescore import find_run, rescore_config, run_after_collect
from storage.catalog import load_run, publish, publish_lock
from storage.query import ReadOnlyViolation, check_read_only, run_query
from tests.conftest import tiny_config

PUBLISH = """
import json, sys
from storage.catalog import load_run, publish
home, runs, loops, timeout = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
for i in range(loops):
    for j, run_id in enumerate(runs):
        run = load_run(f"{home}/runs/{run_id}")
        # Rebuilding from the first run each loop makes every publish change what readers see.
        publish(home, run["artifacts"], [run], fresh=(j == 0 and loops > 1), lock_timeout_s=timeout)
print("ok")
"""


@pytest.fixture(scope="module")
def _built(tmp_path_factory):
    """Artifacts of two runs (two SAEs on the same activations), built once per module."""
    from tests.builders import make_shards
    from tests.conftest import scripted_answer
    from tests.fakeserver import FakeLLMServer

    home = tmp_path_factory.mktemp("two_runs")
    make_shards(home / "artifacts" / "collect" / "c0ffee", n_seq=40, seq_len=17, d=8)
    with FakeLLMServer(scripted_answer) as srv:
        a = run_after_collect(tiny_config(home, srv.base_url), "c0ffee")
        cfg_b, ck = rescore_config(home, find_run(home, a.run_id), {"sae": {"seed": 1}})
        b = run_after_collect(cfg_b, ck)
    return home, (a.run_id, b.run_id)


@pytest.fixture
def two_runs(tmp_path, _built):
    """A private copy of the two runs' artifacts (not yet published) under tmp_path."""
    import shutil

    src, ids = _built
    for sub in ("artifacts", "runs"):
        shutil.copytree(src / sub, tmp_path / sub)
    return ids


def _publisher(home, runs, loops=1, timeout=60.0) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    return subprocess.Popen([sys.executable, "-c", PUBLISH, str(home), json.dumps(runs), str(loops),
                             str(timeout)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _counts(home):
    return run_query(home, "select (select count(*) from runs), (select count(*) from explanations), "
                           "(select count(*) from scores), (select count(*) from saes)")[1][0]


@pytest.mark.slow  # publishers and readers in child processes (~5 s)
def test_two_publishers_at_once_both_land_once(tmp_path, two_runs):
    procs = [_publisher(tmp_path, [r]) for r in two_runs]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    runs, n_exp, n_scores, n_saes = _counts(tmp_path)
    assert (runs, n_saes) == (2, 2) and n_scores == 2 * n_exp
    ids = run_query(tmp_path, "select count(*), count(distinct explanation_id) from explanations")[1][0]
    assert ids[0] == ids[1]
    # Publishing both again adds nothing.
    for r in two_runs:
        run = load_run(tmp_path / "runs" / r)
        assert publish(tmp_path, run["artifacts"], [run]) == []
    assert _counts(tmp_path) == (runs, n_exp, n_scores, n_saes)


def test_second_publisher_fails_naming_the_lock_holder(tmp_path, two_runs):
    with publish_lock(tmp_path):
        p = _publisher(tmp_path, [two_runs[0]], timeout=1.0)
        _, err = p.communicate(timeout=120)
    assert p.returncode != 0
    assert "PublishLockTimeout" in err and f"pid {os.getpid()}" in err
    assert not (tmp_path / "catalog.duckdb").exists()  # nothing half-written


@pytest.mark.slow  # publishers and readers in child processes (~5 s)
def test_readers_never_see_a_half_published_catalogue(tmp_path, two_runs):
    first = load_run(tmp_path / "runs" / two_runs[0])
    publish(tmp_path, first["artifacts"], [first])
    only_a = _counts(tmp_path)
    both_runs = load_run(tmp_path / "runs" / two_runs[1])
    publish(tmp_path, both_runs["artifacts"], [both_runs])
    a_and_b = _counts(tmp_path)
    writer = _publisher(tmp_path, list(two_runs), loops=3)
    seen, queries = set(), 0
    while writer.poll() is None:
        seen.add(_counts(tmp_path))  # raises if a reader ever hits an error
        run_query(tmp_path, "select count(*) from latest")
        queries += 1
        time.sleep(0.02)  # leave the writer CPU on a 2-core machine
    assert writer.returncode == 0, writer.stderr.read()
    assert queries > 5 and seen <= {only_a, a_and_b}, (seen, only_a, a_and_b)


WRITES = [
    "INSERT INTO runs (run_id) VALUES ('x')",
    "CREATE TABLE t AS SELECT 1",
    "CREATE VIEW v AS SELECT 1",
    "COPY runs TO '/tmp/interp_leak.csv'",
    "COPY (SELECT 1) TO '/tmp/interp_leak.parquet' (FORMAT parquet)",
    "ATTACH '/tmp/other.duckdb' AS o",
    "DETACH catalog",
    "SET threads = 1",
    "PRAGMA threads = 1",
    "UPDATE explanations SET text = 'x'",
    "DELETE FROM scores",
    "DROP TABLE scores",
    "ALTER TABLE scores ADD COLUMN x INT",
    "INSTALL httpfs",
    "LOAD httpfs",
    "EXPORT DATABASE '/tmp/interp_export'",
    "CALL pragma_version()",
    "SELECT 1; DROP TABLE scores",
    "CHECKPOINT",
    "",
]


@pytest.mark.parametrize("sql", WRITES)
def test_query_refuses_writes(sql):
    with pytest.raises(ReadOnlyViolation):
        check_read_only(sql)


def test_query_cli_refuses_writes_and_allows_reads(tmp_path, two_runs):
    from interp.cli import app

    run = load_run(tmp_path / "runs" / two_runs[0])
    publish(tmp_path, run["artifacts"], [run])
    before = os.path.getmtime(tmp_path / "catalog.duckdb")
    cli = CliRunner()
    for sql in ("DROP TABLE scores", "COPY runs TO 'x.csv'", "ATTACH 'y.duckdb'", "PRAGMA threads=1"):
        r = cli.invoke(app, ["query", sql, "--home", str(tmp_path)])
        assert r.exit_code == 2 and "refusing" in r.output, r.output
    r = cli.invoke(app, ["query", "select count(*) as n from saes", "--home", str(tmp_path),
                         "--format", "csv"])
    assert r.exit_code == 0 and r.output.split() == ["n", "1"]
    time.sleep(0.01)
    assert os.path.getmtime(tmp_path / "catalog.duckdb") == before
