"""The stage contract: what a stage declares (`Stage`) and what the runner hands its build
(`StageContext`).

A stage module defines one `Stage`: its name and version, the stages whose artifacts it reads,
which part of the config can change its output, and a `fill(ctx) -> manifest` that fills
`ctx.out`. The runner (interp/stages.py) computes the key from those declarations alone, resolves
the inputs, owns the build directory, the lock and the rename (interp/artifacts.py), and writes
the manifest. A stage never computes its own key, never calls `build_once` and never looks for an
upstream artifact itself: what it reads is declared and handed to it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.artifacts import ArtifactRef, ArtifactStore

if TYPE_CHECKING:
    from interp.config import RunConfig


@dataclass(frozen=True)
class KeyContext:
    """What a stage's key may depend on besides its config: its keyed inputs' keys, and the
    store (the match stage's key names the peer SAEs it finds there)."""

    cfg: RunConfig
    inputs: dict[str, str]
    store: ArtifactStore


@dataclass
class StageContext:
    """What a stage's `fill` gets: the config, its own key, its declared input artifacts (keyed
    inputs, reads and the optional inputs this config uses), the directory to fill, and for
    per-latent stages the LLM (opened on first use, shared by the run) and the latent shard."""

    cfg: RunConfig
    stage: str
    key: str
    inputs: dict[str, ArtifactRef]
    out: Path
    lineage: dict[str, str] = field(default_factory=dict)  # every upstream stage -> its key
    progress: bool = False
    shard: tuple[int, int] | None = None  # per-latent stages: fill only shard i of n, no merge
    llm: Callable[[], Any] | Any | None = None  # a client, or a function opening one

    def input(self, stage: str) -> ArtifactRef:
        """The declared input artifact of `stage`."""
        if stage not in self.inputs:
            raise KeyError(f"stage {self.stage} did not declare {stage!r} among its inputs")
        return self.inputs[stage]

    def optional(self, stage: str) -> ArtifactRef | None:
        """An optional input, None when this config does not use it."""
        return self.inputs.get(stage)


@dataclass(frozen=True)
class Table:
    """One catalogue table an artifact fills (storage/ingest.py inserts it BY NAME).

    `file`: the Parquet file in the artifact; `select`: the columns taken from it;
    `provenance`: catalogue column -> the stage whose key fills it (this stage's own, or an
    upstream one from the artifact's lineage); `optional`: absent files are skipped;
    `or_ignore`: rows whose key is already in the table are kept as they are (an explanation
    embedding published by another explain artifact).
    """

    table: str
    file: str
    select: str = "*"
    provenance: tuple[tuple[str, str], ...] = ()
    optional: bool = False
    or_ignore: bool = False


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline, declared once.

    Its key is `artifact_key(name, version, settings(cfg), {input: key}, extra(kctx))` over the
    keyed `inputs` (and the `optional` ones this config uses). `reads` are upstream artifacts it
    also opens whose keys its inputs already fix (score reads collect's token ids through mine),
    so they are resolved and recorded but not hashed again. `per_latent` stages (explain, score)
    resume per latent in `<key>.partial` and can run latent shards first. `rows` builds catalogue
    rows that are not a Parquet file of the artifact (the train stage's `saes` row).
    """

    name: str
    version: str
    settings: Callable[[RunConfig], Any]
    fill: Callable[[StageContext], dict[str, Any]]
    inputs: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    optional: Callable[[RunConfig], tuple[str, ...]] = lambda cfg: ()
    extra: Callable[[KeyContext], dict[str, Any]] = lambda kctx: {}
    uses_llm: bool = False
    per_latent: bool = False
    resumable: Callable[[RunConfig], bool] = lambda cfg: False
    tables: tuple[Table, ...] = ()
    rows: Callable[[Path, dict[str, Any]], dict[str, list[dict[str, Any]]]] | None = None

    def keyed_inputs(self, cfg: RunConfig) -> tuple[str, ...]:
        return (*self.inputs, *self.optional(cfg))

    def all_inputs(self, cfg: RunConfig) -> tuple[str, ...]:
        return (*self.keyed_inputs(cfg), *self.reads)
