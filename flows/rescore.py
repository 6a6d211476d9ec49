"""Prefect flow `rescore`: label a new SAE, or re-explain / re-score with a changed config, on the
activations of a previous run. Only stages whose artifact keys changed run; the rest are cache
hits. Results are published beside the old ones."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from flows.label import ScaleOut, builder, finish
from interp.artifacts import ArtifactStore
from interp.config import RunConfig
from interp.rescore import find_run, rescore_config
from interp.stages import run


@flow(name="rescore", log_prints=True)
def rescore(home: str | None = None, from_run: str | None = None, changes: dict[str, Any] | None = None,
            overrides: dict[str, Any] | None = None, sae_path: str | None = None,
            scale: ScaleOut | None = None) -> dict[str, Any]:
    """Re-run train/mine/explain/score of run `from_run` (default: the newest) with `changes`.

    `changes` is a config tree merged onto the base run's config (e.g. {"sae": {"k": 16}} or
    {"explain": {"prompt": "explain_cot"}}), `overrides` dotted keys ({"score.seed": 7}), and
    `sae_path` labels an SAE trained elsewhere.
    """
    root = Path(home) if home else RunConfig().home
    cfg, collect_key = rescore_config(root, find_run(root, from_run), changes, overrides,
                                      sae_path=Path(sae_path) if sae_path else None)
    reuse = {"collect": ArtifactStore(cfg.home).require("collect", collect_key)}
    rec = run(cfg, reuse=reuse, progress=True, builder=builder(cfg, scale or ScaleOut()))
    return finish(cfg, rec)
