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
