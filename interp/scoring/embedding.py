"""Embedding scorer: does the explanation sit closer, in MiniLM space, to the latent's held-out
activating windows than to non-activating ones? No LLM calls.

The windows are detection's (activating ones spread over quantiles, random non-activating ones),
shown without marks. Score = cosine similarity of explanation and window embeddings; AUC over
the windows, and balanced accuracy & co. with the per-latent median similarity as threshold.
"""
from __future__ import annotations

import random
from typing import ClassVar

from pydantic import Field

from interp.config_base import _Strict
from interp.embed import MODEL_NAME
from interp.mine.examples import Example
from interp.scoring.base import Outcome, Prediction, ScoreContext, Scorer
from interp.scoring.metrics import ranking_metrics
from interp.scoring.windows import Item, detection_items


def similarities(embedder, explanation: str, texts: list[str]) -> list[float]:
    """Cosine similarity of the explanation to each text; `embedder` as Resources.embedder."""
    vecs = embedder([explanation, *texts])
    return [float(v) for v in vecs[1:] @ vecs[0]]


def embedding_outcome(items: list[Item], sims: list[float]) -> Outcome:
    labels = [it.label for it in items]
    preds, metrics = ranking_metrics(labels, sims)
    return Outcome([Prediction(it.seq_id, it.start, it.quantile, it.label, p, s)
                    for it, p, s in zip(items, preds, sims)], metrics, MODEL_NAME)


class EmbeddingScorerConfig(_Strict):
    """Embedding: MiniLM similarity of the explanation and each window (no LLM)."""

    NOT_IN_KEY: ClassVar[frozenset[str]] = frozenset({"device"})
    device: str | None = Field(None, description="Device of the MiniLM embedder; None = "
                               "model.device.")


class Embedding(Scorer):
    name = "embedding"
    Config = EmbeddingScorerConfig
    headline = "auc"
    uses_llm = False

    async def run(self, ctx: ScoreContext, latent: int, explanation: str,
                  examples: list[Example]) -> Outcome:
        cfg = ctx.cfg.score
        rng = random.Random(f"{cfg.seed}:{latent}:embedding")
        # Never against the negatives MiniLM itself chose as similar (mine.negatives 'similar'):
        # the scorer would be graded on its own embedder's choice.
        items = detection_items(examples, cfg.n_positive, cfg.n_negative, rng,
                                hard=ctx.cfg.mine.negatives != "similar")
        if not items:
            return embedding_outcome([], [])
        embedder = await ctx.compute(ctx.resources.embedder)
        # Marks are absent in detection items; '\\n' escapes become spaces for the embedder.
        texts = [it.text.replace("\\n", " ") for it in items]
        sims = await ctx.compute(similarities, embedder, explanation, texts)
        return embedding_outcome(items, sims)
