"""`interp` command line: run, query, show, publish, config."""
from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from typer.core import TyperGroup

try:  # typer >= 0.20 vendors its own click; its exceptions are not click's
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer on the real click
    from click import exceptions as click_exc

from interp.config_base import default_home
from interp.signals import sigterm_as_ctrl_c

if TYPE_CHECKING:
    from interp.config import RunConfig

log = logging.getLogger("interp")
PRESET_HELP = "Protocol preset under the config (user values win); see `interp presets`."
F = TypeVar("F", bound=Callable[..., Any])


class _OneLineErrors(TyperGroup):
    """Usage errors (a bad flag or value) as one `error: ...` line with rc 2, like every other
    CLI error, instead of click's usage box."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click_exc.NoArgsIsHelpError:
            # `interp` alone: the help text is the answer; typer's standalone path prints it
            return super().main(*args, standalone_mode=True, **kwargs)
        except click_exc.ClickException as err:
            where = f"{err.ctx.command_path}: " if getattr(err, "ctx", None) else ""
            typer.secho(f"error: {where}{_one_line(err.format_message())}", fg=typer.colors.RED,
                        err=True)
            sys.exit(2)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(add_completion=False, no_args_is_help=True, cls=_OneLineErrors,
                  help="Automated interpretability: explained, scored SAE latents in a DuckDB catalogue.")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "httpx2", "openai", "urllib3", "filelock", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _start_prefect(home: Path, verbose: bool = True) -> None:
    """Prefect offline and local, set before Prefect is first imported (it reads its settings
    then), its ephemeral server tied to this process's life, its console quiet without -v."""
    from flows.runtime import prefect_env, quiet_prefect_logs, start_ephemeral_server

    prefect_env(home)
    if not verbose:
        quiet_prefect_logs()
    start_ephemeral_server()


def _one_line(msg: str) -> str:
    """A (possibly multi-line) message on one line: "head: item; item" (config errors list one
    field per line)."""
    lines = [ln.strip() for ln in str(msg).splitlines() if ln.strip()]
    return " ".join(lines[:1] + ["; ".join(lines[1:])] if len(lines) > 1 else lines)


def _fail(msg: str) -> None:
    typer.secho(f"error: {_one_line(msg)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def cli_errors(fn: F) -> F:
    """Any exception a command lets escape becomes one `error: ...` line and rc 2, never a
    traceback (which -v logs at debug level). Usage errors are handled by _OneLineErrors."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, click_exc.ClickException):  # typer.Exit is a RuntimeError
            raise
        except Exception as err:  # noqa: BLE001 - the last stop before the user's terminal
            log.debug("%s failed", fn.__name__, exc_info=True)
            from storage.read import CatalogError  # a damaged catalogue: names it and the fix
            known = isinstance(err, (ValueError, OSError, CatalogError))  # messages name the file
            _fail(str(err) if known else f"{type(err).__name__}: {err}")
    return wrapper  # type: ignore[return-value]


def _config(config: Path | None, overrides: dict[str, Any], *,
            runnable: bool = True, preset: str | None = None) -> RunConfig:
    """The config, and with `runnable` the preflight checks (interp.preflight.check_run: unset
    API-key variable, home that is a file, missing prompt, bad --sae, unreadable corpus), so a
    run fails in its first second, before any model or server starts."""
    from interp.config import load_config
    from interp.preflight import check_run

    try:
        cfg = load_config(config, overrides, preset)
        if runnable:
            check_run(cfg)
    except ValueError as err:  # ConfigError and the preflight's errors: they name field or file
        _fail(str(err))
        raise  # unreachable
    return cfg


@app.command()
@cli_errors
def run(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file."),
    preset: str | None = typer.Option(None, help=PRESET_HELP),
    home: Path | None = typer.Option(None, help="Artifact root and catalogue ($INTERP_HOME)."),
    model: str | None = typer.Option(None, help="Subject model ('embedded' or HF id/path)."),
    hookpoint: str | None = typer.Option(None, help="Hook to read, e.g. blocks.15.hook_resid_post."),
    corpus: str | None = typer.Option(None, help="'embedded', a file/dir, or hf:<dataset>."),
    n_tokens: int | None = typer.Option(None, help="Tokens of activations to collect."),
    expansion_factor: int | None = typer.Option(None, help="SAE width / d_model."),
    k: int | None = typer.Option(None, help="TopK active latents per token."),
    architecture: str | None = typer.Option(None, help="sae.architecture, e.g. 'neurons' "
                                            "(label MLP neurons at blocks.L.mlp.hook_post)."),
    sae: Path | None = typer.Option(None, help="Label this SAE (sparsify or SAELens directory) "
                                    "instead of training one."),
    n_latents: int | None = typer.Option(None, help="Latents to explain and score."),
    llm_base_url: str | None = typer.Option(None, help="OpenAI-compatible endpoint (sets backend=openai)."),
    llm_model: str | None = typer.Option(None, help="Model name sent to the LLM server."),
    llm_api_key_env: str | None = typer.Option(None, help="Env var holding the LLM API key."),
    device: str | None = typer.Option(None, help="torch device for the subject model and SAE."),
    prefect: bool = typer.Option(True, help="Run as a Prefect flow (--no-prefect: plain library)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the labelling pipeline (collect, train, mine, explain, score) and publish the catalogue."""
    _setup_logging(verbose)
    overrides = {"home": home, "model.name": model, "model.hookpoint": hookpoint,
                 "corpus.source": corpus, "corpus.n_tokens": n_tokens,
                 "sae.expansion_factor": expansion_factor, "sae.k": k,
                 "sae.architecture": architecture, "sae.path": str(sae) if sae else None,
                 "explain.n_latents": n_latents, "llm.base_url": llm_base_url,
                 "llm.backend": "openai" if llm_base_url else None, "llm.model": llm_model,
                 "llm.api_key_env": llm_api_key_env, "model.device": device}
    cfg = _config(config, overrides, preset=preset)
    cfg.home.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    try:
        if prefect:
            _start_prefect(cfg.home, verbose)
            from flows.label import label

            with sigterm_as_ctrl_c():
                result = label(cfg.model_dump(mode="json"))
        else:
            from interp.stages import run as run_stages
            from storage.catalog import publish_run

            with sigterm_as_ctrl_c():
                rec = run_stages(cfg, progress=True)
                result = {**rec.to_dict(), "published": publish_run(cfg.home, rec.run_id)}
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        _fail(str(err))
    _summary(cfg, result, time.time() - t0)


def _summary(cfg: RunConfig, result: dict[str, Any], wall: float) -> None:
    typer.echo(f"\nrun {result['run_id']} finished in {wall:.1f}s (home: {cfg.home})")
    for stage, key in result["artifacts"].items():
        cached = " (cached)" if result["cached"].get(stage) else ""
        typer.echo(f"  {stage:8s} {key}  {result['seconds'][stage]:7.1f}s{cached}")
    from storage.read import connect_readonly

    with connect_readonly(cfg.home) as con:
        row = con.execute(
            "SELECT count(*) FILTER (WHERE status = 'ok'), count(*) FROM explanations WHERE explain_key = ?",
            [result["artifacts"]["explain"]]).fetchone()
        typer.echo(f"explanations: {row[0]} ok of {row[1]}; "  # noqa: S608 - a hint, not a query
                   f"try: interp query \"select latent, text, detection, fuzzing from latest\"")


@app.command()
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
        _fail(str(err))
    except Exception as err:  # noqa: BLE001 - SQL errors from DuckDB, shown as they are
        _fail(f"query failed: {err}")

    typer.echo(render(cols, rows, fmt, limit))


@app.command()
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
        _fail(str(err))


@app.command()
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
        _fail(str(err))
    typer.echo(f"wrote {len(files)} file(s) under {out}")


@app.command()
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
        _fail(str(err))
    typer.echo(f"published {n} new artifacts")


@app.command()
@cli_errors
def rescore(
    home: Path | None = typer.Option(None, help="Artifact home ($INTERP_HOME)."),
    from_run: str | None = typer.Option(None, help="Run whose activations are reused "
                                        "(default: the newest run)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML of config changes, "
                                       "merged onto the base run's config."),
    preset: str | None = typer.Option(None, help=PRESET_HELP),
    sae: Path | None = typer.Option(None, help="Label this SAE (sparsify or SAELens directory)."),
    set_: list[str] = typer.Option([], "--set", help="Dotted override, e.g. --set sae.k=16 "
                                   "(value parsed as YAML); repeatable."),
    latent_shards: int = typer.Option(1, help="Shards of explain/score (Prefect tasks)."),
    task_runner: str = typer.Option("threads", help="threads | dask"),
    dask_address: str | None = typer.Option(None, help="Dask scheduler, e.g. tcp://host:8786."),
    llm_url: list[str] = typer.Option([], help="One of several servers of llm.model; repeatable."),
    prefect: bool = typer.Option(True, help="Run as a Prefect flow (--no-prefect: plain library)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Re-label on a previous run's activations after a new SAE or a changed explainer/scorer
    config; only stages whose inputs changed run, and results sit beside the old ones."""
    import yaml

    from interp.preflight import check_run
    from interp.presets import load_preset, merge
    from interp.rescore import find_run, rescore_config, run_after_collect

    _setup_logging(verbose)
    h = Path(home or default_home())
    overrides = {}
    for item in set_:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"--set {item!r}: expected key=value, e.g. --set score.seed=7")
        overrides[key.strip()] = yaml.safe_load(value)
    try:
        changes = yaml.safe_load(config.read_text()) if config else {}
        changes = merge(load_preset(preset), changes or {}) if preset else changes  # under them
        run_dir = find_run(h, from_run)
        cfg, collect_key = rescore_config(h, run_dir, changes, overrides, sae)  # fail fast
        check_run(cfg, corpus=False)  # fail fast; the activations exist: no corpus is read again
        t0 = time.time()
        if prefect:
            _start_prefect(h, verbose)
            from flows.label import ScaleOut
            from flows.rescore import rescore as rescore_flow

            scale = ScaleOut(latent_shards=latent_shards, task_runner=task_runner,
                             dask_address=dask_address, llm_base_urls=llm_url)
            with sigterm_as_ctrl_c():
                result = rescore_flow(home=str(h), from_run=run_dir.name, changes=changes, scale=scale,
                                      overrides=overrides, sae_path=str(sae) if sae else None)
        else:
            from storage.catalog import publish_run

            with sigterm_as_ctrl_c():
                rec = run_after_collect(cfg, collect_key, progress=True)
                result = {**rec.to_dict(), "published": publish_run(h, rec.run_id)}
    except (ValueError, FileNotFoundError, RuntimeError, OSError, yaml.YAMLError) as err:
        _fail(str(err))
    _summary(cfg, result, time.time() - t0)


@app.command()
@cli_errors
def presets(name: str | None = typer.Argument(None, help="Print this preset's YAML.")) -> None:
    """List the protocol presets (`--preset NAME` of run and rescore), or print one."""
    from interp.config import load_config
    from interp.presets import describe, preset_names, preset_text
    from interp.scoring.cost import describe_calls

    for n in [name] if name else preset_names():
        summary = f"{describe(n)} {describe_calls(load_config(None, preset=n))}"
        typer.echo(preset_text(n) if name else f"{n}: {summary}\n")


@app.command("config")
@cli_errors
def show_config(config: Path | None = typer.Option(None, "--config", "-c"),
                preset: str | None = typer.Option(None, help=PRESET_HELP),
                as_json: bool = typer.Option(False, "--json", help="JSON schema of every field.")) -> None:
    """Print the resolved config (defaults, or a file's) as YAML, or the JSON schema."""
    from interp.config import RunConfig, dump_config

    if as_json:
        typer.echo(json.dumps(RunConfig.model_json_schema(), indent=2))
        return
    typer.echo(dump_config(_config(config, {}, runnable=False, preset=preset)))


@app.command()
@cli_errors
def ui(home: Path | None = typer.Option(None, help="Catalogue home ($INTERP_HOME)."),
       host: str = typer.Option("127.0.0.1", help="Interface to bind; the default keeps it local."),
       port: int = typer.Option(8765, help="TCP port to serve on."),
       verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Browse latents in a local, read-only web app (runs, SAEs, latent table, latent pages)."""
    _setup_logging(verbose)
    import uvicorn

    from interp.ui.app import create_app

    h = home or default_home()
    try:
        web = create_app(h, host=host, torch_threads=1)  # serving only: 1 thread is fastest
        typer.echo(f"serving {h} on http://{host}:{port}/ (Ctrl-C to stop)")
        uvicorn.run(web, host=host, port=port, log_level="warning")
    except (FileNotFoundError, OSError) as err:
        _fail(str(err))


@app.command()
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
        _fail(str(err))

if __name__ == "__main__":
    app()
