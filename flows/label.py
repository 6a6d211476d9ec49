"""Prefect flow `label`: the five interp stages as cached, retryable tasks, then publish.

Tasks hand each other artifact keys (short strings), never tensors. The cache key of a task is its
artifact key (a content hash of config, inputs and prompts), not Prefect's hash of path strings; a
cached entry whose artifact was deleted is refreshed.
"""
from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from interp import pipeline
from interp.activations import collect
from interp.artifacts import ArtifactStore
from interp.config import RunConfig
from interp.explain import explain
from interp.llm import LLMError
from interp.mining import mine
from interp.scoring import score
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
    if stage == "collect":
        out = collect(cfg, progress=True)
    elif stage == "train":
        out = pipeline.train_stage(cfg, ref["collect"], progress=True)
    elif stage == "mine":
        out = mine(cfg, ref["collect"], ref["train"])
    elif stage == "explain":
        out = explain(cfg, ref["mine"], progress=True)
    else:
        out = score(cfg, ref["explain"], ref["mine"], progress=True)
    if out.key != key:
        raise RuntimeError(f"{stage}: planned key {key} but built {out.key}; the config changed mid-run")
    return out.key


@task(name="publish", retries=2, retry_delay_seconds=5, retry_condition_fn=_transient,
      cache_policy=NO_CACHE)
def publish_task(home: str, artifacts: dict[str, str], run_dir: str) -> list[str]:
    return publish(home, artifacts, [load_run(run_dir)])


INPUTS = {"collect": (), "train": ("collect",), "mine": ("collect", "train"),
          "explain": ("mine",), "score": ("explain", "mine")}


@flow(name="label", log_prints=True)
def label(config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Collect -> train -> mine -> explain -> score -> publish, every stage cached by artifact key."""
    cfg = RunConfig.model_validate(config or {})
    store = ArtifactStore(cfg.home)
    rec = pipeline.RunRecord()
    payload = cfg.model_dump(mode="json")
    for stage in pipeline.STAGES:
        key = pipeline.plan_one(cfg, stage, rec.artifacts)
        exists = store.get(stage, key) is not None
        inputs = {s: rec.artifacts[s] for s in INPUTS[stage]}
        rec.timed(stage, cfg, lambda: store.require(stage, run_stage.with_options(
            refresh_cache=not exists)(stage, key, payload, inputs)))
    pipeline.save_run(cfg, rec)
    published = publish_task(str(cfg.home), rec.artifacts, str(cfg.home / "runs" / rec.run_id))
    return {"run_id": rec.run_id, "artifacts": rec.artifacts, "seconds": rec.seconds,
            "cached": rec.cached, "published": published}
