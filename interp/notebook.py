"""The notebook-sized Python API: `cat = interp.open(home)`, then a handful of calls returning
pyarrow tables (`.to_pandas()` for pandas) or plain strings, all through the catalogue's
locked-down read-only connection.

    import interp
    cat = interp.open("~/.interp")
    cat.saes()                          # SAEs with training metrics
    cat.latents(sae="3fa2", explained=True)
    cat.explanations(sae="3fa2", latent=7)   # text, status, {scorer: headline} of one score run
    cat.score_runs(sae="3fa2")               # per score run and scorer: mean, chance level
    cat.compare_score_runs("60bd", "c3a9")   # two score runs side by side, per latent and scorer
    cat.examples("3fa2", 7, kind="top")      # ['the <<cat>> sat', ...]
    cat.logits("3fa2", 7)                    # promoted / suppressed tokens
    cat.sql("SELECT count(*) FROM latents WHERE dead").to_pandas()

A front end (like the browser): it reads the catalogue through storage, and each call opens and
closes its own connection, so a publish between two calls is seen by the second.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from interp.mine.examples import mark_tokens
from storage.query import check_read_only
from storage.read import queries, reading, resolve_sae

Q = queries("notebook")


def _arrow(con, sql: str, params: dict[str, Any] | list | None) -> pa.Table:
    # sql(...).to_arrow_table() materialises once (execute(...).to_arrow_table() copies twice); on
    # a cursor of its own, as the browser does: the opening checks leave a result on `con`.
    cur = con.cursor()
    try:
        return cur.sql(sql, params=params or None).to_arrow_table()
    finally:
        cur.close()


class Catalogue:
    """Read-only access to `<home>/catalog.duckdb`. SAE arguments take a key or a unique prefix."""

    def __init__(self, home: str | Path | None = None):
        self.home = Path(home or os.environ.get("INTERP_HOME", ".interp")).expanduser()

    def __repr__(self) -> str:
        return f"interp.Catalogue({str(self.home)!r})"

    @contextlib.contextmanager
    def _con(self) -> Iterator[Any]:
        with reading(self.home) as con:
            yield con

    def _table(self, sql: str, params: dict[str, Any] | list | None = None) -> pa.Table:
        with self._con() as con:
            return _arrow(con, sql, params)

    def _key(self, con, sae: str | None) -> str | None:
        return None if sae is None else resolve_sae(con, sae)

    def sql(self, query: str, params: list | dict | None = None) -> pa.Table:
        """Any one SELECT (values bound from `params`) as a pyarrow table; refuses anything else."""
        check_read_only(query)
        return self._table(query, params)

    def saes(self) -> pa.Table:
        """Every SAE with its training metrics, newest first."""
        return self._table(Q["saes"])

    def latents(self, sae: str | None = None, *, explained: bool = False) -> pa.Table:
        """One row per latent (frequency, max/mean activation, dead) with its newest ok
        explanation; `explained=True` keeps only explained latents."""
        with self._con() as con:
            return _arrow(con, Q["latents"], {"sae": self._key(con, sae), "explained": explained})

    def explanations(self, sae: str | None = None, latent: int | None = None, *,
                     score_run: str | None = None) -> pa.Table:
        """Explanations (newest first per latent) with `scores`: {scorer: headline metric} of
        one score run, named by `score_key`: each explanation's newest, or `score_run` (a key
        or unique prefix; then only the explanations it scored)."""
        with self._con() as con:
            run = None if score_run is None else self._run(con, score_run)
            return _arrow(con, Q["explanations"], {"sae": self._key(con, sae), "lat": latent,
                                                   "run": run})

    def score_runs(self, sae: str | None = None) -> pa.Table:
        """Score runs, newest first, one row per run and scorer: the mean of the run's own
        headline scores, how many it scored, the metric and its chance level."""
        with self._con() as con:
            return _arrow(con, Q["score_runs"], {"sae": self._key(con, sae)})

    def compare_score_runs(self, a: str, b: str) -> pa.Table:
        """Two score runs (keys or unique prefixes) side by side: per latent and scorer each
        run's headline score, b - a, the metric and chance levels (storage/sql/compare.sql
        `score_runs_side_by_side`)."""
        with self._con() as con:
            return _arrow(con, queries("compare")["score_runs_side_by_side"],
                          {"a": self._run(con, a), "b": self._run(con, b)})

    def _run(self, con, run: str) -> str:
        keys = [r[0] for r in con.execute(Q["score_run_keys"], {"run": run}).fetchall()]
        if not keys or (len(keys) > 1 and keys[0] != run):
            what = "matches no score run" if not keys else "matches several score runs"
            raise ValueError(f"score run {run!r} {what}; cat.score_runs() lists them")
        return keys[0]

    def examples(self, sae: str, latent: int, kind: str = "top", n: int = 10) -> list[str]:
        """Example windows as text, activating tokens marked <<like this>>; kind is one of
        top, quantile, random, hard."""
        with self._con() as con:
            rows = con.execute(Q["examples"], {"sae": resolve_sae(con, sae), "lat": latent,
                                               "kind": kind, "n": n}).fetchall()
        return [mark_tokens(tuple(r[4]), [a > 0 for a in r[5]]) for r in rows]

    def logits(self, sae: str, latent: int) -> pa.Table:
        """The tokens the latent's decoder direction promotes and suppresses (logit lens)."""
        with self._con() as con:
            return _arrow(con, Q["logits"], {"sae": resolve_sae(con, sae), "lat": latent})
