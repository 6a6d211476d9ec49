"""Intervention scorer as in the paper ("Automatically interpreting millions of features in large
language models", Paulo et al.): does the explanation say what the latent *does* when turned up?

The latent is steered at a strength calibrated to `score.intervention.target_kl` (see
interp/scoring/steering.py), and greedy continuations of held-out prompts are generated
clean and steered. The scorer model (here the subject model itself, no LLM calls) reads each
continuation followed by `prompts/score_intervention_lm.md` and we take the log-probability of the
explanation after it. Score per prompt = log P(explanation | steered text) - log P(explanation |
clean text), in nats; the latent's `logprob_gain` is the mean over prompts, with a bootstrap
interval over prompts. A positive gain means steering makes the text more like the explanation.
Cost: 0 LLM calls; calibration (~20 forward passes), 2 x new_tokens greedy steps, and 2 x
n_prompts forward passes for the log-probabilities.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from interp.mine.examples import Example
from interp.prompts import load_prompt
from interp.scoring.base import Outcome, Prediction, ScoreContext, Scorer
from interp.scoring.metrics import classification_metrics
from interp.scoring.stats import mean_interval_small
from interp.scoring.steering import SteeringConfig, continuations, prompt_windows


@torch.inference_mode()
def target_logprobs(run, contexts: list[list[int]], target: list[int]) -> list[float]:
    """Sum over `target`'s tokens of log P(token | context, earlier target tokens), per context.

    run(tokens [1, T]) -> logits [1, T, V]; one context at a time (they differ in length).
    """
    out = []
    for ctx in contexts:
        tokens = torch.tensor([ctx + target])
        logp = F.log_softmax(run(tokens)[0, len(ctx) - 1:-1].float(), -1)
        out.append(float(logp.gather(-1, tokens[0, len(ctx):, None].to(logp.device)).sum()))
    return out


class InterventionConfig(SteeringConfig):
    """Intervention (the paper's): steer along the latent; how much likelier does the explanation
    become after steered than after clean continuations?"""

    prompt: str = Field("score_intervention_lm", description="Template ($text = a continuation) "
                        "after which the explanation's log-probability is read.")


class Intervention(Scorer):
    name = "intervention"
    Config = InterventionConfig
    needs = ("negatives",)
    uses_llm = False
    uses_subject_model = True
    probed = False  # a probe's rule has no decoder direction to steer
    # Not a classification column: the gain (nats) is in `value`.
    headline = "logprob_gain"

    def prompts(self, score: Any) -> tuple[str, ...]:
        return (score.intervention.prompt,)

    def chance(self, score: Any) -> float | None:
        return 0.0

    def _gains(self, ctx: ScoreContext, explanation: str, pool: list[Example],
               clean: list[str], steered: list[str]) -> list[float]:
        res = ctx.resources
        model = res.subject_model()
        run = model.run_model(ctx.cfg.model.hookpoint)
        template = load_prompt(self.prompts(ctx.cfg.score)[0])
        bos = res.token_ids()[pool[0].seq_id][0]  # the BOS the collected sequences start with

        def ids(text: str) -> list[int]:
            filled = template.messages(text=text)[-1]["content"]
            return [bos] + model.tokenizer.encode(filled, add_special_tokens=False)
        target = model.tokenizer.encode(" " + explanation.strip(), add_special_tokens=False)
        after_steered = target_logprobs(lambda t: run(t, None), [ids(t) for t in steered], target)
        after_clean = target_logprobs(lambda t: run(t, None), [ids(t) for t in clean], target)
        return [s - c for s, c in zip(after_steered, after_clean)]

    async def run(self, ctx: ScoreContext, latent: int, explanation: str,
                  examples: list[Example]) -> Outcome:
        cfg = ctx.cfg.score
        sha = load_prompt(self.prompts(ctx.cfg.score)[0]).sha
        pool = prompt_windows(examples, cfg.intervention.n_prompts)
        gains: list[float] = []
        if pool:
            clean, steered = await ctx.compute(continuations, ctx, latent, pool, cfg.intervention)
            gains = await ctx.compute(self._gains, ctx, explanation, pool, clean, steered)
        preds = [int(g > 0) for g in gains]
        metrics = classification_metrics([1] * len(gains), preds)
        mean, lo, hi = mean_interval_small(gains)
        metrics |= {"logprob_gain": mean, "ci_low": lo, "ci_high": hi}
        return Outcome([Prediction(e.seq_id, e.start, -1, 1, p, g)
                        for e, p, g in zip(pool, preds, gains)], metrics, ctx.cfg.model.name, sha)
