"""Protocol presets: named config layers (YAML files beside this module) that make a run follow a
published protocol, so its scores compare with the published numbers.

A preset sits between the defaults and the user's config: `--preset paper -c mine.yaml` takes the
defaults, then paper.yaml, then mine.yaml (user values win), and the result is validated like any
config. Each file's leading `# ` comment lines describe it (`interp presets` lists them).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).resolve().parent


def _files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PRESET_DIR.glob("*.yaml"))}


def describe(name: str) -> str:
    """The preset file's leading comment block, as one paragraph."""
    lines = []
    for line in preset_text(name).splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(ln for ln in lines if ln)


def summary(name: str) -> str:
    """The description and the LLM calls per latent of preset `name` on the defaults."""
    from interp.config import load_config

    calls = llm_calls(load_config(None, preset=name))
    ctrl = calls.pop("controls")
    steps = ", ".join(f"{k} {'?' if v is None else v}" for k, v in calls.items())
    return (f"{describe(name)} LLM calls per latent: {steps}; controls +{ctrl} per controlled "
            "latent.")


def preset_names() -> list[str]:
    return list(_files())


def _file(name: str) -> Path:
    files = _files()
    if name not in files:
        raise ValueError(f"--preset {name!r} is not a preset; known: {', '.join(files)} "
                         "(see `interp presets`)")
    return files[name]


def preset_text(name: str) -> str:
    """The preset file as written (its comments say where each value comes from)."""
    return _file(name).read_text()


def load_preset(name: str) -> dict[str, Any]:
    """The config tree of preset `name`; an unknown name fails listing the known ones."""
    path = _file(name)
    tree = yaml.safe_load(path.read_text()) or {}
    if not isinstance(tree, dict):
        raise ValueError(f"preset file {path} must hold a mapping of config sections")
    return tree


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`, section by section (nested mappings merge; anything else replaces)."""
    out = dict(base)
    for k, v in top.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def llm_calls(cfg) -> dict[str, int | None]:
    """LLM calls per latent by step, from the config's arithmetic (an upper bound: a latent with
    fewer held-out windows than asked for needs fewer). None for a scorer whose count is not a
    fixed number of judge calls (README 'Scorers'). 'controls' is per controlled latent
    (score.control_latents of them), the others per explained latent."""
    s = cfg.score
    per_window = -(-(s.n_positive + s.n_negative) // s.batch_size)
    fixed = {"detection": per_window, "fuzzing": per_window, "saebench": 1,
             "intruder": s.intruder.n_rounds, "embedding": 0, "surprisal": 0,
             "intervention": 0,
             "intervention_judge": 2 * s.intervention_judge.n_prompts}
    out: dict[str, int | None] = {"explain": 1}
    out.update({name: fixed.get(name) for name in s.scorers})
    controlled = [fixed.get(n) for n in s.control_scorers if n in s.scorers]
    out["controls"] = None if None in controlled else len(s.controls) * sum(controlled)
    return out
