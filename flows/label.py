"""Prefect flow `label`: interp's stage registry as cached, retryable tasks, then publish.

The flow does not know the stages: it hands interp.stages.run a builder that wraps each stage
build in one generic task. Tasks hand each other artifact keys (short strings), never tensors.
A task's cache key is its artifact key (a content hash of config, inputs and prompts), not
Prefect's hash of path strings; a cached entry whose artifact was deleted is refreshed.
Shardable stages (explain, score) can first be mapped over latent shards on a thread pool or a
Dask cluster, each shard optionally pinned to its own LLM server.
"""
from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from flows import runtime
from interp.artifacts import ArtifactRef, ArtifactStore
from interp.config import RunConfig
from interp.contract import Stage
from interp.llm import LLMError, LLMUnavailable
from interp.resumable import BudgetReached, StageIncomplete, stoppable
from interp.stages import BuildContext, RunRecord, build, run
from storage.catalog import PublishLockTimeout, load_run, publish

# A full, read-only or forbidden disk, or a path that is not there: the same 5 s later.
LASTING_OS_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES,
                               errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR,
                               errno.ENAMETOOLONG})


def worth_retrying(err: BaseException) -> bool:
    """Whether a second attempt of a failed task can succeed: a few lost LLM requests, a passing
    I/O error or a busy catalogue can; bad input, a bug, an outage that the probe or three failed
    latents in a row already diagnosed, a refused key (401/403), a spent token budget, a full
    disk or a permission error cannot, and fail the run at once."""
    if isinstance(err, LLMUnavailable):
        return False
    if isinstance(err, StageIncomplete):
        return not isinstance(err, BudgetReached) and not err.server_down
    if isinstance(err, OSError):  # TimeoutError and connection errors included
        return err.errno not in LASTING_OS_ERRORS
    return isinstance(err, (LLMError, PublishLockTimeout))


def _transient(task, task_run, state) -> bool:
    """Prefect's retry_condition_fn: retry only what worth_retrying says a retry can fix."""
    try:
        state.result()
    except Exception as err:  # noqa: BLE001 - classified, not handled
        return worth_retrying(err)
    return False


def _key_fn(ctx, params: dict[str, Any]) -> str:
    return f"interp-{params['stage']}-{params['key']}"


@task(name="stage", retries=2, retry_delay_seconds=5, retry_condition_fn=_transient,
      cache_key_fn=_key_fn, persist_result=True, task_run_name="{stage}")
def stage_task(stage: str, key: str, inputs: dict[str, str], build: Callable[[], ArtifactRef]) -> str:
    """Build (or find) one stage's artifact; returns its key."""
    ref = build()
    if ref.key != key:
        raise RuntimeError(f"{stage}: planned key {key} but built {ref.key}; the config changed mid-run")
    return ref.key


@task(name="publish", retries=2, retry_delay_seconds=5, retry_condition_fn=_transient,
      cache_policy=NO_CACHE)
def publish_task(home: str, artifacts: dict[str, str], run_dir: str) -> list[str]:
    return publish(home, artifacts, [load_run(run_dir)])


class ScaleOut(BaseModel):
    """How shardable stages are spread out (a flow parameter, next to the RunConfig)."""

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


@task(name="shard", retries=2, retry_delay_seconds=5, retry_condition_fn=_transient,
      cache_policy=NO_CACHE, task_run_name="{stage}-{index}")
def shard_task(stage: str, config: dict[str, Any], inputs: dict[str, str], index: int, count: int,
               base_url: str | None, env: dict[str, str] | None = None) -> None:
    """One latent shard of a shardable stage, written into the stage's partial directory, with
    the driver's offline settings `env` (a Dask worker has the environment it was started with)."""
    runtime.apply_env(env or {})
    cfg = RunConfig.model_validate(config)
    store = ArtifactStore(cfg.home)
    refs = {s: store.require(s, k) for s, k in inputs.items()}
    session = BuildContext(cfg, base_url=base_url)
    try:
        build(cfg, stage, refs, session=session, shard=(index, count))
    finally:
        session.close()


@flow(name="latent-shards")
def map_shards(stage: str, config: dict[str, Any], inputs: dict[str, str], count: int,
               urls: list[str], env: dict[str, str] | None = None) -> None:
    """Run every shard of a stage on this subflow's task runner and wait for all of them; if
    one fails, or Ctrl-C / SIGTERM interrupts the wait, the shards in this process stop too (a
    signal reaches only this thread: the pool waited for its shards to finish)."""
    with stoppable() as stop:  # a thread pool's shards run in copies of this context
        try:
            futures = [shard_task.submit(stage, config, inputs, i, count,
                                         urls[i % len(urls)] if urls else None, env)
                       for i in range(count)]
            for f in futures:
                f.result()
        except BaseException:
            stop.set()
            raise


def builder(cfg: RunConfig, scale: ScaleOut):
    """interp.stages.run's builder: each stage as a cached task, sharded first when asked."""
    store = ArtifactStore(cfg.home)
    payload = cfg.model_dump(mode="json")

    def build(stage: Stage, key: str, inputs: dict[str, str], thunk) -> ArtifactRef:
        exists = store.get(stage.name, key) is not None
        if not exists and stage.per_latent and scale.latent_shards > 1:
            runner = runtime.task_runner(scale.task_runner, max_workers=scale.max_workers,
                                         dask_address=scale.dask_address)
            with runtime.api_url_travels():
                map_shards.with_options(task_runner=runner)(stage.name, payload, inputs,
                                                            scale.latent_shards,
                                                            scale.llm_base_urls, runtime.offline_env())
        done = stage_task.with_options(refresh_cache=not exists)(stage.name, key, inputs, thunk)
        return store.require(stage.name, done)
    return build


def finish(cfg: RunConfig, rec: RunRecord) -> dict[str, Any]:
    """Publish the saved run (one publish step, under the catalogue lock)."""
    published = publish_task(str(cfg.home), rec.artifacts, str(cfg.home / "runs" / rec.run_id))
    return {**rec.to_dict(), "published": published}


@flow(name="label", log_prints=True)
def label(config: dict[str, Any] | None = None, scale: ScaleOut | None = None) -> dict[str, Any]:
    """Every stage of interp's registry, cached by artifact key, then publish."""
    cfg = RunConfig.model_validate(config or {})
    rec = run(cfg, progress=True, builder=builder(cfg, scale or ScaleOut()))
    return finish(cfg, rec)
