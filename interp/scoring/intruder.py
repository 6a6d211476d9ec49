"""Intruder (delphi's): can the judge tell the latent's windows from an intruder, with no
explanation at all? It measures how coherent the latent is, not how good its explanation is.

Each of `score.intruder.n_rounds` rounds shows `score.intruder.n_shown` held-out activating
windows of one activation quantile (activating tokens marked) and one held-out non-activating
window (as many marks as the shown windows have on average, on random tokens, so marks alone do
not give it away), in random order; the judge names the intruder's number. One prediction per
round (label 1 = the intruder; prediction 1 = found); the headline metric is accuracy, chance =
1 / (n_shown + 1). With score.batch_size 'all' (the default) every round goes in one request and
the answer is a JSON object naming each round's intruder (constrained where the server can);
otherwise one request per round. An answer that is not
exactly one valid number per round is a failure, counted, never scored. Cost: 1 call per latent
('all'), else n_rounds (5).
"""
from __future__ import annotations

import random
import re
from typing import Any

from pydantic import Field

from interp.config_base import _Strict
from interp.llm.base import LLMResponse
from interp.llm.structured import AnswerError, choice_schema, keyed_schema, max_tokens_for, parse_json
from interp.mine.examples import Example, mark_tokens
from interp.prompts import Prompt, load_prompt
from interp.scoring.base import Outcome, Prediction, ScoreContext
from interp.scoring.classifier import ALL
from interp.scoring.llm_scorer import Ask, LLMScorer, Reply, answer_body, errors_of
from interp.scoring.metrics import classification_metrics
from interp.scoring.windows import held_out_positives

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


def marks_like(e: Example, n: int, rng: random.Random) -> list[bool]:
    """n marks (at least one, at most the window) on random tokens of window `e`."""
    n = max(1, min(n, len(e.tokens)))
    chosen = set(rng.sample(range(len(e.tokens)), n))
    return [i in chosen for i in range(len(e.tokens))]


def rounds(examples: list[Example], n_rounds: int, n_shown: int,
           rng: random.Random) -> list[tuple[list[str], int, Example]]:
    """(window texts, 0-based index of the intruder, the intruder) per round.

    As delphi does it: the shown windows of one round come from one activation quantile (the
    rounds cycle through the quantiles, starting at a seeded one), and the intruder carries as
    many marks as the shown windows do on average, on random tokens: a lone mark on the intruder
    beside fully marked activating windows gave it away without reading a word.
    """
    pos = held_out_positives(examples)
    neg = [e for e in examples if e.split == "test" and not e.active]
    if not pos or not neg:
        return []
    by_q: dict[int, list[Example]] = {}
    for e in pos:
        by_q.setdefault(e.quantile, []).append(e)
    qs = sorted(by_q)
    first = rng.randrange(len(qs))
    out = []
    for r in range(n_rounds):
        pool = by_q[qs[(first + r) % len(qs)]]
        shown = [rng.choice(pool) for _ in range(n_shown)] if len(pool) < n_shown else \
            rng.sample(pool, n_shown)
        marks = [[a > 0 for a in e.acts] for e in shown]
        intruder = neg[r % len(neg)]
        at = rng.randrange(n_shown + 1)
        texts = [mark_tokens(e.tokens, m) for e, m in zip(shown, marks)]
        mean_marks = round(sum(sum(m) for m in marks) / len(marks))
        texts.insert(at, mark_tokens(intruder.tokens, marks_like(intruder, mean_marks, rng)))
        out.append((texts, at, intruder))
    return out


class Intruder(LLMScorer):
    name = "intruder"
    Config = IntruderConfig
    headline = "accuracy"
    controls = ("shuffled",)  # other latents' windows (it reads no explanation to stand in for)

    def prompts(self, score: Any) -> tuple[str, ...]:
        return (score.intruder.prompt + ("_all" if score.batch_size == ALL else ""),)

    def chance(self, score: Any) -> float | None:
        return 1 / (score.intruder.n_shown + 1)

    def calls(self, score: Any) -> int | None:
        return 1 if score.batch_size == ALL else score.intruder.n_rounds

    def control_input(self, control: str, stand_in: str, examples: list[Example],
                      pool: list[Example], rng: random.Random):
        """Intruder reads no explanation, so explanation controls do not fit it. Its 'shuffled'
        control shuffles latents instead: the activating windows shown come from other latents
        (one each, from `pool`), an incoherent set, beside this latent's non-activating ones. A
        judge that finds the intruder there as often as among the latent's own windows is
        reading marks or position, not coherence."""
        own = held_out_positives(examples)
        others = list({(e.latent, e.seq_id, e.start): e for e in pool
                       if e.latent != (own[0].latent if own else None)}.values())
        if control != "shuffled" or not own or not others:
            return None
        picked = rng.sample(others, min(len(own), len(others)))
        mixed = [Example(own[0].latent, "quantile", "test", i, 0, e.seq_id, e.start, e.max_act,
                         e.tokens, e.acts) for i, e in enumerate(picked)]
        negatives = [e for e in examples if e.split == "test" and not e.active]
        return "", mixed + negatives, "activating windows of other latents"

    def asks(self, ctx: ScoreContext, latent: int, explanation: str,
             examples: list[Example]) -> tuple[list[Ask], Prompt]:
        """One request per round, or (score.batch_size 'all') every round in one request
        answered by a JSON object naming each round's intruder."""
        sec = ctx.cfg.score.intruder
        prompt = load_prompt(self.prompts(ctx.cfg.score)[0])
        rng = random.Random(f"{ctx.cfg.score.seed}:{latent}:intruder")
        made = rounds(examples, sec.n_rounds, sec.n_shown, rng)
        bodies = ["\n".join(f"Example {i}: {t}" for i, t in enumerate(texts, 1))
                  for texts, _, _ in made]
        if ctx.cfg.score.batch_size != ALL:
            return [Ask(prompt.messages(examples=body, n=len(texts)), sec.max_tokens, [intruder],
                        extra={"at": [at], "n": len(texts)})
                    for body, (texts, at, intruder) in zip(bodies, made)], prompt
        if not made:
            return [], prompt
        keys = [f"R{r}" for r in range(1, len(made) + 1)]
        schema = keyed_schema("intruders", {k: choice_schema(sec.n_shown + 1) for k in keys})
        text = "\n\n".join(f"Round {k}:\n{body}" for k, body in zip(keys, bodies))
        return [Ask(prompt.messages(rounds=text, n=len(made)), max_tokens_for(schema),
                    [intruder for _, _, intruder in made], schema=schema,
                    extra={"at": [at for _, at, _ in made], "keys": keys})], prompt

    def parse(self, ctx: ScoreContext, ask: Ask, response: LLMResponse) -> list[int] | None:
        """Per round of the ask: 1 if the judge named the intruder, 0 if another example."""
        if "keys" in ask.extra:
            try:
                answer = parse_json(response.text, ask.schema, truncated=response.truncated)
            except AnswerError:
                return None
            choices = [answer["intruders"][k] for k in ask.extra["keys"]]
        else:
            choices = [parse_choice(response.text, ask.extra["n"])]
            if choices[0] is None:
                return None
        return [int(c - 1 == at) for c, at in zip(choices, ask.extra["at"])]

    def outcome(self, ctx: ScoreContext, latent: int, asks: list[Ask], replies: list[Reply],
                prompt: Prompt) -> Outcome:
        intruders, preds = [], []
        for ask, reply in zip(asks, replies):
            intruders += ask.items
            preds += reply.value or [None] * len(ask.items)
        return Outcome([Prediction(e.seq_id, e.start, -1, 1, p, None)
                        for e, p in zip(intruders, preds)],
                       classification_metrics([1] * len(intruders), preds), ctx.cfg.llm.model,
                       prompt.sha, errors_of(replies))
