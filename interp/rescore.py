"""Rescore: label a new SAE (or re-explain / re-score with a changed config) on a previous run's
activations, recomputing only the stages whose inputs changed (the match stage then compares the
new SAE's latents with those of the other SAEs of the same hookpoint).

Which stages run follows from the artifact keys alone: a new SAE changes the train key and so
mine, explain and score; a new explainer prompt or model changes explain and score; a new scorer
setting changes only score. Old and new results stay side by side in the catalogue (rows carry
their SAE key, explainer model, prompt hash and settings hash).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from interp.artifacts import ArtifactStore
from interp.config import ConfigError, RunConfig, build_config
from interp.presets import merge

if TYPE_CHECKING:
    from interp.stages import RunRecord

log = logging.getLogger(__name__)

# Rescoring reuses the base run's activations, so these sections must not change.
FROZEN_SECTIONS = ("model", "corpus", "collect")


def find_run(home: Path, run_id: str | None = None) -> Path:
    """The directory of run `run_id`, or of the newest run under `home` when None."""
    runs = Path(home) / "runs"
    if run_id is not None:
        d = runs / run_id
        if not (d / "run.json").is_file():
            raise FileNotFoundError(f"no run {run_id!r} under {runs}; see `interp query "  # noqa: S608
                                    f"\"select run_id from runs\"`")
        return d
    # Newest by start time: run ids begin with the second they started, then a random suffix,
    # so two runs within one second would sort by chance on their names alone.
    found = sorted((rec.get("started_at", 0.0), p.parent.name, p.parent)
                   for p in runs.glob("*/run.json")
                   if (rec := json.loads(p.read_text())).get("status", "complete") == "complete")
    if not found:
        raise FileNotFoundError(f"no runs under {runs}: rescore needs a finished `interp run` first")
    return found[-1][2]


def rescore_config(home: Path, run_dir: Path, changes: dict[str, Any] | None = None,
                   overrides: dict[str, Any] | None = None,
                   sae_path: Path | None = None) -> tuple[RunConfig, str]:
    """The base run's config with `changes` (a config tree) and dotted `overrides` applied.

    Returns the config and the base run's collect key. `sae_path` labels an SAE trained
    elsewhere. Changes to the model, corpus or collect sections are refused: they need new
    activations, i.e. `interp run`.
    """
    base_tree = yaml.safe_load((run_dir / "config.yaml").read_text())
    # A run saved before corpus.max_doc_tokens existed collected whole documents.
    base_tree.setdefault("corpus", {}).setdefault("max_doc_tokens", None)
    tree = merge(base_tree, changes or {})
    tree["home"] = str(home)
    over = dict(overrides or {})
    if sae_path is not None:
        over["sae.path"] = str(sae_path)
    cfg = build_config(tree, over, origin=f"rescore of {run_dir.name}")
    base = build_config(base_tree | {"home": str(home)})
    for section in FROZEN_SECTIONS:
        if getattr(cfg, section) != getattr(base, section):
            raise ConfigError(f"rescore reuses the activations of run {run_dir.name}, but the "
                              f"'{section}' section changed; use `interp run` for new activations")
    collect_key = json.loads((run_dir / "run.json").read_text())["artifacts"]["collect"]
    ArtifactStore(home).require("collect", collect_key)
    return cfg, collect_key


def run_after_collect(cfg: RunConfig, collect_key: str, *, progress: bool = False) -> RunRecord:
    """Train (or import), mine, explain and score on an existing collect artifact, Prefect-free."""
    from interp import stages

    ref = ArtifactStore(cfg.home).require("collect", collect_key)
    return stages.run(cfg, reuse={"collect": ref}, progress=progress)
