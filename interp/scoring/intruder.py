"""Intruder (delphi's): can the judge tell the latent's windows from an intruder, with no
explanation at all? It measures how coherent the latent is, not how good its explanation is.

Each of `score.intruder.n_rounds` rounds shows `score.intruder.n_shown` held-out activating
windows (activating tokens marked) and one held-out non-activating window (as many random tokens
marked, so marks alone do not give it away), in random order; the judge names the intruder's
number. One prediction per round (label 1 = the intruder; prediction 1 = found); the headline
metric is accuracy, chance = 1 / (n_shown + 1). An answer that is not exactly one valid number
is a failure, counted, never scored. Cost: n_rounds calls per latent (5 by default).
"""
from __future__ import annotations

import random
import re
from typing import Any

from pydantic import Field

from interp.config_base import _Strict
from interp.llm.base import LLMResponse
from interp.mine.examples import Example, mark_tokens
from interp.prompts import Prompt, load_prompt
from interp.scoring.base import Outcome, Prediction, ScoreContext
from interp.scoring.llm_scorer import Ask, LLMScorer, Reply, answer_body, errors_of
from interp.scoring.metrics import classification_metrics
from interp.scoring.windows import fuzzed_marks, spread

_ANSWER = re.compile(r"(?:example\s*)?#?(\d+)\.?", re.IGNORECASE)


class IntruderConfig(_Strict):
    """Intruder: the judge picks the one non-activating window among activating ones."""

    prompt: str = Field("score_intruder", description="Template.")
    n_rounds: int = Field(5, gt=0, description="Rounds (one judge call each) per latent.")
    n_shown: int = Field(4, gt=0, description="Activating windows shown with the intruder.")
    max_tokens: int = Field(4, gt=0, description="Completion budget (the intruder's number).")


def parse_choice(raw: str, n: int) -> int | None:
    """The 1-based example number after the [RESULT]: marker, if it is the whole answer and in
    1..n; else None."""
    body = answer_body(raw) or ""
    a = _ANSWER.fullmatch(body)
    return int(a.group(1)) if a and 1 <= int(a.group(1)) <= n else None


def rounds(examples: list[Example], n_rounds: int, n_shown: int,
           rng: random.Random) -> list[tuple[list[str], int, Example]]:
    """(window texts, 0-based index of the intruder, the intruder) per round."""
    pos = spread([e for e in examples if e.kind == "quantile" and e.split == "test"], 10**6)
    neg = [e for e in examples if e.split == "test" and not e.active]
    if not pos or not neg:
        return []
    out = []
    for r in range(n_rounds):
        shown = [rng.choice(pos) for _ in range(n_shown)] if len(pos) < n_shown else \
            rng.sample(pos, n_shown)
        intruder = neg[r % len(neg)]
        at = rng.randrange(n_shown + 1)
        texts = [mark_tokens(e.tokens, [a > 0 for a in e.acts]) for e in shown]
        texts.insert(at, mark_tokens(intruder.tokens, fuzzed_marks(intruder, rng)))
        out.append((texts, at, intruder))
    return out


class Intruder(LLMScorer):
    name = "intruder"
    Config = IntruderConfig
    headline = "accuracy"

    def prompts(self, score: Any) -> tuple[str, ...]:
        return (score.intruder.prompt,)

    def chance(self, score: Any) -> float | None:
        return 1 / (score.intruder.n_shown + 1)

    def calls(self, score: Any) -> int | None:
        return score.intruder.n_rounds

    def asks(self, ctx: ScoreContext, latent: int, explanation: str,
             examples: list[Example]) -> tuple[list[Ask], Prompt]:
        sec = ctx.cfg.score.intruder
        prompt = load_prompt(sec.prompt)
        rng = random.Random(f"{ctx.cfg.score.seed}:{latent}:intruder")
        asks = []
        for texts, at, intruder in rounds(examples, sec.n_rounds, sec.n_shown, rng):
            body = "\n".join(f"Example {i}: {t}" for i, t in enumerate(texts, 1))
            asks.append(Ask(prompt.messages(examples=body, n=len(texts)), sec.max_tokens,
                            [intruder], extra={"at": at, "n": len(texts)}))
        return asks, prompt

    def parse(self, ctx: ScoreContext, ask: Ask, response: LLMResponse) -> int | None:
        choice = parse_choice(response.text, ask.extra["n"])
        return None if choice is None else int(choice - 1 == ask.extra["at"])

    def outcome(self, ctx: ScoreContext, latent: int, asks: list[Ask], replies: list[Reply],
                prompt: Prompt) -> Outcome:
        preds = [r.value for r in replies]
        return Outcome([Prediction(a.items[0].seq_id, a.items[0].start, -1, 1, p, None)
                        for a, p in zip(asks, preds)],
                       classification_metrics([1] * len(asks), preds), ctx.cfg.llm.model,
                       prompt.sha, errors_of(replies))
