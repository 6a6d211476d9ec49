"""Read-only queries behind the latent browser: overview, latent table, latent page.

Every value from the request is bound as a parameter; the only SQL assembled in Python is from
fixed fragments chosen by whitelist (sort order, which joins), never from request text.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.embed import DIM
from storage.read import dicts, queries

# Scores are read through the catalogue's `score_headlines` view: `s.headline` is each scorer's
# headline metric as the scorer registry defines it (the `scorers` table), never chosen here.
# Every score shown is one score run's: an explanation's newest run's, or the run the user
# picked (`run`); never the best of several runs, never a mean across scorers.
PAGE_SIZE = 100
Q = queries("browse")


class Catalog:
    """A read-only connection to `<home>/catalog.duckdb`, reopened when a publish replaces the file.

    Opening costs ~40 ms on a busy 2-core machine, a fifth of the page budget, so it is kept open;
    publishing renames a new file into place, which the (inode, mtime) check notices. DuckDB hands
    back the already-open database for a path until its connection is closed, and closing it
    kills its cursors, so a reopen first waits for the requests still using the old file.
    """

    def __init__(self, home: Path):
        self.home = Path(home)
        self._con = None
        self._stamp: tuple[int, int] | None = None
        self._active = 0
        self._cond = threading.Condition()
        self.tables: frozenset[str] = frozenset()  # of the open file; optional ones are checked per page

    @contextlib.contextmanager
    def cursor(self) -> Iterator[Any]:
        """A cursor of its own for one request (connections are not shared across threads)."""
        from storage.read import catalog_path, connect_readonly, damage_named

        st = os.stat(catalog_path(self.home))
        stamp = (st.st_ino, st.st_mtime_ns)
        with self._cond:
            if self._con is None or stamp != self._stamp:
                self._cond.wait_for(lambda: self._active == 0, timeout=30)
                if self._con is not None:
                    self._con.close()
                self._con, self._stamp = connect_readonly(self.home), stamp
                self.tables = frozenset(r[0] for r in self._con.execute(
                    "SELECT table_name FROM duckdb_tables()").fetchall())
            self._active += 1
            cur = self._con.cursor()
        try:
            with damage_named(catalog_path(self.home)):  # a CatalogError, shown as such (app.py)
                yield cur
        finally:
            cur.close()
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            if self._con is not None:
                self._con.close()
                self._con = None




def scorers(cur) -> list[str]:
    return [r[0] for r in cur.execute(Q["scorers_present"]).fetchall()]


def score_runs(cur) -> list[dict[str, Any]]:
    """Score runs, newest first, each with `scorers`: per scorer the mean of the run's own
    headline scores, how many it scored, the metric and its chance level."""
    runs: dict[str, dict[str, Any]] = {}
    for r in dicts(cur, Q["score_run_summaries"]):
        run = runs.setdefault(r["score_key"], {k: r[k] for k in (
            "score_key", "sae_key", "explain_key", "scored_at")} | {"scorers": []})
        run["scorers"].append({k: r[k] for k in ("scorer", "metric", "mean", "n_scored",
                                                  "n_latents", "chance")})
    return list(runs.values())


def overview(cur) -> dict[str, Any]:
    """Runs (newest first, each with `judge`: per scorer, whether the judge beat shuffled
    explanations, in one sentence), SAEs with their training metrics, labelling progress and
    `score_run` (their newest score run's summary per scorer, or None), and every score run."""
    runs, saes, scored = dicts(cur, Q["runs"]), dicts(cur, Q["saes"]), score_runs(cur)
    verdicts: dict[str, list[dict]] = {}
    for v in dicts(cur, Q["judge_verdicts"]):
        verdicts.setdefault(v.pop("score_key"), []).append(v)
    for r in runs:  # [] when the run scored no shuffled control (score.controls)
        r["judge"] = verdicts.get(r["score_key"], [])
    for s in saes:
        s["score_run"] = next((r for r in scored if r["sae_key"] == s["sae_key"]), None)
    return {"runs": runs, "saes": saes, "score_runs": scored}


@dataclass(frozen=True)
class LatentFilter:
    """The latent table's query: every field comes from the URL and is bound, never formatted."""

    sae: str | None = None
    text: str | None = None              # ILIKE match on explanation text
    semantic: list[float] | None = None  # query embedding, ranked by cosine similarity
    min_score: dict[str, float] = field(default_factory=dict)  # scorer -> minimum headline metric
    freq_min: float = 0.0
    freq_max: float = 1.0
    explained_only: bool = True
    sort: str = "latent"                 # 'latent' | 'frequency' | 'max_act' | a scorer name
    run: str | None = None               # a score run's full key: its explanations and scores
    offset: int = 0
    limit: int = PAGE_SIZE


def _order(f: LatentFilter, scorer_names: list[str], params: dict[str, Any]) -> str:
    if f.semantic is not None:
        return "sim DESC NULLS LAST, lat.latent"
    if f.sort == "frequency":
        return "lat.frequency DESC, lat.latent"
    if f.sort == "max_act":
        return "lat.max_act DESC, lat.latent"
    if f.sort in scorer_names:
        params["sort_scorer"] = f.sort
        return ("(SELECT sc.headline FROM sc WHERE sc.explanation_id = best.explanation_id "
                "AND sc.scorer = $sort_scorer) DESC NULLS LAST, lat.latent")
    return "lat.sae_key, lat.latent"


# The headline scores that the latent table sorts and filters by: one row per explanation and
# scorer, from the explanation's newest score run (whose rows were written last) or from $run.
_RUN_SCORES = """,
        run_of AS (
            SELECT explanation_id, arg_max(score_key, created_at) AS score_key FROM score_headlines
            WHERE ($sae IS NULL OR sae_key = $sae) AND ($run IS NULL OR score_key = $run)
            GROUP BY explanation_id),
        sc AS (
            SELECT s.explanation_id, s.scorer, s.headline
            FROM score_headlines s JOIN run_of USING (explanation_id, score_key))"""


def latent_table(cur, f: LatentFilter) -> tuple[list[dict[str, Any]], int]:
    """One page of latents (with their best-matching ok explanation; with `f.run`, among the
    explanations that score run scored) and the total match count. Each row's `scores` are its
    explanation's newest score run's (or f.run's), `score_key` says which run."""
    params: dict[str, Any] = {"sae": f.sae, "q": f"%{f.text}%" if f.text else None,
                              "fmin": f.freq_min, "fmax": f.freq_max,
                              "lim": f.limit, "off": f.offset, "run": f.run}
    sim, emb_join = "NULL::DOUBLE", ""
    if f.semantic is not None:
        sim = f"array_cosine_similarity(e.embedding, $qvec::FLOAT[{DIM}])"
        emb_join = "JOIN explanation_embeddings e USING (explanation_id)"
        params["qvec"] = f.semantic
    names = scorers(cur)
    thresholds = []
    for i, (scorer, lo) in enumerate(sorted(f.min_score.items())):
        params[f"s{i}"], params[f"t{i}"] = scorer, lo
        thresholds.append(f"AND EXISTS (SELECT 1 FROM sc WHERE sc.explanation_id = "  # noqa: S608 - values bound
                          f"best.explanation_id AND sc.scorer = $s{i} AND sc.headline >= $t{i})")
    order = _order(f, names, params)
    run_scores = _RUN_SCORES if thresholds or "sc.headline" in order else ""
    searching = f.text or f.semantic is not None or f.min_score
    join = "JOIN" if (f.explained_only or searching) else "LEFT JOIN"
    sql = f"""
        WITH lat AS (
            SELECT sae_key, latent, frequency, max_act, dead FROM latents
            WHERE ($sae IS NULL OR sae_key = $sae)
            QUALIFY row_number() OVER (PARTITION BY sae_key, latent ORDER BY mine_key) = 1),
        cand AS (
            SELECT x.sae_key, x.latent, x.explanation_id, x.text, x.created_at, {sim} AS sim
            FROM explanations x {emb_join}
            WHERE x.status = 'ok' AND ($sae IS NULL OR x.sae_key = $sae)
              AND ($q IS NULL OR x.text ILIKE $q)
              AND ($run IS NULL OR x.explain_key = (
                  SELECT any_value(explain_key) FROM scores WHERE score_key = $run))),
        best AS (
            SELECT * FROM cand QUALIFY row_number() OVER (
                PARTITION BY sae_key, latent ORDER BY sim DESC NULLS LAST, created_at DESC,
                                                      explanation_id DESC) = 1){run_scores}
        SELECT lat.sae_key, lat.latent, lat.frequency, lat.max_act, lat.dead,
               best.explanation_id, best.text, best.sim, count(*) OVER () AS total
        FROM lat {join} best USING (sae_key, latent)
        WHERE lat.frequency BETWEEN $fmin AND $fmax {' '.join(thresholds)}
        ORDER BY {order}
        LIMIT $lim OFFSET $off"""  # noqa: S608 - clauses from this module; every value is bound
    rows = dicts(cur, sql, params)
    ids = [r["explanation_id"] for r in rows if r["explanation_id"]]
    by_exp: dict[str, dict[str, float]] = {}
    run_of: dict[str, str] = {}
    if ids:
        for eid, scorer, value, key in cur.execute(Q["headlines_of"],
                                                   {"ids": ids, "run": f.run}).fetchall():
            by_exp.setdefault(eid, {})[scorer], run_of[eid] = value, key
    for r in rows:
        r["scores"], r["score_key"] = by_exp.get(r["explanation_id"], {}), run_of.get(r["explanation_id"])
    return rows, (rows[0]["total"] if rows else 0)
