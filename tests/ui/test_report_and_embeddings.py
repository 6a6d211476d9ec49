"""The run report (self-contained, escaped, plots per scorer), explanation embeddings written at
publish (from the explain artifact), and the SVG helpers against naive references."""
from __future__ import annotations

import re

import duckdb
import pytest

from interp.ui import svg
from storage.read import connect_readonly
from tests.ui.conftest import LOCAL, PLANTED


def test_report_is_self_contained_and_escaped(ui_home, tmp_path):
    from interp.report import write_report

    out = write_report(ui_home, tmp_path / "r.html")
    html = out.read_text()
    assert "<script" not in html.lower() and "&lt;script&gt;" in html  # corpus tag shown as text
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from anywhere
    con = connect_readonly(ui_home)
    scorers = [r[0] for r in con.execute("SELECT DISTINCT scorer FROM scores").fetchall()]
    n_calls = con.execute("SELECT count(*) FROM llm_calls").fetchone()[0]
    fvu = con.execute("SELECT fvu FROM saes").fetchone()[0]
    con.close()
    for s in scorers:
        assert f"{s}: distribution of scores" in html
    assert "explanation quality against firing frequency" in html and "LLM tokens by stage" in html
    assert f"{n_calls} calls" in html and f"{fvu:.3g}" in html
    assert html.count("<svg") >= len(scorers) + 4
    # Each scorer's mean with its interval, and the informativeness question answered or flagged.
    assert "mean [95% interval]" in html and "Is the judge informative?" in html
    assert "no controls were scored in this run" in html  # the UI fixture runs without controls


def test_report_rejects_an_unknown_run(ui_home, tmp_path):
    from interp.report import write_report

    with pytest.raises(ValueError, match="known runs: 20260101T000000-test"):
        write_report(ui_home, tmp_path / "r.html", run_id="nope")


def test_publish_inserts_the_explain_artifacts_embeddings(ui_home):
    from interp import embed

    con = connect_readonly(ui_home)
    n_ok = con.execute("SELECT count(*) FROM explanations WHERE status = 'ok'").fetchone()[0]
    vec, model = con.execute("SELECT e.embedding, e.model FROM explanation_embeddings e JOIN "
                             "explanations x USING (explanation_id) WHERE x.text = ?", [PLANTED]).fetchone()
    assert con.execute("SELECT count(*) FROM explanation_embeddings").fetchone()[0] == n_ok
    con.close()
    assert len(vec) == embed.DIM and model == embed.MODEL_NAME
    assert vec == pytest.approx(embed.embed_texts([PLANTED])[0].tolist(), abs=1e-5)


def test_publish_loads_no_model(ui_home, tmp_path):
    """Publishing the whole run again (rebuild) imports neither sentence-transformers nor
    transformers, and matches no decoders: embeddings and decoder matches come from artifacts."""
    import shutil
    import subprocess
    import sys

    for sub in ("artifacts",):
        shutil.copytree(ui_home / sub, tmp_path / sub)
    # The match stage's module is imported for its declared tables; its kernel must not run.
    code = ("import sys; import interp.analysis.match as m; "
            "m.best_matches = lambda *a, **k: sys.exit('decoder matching ran during publish'); "
            "from storage.catalog import rebuild; rebuild(sys.argv[1]); "
            "print(sorted(m for m in ('sentence_transformers', 'transformers') "
            "if m in sys.modules), sys.modules.get('interp.embed') and sys.modules['interp.embed']._models)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] in ("[] None", "[] {}")
    con = connect_readonly(tmp_path)
    assert con.execute("SELECT count(*) FROM explanation_embeddings").fetchone()[0] > 0
    con.close()


def test_semantic_search_without_embeddings_says_what_to_do(home_copy):
    from starlette.testclient import TestClient

    from interp.ui.app import create_app

    con = duckdb.connect(str(home_copy / "catalog.duckdb"))
    con.execute("DROP TABLE explanation_embeddings")
    con.close()
    with TestClient(create_app(home_copy, preload_model=False), base_url=LOCAL) as c:
        html = c.get("/latents", params={"s": "zoo"}).text
    assert "no explanation embeddings yet" in html and "interp publish" in html


def test_bin_values_matches_a_naive_count():
    vals = [0.0, 0.05, 0.1, 0.5, 0.99, 1.0, 1.0, -0.2, 3.0]
    got = svg.bin_values(vals, 0.0, 1.0, 10)
    naive = [sum(1 for v in vals if i / 10 <= min(max(v, 0), 0.999999) < (i + 1) / 10) for i in range(10)]
    assert got == naive and sum(got) == len(vals)


def test_svg_plots_escape_labels_and_draw_every_point():
    h = svg.histogram([1, 0, 3], 0.0, 2.0, title="t", xlabel="<b>x</b>")
    assert h.count("<rect") == 3 and "&lt;b&gt;x&lt;/b&gt;" in h
    sc = svg.scatter({"a<": [(0.01, 0.5), (0.1, 0.7)], "b": [(0.0, 0.2)]}, title="s", xlabel="f",
                     ylabel="y", log_x=True)
    assert sc.count("<circle") == 2 and "a&lt;" in sc  # x=0 cannot sit on a log axis
    b = svg.bars(["x", "y"], [1.0, 2.0], title="b")
    assert b.count("<rect") == 2
