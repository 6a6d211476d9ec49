"""Fail fast: cheap checks that a run's configuration can work, made after the config loads and
before any model, server or Prefect starts, each naming the field or file at fault.

The stages check the same things again where they use them (the real model's hookpoints, every
byte of the corpus); this module only moves the common mistakes to the first second of a run.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from interp.config import EMBEDDED, ConfigError, RunConfig

# SmolLM2-135M-Instruct (the embedded subject model) has 30 blocks; reading the GGUF's metadata
# to learn it takes ~4 s, and collect checks the loaded model's hooks in any case.
EMBEDDED_LAYERS = 30


def check_run(cfg: RunConfig, *, corpus: bool = True) -> None:
    """Raise ConfigError (a ValueError) if `cfg` cannot run; `corpus=False` for reruns that reuse
    collected activations (rescore) and never read the corpus again."""
    check_home(cfg.home)
    check_api_key(cfg)
    check_hookpoint(cfg)
    check_prompts(cfg)
    if cfg.sae.path is not None:
        check_sae_path(Path(cfg.sae.path), cfg.model.hookpoint)
    if corpus:
        from interp.collect.corpus import check_source

        check_source(cfg.corpus)


def check_home(home: Path) -> None:
    """home is a directory, or can become one (its nearest existing ancestor is a directory)."""
    p = Path(home)
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise ConfigError(f"home {home}: {p} is a file, not a directory (set --home or $INTERP_HOME "
                          "to a directory)")


def check_api_key(cfg: RunConfig) -> None:
    """The variable named by llm.api_key_env is set (the key itself is never read into errors)."""
    name = cfg.llm.api_key_env
    if name and os.environ.get(name) is None:
        raise ConfigError(f"llm.api_key_env: the environment variable {name!r} is not set; export "
                          f"it, or drop llm.api_key_env for a server without a key")


def check_hookpoint(cfg: RunConfig) -> None:
    """model.hookpoint's layer exists, where the layer count is known without loading the model."""
    n_layers = _layer_count(cfg)
    if n_layers is not None and cfg.model.layer >= n_layers:
        raise ConfigError(f"model.hookpoint {cfg.model.hookpoint!r}: model {cfg.model.name!r} has "
                          f"{n_layers} layers (blocks.0 .. blocks.{n_layers - 1})")


def _layer_count(cfg: RunConfig) -> int | None:
    if cfg.model.name == EMBEDDED:
        return EMBEDDED_LAYERS
    config = Path(cfg.model.name) / "config.json"
    if not config.is_file():
        return None  # a hub id: collect finds out once the model is loaded
    try:
        data = json.loads(config.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"model.name: {config} is not readable JSON ({err})") from None
    return data.get("num_hidden_layers") or data.get("n_layer")


def check_prompts(cfg: RunConfig) -> None:
    """The explainer's and the scorers' prompt templates exist (each scorer names its own)."""
    from interp.prompts import load_prompt
    from interp.scoring.registry import SCORERS

    names = [cfg.explain.prompt]
    for s in cfg.score.scorers:
        names += SCORERS[s].prompts(cfg.score)
    for name in names:
        try:
            load_prompt(name)
        except ValueError as err:
            raise ConfigError(f"{err} (explain.prompt / score.<scorer>.prompt)") from None


def check_sae_path(path: Path, hookpoint: str) -> None:
    """sae.path is an SAE directory (or holds one per hookpoint, as sparsify saves several) whose
    config parses and whose weights file is intact."""
    from safetensors import safe_open

    from interp.sae.io import CFG_FILE, detect_format

    if not path.exists():
        raise ConfigError(f"sae.path (--sae) {path} does not exist")
    if not path.is_dir():
        raise ConfigError(f"sae.path (--sae) {path} is a file; give the directory holding it "
                          f"(sae.safetensors + cfg.json, or SAELens' sae_weights.safetensors)")
    if (path / hookpoint).is_dir():
        path = path / hookpoint
    try:
        kind = detect_format(path)
    except FileNotFoundError as err:
        raise ConfigError(f"sae.path (--sae): {err}") from None
    weights = path / ("sae.safetensors" if kind == "sparsify" else "sae_weights.safetensors")
    try:  # reads the header and checks it against the file size, not the weights
        with safe_open(str(weights), framework="pt") as f:
            f.keys()
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise ConfigError(f"sae.path (--sae): {weights} is not a readable safetensors file "
                          f"({err})") from None
    cfg_file = path / CFG_FILE
    if cfg_file.is_file():
        try:
            json.loads(cfg_file.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"sae.path (--sae): {cfg_file} is not readable JSON ({err})") from None
