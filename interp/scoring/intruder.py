"""Intruder scorer (delphi's): can the judge tell the latent's windows from an intruder, with no
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

from interp.config import RunConfig
from interp.mine.examples import Example, mark_tokens
from interp.llm import LLMError
from interp.prompts import load_prompt
from interp.scoring.base import Outcome, Prediction, ScoreContext
from interp.scoring.classify import _RESULT, _fuzzed_marks, _spread
from interp.scoring.metrics import classification_metrics

_ANSWER = re.compile(r"(?:example\s*)?#?(\d+)\.?", re.IGNORECASE)


def parse_choice(raw: str, n: int) -> int | None:
    """The 1-based example number after the [RESULT]: marker, if it is the whole answer and in
    1..n; else None."""
    m = _RESULT.search(raw)
    body = m.group(1).split("\n\n")[0].strip() if m else ""
    a = _ANSWER.fullmatch(body)
    return int(a.group(1)) if a and 1 <= int(a.group(1)) <= n else None


def rounds(examples: list[Example], n_rounds: int, n_shown: int,
           rng: random.Random) -> list[tuple[list[str], int, Example]]:
    """(window texts, 0-based index of the intruder, the intruder) per round."""
    pos = _spread([e for e in examples if e.kind == "quantile" and e.split == "test"], 10**6)
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
        texts.insert(at, mark_tokens(intruder.tokens, _fuzzed_marks(intruder, rng)))
        out.append((texts, at, intruder))
    return out


class IntruderScorer:
    uses_subject_model = False
    needs = ("positives", "negatives")
    headline = "accuracy"

    def prompts(self, cfg: RunConfig) -> tuple[str, ...]:
        return (cfg.score.intruder.prompt,)

    async def _ask(self, ctx: ScoreContext, prompt, texts: list[str], latent: int):
        body = "\n".join(f"Example {i}: {t}" for i, t in enumerate(texts, 1))
        try:
            r = await ctx.llm.generate(prompt.messages(examples=body, n=len(texts)),
                                       max_tokens=ctx.cfg.score.intruder.max_tokens,
                                       temperature=0.0, stage="score", latent=latent)
        except LLMError as err:
            return None, f"llm: {err.reason}"
        choice = parse_choice(r.text, len(texts))
        return choice, None if choice is not None else f"unparseable answer: {r.text[:80]!r}"

    async def run(self, ctx: ScoreContext, latent: int, explanation: str,
                  examples: list[Example]) -> Outcome:
        cfg = ctx.cfg.score
        prompt = load_prompt(self.prompts(ctx.cfg)[0])
        rng = random.Random(f"{cfg.seed}:{latent}:intruder")
        preds, errors, items = [], [], rounds(examples, cfg.intruder.n_rounds,
                                              cfg.intruder.n_shown, rng)
        for texts, at, _ in items:  # one after another: latents already run concurrently
            choice, err = await self._ask(ctx, prompt, texts, latent)
            preds.append(None if choice is None else int(choice - 1 == at))
            if err:
                errors.append(err)
        labels = [1] * len(items)
        return Outcome([Prediction(e.seq_id, e.start, -1, 1, p, None)
                        for (_, _, e), p in zip(items, preds)],
                       classification_metrics(labels, preds), ctx.cfg.llm.model, prompt.sha,
                       list(dict.fromkeys(errors)))
