"""The catalogue's views: the fixed ones in views.sql, and those with one column per scorer,
generated from the scorer registry on every publish (a scorer added to the registry gets its
column with no SQL edited).

Every reader of scores sees one score run at a time: `explanation_scores` has a row per
explanation and score run (`score_key`), `latest` takes each latent's newest ok explanation and
its newest score run, and `latent_match_compare` pairs two SAEs' `latest` rows. A score is never
the maximum over runs; comparing two runs is the named query `score_runs_side_by_side`
(storage/sql/compare.sql, shown in README).
"""
from __future__ import annotations

import re
from pathlib import Path

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")


def _scorers() -> list[str]:
    """Registered scorer names, checked to be plain identifiers: they are written into the DDL
    below as column names and string literals (a view cannot take bound parameters)."""
    from interp.scoring.registry import SCORERS

    bad = [n for n in SCORERS if not _IDENTIFIER.match(n)]
    if bad:
        raise ValueError(f"scorer names must be lower-case identifiers: {bad}")
    return list(SCORERS)


def explanation_scores_sql(scorers: list[str]) -> str:
    cols = ",\n       ".join(
        f"any_value(s.headline) FILTER (WHERE s.scorer = '{n}') AS {n}" for n in scorers)
    return f"""
-- One row per explanation and score run (score_key; NULL when the explanation was never scored),
-- each registered scorer's headline score of that run side by side. scored_at: when that run
-- scored this explanation, the order in which "newest score run" is meant everywhere (`latest`,
-- the browser, `interp show`, the notebook); it needs no pass over every score, as `score_runs`
-- would.
CREATE OR REPLACE VIEW explanation_scores AS
SELECT x.explanation_id, x.sae_key, x.latent, x.text, x.status, x.explainer_model, x.prompt_hash,
       x.created_at, x.explain_key, x.mine_key, s.score_key, max(s.created_at) AS scored_at,
       {cols}
FROM explanations x
LEFT JOIN score_headlines s USING (explanation_id)
GROUP BY ALL;
"""  # noqa: S608 - scorer names checked by scorers(); DDL takes no bound values


def latent_match_compare_sql(scorers: list[str]) -> str:
    cols = ", ".join(f"a.{n} AS {n}_a, b.{n} AS {n}_b" for n in scorers)
    return f"""
-- Matched latents of two SAEs of one hookpoint (by decoder cosine) with each side's newest ok
-- explanation and its newest score run; NULL columns where that side was not explained.
CREATE OR REPLACE VIEW latent_match_compare AS
SELECT m.sae_a, m.latent_a, m.sae_b, m.latent_b, m.cosine,
       a.text AS text_a, a.explainer_model AS explainer_a, a.score_key AS score_key_a,
       b.text AS text_b, b.explainer_model AS explainer_b, b.score_key AS score_key_b,
       {cols}
FROM latent_matches m
LEFT JOIN latest a ON a.sae_key = m.sae_a AND a.latent = m.latent_a
LEFT JOIN latest b ON b.sae_key = m.sae_b AND b.latent = m.latent_b;
"""  # noqa: S608 - scorer names checked by scorers()


def create_views(con, sql_dir: Path) -> None:
    """(Re)create every view in `con`'s catalogue."""
    scorers = _scorers()
    con.execute((sql_dir / "views.sql").read_text())
    con.execute(explanation_scores_sql(scorers))
    con.execute((sql_dir / "views_latest.sql").read_text())
    con.execute(latent_match_compare_sql(scorers))
