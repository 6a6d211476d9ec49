"""The notebook API (`interp.open(home)`), each call checked against SQL on the same catalogue,
and `import interp` staying light."""
from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pytest

import interp
from interp.mine.examples import mark_tokens
from storage.query import ReadOnlyViolation
from tests.ui.conftest import query


@pytest.fixture(scope="module")
def cat(ui_home):
    return interp.open(ui_home)


def test_import_interp_stays_light():
    code = ("import sys, interp\n"
            "heavy = [m for m in ('duckdb', 'torch', 'storage', 'interp.notebook', 'pyarrow') "
            "if m in sys.modules]\nprint(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


def test_saes_and_latents_match_sql(cat, ui_home):
    sae = query(ui_home, "SELECT sae_key FROM saes")[0][0]
    assert cat.saes().column("sae_key").to_pylist() == [sae]
    lat = cat.latents(sae[:6])
    assert isinstance(lat, pa.Table)
    assert lat.column("latent").to_pylist() == \
        [r[0] for r in query(ui_home, "SELECT DISTINCT latent FROM latents ORDER BY latent")]
    explained = cat.latents(explained=True)
    want = query(ui_home, "SELECT latent, text FROM explanations WHERE status = 'ok' ORDER BY latent")
    assert list(zip(explained.column("latent").to_pylist(), explained.column("text").to_pylist())) == want


def test_explanations_carry_headline_scores(cat, ui_home):
    exp = cat.explanations().to_pylist()
    assert len(exp) == query(ui_home, "SELECT count(*) FROM explanations")[0][0]
    for row in exp:
        heads = dict(query(ui_home, "SELECT scorer, headline FROM score_headlines WHERE "
                                    "explanation_id = ?", [row["explanation_id"]]))
        assert dict(row["scores"] or []) == pytest.approx(heads)
    one = cat.explanations(latent=exp[0]["latent"]).column("latent").to_pylist()
    assert set(one) == {exp[0]["latent"]}


def test_examples_are_marked_text_and_logits_match_sql(cat, ui_home):
    sae, latent = query(ui_home, "SELECT sae_key, latent FROM latents ORDER BY latent LIMIT 1")[0]
    rows = query(ui_home, "SELECT tokens, acts FROM examples WHERE sae_key = ? AND latent = ? AND "
                          "kind = 'top' ORDER BY rank LIMIT 3", [sae, latent])
    assert cat.examples(sae, latent, n=3) == [mark_tokens(tuple(t), [a > 0 for a in acts])
                                             for t, acts in rows]
    assert all("<<" in text for text in cat.examples(sae, latent, n=3))
    got = cat.logits(sae, latent).to_pylist()
    want = query(ui_home, "SELECT direction, rank, token, value FROM latent_logits WHERE sae_key = ? "
                          "AND latent = ? ORDER BY direction, rank", [sae, latent])
    assert [(r["direction"], r["rank"], r["token"]) for r in got] == [w[:3] for w in want]


def test_sql_is_read_only_and_binds_values(cat, ui_home):
    n = cat.sql("SELECT count(*) AS n FROM latents WHERE frequency >= ?", [0.0]).to_pandas()
    assert int(n["n"][0]) == query(ui_home, "SELECT count(*) FROM latents")[0][0]
    with pytest.raises(ReadOnlyViolation):
        cat.sql("DELETE FROM latents")
    with pytest.raises(Exception, match="(?i)external|disabled|permission"):
        cat.sql("SELECT * FROM read_text('/etc/passwd')")
