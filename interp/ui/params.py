"""The latent table's filter, read from URL query parameters (the page and the JSON API share it),
the score run it shows (`run`, checked against the catalogue) and the semantic search that adds
the query's MiniLM embedding to it."""
from __future__ import annotations

import dataclasses
import math

from interp import embed
from interp.ui import data

MAX_PAGE = 1e9  # keeps the row offset far inside DuckDB's BIGINT; no catalogue has a billion pages


class BadParameter(ValueError):
    """A URL query parameter that is not a usable number (shown with HTTP 400)."""


def _float(params, name: str, default: float | None = None, *, lo: float | None = None,
           hi: float | None = None) -> float | None:
    """A finite number (>= lo) from the URL; empty means default. inf, nan and 1e309 are refused:
    they reach SQL and paging arithmetic, where they fail or match nothing."""
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except ValueError:
        raise BadParameter(f"{name}={value!r} is not a number") from None
    if not math.isfinite(number) or (lo is not None and number < lo) or (hi is not None and number > hi):
        raise BadParameter(f"{name}={value!r}: expected a finite number"
                           + (f" from {lo:g}" if lo is not None else "")
                           + (f" to {hi:g}" if hi is not None else ""))
    return number


def parse_filter(params, scorer_names: list[str]) -> data.LatentFilter:
    """The latent table's filter from URL query parameters; BadParameter for unusable numbers."""
    page = _float(params, "page", 1.0, lo=1.0, hi=MAX_PAGE)
    if page != int(page):
        raise BadParameter(f"page={params.get('page')!r}: expected a whole page number")
    mins = {s: v for s in scorer_names if (v := _float(params, f"min_{s}")) is not None}
    return data.LatentFilter(
        sae=params.get("sae") or None, text=(params.get("q") or "").strip() or None,
        min_score=mins, freq_min=_float(params, "fmin", 0.0, lo=0.0),
        freq_max=_float(params, "fmax", 1.0, lo=0.0),
        explained_only=params.get("all") != "1", sort=params.get("sort") or "latent",
        run=(params.get("run") or "").strip() or None, offset=(int(page) - 1) * data.PAGE_SIZE)


def with_score_run(cur, f: data.LatentFilter) -> data.LatentFilter:
    """The filter with `run` (a score run's key or unique prefix) made the full key, and `sae`
    the SAE it scored; BadParameter for a run that is not in the catalogue or is ambiguous, or
    one that scored another SAE than `sae`."""
    if f.run is None:
        return f
    rows = cur.execute(data.Q["score_run"], {"run": f.run}).fetchall()
    if not rows or (len(rows) > 1 and rows[0][0] != f.run):
        what = "no score run" if not rows else "the prefix of several score runs"
        raise BadParameter(f"run={f.run!r} is {what}; the overview page (/) lists the score runs")
    key, sae, _ = rows[0]
    if f.sae is not None and f.sae != sae:
        raise BadParameter(f"run={f.run!r} scored SAE {sae}, not sae={f.sae!r}: drop one of them")
    return dataclasses.replace(f, run=key, sae=sae)


def with_query_embedding(cur, f: data.LatentFilter, query: str, tables: frozenset[str]):
    """The filter with the query's MiniLM embedding, or a note saying why semantic search can't run."""
    if "explanation_embeddings" not in tables or \
            not cur.execute(data.Q["n_embeddings"]).fetchone()[0]:
        return f, ("this catalogue has no explanation embeddings yet: `interp publish` adds them "
                   "from explain artifacts that carry explanation_embeddings.parquet")
    try:
        vec = embed.embed_texts([query])[0].tolist()
    except Exception as err:  # noqa: BLE001 - shown on the page; the rest of the table still works
        return f, f"semantic search is unavailable: MiniLM failed to load ({err})"
    return dataclasses.replace(f, semantic=vec), None
