"""The JSON API beside the HTML pages: the same reads, as data, for notebooks and other tools.

`/api/runs` lists the runs, each with `judge`: per scorer, whether the judge beat shuffled
explanations (informative) and that verdict in one sentence; `/api/score_runs` the score runs,
newest first, each with its own per-scorer means and chance levels. `/api/latents?...` takes
exactly the latent table's URL parameters (sae, q, s, min_<scorer>, fmin, fmax, all, sort, run,
page); `/api/sae/<key>/latent/<n>[?run=<score key>]` is the latent page's content. GET only
over the same read-only catalogue connection; non-finite floats become null (JSON has no NaN).
"""
from __future__ import annotations

import json
import math
from typing import Any

from interp.ui import data
from interp.ui.latent import latent_page
from interp.ui.params import BadParameter, parse_filter, with_query_embedding, with_score_run


def _clean(v: Any) -> Any:
    """JSON-safe: NaN/inf -> None, tuples -> lists, anything else unknown -> its string."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if v is None or isinstance(v, (str, int, bool)):
        return v
    return str(v)


def response(payload: Any, status: int = 200):
    from starlette.responses import Response

    return Response(json.dumps(_clean(payload), allow_nan=False), status_code=status,
                    media_type="application/json")


def latents_payload(cur, params, tables: frozenset[str]) -> dict[str, Any]:
    """One page of the latent table as JSON: the same filter, order and paging as /latents."""
    f = with_score_run(cur, parse_filter(params, data.scorers(cur)))
    semantic, note = (params.get("s") or "").strip(), None
    if semantic:
        f, note = with_query_embedding(cur, f, semantic, tables)
    rows, total = data.latent_table(cur, f)
    for r in rows:
        r.pop("total", None)
    return {"total": total, "page": f.offset // data.PAGE_SIZE + 1, "page_size": data.PAGE_SIZE,
            "note": note, "latents": rows}


def latent_payload(cur, key: str, n: int, tables: frozenset[str],
                   run: str | None = None) -> dict[str, Any] | None:
    """The latent page's content as JSON (examples as token and activation lists)."""
    page = latent_page(cur, key, n, tables, run)
    if page is None:
        return None
    examples = {}
    for kind, rows in page["examples"].items():
        examples[kind] = [{**{k: v for k, v in r.items() if k not in ("shaded", "html")},
                           "tokens": [t.text for t in r["shaded"]],
                           "acts": [t.act for t in r["shaded"]]} for r in rows]
    stats = {k: v for k, v in page["stats"].items() if k != "hist"}
    return {"sae": page["sae"], "latent": n, "stats": stats, "explanations": page["explanations"],
            "logits": page["logits"], "heads": page["heads"], "matches": page["matches"],
            "examples": examples}


def routes(catalog: data.Catalog, resolve) -> list:
    """Starlette routes of the API over `catalog`; `resolve(cur, key)` expands an SAE key prefix."""
    from starlette.routing import Route

    def latents(request):
        with catalog.cursor() as cur:
            try:
                return response(latents_payload(cur, request.query_params, catalog.tables))
            except BadParameter as err:
                return response({"error": str(err)}, 400)

    def latent(request):
        key, n = request.path_params["key"], request.path_params["n"]
        with catalog.cursor() as cur:
            full = resolve(cur, key)
            run = request.query_params.get("run") or None
            page = latent_payload(cur, full, n, catalog.tables, run) if full else None
        if page is None:
            return response({"error": f"no latent {n} in an SAE with key {key!r}"}, 404)
        return response(page)

    def runs(request):
        with catalog.cursor() as cur:
            return response({"runs": data.overview(cur)["runs"]})

    def score_runs(request):
        with catalog.cursor() as cur:
            return response({"score_runs": data.score_runs(cur)})

    return [Route("/api/runs", runs), Route("/api/score_runs", score_runs),
            Route("/api/latents", latents), Route("/api/sae/{key}/latent/{n:int}", latent)]
