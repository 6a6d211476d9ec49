"""Score stage: each ok explanation judged by every configured scorer on held-out windows."""
from __future__ import annotations

import random
import time

import pyarrow as pa
import pyarrow.parquet as pq

from interp.artifacts import ArtifactRef, ArtifactStore, artifact_key, stable_hash
from interp.config import RunConfig
from interp.examples import load_examples
from interp.llm import Ledger, LLMError, OpenAICompatibleLLM, llm_endpoint
from interp.prompts import load_prompt
from interp.resumable import merge_parts, pending, run_resumable
from interp.scoring.classify import BUILDERS, format_items, label_from_logprobs, parse_labels
from interp.scoring.metrics import classification_metrics

STAGE = "score"
VERSION = "1"
_METRICS = ("balanced_accuracy", "precision", "recall", "f1", "auc", "accuracy")

SCHEMA = pa.schema([
    ("score_id", pa.string()), ("explanation_id", pa.string()), ("latent", pa.int32()),
    ("scorer", pa.string()), ("scorer_model", pa.string()), ("prompt_hash", pa.string()),
    ("settings_hash", pa.string()), ("status", pa.string()), ("n_examples", pa.int32()),
    ("n_failed", pa.int32()), *[(m, pa.float64()) for m in _METRICS], ("corr", pa.float64()),
    ("predictions", pa.list_(pa.struct([("seq_id", pa.int32()), ("start", pa.int32()),
                                        ("quantile", pa.int32()), ("label", pa.int8()),
                                        ("prediction", pa.int8()), ("prob", pa.float64())]))),
    ("created_at", pa.float64())])


def _prompt_names(cfg: RunConfig) -> dict[str, str]:
    suffix = "" if cfg.score.batch_size == 1 else "_batch"
    return {"detection": cfg.score.prompt_detection + suffix, "fuzzing": cfg.score.prompt_fuzzing + suffix}


def _settings(cfg: RunConfig) -> dict:
    return cfg.score.model_dump(mode="json", exclude={"chunk_latents"})


def score_key(cfg: RunConfig, explain_key: str, mine_key: str) -> str:
    prompts = {s: load_prompt(_prompt_names(cfg)[s]).sha for s in cfg.score.scorers}
    return artifact_key(STAGE, VERSION, {"score": _settings(cfg), "llm": cfg.llm.identity()},
                        {"explain": explain_key, "mine": mine_key}, {"prompts": prompts})


async def _judge(llm, prompt, explanation: str, items, cfg: RunConfig, latent: int):
    """(predictions, P(1) or None) per item; a prediction is None where the answer was unusable."""
    preds: list[int | None] = []
    probs: list[float | None] = []
    size = cfg.score.batch_size
    for b in range(0, len(items), size):
        batch = items[b:b + size]
        messages = prompt.messages(explanation=explanation, examples=format_items(batch), n=len(batch))
        try:
            r = await llm.generate(messages, max_tokens=cfg.score.max_tokens * len(batch),
                                   temperature=0.0, logprobs=cfg.score.logprobs or None,
                                   stage=STAGE, latent=latent)
        except LLMError:
            preds.extend([None] * len(batch))
            probs.extend([None] * len(batch))
            continue
        judged = label_from_logprobs(r.top_logprobs) if size == 1 and r.top_logprobs else None
        if judged is not None:
            preds.append(judged[0])
            probs.append(judged[1])
            continue
        labels = parse_labels(r.text, len(batch))
        preds.extend(labels if labels is not None else [None] * len(batch))
        probs.extend([None] * len(batch))
    return preds, probs


def make_work(cfg: RunConfig, explanations: dict[int, dict], examples, llm):
    prompts = {s: load_prompt(_prompt_names(cfg)[s]) for s in cfg.score.scorers}
    settings_hash = stable_hash(_settings(cfg))

    async def work(latent: int) -> list[dict]:
        exp = explanations[latent]
        rows = []
        for scorer in cfg.score.scorers:
            rng = random.Random(f"{cfg.score.seed}:{latent}:{scorer}")
            items = BUILDERS[scorer](examples[latent], cfg.score.n_positive, cfg.score.n_negative, rng)
            preds, probs = await _judge(llm, prompts[scorer], exp["text"], items, cfg, latent)
            m = classification_metrics([it.label for it in items], preds, probs)
            status = "ok" if items and m["n_failed"] < len(items) else \
                ("no_examples" if not items else "failed")
            rows.append({
                "score_id": stable_hash({"e": exp["explanation_id"], "s": scorer, "h": settings_hash}),
                "explanation_id": exp["explanation_id"], "latent": latent, "scorer": scorer,
                "scorer_model": cfg.llm.model, "prompt_hash": prompts[scorer].sha,
                "settings_hash": settings_hash, "status": status, "corr": None,
                **{k: m[k] for k in ("n_examples", "n_failed", *_METRICS)},
                "predictions": [{"seq_id": it.seq_id, "start": it.start, "quantile": it.quantile,
                                 "label": it.label, "prediction": p, "prob": q}
                                for it, p, q in zip(items, preds, probs)],
                "created_at": time.time()})
        return rows
    return work


def score(cfg: RunConfig, explain_ref: ArtifactRef, mine_ref: ArtifactRef, *,
          progress: bool = False) -> ArtifactRef:
    """Score stage, resumable per chunk of latents. Only explanations with status 'ok' are scored."""
    store = ArtifactStore(cfg.home)
    key = score_key(cfg, explain_ref.key, mine_ref.key)
    with store.lock(STAGE, key):
        if (ref := store.get(STAGE, key)) is not None:
            return ref
        table = pq.read_table(explain_ref.path / "explanations.parquet")
        explanations = {r["latent"]: r for r in table.to_pylist() if r["status"] == "ok"}
        latents = sorted(explanations)
        manifest = {"explain": explain_ref.key, "mine": mine_ref.key, "sae": mine_ref.manifest()["sae"],
                    "config": _settings(cfg), "llm": cfg.llm.identity(), "latents": latents}
        with store.build(STAGE, key, manifest, resumable=True) as tmp:
            if pending(latents, cfg.score.chunk_latents, tmp):
                examples = load_examples(mine_ref.path, latents)
                ledger = Ledger()
                with llm_endpoint(cfg.llm) as url:
                    llm = OpenAICompatibleLLM(cfg.llm, url, ledger)
                    manifest["progress"] = run_resumable(
                        latents, cfg.score.chunk_latents, tmp,
                        make_work(cfg, explanations, examples, llm), SCHEMA, ledger,
                        desc="score", progress=progress, close=llm.aclose)
            scores = merge_parts(tmp, SCHEMA, "scores.parquet", ("latent", "scorer"))
            st = scores.column("status").to_pylist()
            manifest["status_counts"] = {s: st.count(s) for s in sorted(set(st))}
        return store.require(STAGE, key)
