"""Latency of every `interp ui` page over real HTTP on a copy of a run's catalogue.

    .venv/bin/python bench/ui_latency.py --home /tmp/dhome [--repeats 40]

The catalogue is copied to a temp dir (the source is never modified). The server runs
under uvicorn in this process; each page is fetched twice to warm up, then `repeats` times. The
budget is 200 ms per page.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
BUDGET_MS = 200.0


def _pages(home: Path) -> list[str]:
    from storage.read import connect_readonly

    con = connect_readonly(home)
    sae, busiest = con.execute("SELECT x.sae_key, x.latent FROM explanations x JOIN latents l "
                               "USING (sae_key, latent) WHERE x.status = 'ok' "
                               "ORDER BY l.frequency DESC LIMIT 1").fetchone()
    quiet = con.execute("SELECT latent FROM latents WHERE sae_key = ? AND latent NOT IN "
                        "(SELECT latent FROM explanations WHERE sae_key = ?) ORDER BY latent LIMIT 1",
                        [sae, sae]).fetchone()
    scorer = (con.execute("SELECT min(scorer) FROM scores").fetchone() or [None])[0]
    con.close()
    pages = ["/", "/latents", "/latents?all=1", "/latents?all=1&sort=frequency&page=3",
             "/latents?q=" + urllib.parse.quote("the"),
             "/latents?s=" + urllib.parse.quote("military history and wars"),
             f"/sae/{sae}/latent/{busiest}", "/static/style.css"]
    if scorer:
        pages += [f"/latents?min_{scorer}=0.5&fmin=0.001", f"/latents?sort={scorer}"]
    if quiet:
        pages.append(f"/sae/{sae}/latent/{quiet[0]}")
    return pages


def _fetch(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        r.read()
        assert r.status == 200, (url, r.status)
    return (time.perf_counter() - t0) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, default=Path("/tmp/dhome"))
    ap.add_argument("--repeats", type=int, default=40)
    args = ap.parse_args()
    import uvicorn

    from interp import embed
    from interp.ui.app import create_app

    with tempfile.TemporaryDirectory(prefix="ui-bench-") as tmp:
        home = Path(tmp)
        shutil.copyfile(args.home / "catalog.duckdb", home / "catalog.duckdb")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        app = create_app(home, torch_threads=1)  # as `interp ui` serves it
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        embed.load_model()  # the server preloads it too; semantic timings exclude the 10 s load
        base, worst = f"http://127.0.0.1:{port}", 0.0
        print(f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}; "
              f"{args.repeats} repeats per page after 2 warm-ups")
        print(f"{'page':70s} {'median':>8s} {'p95':>8s} {'max':>8s}  (ms)")
        for page in _pages(home):
            for _ in range(2):
                _fetch(base + page)
            ms = sorted(_fetch(base + page) for _ in range(args.repeats))
            p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
            worst = max(worst, p95)
            flag = "" if p95 < BUDGET_MS else "  OVER BUDGET"
            print(f"{page[:70]:70s} {statistics.median(ms):8.1f} {p95:8.1f} {ms[-1]:8.1f}{flag}")
        server.should_exit = True
        thread.join(10)  # let the app's lifespan close its catalogue connection
        print(f"worst p95: {worst:.1f} ms (budget {BUDGET_MS:.0f} ms)")
        return 0 if worst < BUDGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
