"""`interp` commands on the catalogue: query, show, export, publish, and the browser and report
front ends. They start no run and no Prefect; interp/cli.py registers them on the app."""
from __future__ import annotations

from pathlib import Path

import typer

from interp.cli_common import cli_errors, fail, setup_logging
from interp.config_base import default_home


@cli_errors
def query(sql: str = typer.Argument(..., help="A read-only SQL statement."),
          home: Path | None = typer.Option(None, help="Catalogue home ($INTERP_HOME)."),
          fmt: str = typer.Option("table", "--format", help="table | csv | json"),
          limit: int = typer.Option(200, help="Rows to print at most (table format).")) -> None:
    """Run read-only SQL against the catalogue and print the result."""
    from storage.query import ReadOnlyViolation, render, run_query
    from storage.read import CatalogError

    cfg_home = home or default_home()
    try:
        cols, rows = run_query(cfg_home, sql)
    except (ReadOnlyViolation, FileNotFoundError, CatalogError) as err:
        fail(str(err))
    except Exception as err:  # noqa: BLE001 - SQL errors from DuckDB, shown as they are
        fail(f"query failed: {err}")

    typer.echo(render(cols, rows, fmt, limit))


@cli_errors
def show(sae: str = typer.Argument(..., help="SAE key (a unique prefix is enough)."),
         latent: int = typer.Argument(...),
         home: Path | None = typer.Option(None, help="Catalogue home ($INTERP_HOME)."),
         n: int = typer.Option(5, help="Examples per kind.")) -> None:
    """Print a latent's explanations, scores and examples with activating tokens marked."""
    from storage.query import show_latent
    from storage.read import CatalogError

    try:
        typer.echo(show_latent(home or default_home(), sae, latent, n))
    except (ValueError, FileNotFoundError, CatalogError) as err:
        fail(str(err))


@cli_errors
def export(sae: str = typer.Argument(..., help="SAE key (a unique prefix is enough)."),
           fmt: str = typer.Option(..., "--format", help="neuronpedia | saebench"),
           out: Path = typer.Option(Path("exports"), "--out", "-o", help="Output directory."),
           home: Path | None = typer.Option(None, help="Catalogue home ($INTERP_HOME)."),
           model_id: str | None = typer.Option(None, help="Neuronpedia modelId (default: "
                                               "the model's name)."),
           source_id: str | None = typer.Option(None, help="Neuronpedia source id (default: "
                                                "<layer>-interp-<arch>-<key>)."),
           score_run: str | None = typer.Option(None, help="Score run (key or unique prefix) "
                                                "to export; default: the SAE's newest.")) -> None:
    """Export an SAE's latents, explanations and one score run's scores (Neuronpedia, SAEBench)."""
    from storage.export import export as run_export
    from storage.read import CatalogError

    ids = {"model_id": model_id, "source_id": source_id} if fmt == "neuronpedia" else {}
    try:
        files = run_export(home or default_home(), sae, fmt, out, score_run, **ids)
    except (ValueError, FileNotFoundError, CatalogError) as err:
        fail(str(err))
    typer.echo(f"wrote {len(files)} file(s) under {out}")


@cli_errors
def publish(home: Path | None = typer.Option(None, help="Artifact home ($INTERP_HOME)."),
            rebuild: bool = typer.Option(False, help="Recreate the catalogue from all artifacts.")) -> None:
    """Publish finished runs into the catalogue (or rebuild it from the Parquet artifacts)."""
    from interp.preflight import check_home
    from storage.catalog import load_run
    from storage.catalog import publish as do_publish
    from storage.catalog import rebuild as do_rebuild
    from storage.read import CatalogError

    h = home or default_home()
    check_home(h)  # a file as home published nothing with rc 0, or failed with "File exists"
    try:
        if rebuild:
            typer.echo(f"rebuilt from {do_rebuild(h)} artifacts")
            return
        n = 0
        for run_json in sorted((Path(h) / "runs").glob("*/run.json")):
            run = load_run(run_json.parent)
            if run.get("status", "complete") != "complete":
                continue  # a failed run's record is kept for its figures, not published
            n += len(do_publish(h, run["artifacts"], [run]))
    except CatalogError as err:
        fail(str(err))
    typer.echo(f"published {n} new artifacts")


@cli_errors
def ui(home: Path | None = typer.Option(None, help="Catalogue home ($INTERP_HOME)."),
       host: str = typer.Option("127.0.0.1", help="Interface to bind; the default keeps it local."),
       port: int = typer.Option(8765, help="TCP port to serve on."),
       verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Browse latents in a local, read-only web app (runs, SAEs, latent table, latent pages)."""
    setup_logging(verbose)
    import uvicorn

    from interp.ui.app import create_app

    h = home or default_home()
    try:
        web = create_app(h, host=host, torch_threads=1)  # serving only: 1 thread is fastest
        typer.echo(f"serving {h} on http://{host}:{port}/ (Ctrl-C to stop)")
        uvicorn.run(web, host=host, port=port, log_level="warning")
    except (FileNotFoundError, OSError) as err:
        fail(str(err))


@cli_errors
def report(home: Path | None = typer.Option(None, help="Catalogue home ($INTERP_HOME)."),
           run_id: str | None = typer.Option(None, "--run", help="Run id (or a unique prefix); "
                                             "default: the newest run."),
           out: Path | None = typer.Option(None, "--out", "-o", help="HTML file to write "
                                           "(default: <home>/reports/<run id>.html).")) -> None:
    """Write a self-contained HTML report of a run that opens offline from disk."""
    from interp.report import write_report

    try:
        typer.echo(f"wrote {write_report(home or default_home(), out, run_id)}")
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
