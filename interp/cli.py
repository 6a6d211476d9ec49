"""`interp` command line: run, rescore, presets, config; the catalogue's commands (query, show,
export, publish, ui, report) are in interp/cli_catalogue.py and registered here."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from interp import cli_catalogue as catalogue
from interp.cli_common import OneLineErrors, cli_errors, fail, setup_logging
from interp.config_base import default_home
from interp.signals import sigterm_as_ctrl_c

if TYPE_CHECKING:
    from interp.config import RunConfig

PRESET_HELP = "Protocol preset under the config (user values win); see `interp presets`."

app = typer.Typer(add_completion=False, no_args_is_help=True, cls=OneLineErrors,
                  help="Automated interpretability: explained, scored SAE latents in a DuckDB catalogue.")


def _start_prefect(home: Path, verbose: bool = True) -> None:
    """Prefect offline and local, set before Prefect is first imported (it reads its settings
    then), its ephemeral server tied to this process's life, its console quiet without -v."""
    from flows.runtime import prefect_env, quiet_prefect_logs, start_ephemeral_server

    prefect_env(home)
    if not verbose:
        quiet_prefect_logs()
    start_ephemeral_server()


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
        fail(str(err))
        raise  # unreachable
    return cfg


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
    setup_logging(verbose)
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
        fail(str(err))
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

    setup_logging(verbose)
    h = Path(home or default_home())
    overrides = {}
    for item in set_:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--set {item!r}: expected key=value, e.g. --set score.seed=7")
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
        fail(str(err))
    _summary(cfg, result, time.time() - t0)


@cli_errors
def presets(name: str | None = typer.Argument(None, help="Print this preset's YAML.")) -> None:
    """List the protocol presets (`--preset NAME` of run and rescore), or print one."""
    from interp.config import load_config
    from interp.presets import describe, preset_names, preset_text
    from interp.scoring.cost import describe_calls

    for n in [name] if name else preset_names():
        summary = f"{describe(n)} {describe_calls(load_config(None, preset=n))}"
        typer.echo(preset_text(n) if name else f"{n}: {summary}\n")


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


# Every command, in the order `interp --help` lists them.
for _command in (run, catalogue.query, catalogue.show, catalogue.export, catalogue.publish, rescore,
                 presets):
    app.command()(_command)
app.command("config")(show_config)
app.command()(catalogue.ui)
app.command()(catalogue.report)

if __name__ == "__main__":
    app()
