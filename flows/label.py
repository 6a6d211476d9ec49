"""Prefect flow `label`: the five interp stages as cached, retryable tasks, then publish.

Tasks hand each other artifact keys (short strings), never tensors. The cache key of a task is its
artifact key (a content hash of config, inputs and prompts), not Prefect's hash of path strings; a
cached entry whose artifact was deleted is refreshed. Explain and score can be mapped over latent
shards on a thread pool or a Dask cluster, each shard optionally pinned to its own LLM server;
every LLM request takes a slot of one global Prefect concurrency limit.
"""
from __future__ import annotations

from typing import Any

from prefect import flow, task
from pydantic import BaseModel, ConfigDict, Field
from prefect.cache_policies import NO_CACHE

from interp import pipeline
from interp.activations import collect
from interp.artifacts import ArtifactStore
from interp.config import RunConfig
from interp.explain import explain
from interp.llm import LLMError
from interp.mining import mine
from interp.scoring import score
from flows import runtime, shards
from storage.catalog import PublishLockTimeout, load_run, publish

TRANSIENT = (OSError, TimeoutError, LLMError, PublishLockTimeout)


def _transient(task, task_run, state) -> bool:
    """Retry only failures that a second attempt can fix (I/O, LLM outages, a busy catalogue)."""
    try:
        state.result()
    except TRANSIENT:
        return True
    except Exception:  # noqa: BLE001 - a bug or bad input: fail fast
        return False
    return False


def _key_fn(ctx, params: dict[str, Any]) -> str:
    return f"interp-{params['stage']}-{params['key']}"


@task(name="stage", retries=2, retry_delay_seconds=5, retry_condition_fn=_transient,
      cache_key_fn=_key_fn, persist_result=True, task_run_name="{stage}")
def run_stage(stage: str, key: str, config: dict[str, Any], inputs: dict[str, str]) -> str:
    """Build (or find) one stage's artifact; returns its key."""
    cfg = RunConfig.model_validate(config)
    store = ArtifactStore(cfg.home)
    ref = {s: store.require(s, k) for s, k in inputs.items()}
    if stage in ("explain", "score"):
        with runtime.llm_gate():
            out = explain(cfg, ref["mine"], progress=True) if stage == "explain" else \
                score(cfg, ref["explain"], ref["mine"], progress=True)
    elif stage == "collect":
        out = collect(cfg, progress=True)
    elif stage == "train":
        out = pipeline.train_stage(cfg, ref["collect"], progress=True)
    else:
        out = mine(cfg, ref["collect"], ref["train"])
    if out.key != key:
        raise RuntimeError(f"{stage}: planned key {key} but built {out.key}; the config changed mid-run")
    return out.key


@task(name="publish", retries=2, retry_delay_seconds=5, retry_condition_fn=_transient,
      cache_policy=NO_CACHE)
def publish_task(home: str, artifacts: dict[str, str], run_dir: str) -> list[str]:
    return publish(home, artifacts, [load_run(run_dir)])


INPUTS = {"collect": (), "train": ("collect",), "mine": ("collect", "train"),
          "explain": ("mine",), "score": ("explain", "mine")}
SHARDED = ("explain", "score")


class ScaleOut(BaseModel):
    """How explain and score are spread out (a flow parameter, next to the RunConfig)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latent_shards: int = Field(1, ge=1, description="Latent shards of explain and score, mapped "
                               "as Prefect tasks; 1 = one task per stage.")
    task_runner: runtime.TaskRunnerName = Field("threads", description="'threads' (Prefect's "
                                                "thread pool) or 'dask' (prefect-dask).")
    max_workers: int | None = Field(None, gt=0, description="Shards run at once on one machine "
                                    "(threads, or threads of the local Dask cluster).")
    dask_address: str | None = Field(None, description="Scheduler of a running Dask cluster, "
                                     "e.g. tcp://scheduler:8786; None = a local cluster.")
    llm_base_urls: list[str] = Field(default_factory=list, description="Several OpenAI-"
                                     "compatible servers of the same model (llm.model), e.g. vLLM "
                                     "replicas: shard i uses url i mod n. Empty = llm.base_url.")
    llm_request_limit: int | None = Field(None, gt=0, description="Global Prefect concurrency "
                                          f"limit '{runtime.LLM_LIMIT}' on LLM requests in flight, "
                                          "shared by all flow runs; set here = upserted, None = "
                                          "created as llm.concurrency x servers if missing.")


@task(name="shard", retries=2, retry_delay_seconds=5, retry_condition_fn=_transient,
      cache_policy=NO_CACHE, task_run_name="{stage}-{index}")
def shard_task(stage: str, config: dict[str, Any], inputs: dict[str, str], index: int, count: int,
               base_url: str | None) -> dict[str, int]:
    """One latent shard of explain or score, written into the stage's partial directory."""
    cfg = RunConfig.model_validate(config)
    store = ArtifactStore(cfg.home)
    ref = {s: store.require(s, k) for s, k in inputs.items()}
    with runtime.llm_gate():
        if stage == "explain":
            return shards.explain_shard(cfg, ref["mine"], index, count, base_url=base_url)
        return shards.score_shard(cfg, ref["explain"], ref["mine"], index, count, base_url=base_url)


@flow(name="latent-shards")
def map_shards(stage: str, config: dict[str, Any], inputs: dict[str, str], count: int,
               urls: list[str]) -> list[dict[str, int]]:
    """Run every shard of a stage on this subflow's task runner and wait for all of them."""
    futures = [shard_task.submit(stage, config, inputs, i, count, urls[i % len(urls)] if urls else None)
               for i in range(count)]
    return [f.result() for f in futures]


def run_stages(cfg: RunConfig, rec: pipeline.RunRecord, stages: tuple[str, ...], scale: ScaleOut) -> None:
    """Run `stages` in order as cached tasks (sharding explain/score when asked), filling `rec`."""
    store = ArtifactStore(cfg.home)
    payload = cfg.model_dump(mode="json")
    for stage in stages:
        key = pipeline.plan_one(cfg, stage, rec.artifacts)
        exists = store.get(stage, key) is not None
        inputs = {s: rec.artifacts[s] for s in INPUTS[stage]}

        def build(stage=stage, key=key, inputs=inputs, exists=exists):
            if not exists and stage in SHARDED and scale.latent_shards > 1:
                runner = runtime.task_runner(scale.task_runner, max_workers=scale.max_workers,
                                             dask_address=scale.dask_address)
                map_shards.with_options(task_runner=runner)(stage, payload, inputs,
                                                            scale.latent_shards, scale.llm_base_urls)
            return store.require(stage, run_stage.with_options(refresh_cache=not exists)(
                stage, key, payload, inputs))
        rec.timed(stage, cfg, build)


def start(cfg: RunConfig, scale: ScaleOut) -> None:
    """Flow start: the global LLM request limit must exist before any strict acquire."""
    runtime.ensure_llm_limit(scale.llm_request_limit,
                             cfg.llm.concurrency * max(1, len(scale.llm_base_urls)))


def finish(cfg: RunConfig, rec: pipeline.RunRecord) -> dict[str, Any]:
    """Save the run record and publish it (one publish step, under the catalogue lock)."""
    pipeline.save_run(cfg, rec)
    published = publish_task(str(cfg.home), rec.artifacts, str(cfg.home / "runs" / rec.run_id))
    return {"run_id": rec.run_id, "artifacts": rec.artifacts, "seconds": rec.seconds,
            "cached": rec.cached, "published": published}


@flow(name="label", log_prints=True)
def label(config: dict[str, Any] | None = None, scale: ScaleOut | None = None) -> dict[str, Any]:
    """Collect -> train -> mine -> explain -> score -> publish, every stage cached by artifact key."""
    cfg = RunConfig.model_validate(config or {})
    scale = scale or ScaleOut()
    start(cfg, scale)
    rec = pipeline.RunRecord()
    run_stages(cfg, rec, pipeline.STAGES, scale)
    return finish(cfg, rec)
