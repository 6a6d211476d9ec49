"""Intervention judged by the LLM (`intervention_judge`): can the judge tell steered from clean
continuations with the explanation's help?

The latent is steered (interp/scoring/steering.py) and greedy continuations of held-out prompts
are generated clean and steered; the judge (`prompts/score_intervention.md`, one continuation per
request, P(1) from log-probabilities) says whether each matches the explanation. Label 1 =
steered, 0 = clean: AUC and balanced accuracy measure how well the explanation tells steered
text from clean text (not the paper's metric). Cost: 2 x n_prompts LLM calls per latent, plus
the steering's forward passes of the subject model.
"""
from __future__ import annotations

import random
from typing import Any

from pydantic import Field

from interp.llm.base import LLMResponse
from interp.mine.examples import Example
from interp.prompts import Prompt, load_prompt
from interp.scoring.base import Outcome, ScoreContext
from interp.scoring.classifier import classification_outcome, label_from_logprobs, parse_labels
from interp.scoring.llm_scorer import Ask, LLMScorer, Reply, errors_of
from interp.scoring.steering import SteeringConfig, continuations, prompt_windows
from interp.scoring.windows import Item


class InterventionJudgeConfig(SteeringConfig):
    """Judge-based intervention: the judge LLM tells steered from clean continuations."""

    prompt: str = Field("score_intervention", description="Template for judging clean and "
                        "steered continuations (2 judge calls per prompt).")


class InterventionJudge(LLMScorer):
    name = "intervention_judge"
    Config = InterventionJudgeConfig
    needs = ("negatives",)
    headline = "auc"
    uses_subject_model = True
    probed = False  # a probe's rule has no decoder direction to steer

    def prompts(self, score: Any) -> tuple[str, ...]:
        return (score.intervention_judge.prompt,)

    def calls(self, score: Any) -> int | None:
        return 2 * score.intervention_judge.n_prompts

    async def run(self, ctx: ScoreContext, latent: int, explanation: str,
                  examples: list[Example]) -> Outcome:
        score = ctx.cfg.score
        steer = score.intervention_judge
        prompt = load_prompt(steer.prompt)
        pool = prompt_windows(examples, steer.n_prompts)
        clean, steered = await ctx.compute(continuations, ctx, latent, pool, steer) if pool else ([], [])
        items = [Item(t or "(empty)", label, e.seq_id, e.start, -1)
                 for texts, label in ((clean, 0), (steered, 1)) for e, t in zip(pool, texts)]
        random.Random(f"{score.seed}:{latent}:intervention").shuffle(items)
        asks = [Ask(prompt.messages(explanation=explanation, examples=it.text, n=1),
                    score.max_tokens, [it], logprobs=score.logprobs or None) for it in items]
        return await self.ask_all(ctx, latent, asks, prompt)

    def parse(self, ctx: ScoreContext, ask: Ask, response: LLMResponse):
        judged = label_from_logprobs(response.top_logprobs) if response.top_logprobs else None
        if judged is not None:
            return judged
        labels = parse_labels(response.text, 1)
        return None if labels is None else (labels[0], None)

    def outcome(self, ctx: ScoreContext, latent: int, asks: list[Ask], replies: list[Reply],
                prompt: Prompt) -> Outcome:
        items = [a.items[0] for a in asks]
        got = [r.value or (None, None) for r in replies]
        return classification_outcome(items, [p for p, _ in got], [q for _, q in got],
                                      ctx.cfg.llm.model, prompt.sha, errors_of(replies))
