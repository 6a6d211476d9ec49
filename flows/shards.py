"""Latent shards of the explain and score stages: shard i of n runs the chunks whose index is
i mod n, writing part files into the stage's shared `<key>.partial` directory.

The unsharded stage function (`interp.explain.explain`, `interp.scoring.score`) then finds every
chunk done and only merges, so a sharded run yields the same artifact (same key, same rows) as an
unsharded one. Plain functions (no Prefect): flows/label.py maps them as tasks.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from interp import explain as explain_mod
from interp import scoring as scoring_mod
from interp.artifacts import ArtifactRef, ArtifactStore
from interp.config import RunConfig
from interp.examples import load_examples
from interp.llm import Ledger, OpenAICompatibleLLM, open_llm
from interp.resumable import chunks, run_resumable

log = logging.getLogger(__name__)


def partial_dir(store: ArtifactStore, stage: str, key: str) -> Path:
    """The resumable build directory of a stage (the name ArtifactStore.build uses)."""
    d = store.path(stage, key).with_name(f"{key}.partial")
    d.mkdir(parents=True, exist_ok=True)
    return d


def shard_latents(latents: list[int], chunk_size: int, index: int, count: int) -> list[int]:
    """The latents of shard `index` of `count` (whole chunks, so part files never overlap)."""
    return [l for i, c in enumerate(chunks(latents, chunk_size)) if i % count == index for l in c]


@contextlib.contextmanager
def _llm(cfg: RunConfig, base_url: str | None, ledger: Ledger) -> Iterator:
    # A shard may be pinned to one of several servers of the same model; the artifact key is
    # unchanged because llm.identity() names the model, not which replica answered.
    if base_url is not None:
        yield OpenAICompatibleLLM(cfg.llm, base_url, ledger)
    else:
        with open_llm(cfg.llm, ledger) as llm:
            yield llm


def explain_shard(cfg: RunConfig, mine_ref: ArtifactRef, index: int, count: int, *,
                  base_url: str | None = None) -> dict[str, int]:
    """Explain shard `index` of `count` into the explain stage's partial directory."""
    store = ArtifactStore(cfg.home)
    key = explain_mod.explain_key(cfg, mine_ref.key)
    if store.get(explain_mod.STAGE, key) is not None:
        return {"latents": 0, "resumed": 0, "computed": 0}
    latents = explain_mod.select_latents(mine_ref.path, cfg)
    mine_only = shard_latents(latents, cfg.explain.chunk_latents, index, count)
    examples = load_examples(mine_ref.path, mine_only)
    ledger = Ledger()
    with _llm(cfg, base_url, ledger) as llm:
        work = explain_mod.make_work(cfg, key, examples, llm)
        return run_resumable(latents, cfg.explain.chunk_latents, partial_dir(store, "explain", key),
                             work, explain_mod.SCHEMA, ledger, desc=f"explain {index}/{count}",
                             close=llm.aclose, shard=(index, count))


def score_shard(cfg: RunConfig, explain_ref: ArtifactRef, mine_ref: ArtifactRef, index: int,
                count: int, *, base_url: str | None = None) -> dict[str, int]:
    """Score shard `index` of `count` into the score stage's partial directory."""
    store = ArtifactStore(cfg.home)
    key = scoring_mod.score_key(cfg, explain_ref.key, mine_ref.key)
    if store.get(scoring_mod.STAGE, key) is not None:
        return {"latents": 0, "resumed": 0, "computed": 0}
    table = pq.read_table(explain_ref.path / "explanations.parquet")
    explanations = {r["latent"]: r for r in table.to_pylist() if r["status"] == "ok"}
    latents = sorted(explanations)  # the same order score() uses, so chunk indices agree
    mine_only = shard_latents(latents, cfg.score.chunk_latents, index, count)
    examples = load_examples(mine_ref.path, mine_only)
    ledger = Ledger()
    with _llm(cfg, base_url, ledger) as llm:
        work = scoring_mod.make_work(cfg, explanations, examples, llm,
                                     scoring_mod.Resources(cfg, mine_ref.path))
        return run_resumable(latents, cfg.score.chunk_latents, partial_dir(store, "score", key),
                             work, scoring_mod.SCHEMA, ledger, desc=f"score {index}/{count}",
                             close=llm.aclose, shard=(index, count))
