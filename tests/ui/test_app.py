"""The browser's pages through Starlette's test client, checked against the catalogue itself."""
from __future__ import annotations

import re
from html import unescape

import duckdb
import pytest

from tests.ui.conftest import LOCAL, PLANTED, SCRIPT_TOKEN, query


def _rows(html: str) -> list[tuple[str, int]]:
    """(sae key prefix, latent) of each row of the latent table."""
    return [(m.group(1), int(m.group(2))) for m in
            re.finditer(r'href="/sae/([0-9a-f]+)/latent/(\d+)"', html.split('id="latents"')[1])]


def test_overview_lists_saes_with_metrics_and_runs(client, ui_home):
    key, fvu, l0 = query(ui_home, "SELECT sae_key, fvu, l0 FROM saes")[0]
    html = client.get("/").text
    assert key in html and f"{fvu:.3g}" in html and f"{l0:.3g}" in html
    assert "20260101T000000-test" in html and "CE loss recovered" in html


def test_latent_table_lists_explained_latents_with_scores(client, ui_home):
    html = client.get("/latents").text
    expected = {r[0] for r in query(ui_home, "SELECT DISTINCT latent FROM explanations WHERE status = 'ok'")}
    assert {lat for _, lat in _rows(html)} == expected
    n_all = query(ui_home, "SELECT count(DISTINCT latent) FROM latents")[0][0]
    assert len(_rows(client.get("/latents?all=1").text)) == n_all > len(expected)


def test_text_search_finds_the_planted_explanation_and_binds_input(client, ui_home):
    planted = query(ui_home, "SELECT latent FROM explanations WHERE text = ?", [PLANTED])
    assert len(planted) == 1
    html = client.get("/latents", params={"q": "ELEPHANTS marching"}).text
    assert [lat for _, lat in _rows(html)] == [planted[0][0]] and PLANTED in html
    # Quotes and SQL in the search box are only ever a search string.
    assert _rows(client.get("/latents", params={"q": "' OR 1=1 --"}).text) == []


def test_semantic_search_ranks_the_planted_explanation_first(client, ui_home):
    planted = query(ui_home, "SELECT latent FROM explanations WHERE text = ?", [PLANTED])[0][0]
    html = client.get("/latents", params={"s": "animals at the zoo"}).text
    rows = _rows(html)
    assert rows[0][1] == planted and len(rows) > 1
    sims = [float(x) for x in re.findall(r'<td class="n">(-?[0-9.]+)</td>\s*<td class="n score"', html)]
    assert len(sims) == len(rows) and sims == sorted(sims, reverse=True)


def test_score_threshold_and_frequency_filters_match_sql(client, ui_home):
    want = {r[0] for r in query(ui_home, """
        SELECT x.latent FROM explanations x JOIN scores s USING (explanation_id)
        JOIN latents l ON l.sae_key = x.sae_key AND l.latent = x.latent
        WHERE x.status = 'ok' AND s.scorer = 'detection' AND s.balanced_accuracy >= 0.5
          AND l.frequency BETWEEN 0.05 AND 1""")}
    got = {lat for _, lat in _rows(client.get(
        "/latents", params={"min_detection": "0.5", "fmin": "0.05"}).text)}
    assert got == want
    assert _rows(client.get("/latents", params={"min_detection": "1.01"}).text) == []


def test_latent_page_shades_tokens_and_escapes_corpus_text(client, ui_home):
    sae, latent = query(ui_home, "SELECT sae_key, latent FROM examples WHERE kind = 'top' AND "
                              "list_contains(tokens, ?) ORDER BY latent LIMIT 1", [SCRIPT_TOKEN])[0]
    html = client.get(f"/sae/{sae}/latent/{latent}").text
    assert "<script>window" not in html and "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    tops = query(ui_home, "SELECT acts FROM examples WHERE sae_key = ? AND latent = ? AND kind = 'top' "
                       "ORDER BY rank", [sae, latent])
    top_html = html.split('id="top"')[1].split('id="quantile"')[0]
    shown = [float(t) for t in re.findall(r'class="tok[^"]*" style="--a:[0-9.]+" title="([^"]+)"', top_html)]
    assert shown == pytest.approx([a for (acts,) in tops for a in acts], rel=1e-3, abs=1e-6)
    alphas = [float(a) for a in re.findall(r'--a:([0-9.]+)', top_html)]
    assert max(alphas) == pytest.approx(1.0, abs=1e-3) and min(alphas) >= 0
    assert 'id="histogram"' in html and "<svg" in html


def test_latent_urls_are_stable_and_unknown_latents_404(client, ui_home):
    sae = query(ui_home, "SELECT sae_key FROM saes")[0][0]
    r = client.get(f"/sae/{sae[:6]}/latent/3", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == f"/sae/{sae}/latent/3"
    assert client.get(f"/sae/{sae}/latent/9999").status_code == 404
    assert client.get("/sae/nope/latent/1").status_code == 404
    assert client.post("/latents").status_code == 405  # read-only app


def test_explanation_text_from_the_llm_is_escaped(home_copy):
    from starlette.testclient import TestClient

    from interp.ui.app import create_app

    con = duckdb.connect(str(home_copy / "catalog.duckdb"))
    sae, latent = con.execute("SELECT sae_key, latent FROM explanations "
                              "WHERE status = 'ok' LIMIT 1").fetchone()
    con.execute("UPDATE explanations SET text = '<img src=x onerror=alert(1)>' WHERE sae_key = ? "
                "AND latent = ?", [sae, latent])
    con.close()
    with TestClient(create_app(home_copy, preload_model=False), base_url=LOCAL) as c:
        for url in (f"/sae/{sae}/latent/{latent}", "/latents"):
            html = c.get(url).text
            assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_matched_latents_of_other_saes_on_the_hookpoint(home_copy):
    from starlette.testclient import TestClient

    from interp.ui.app import create_app

    con = duckdb.connect(str(home_copy / "catalog.duckdb"))
    sae, latent, text = con.execute("SELECT sae_key, latent, text FROM explanations "
                                    "WHERE status = 'ok' ORDER BY latent LIMIT 1").fetchone()
    con.execute("INSERT INTO saes (sae_key, hookpoint, architecture, num_latents) "
                "SELECT 'other', hookpoint, 'relu', 32 FROM saes WHERE sae_key = ?", [sae])
    con.execute("INSERT INTO saes (sae_key, hookpoint, architecture, num_latents) "
                "VALUES ('elsewhere', 'blocks.9.hook_resid_post', 'relu', 32)")
    con.execute("CREATE TABLE IF NOT EXISTS latent_matches (sae_a VARCHAR, latent_a INTEGER, "
                "sae_b VARCHAR, latent_b INTEGER, cosine DOUBLE)")
    con.execute("INSERT INTO latent_matches VALUES (?, ?, 'other', 7, 0.91), ('other', 9, ?, ?, 0.42), "
                "(?, ?, 'elsewhere', 1, 0.99)", [sae, latent, sae, latent, sae, latent])
    con.close()
    with TestClient(create_app(home_copy, preload_model=False), base_url=LOCAL) as c:
        html = c.get(f"/sae/{sae}/latent/{latent}").text
    table = html.split('id="matches"')[1].split("</table>")[0]
    assert re.findall(r'/sae/(\w+)/latent/(\d+)', table) == [("other", "7"), ("other", "9")]
    assert "0.91" in table and "elsewhere" not in table
    assert unescape(text) in unescape(html)


def test_a_republished_catalogue_is_picked_up_without_restart(home_copy, tmp_path):
    import os
    import shutil

    from starlette.testclient import TestClient

    from interp.ui.app import create_app

    with TestClient(create_app(home_copy, preload_model=False), base_url=LOCAL) as c:
        before = _rows(c.get("/latents").text)
        # What `publish` does: write a new file and rename it over the catalogue.
        new = tmp_path / "next.duckdb"
        shutil.copyfile(home_copy / "catalog.duckdb", new)
        con = duckdb.connect(str(new))
        con.execute("DELETE FROM explanations WHERE latent = ?", [before[0][1]])
        con.close()
        os.replace(new, home_copy / "catalog.duckdb")
        after = _rows(c.get("/latents").text)
    assert after == before[1:]


def test_cli_report_and_ui_errors(ui_home, tmp_path):
    from typer.testing import CliRunner

    from interp.cli import app

    runner = CliRunner()
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["report", "--home", str(ui_home), "-o", str(out)])
    assert res.exit_code == 0 and out.is_file() and "<svg" in out.read_text()
    res = runner.invoke(app, ["report", "--home", str(ui_home), "--run", "nope"])
    assert res.exit_code == 2 and "known runs" in res.output
    res = runner.invoke(app, ["ui", "--home", str(tmp_path / "empty")])
    assert res.exit_code == 2 and "no catalogue" in res.output


def test_requests_keep_working_while_the_catalogue_is_replaced(home_copy, tmp_path):
    import os
    import shutil
    import threading

    from interp.ui.data import Catalog, overview

    catalog, errors, done = Catalog(home_copy), [], threading.Event()

    def reader():
        while not done.is_set():
            try:
                with catalog.cursor() as cur:
                    assert overview(cur)["saes"]
            except Exception as err:  # noqa: BLE001 - collected and asserted on below
                errors.append(err)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(5):
        new = tmp_path / f"next{i}.duckdb"
        shutil.copyfile(home_copy / "catalog.duckdb", new)
        os.replace(new, home_copy / "catalog.duckdb")
    done.set()
    for t in threads:
        t.join(30)
    catalog.close()
    assert errors == []


@pytest.mark.parametrize("params", [{"page": "inf"}, {"page": "nan"}, {"page": "1e309"},
                                    {"page": "-1"}, {"page": "0"}, {"page": "1.5"}, {"page": "1e300"},
                                    {"fmin": "nan"}, {"fmax": "-inf"}, {"fmin": "-0.5"},
                                    {"min_detection": "nan"}, {"min_detection": "1e309"},
                                    {"page": "two"}])
def test_unusable_numbers_in_the_url_are_a_400(client, params):
    r = client.get("/latents", params=params)
    assert r.status_code == 400 and "Bad request" in r.text
    assert next(iter(params)) in r.text


def test_pages_carry_a_content_security_policy(client):
    for url in ("/", "/latents", "/latents?page=inf", "/sae/nope/latent/0"):
        csp = client.get(url).headers.get("content-security-policy", "")
        assert "default-src 'none'" in csp and "script-src 'self'" in csp, url
        assert "unsafe-inline" not in csp.split("style-src-attr")[0], url  # no inline scripts/sheets


def test_overview_and_api_say_whether_the_judge_is_informative(home_copy):
    from starlette.testclient import TestClient

    from interp.scoring.controls import verdict
    from interp.ui.app import create_app

    con = duckdb.connect(str(home_copy / "catalog.duckdb"))
    score_key, sae = con.execute("SELECT score_key, sae_key FROM runs").fetchone()
    rows = [("detection", 12, 0.9, 0.5, 0.4, 0.2, 0.6, True),
            ("fuzzing", 12, 0.6, 0.58, 0.02, -0.1, 0.15, False)]
    for scorer, n, real, ctrl, lift, lo, hi, informative in rows:
        row = {"control": "shuffled", "n_latents": n, "lift": lift, "ci_low": lo, "ci_high": hi,
               "informative": informative}
        con.execute("INSERT INTO controls (score_key, sae_key, scorer, control, metric, n_latents, "
                    "real_mean, control_mean, lift, ci_low, ci_high, informative, verdict) "
                    "VALUES (?, ?, ?, 'shuffled', 'balanced_accuracy', ?, ?, ?, ?, ?, ?, ?, ?)",
                    [score_key, sae, scorer, n, real, ctrl, lift, lo, hi, informative, verdict(row)])
    con.close()
    with TestClient(create_app(home_copy, preload_model=False), base_url=LOCAL) as c:
        html = unescape(c.get("/").text)
        runs = c.get("/api/runs").json()["runs"]
    assert "detection</b>: explanations beat shuffled ones by 0.40 [0.20, 0.60]." in html
    assert "fuzzing</b>: the judge cannot tell explanations from shuffled ones" in html
    judge = {j["scorer"]: j for j in runs[0]["judge"]}
    assert judge["detection"]["informative"] is True and judge["fuzzing"]["informative"] is False
    assert judge["fuzzing"]["verdict"].startswith("the judge cannot tell")


def test_overview_says_when_no_control_was_scored(client):
    assert "no shuffled control scored" in client.get("/").text
    assert client.get("/api/runs").json()["runs"][0]["judge"] == []
