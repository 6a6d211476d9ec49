"""`interp query` on a real published catalogue: it cannot write, install or read files outside
the catalogue, runs exactly one statement, and every example query of the README still works."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interp.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"


def _query(home, sql):
    return CliRunner().invoke(app, ["query", sql, "--home", str(home), "--format", "csv"])


def _readme_queries() -> list[str]:
    text = README.read_text()
    block = text.split("Five queries to start from", 1)[1].split("```sql", 1)[1].split("```", 1)[0]
    # Without the comment lines: a shell argument starting with "--" would be read as an option.
    block = re.sub(r"(?m)^\s*--[^\n]*\n?", "", block)
    return [q.strip() for q in block.split(";") if q.strip()]


HOSTILE = [
    "EXPLAIN ANALYZE COPY (select 1) TO '{tmp}/x.csv'",
    "EXPLAIN COPY (select 1) TO '{tmp}/x.csv'",
    "EXPLAIN ANALYZE INSTALL httpfs",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT content FROM read_text('/proc/self/environ')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/hostname')",
    "SELECT * FROM glob('/*')",
    "SELECT * FROM read_parquet('{tmp}/../**/*.parquet')",
    "SELECT 1; SELECT 2",
    "SELECT 1; COPY (select 1) TO '{tmp}/x.csv'",
    "SET enable_external_access = true",
]


@pytest.mark.parametrize("sql", HOSTILE)
def test_query_refuses_writes_installs_files_and_second_statements(ui_home, tmp_path, sql):
    before = {p.name for p in tmp_path.iterdir()}
    r = _query(ui_home, sql.format(tmp=tmp_path))
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: ") and "Traceback" not in r.output
    assert {p.name for p in tmp_path.iterdir()} == before  # x.csv never written


def test_every_readme_example_query_runs(ui_home):
    queries = _readme_queries()
    assert len(queries) == 5
    for sql in queries:
        r = _query(ui_home, sql)
        assert r.exit_code == 0, (sql, r.output)
    r = _query(ui_home, "EXPLAIN ANALYZE SELECT count(*) FROM latest")
    assert r.exit_code == 0, r.output


def test_views_named_in_the_readme_answer(ui_home):
    views = set(re.findall(r"^\| `(\w+)` \(view\)", README.read_text(), flags=re.M))
    assert {"examples", "latest", "explanation_scores", "latent_match_compare"} <= views
    for view in sorted(views):
        count = f"SELECT count(*) AS n FROM {view}"  # noqa: S608 - view names from the README
        assert _query(ui_home, count).exit_code == 0, view


def test_headlines_come_from_the_scorers_table(ui_home):
    r = _query(ui_home, "SELECT count(*) AS n FROM score_headlines s JOIN scorers USING (scorer) "
                        "WHERE s.headline IS DISTINCT FROM CASE scorers.headline_metric "
                        "WHEN 'auc' THEN s.auc WHEN 'corr' THEN s.corr ELSE s.balanced_accuracy END")
    assert r.exit_code == 0 and r.output.split() == ["n", "0"], r.output


def test_every_sae_science_query_of_the_readme_runs(ui_home):
    """The g-SAE, dark-matter, transcoder and head-share queries bind against the real tables
    (the tiny catalogue has no rows for most of them: this checks table and column names)."""
    text = README.read_text().split("## SAE science", 1)[1].split("\n## ", 1)[0]
    blocks = [re.sub(r"(?m)^\s*--[^\n]*\n?", "", b.split("```", 1)[0])
              for b in text.split("```sql")[1:]]
    queries = [q.strip() for b in blocks for q in b.split(";") if q.strip()]
    assert len(queries) == 4
    for sql in queries:
        r = _query(ui_home, sql)
        assert r.exit_code == 0, (sql, r.output)
