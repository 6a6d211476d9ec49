"""The one stage registry and the Prefect-free runner over it.

Every stage is declared once, here: its name, the stages whose artifacts it reads, how its key is
computed from the config and those artifacts' keys, and how it is built. `run` walks the registry
in order for `interp run --no-prefect`, rescore and tests; flows/label.py maps the same registry
onto Prefect tasks. Adding a stage is one module and one entry below.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.collect.stage import collect, collect_key
from interp.artifacts import ArtifactRef, ArtifactStore, write_text_atomic
from interp.config import RunConfig, dump_config
from interp.explain.stage import explain, explain_key
from interp.analysis.logits import logits_key, logits_stage
from interp.analysis.match import match, match_key
from interp.mine.stage import mine, mine_key
from interp.analysis.dark_matter import dark_matter, dark_matter_key
from interp.sae.stage import train_key, train_stage
from interp.scoring.stage import score, score_key

log = logging.getLogger(__name__)


@dataclass
class BuildContext:
    """What a stage's build may use besides its config and inputs.

    `llm()` opens the LLM client on first use and keeps it open for the following LLM stages of
    the run (the embedded server starts once for explain and score); `close()` ends it. Stages
    get the method itself and call it only when they have latents to ask about.
    """

    cfg: RunConfig
    progress: bool = False
    shard: tuple[int, int] | None = None  # (i, n): build only latent shard i of n (explain, score)
    base_url: str | None = None           # pin the LLM client to one replica of llm.model
    llm_client: Any = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def llm(self):
        if self.llm_client is None:
            from interp.llm import open_llm

            self.llm_client = self._stack.enter_context(
                open_llm(self.cfg.llm, base_url=self.base_url, home=self.cfg.home))
        return self.llm_client

    def close(self) -> None:
        self._stack.close()
        self.llm_client = None


Build = Callable[[RunConfig, dict[str, ArtifactRef], BuildContext], "ArtifactRef | None"]


@dataclass(frozen=True)
class Stage:
    """One stage: `key(cfg, input_keys)` names its artifact, `build(cfg, inputs, ctx)` makes it.

    `shardable` stages (explain, score) also build one latent shard (`ctx.shard`; returns None),
    which flows map as tasks before the unsharded build merges them.
    """

    name: str
    inputs: tuple[str, ...]
    key: Callable[[RunConfig, dict[str, str]], str]
    build: Build
    uses_llm: bool = False
    shardable: bool = False


# The registry, in run order: one entry per stage.
STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("collect", (), lambda cfg, k: collect_key(cfg),
          lambda cfg, refs, ctx: collect(cfg, progress=ctx.progress)),
    Stage("train", ("collect",), lambda cfg, k: train_key(cfg, k["collect"]),
          lambda cfg, refs, ctx: train_stage(cfg, refs["collect"], progress=ctx.progress)),
    Stage("match", ("train",), lambda cfg, k: match_key(cfg, k["train"]),
          lambda cfg, refs, ctx: match(cfg, refs["train"])),
    Stage("dark_matter", ("collect", "train"),
          lambda cfg, k: dark_matter_key(cfg, k["collect"], k["train"]),
          lambda cfg, refs, ctx: dark_matter(cfg, refs["collect"], refs["train"])),
    Stage("logits", ("train",), lambda cfg, k: logits_key(cfg, k["train"]),
          lambda cfg, refs, ctx: logits_stage(cfg, refs["train"])),
    Stage("mine", ("collect", "train"), lambda cfg, k: mine_key(cfg, k["collect"], k["train"]),
          lambda cfg, refs, ctx: mine(cfg, refs["collect"], refs["train"])),
    Stage("explain", ("mine",), lambda cfg, k: explain_key(cfg, k["mine"]),
          lambda cfg, refs, ctx: explain(cfg, refs["mine"], llm=ctx.llm, shard=ctx.shard,
                                         progress=ctx.progress),
          uses_llm=True, shardable=True),
    Stage("score", ("explain", "mine"), lambda cfg, k: score_key(cfg, k["explain"], k["mine"]),
          lambda cfg, refs, ctx: score(cfg, refs["explain"], refs["mine"], llm=ctx.llm,
                                       shard=ctx.shard, progress=ctx.progress),
          uses_llm=True, shardable=True),
)}


@dataclass
class RunRecord:
    """What one run did: its id, the artifact of each stage, wall time and whether it was cached."""

    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6])
    started_at: float = field(default_factory=time.time)
    artifacts: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    cached: dict[str, bool] = field(default_factory=dict)
    llm_tokens: dict[str, int] = field(default_factory=dict)  # spent by this run's LLM calls
    status: str = "running"   # complete | failed
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "artifacts": dict(self.artifacts),
                "seconds": dict(self.seconds), "cached": dict(self.cached),
                "llm_tokens": dict(self.llm_tokens), "status": self.status, "error": self.error}

    def save(self, cfg: RunConfig) -> Path:
        """Write the resolved config and the record under <home>/runs/<run_id>/; returns the dir."""
        d = cfg.home / "runs" / self.run_id
        d.mkdir(parents=True, exist_ok=True)
        write_text_atomic(d / "config.yaml", dump_config(cfg))
        write_text_atomic(d / "run.json", json.dumps(
            {**self.to_dict(), "started_at": self.started_at, "finished_at": time.time()}, indent=2))
        return d


# How a stage gets built: directly, or (flows) as a Prefect task. Called with the stage, its key,
# the input keys and a thunk that builds it; returns the artifact.
Builder = Callable[[Stage, str, dict[str, str], Callable[[], ArtifactRef]], ArtifactRef]


def _direct(stage: Stage, key: str, inputs: dict[str, str], build: Callable[[], ArtifactRef]) -> ArtifactRef:
    return build()


def run(cfg: RunConfig, *, only: tuple[str, ...] | None = None,
        reuse: dict[str, ArtifactRef] | None = None, progress: bool = False,
        builder: Builder = _direct, record: RunRecord | None = None) -> RunRecord:
    """Build every stage (or `only` those, their inputs coming from `reuse`) in registry order.

    `reuse` hands over existing artifacts (rescore: {"collect": ref}); they count as cached. A
    stage whose artifact exists is a cache hit; an LLM client is opened only if an LLM stage
    actually has to be built. The record is saved under <home>/runs/ whether the run finished
    (status 'complete') or not ('failed', with the error and what was built and spent).
    """
    rec = record or RunRecord()
    store = ArtifactStore(cfg.home)
    refs: dict[str, ArtifactRef] = dict(reuse or {})
    ctx = BuildContext(cfg, progress)
    try:
        _walk(cfg, rec, store, refs, ctx, only, builder)
        rec.status = "complete"
    except BaseException as err:
        rec.status, rec.error = "failed", f"{type(err).__name__}: {err}"[:1000]
        raise
    finally:
        if ctx.llm_client is not None:
            rec.llm_tokens = dict(ctx.llm_client.ledger.totals)
        ctx.close()
        rec.save(cfg)  # a failed run's record says what it built and spent
    return rec


def _walk(cfg: RunConfig, rec: RunRecord, store: ArtifactStore, refs: dict[str, ArtifactRef],
          ctx: BuildContext, only: tuple[str, ...] | None, builder: Builder) -> None:
    """Build the stages in registry order, filling `rec` and `refs` as each finishes."""
    for name, stage in STAGES.items():
        if name in refs:
            rec.artifacts[name], rec.cached[name], rec.seconds[name] = refs[name].key, True, 0.0
            continue
        if only is not None and name not in only:
            continue
        missing = [s for s in stage.inputs if s not in refs]
        if missing:
            raise ValueError(f"stage {name} needs the {', '.join(missing)} artifact(s): run "
                             f"them too or pass them in reuse")
        inputs = {s: refs[s] for s in stage.inputs}
        key = stage.key(cfg, {s: r.key for s, r in inputs.items()})
        rec.cached[name] = store.get(name, key) is not None
        t0 = time.time()
        ref = builder(stage, key, {s: r.key for s, r in inputs.items()},
                      lambda stage=stage, inputs=inputs: stage.build(cfg, inputs, ctx))
        if ref.key != key:
            raise RuntimeError(f"{name}: planned key {key} but built {ref.key}; the config "
                               f"changed mid-run")
        refs[name] = ref
        rec.seconds[name] = round(time.time() - t0, 2)
        rec.artifacts[name] = key
        log.info("%s: %s in %.1fs%s", name, key, rec.seconds[name],
                 " (cached)" if rec.cached[name] else "")
