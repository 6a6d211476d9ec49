"""The `interp ui` web app: Starlette routes rendering Jinja2 templates over a read-only catalogue.

GET only; no build step and no external assets (CSS/JS are served from `static/`). Templates
autoescape, so corpus tokens and LLM text always render as text.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape

from interp import embed
from interp.ui import data, svg
from interp.ui.latent import heads_text, latent_page
from interp.ui.params import BadParameter, parse_filter, with_query_embedding, with_score_run

log = logging.getLogger(__name__)
HERE = Path(__file__).parent


def _num(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.3g}%"


def _when(ts) -> str:
    return "–" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def make_env() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(["html"], default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=_num, pct=_pct, when=_when, short=lambda k: (k or "")[:10],
                       fromjson=lambda s: json.loads(s) if s else {})
    env.globals.update(histogram=svg.histogram, urlencode=urlencode, heads_text=heads_text)
    return env


# Everything the pages load comes from this server; inline style attributes carry the token
# shading (--a) and score bars (--v), so only attribute styles are allowed inline, never scripts.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
       "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def create_app(home: Path, *, host: str = "127.0.0.1", preload_model: bool = True,
               torch_threads: int | None = None):
    """The Starlette app over `<home>/catalog.duckdb` (MiniLM preloads in the background).

    host: the interface it is served on (`interp ui --host`); requests must name it or a loopback
    name in their Host header (interp.ui.hosts), which stops DNS-rebinding pages reading it.

    torch_threads: intra-op threads for embedding search queries, process-wide. One is best for a
    single short query: with two on a busy 2-core machine the median query took 1 s instead of
    60 ms (measured), as the threads wait for each other. None leaves torch's setting alone.
    """
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import HTMLResponse
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    from interp.ui import api
    from interp.ui.hosts import HostCheck
    from storage.read import CatalogError, connect_readonly

    catalog, env = data.Catalog(home), make_env()
    connect_readonly(home).close()  # fail now, naming the path and what to do, if there is none

    def render(name: str, status: int = 200, **ctx) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(home=str(home), **ctx), status_code=status,
                            headers={"Content-Security-Policy": CSP})

    _warm_up(preload_model, torch_threads)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        catalog.close()

    routes = [*api.routes(catalog, _resolve), *_pages(catalog, render),
              Mount("/static", StaticFiles(directory=HERE / "static"), name="static")]
    return Starlette(lifespan=lifespan, routes=routes, exception_handlers={CatalogError: _unreadable(render)},
                     middleware=[Middleware(HostCheck, bind_host=host)])


def _pages(catalog: data.Catalog, render) -> list:
    """The HTML pages' routes: the overview, the latent table, a latent's page and an SAE's
    (the latent table filtered to it)."""
    from starlette.responses import RedirectResponse
    from starlette.routing import Route

    def index(request):
        with catalog.cursor() as cur:
            return render("index.html", **data.overview(cur), scorers=data.scorers(cur))

    def latents(request):
        with catalog.cursor() as cur:
            try:
                ctx = _latents_context(cur, request.query_params, catalog.tables)
            except BadParameter as err:
                return render("error.html", 400, message=str(err), heading="Bad request")
            return render("latents.html", **ctx)

    def latent(request):
        key, n = request.path_params["key"], request.path_params["n"]
        with catalog.cursor() as cur:
            full = _resolve(cur, key)
            if full is not None and full != key:  # a prefix: send the stable, full-key URL
                query = f"?{request.url.query}" if request.url.query else ""
                return RedirectResponse(f"/sae/{full}/latent/{n}{query}", status_code=307)
            run = request.query_params.get("run") or None
            page = latent_page(cur, key, n, catalog.tables, run) if full else None
        if page is None:
            return render("error.html", 404, message=f"no latent {n} in an SAE with key {key!r}")
        return render("latent.html", **page)

    def sae(request):
        return RedirectResponse(f"/latents?{urlencode({'sae': request.path_params['key']})}", 307)

    return [Route("/", index), Route("/latents", latents), Route("/sae/{key}/latent/{n:int}", latent),
            Route("/sae/{key}", sae)]


def _unreadable(render):
    """The handler of CatalogError (a damaged catalogue): a page, or JSON under /api/, with the
    error's message, which names the file and says what to do."""
    from interp.ui import api

    def handle(request, err):
        log.error("%s", err)
        if request.url.path.startswith("/api/"):
            return api.response({"error": str(err)}, 500)
        return render("error.html", 500, message=str(err), heading="Catalogue unreadable")
    return handle


def _resolve(cur, key: str) -> str | None:
    """The full SAE key for a key or unique prefix; None (a 404) when no single SAE matches."""
    from storage.read import resolve_sae

    try:
        return resolve_sae(cur, key)
    except ValueError:
        return None


def _latents_context(cur, params, tables: frozenset[str]) -> dict:
    """Template context of the latent table: filtered rows, the filter, paging and choices."""
    names = data.scorers(cur)
    f = with_score_run(cur, parse_filter(params, names))
    semantic, note = (params.get("s") or "").strip(), None
    if semantic:
        f, note = with_query_embedding(cur, f, semantic, tables)
    rows, total = data.latent_table(cur, f)
    saes = [r[0] for r in cur.execute(data.Q["sae_keys"]).fetchall()]
    sort_options = [("latent", "latent"), ("frequency", "frequency"), ("max_act", "max activation")]
    return {"rows": rows, "total": total, "f": f, "scorers": names, "saes": saes,
            "sort_options": sort_options + [(s, f"{s} score") for s in names],
            "semantic": semantic, "note": note, "page": f.offset // data.PAGE_SIZE + 1,
            "base": {k: v for k, v in params.items() if k != "page" and v != ""},
            "last_page": max(1, math.ceil(total / data.PAGE_SIZE))}


def _warm_up(preload_model: bool, torch_threads: int | None) -> None:
    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    if preload_model:
        threading.Thread(target=_preload, name="minilm-preload", daemon=True).start()


def _preload() -> None:
    try:
        embed.load_model()
    except Exception as err:  # noqa: BLE001 - semantic search then fails with this error per request
        log.warning("could not load MiniLM for semantic search: %s", err)

