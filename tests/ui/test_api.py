"""The JSON API (/api/...) and the output side of a latent (page and `interp show`), each checked
against SQL on the same catalogue."""
from __future__ import annotations

import json

import pytest

from storage.query import show_latent
from tests.ui.conftest import LOCAL, query


def test_api_latents_match_sql(client, ui_home):
    got = client.get("/api/latents").json()
    ok = query(ui_home, "SELECT DISTINCT sae_key, latent FROM explanations WHERE status = 'ok'")
    assert got["total"] == len(ok) and {(r["sae_key"], r["latent"]) for r in got["latents"]} == set(ok)
    for r in got["latents"]:
        text, = query(ui_home, "SELECT text FROM explanations WHERE explanation_id = ?",
                      [r["explanation_id"]])[0]
        assert r["text"] == text
        heads = dict(query(ui_home, "SELECT scorer, headline FROM score_headlines "
                                    "WHERE explanation_id = ?", [r["explanation_id"]]))
        assert r["scores"] == pytest.approx(heads)
    everything = client.get("/api/latents?all=1&sort=frequency").json()
    freqs = query(ui_home, "SELECT latent, frequency FROM latents ORDER BY frequency DESC, latent")
    assert [(r["latent"], r["frequency"]) for r in everything["latents"]] == \
        [(lat, pytest.approx(f)) for lat, f in freqs]


def test_api_filters_are_the_tables_filters(client, ui_home):
    fmax = 0.2
    got = client.get(f"/api/latents?all=1&fmax={fmax}").json()
    want = query(ui_home, "SELECT latent FROM latents WHERE frequency <= ? ORDER BY latent", [fmax])
    assert [r["latent"] for r in got["latents"]] == [r[0] for r in want]
    assert client.get("/api/latents?fmin=nan").status_code == 400
    assert "error" in client.get("/api/latents?fmin=nan").json()


def test_api_latent_matches_sql(client, ui_home):
    sae, latent = query(ui_home, "SELECT sae_key, latent FROM explanations WHERE status = 'ok' "
                                 "ORDER BY latent LIMIT 1")[0]
    got = client.get(f"/api/sae/{sae[:8]}/latent/{latent}").json()
    assert got["sae"]["sae_key"] == sae and got["latent"] == latent
    texts = query(ui_home, "SELECT text FROM explanations WHERE sae_key = ? AND latent = ? "
                           "ORDER BY created_at DESC", [sae, latent])
    assert [e["text"] for e in got["explanations"]] == [t for (t,) in texts]
    tops = query(ui_home, "SELECT tokens, acts FROM examples WHERE sae_key = ? AND latent = ? AND "
                          "kind = 'top' ORDER BY rank LIMIT 20", [sae, latent])
    assert [(e["tokens"], e["acts"]) for e in got["examples"]["top"]] == \
        [(list(t), pytest.approx(list(a))) for t, a in tops]
    promoted = query(ui_home, "SELECT token, value FROM latent_logits WHERE sae_key = ? AND "
                              "latent = ? AND direction = 'promoted' ORDER BY rank", [sae, latent])
    assert [(r["token"], r["value"]) for r in got["logits"]["promoted"]] == \
        [(t, pytest.approx(v)) for t, v in promoted]
    assert client.get(f"/api/sae/{sae}/latent/999999").status_code == 404
    assert client.post("/api/latents").status_code == 405  # read-only


def test_latent_page_and_show_list_promoted_and_suppressed_tokens(client, ui_home):
    sae, latent = query(ui_home, "SELECT sae_key, latent FROM latents ORDER BY latent LIMIT 1")[0]
    rows = query(ui_home, "SELECT direction, token FROM latent_logits WHERE sae_key = ? AND "
                          "latent = ? ORDER BY direction, rank", [sae, latent])
    assert {d for d, _ in rows} == {"promoted", "suppressed"}
    html = client.get(f"/sae/{sae}/latent/{latent}").text
    section = html.split('id="logits"')[1].split("</table>")[0]
    for _, token in rows:  # shown as escaped text, never as markup
        assert token.replace("<", "\\u003c").replace(">", "\\u003e") in section
    assert "<b>" not in section
    text = show_latent(ui_home, sae[:8], latent)
    assert "output side" in text and all(json.dumps(t) in text for _, t in rows)


def test_head_shares_on_latent_page_api_and_show(home_copy):
    """An SAE on hook_z: the top heads of a latent's decoder direction, largest first, on the
    page, in the API and in `interp show`; latents without head shares show none."""
    import duckdb
    from starlette.testclient import TestClient

    from interp.ui.app import create_app

    sae, latent, other = *query(home_copy, "SELECT sae_key, latent FROM latents ORDER BY latent "
                                           "LIMIT 1")[0], 1
    shares = [(7, 0.64), (3, 0.21), (0, 0.10), (1, 0.05)]
    con = duckdb.connect(str(home_copy / "catalog.duckdb"))
    con.executemany("INSERT INTO head_shares (sae_key, latent, head, share) VALUES (?, ?, ?, ?)",
                    [(sae, latent, h, s) for h, s in reversed(shares)])
    con.close()
    want = query(home_copy, "SELECT head, share FROM head_shares WHERE sae_key = ? AND latent = ? "
                            "ORDER BY share DESC LIMIT 3", [sae, latent])
    with TestClient(create_app(home_copy, preload_model=False), base_url=LOCAL) as c:
        html = c.get(f"/sae/{sae}/latent/{latent}").text
        assert html.split('id="heads">')[1].split("</dd>")[0] == "head 7: 64%, head 3: 21%, head 0: 10%"
        got = c.get(f"/api/sae/{sae[:8]}/latent/{latent}").json()["heads"]
        assert [(h["head"], h["share"]) for h in got] == [(h, pytest.approx(s)) for h, s in want]
        assert c.get(f"/api/sae/{sae}/latent/{other}").json()["heads"] is None
        assert 'id="heads"' not in c.get(f"/sae/{sae}/latent/{other}").text
    text = show_latent(home_copy, sae[:8], latent)
    assert "attention heads (share of decoder norm): head 7: 64%, head 3: 21%, head 0: 10%" in text
    assert "attention heads" not in show_latent(home_copy, sae[:8], other)
