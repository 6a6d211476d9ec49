"""The one stage registry and the runner that owns the stage contract (interp/contract.py).

Every stage is declared once, in its own module; the registry below lists them in run order, one
line each. The runner computes each stage's key from its declaration, hands it its declared
inputs, owns the artifact's directory, lock, manifest and rename (`ArtifactStore.build_once`),
and records the run. `run` walks the registry for `interp run --no-prefect`, rescore and tests;
flows/label.py passes a builder that wraps each build in one Prefect task; `build` makes one
stage (or one latent shard of a per-latent stage) from given input artifacts.

From code that runs an event loop (a notebook, an async app) await `arun` / `abuild` instead:
the stages run in a worker thread and explain's and score's LLM work on the caller's loop
(interp/aio.py). `run` / `build` refuse a running loop when an LLM stage is among the stages
they would build, naming the async entry point.
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

from interp.aio import in_worker, refuse_running_loop
from interp.analysis import dark_matter, logits, match
from interp.artifacts import (
    ArtifactRef,
    ArtifactStore,
    DiskFull,
    artifact_key,
    disk_full,
    disk_full_errno,
    write_text_atomic,
)
from interp.collect import stage as collect
from interp.config import RunConfig, dump_config
from interp.contract import KeyContext, Stage, StageContext
from interp.explain import stage as explain
from interp.mine import stage as mine
from interp.prompts import pinned_prompts
from interp.sae import stage as train
from interp.scoring import stage as score

log = logging.getLogger(__name__)


def _registry(*stages: Stage) -> dict[str, Stage]:
    out: dict[str, Stage] = {}
    for s in stages:
        unknown = [i for i in (*s.inputs, *s.reads) if i not in out]
        if unknown or s.name in out:
            raise ValueError(f"stage {s.name}: inputs {unknown} must be registered before it")
        out[s.name] = s
    return out


# The registry, in run order: one line per stage.
STAGES: dict[str, Stage] = _registry(
    collect.STAGE,
    train.STAGE,
    match.STAGE,
    dark_matter.STAGE,
    logits.STAGE,
    mine.STAGE,
    explain.STAGE,
    score.STAGE,
)


@dataclass
class BuildContext:
    """What the stages of one run share: `llm()` opens the LLM client on first use and keeps it
    open for the following LLM stages (the embedded server starts once for explain and score);
    `close()` ends it. `base_url` pins the client to one replica of llm.model (a shard task)."""

    cfg: RunConfig
    progress: bool = False
    base_url: str | None = None
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


def stage_key(cfg: RunConfig, name: str, input_keys: dict[str, str],
              store: ArtifactStore | None = None) -> str:
    """The key of stage `name` under `cfg` given its inputs' keys: the one place keys are made."""
    stage = STAGES[name]
    config = stage.settings(cfg)  # first: it names a config field that contradicts another
    if missing := [s for s in stage.keyed_inputs(cfg) if s not in input_keys]:
        raise ValueError(f"stage {name} needs the key of its {', '.join(missing)} input(s)")
    keyed = {s: input_keys[s] for s in stage.keyed_inputs(cfg)}
    extra = stage.extra(KeyContext(cfg, keyed, store or ArtifactStore(cfg.home)))
    return artifact_key(stage.name, stage.version, config, keyed, extra)


def _lineage(inputs: dict[str, ArtifactRef]) -> dict[str, str]:
    """Every upstream stage's key: the inputs and what their manifests record as theirs
    (artifacts from before lineage was recorded name their direct inputs only)."""
    out: dict[str, str] = {}
    for name, ref in inputs.items():
        man = ref.manifest() if (ref.path / "manifest.json").is_file() else {}
        out.update(man.get("lineage") or man.get("inputs") or {})
        out[name] = ref.key
    return out


def _resolve(cfg: RunConfig, stage: Stage, refs: dict[str, ArtifactRef]) -> dict[str, ArtifactRef]:
    """The declared inputs of `stage` from `refs`, or an error naming what is missing."""
    missing = [s for s in stage.all_inputs(cfg) if s not in refs]
    if "logits" in missing and "logits" in stage.optional(cfg):
        raise ValueError(f"{stage.name} needs the logits stage's artifact of this SAE "
                         "(explain.output_tokens): run the logits stage too (logits.k > 0)")
    if missing:
        raise ValueError(f"stage {stage.name} needs the {', '.join(missing)} artifact(s): run "
                         f"them too or pass them in reuse")
    return {s: refs[s] for s in stage.all_inputs(cfg)}


def build(cfg: RunConfig, name: str, inputs: dict[str, ArtifactRef], *,
          session: BuildContext | None = None, llm: Any = None,
          shard: tuple[int, int] | None = None, progress: bool = False) -> ArtifactRef | None:
    """Build stage `name` from its input artifacts (a cache hit when its artifact exists).

    `llm`: a client to use (else the session's, opened on first use). With `shard=(i, n)` a
    per-latent stage fills only shard i's latents into its partial directory and returns None;
    the unsharded build then finds them done and only merges.
    """
    stage = STAGES[name]
    if stage.per_latent:
        refuse_running_loop("interp.stages.build", "interp.stages.abuild(cfg, name, inputs)")
    with pinned_prompts():  # the prompts hashed into the key are the ones the stage sends
        return _build(cfg, stage, inputs, session, llm, shard, progress)


def _build(cfg: RunConfig, stage: Stage, inputs: dict[str, ArtifactRef],
           session: BuildContext | None, llm: Any, shard: tuple[int, int] | None,
           progress: bool) -> ArtifactRef | None:
    name, store = stage.name, ArtifactStore(cfg.home)
    refs = _resolve(cfg, stage, inputs)
    key = stage_key(cfg, name, {s: r.key for s, r in refs.items()}, store)
    own = session is None
    session = session or BuildContext(cfg, progress)
    try:
        ctx = StageContext(cfg, name, key, refs, out=Path(), lineage=_lineage(refs),
                           progress=progress or session.progress, shard=shard,
                           llm=llm if llm is not None else session.llm)
        try:
            return _fill(store, stage, ctx)
        except Exception as err:
            if isinstance(err, DiskFull) or (code := disk_full_errno(err)) is None:
                raise
            raise _disk_full(code, err, stage, ctx, store) from err
    finally:
        if own:
            session.close()


async def abuild(cfg: RunConfig, name: str, inputs: dict[str, ArtifactRef], **kwargs: Any
                 ) -> ArtifactRef | None:
    """`build` awaited from a running event loop (same arguments): the stage runs in a worker
    thread, so a CPU-bound one never blocks the loop, and explain's or score's LLM requests run
    on this loop. Cancelled, a per-latent stage stops and keeps the latents that finished."""
    return await in_worker(build, cfg, name, inputs, **kwargs)


def _disk_full(code: int, err: Exception, stage: Stage, ctx: StageContext,
               store: ArtifactStore) -> DiskFull:
    """A stage's write that found no room, as one line naming the file (or the stage's build
    directory: pyarrow and safetensors do not say which file) and what the next run does."""
    out = ctx.out if ctx.out != Path() else store.path(stage.name, ctx.key)
    resumes = stage.per_latent or stage.resumable(ctx.cfg)
    kept = (f"what it finished is kept in {out} for the next run" if resumes else
            "its unfinished artifact was removed")
    return disk_full(code, f"stage {stage.name}", getattr(err, "filename", None) or out,
                     f"{kept}; free space under {store.root} and run again (finished stages "
                     f"are reused)")


def _fill(store: ArtifactStore, stage: Stage, ctx: StageContext) -> ArtifactRef | None:
    record = {s: r.key for s, r in ctx.inputs.items()}
    if ctx.shard is not None:
        if not stage.per_latent:
            raise ValueError(f"stage {stage.name} has no latent shards")
        if store.get(stage.name, ctx.key) is None:
            with store.lock(stage.name, f"{ctx.key}.shard-{ctx.shard[0]}-of-{ctx.shard[1]}"):
                ctx.out = store.partial_dir(stage.name, ctx.key)
                stage.fill(ctx)
        return None

    def fill(tmp: Path) -> dict[str, Any]:
        ctx.out = tmp
        return {**stage.fill(ctx), "lineage": ctx.lineage}
    return store.build_once(stage.name, ctx.key, fill, inputs=record,
                            resumable=stage.per_latent or stage.resumable(ctx.cfg))


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
    if any(STAGES[n].per_latent for n in (only or STAGES) if n not in (reuse or {})):
        refuse_running_loop("interp.stages.run", "interp.stages.arun(cfg, ...)")
    rec = record or RunRecord()
    refs: dict[str, ArtifactRef] = dict(reuse or {})
    session = BuildContext(cfg, progress)
    try:
        _walk(cfg, rec, refs, session, only, builder)
        rec.status = "complete"
    except BaseException as err:
        rec.status, rec.error = "failed", f"{type(err).__name__}: {err}"[:1000]
        raise
    finally:
        if session.llm_client is not None:
            rec.llm_tokens = dict(session.llm_client.ledger.totals)
        session.close()
        _save_record(cfg, rec)
    return rec


async def arun(cfg: RunConfig, **kwargs: Any) -> RunRecord:
    """`run` awaited from a running event loop (a notebook: `rec = await arun(cfg)`), with the
    same keyword arguments: the stages run in a worker thread, explain's and score's LLM
    requests on this loop. Cancelled, the LLM stages stop as on Ctrl-C (what finished is kept,
    the record says 'failed'); a CPU-bound stage that is running finishes first."""
    return await in_worker(run, cfg, **kwargs)


def _save_record(cfg: RunConfig, rec: RunRecord) -> None:
    """Save the record (a failed run's says what it built and spent). When the run failed, a
    record that cannot be written (the disk that filled up) is logged, not raised: the run's own
    error is the one to report."""
    try:
        rec.save(cfg)
    except OSError as err:
        if rec.status == "failed":
            log.warning("could not save the record of failed run %s: %s", rec.run_id, err)
            return
        if (code := disk_full_errno(err)) is None:
            raise
        raise disk_full(code, f"run {rec.run_id}", err.filename or cfg.home / "runs",
                        "every stage finished: free space and run again (all cached)") from err


def _walk(cfg: RunConfig, rec: RunRecord, refs: dict[str, ArtifactRef], session: BuildContext,
          only: tuple[str, ...] | None, builder: Builder) -> None:
    """Build the stages in registry order, filling `rec` and `refs` as each finishes."""
    store = ArtifactStore(cfg.home)
    for name, stage in STAGES.items():
        if name in refs:
            rec.artifacts[name], rec.cached[name], rec.seconds[name] = refs[name].key, True, 0.0
            continue
        if only is not None and name not in only:
            continue
        inputs = _resolve(cfg, stage, refs)
        input_keys = {s: r.key for s, r in inputs.items()}
        key = stage_key(cfg, name, input_keys, store)
        rec.cached[name] = store.get(name, key) is not None
        t0 = time.time()
        refs[name] = builder(stage, key, input_keys,
                             lambda name=name, inputs=inputs: build(cfg, name, inputs, session=session))
        rec.seconds[name] = round(time.time() - t0, 2)
        rec.artifacts[name] = key
        log.info("%s: %s in %.1fs%s", name, key, rec.seconds[name],
                 " (cached)" if rec.cached[name] else "")
