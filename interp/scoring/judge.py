"""LLM-judge scorers: detection and fuzzing (delphi's definitions; items built in classify.py).

The judge answers 0/1 per window. With batch_size 1 the answer's log-probabilities give P(1)
(an AUC); with more, one request judges several windows and the answer is parsed as a list.
A failed request or an unparseable answer leaves its windows' predictions None: counted in
n_failed, never scored as 0.
"""
from __future__ import annotations

import functools
import random

from interp.config import RunConfig
from interp.mine.examples import Example
from interp.llm import LLMError
from interp.prompts import Prompt, load_prompt
from interp.resumable import in_order
from interp.scoring.base import Outcome, Prediction, ScoreContext
from interp.scoring.classify import BUILDERS, Item, format_items, label_from_logprobs, parse_labels
from interp.scoring.metrics import classification_metrics

STAGE = "score"


async def _judge_batch(ctx: ScoreContext, prompt: Prompt, explanation: str, batch: list[Item],
                       latent: int, batch_size: int):
    """(predictions, probabilities, error or None) of one request judging `batch`."""
    cfg = ctx.cfg.score
    none = [None] * len(batch)
    messages = prompt.messages(explanation=explanation, examples=format_items(batch), n=len(batch))
    try:
        r = await ctx.llm.generate(messages, max_tokens=cfg.max_tokens * len(batch),
                                   temperature=0.0, logprobs=cfg.logprobs or None,
                                   stage=STAGE, latent=latent)
    except LLMError as err:
        return none, none, f"llm: {err.reason}"
    judged = label_from_logprobs(r.top_logprobs) if batch_size == 1 and r.top_logprobs else None
    if judged is not None:
        return [judged[0]], [judged[1]], None
    labels = parse_labels(r.text, len(batch))
    if labels is None:
        return none, none, f"unparseable answer: {r.text[:80]!r}"
    return labels, none, None


async def judge_items(ctx: ScoreContext, prompt: Prompt, explanation: str, items: list[Item],
                      latent: int, batch_size: int = 1):
    """(predictions, P(1) or None, error reasons) per item; None where the answer was unusable.

    One latent's requests go one after another (latents run concurrently): consecutive requests
    sharing the instructions + explanation prefix hit the server's prompt cache in one slot.
    Sending them all at once spread the prefix over every slot and made the default run's scoring
    40% slower (0.62 vs 0.44 s per request on llama.cpp, 2 cores). The stage's last latents,
    when fewer run than the server has slots, send what is left at once (resumable.in_order).
    """
    batches = [items[b:b + batch_size] for b in range(0, len(items), batch_size)]
    answers = await in_order([
        functools.partial(_judge_batch, ctx, prompt, explanation, batch, latent, batch_size)
        for batch in batches])
    preds = [p for a in answers for p in a[0]]
    probs = [q for a in answers for q in a[1]]
    return preds, probs, [a[2] for a in answers if a[2]]


def outcome(items: list[Item], preds, probs, model: str, prompt_hash: str | None,
            errors: list[str]) -> Outcome:
    return Outcome([Prediction(it.seq_id, it.start, it.quantile, it.label, p, q)
                    for it, p, q in zip(items, preds, probs)],
                   classification_metrics([it.label for it in items], preds, probs),
                   model, prompt_hash, list(dict.fromkeys(errors)))


class JudgeScorer:
    """Detection or fuzzing: build the latent's items, ask the judge about each."""

    uses_subject_model = False
    headline = "balanced_accuracy"

    def __init__(self, name: str):
        self.name = name
        # Fuzzing marks activating windows only (correctly or not): it needs no negatives.
        self.needs = ("positives", "negatives") if name == "detection" else ("positives",)

    def prompts(self, cfg: RunConfig) -> tuple[str, ...]:
        base = getattr(cfg.score, self.name).prompt
        return (base if cfg.score.batch_size == 1 else base + "_batch",)

    async def run(self, ctx: ScoreContext, latent: int, explanation: str,
                  examples: list[Example]) -> Outcome:
        cfg = ctx.cfg.score
        prompt = load_prompt(self.prompts(ctx.cfg)[0])
        rng = random.Random(f"{cfg.seed}:{latent}:{self.name}")
        items = BUILDERS[self.name](examples, cfg.n_positive, cfg.n_negative, rng)
        preds, probs, errors = await judge_items(ctx, prompt, explanation, items, latent,
                                                 cfg.batch_size)
        return outcome(items, preds, probs, ctx.cfg.llm.model, prompt.sha, errors)
