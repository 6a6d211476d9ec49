"""Simulation scorer, OpenAI's all-at-once simulator ("Language models can explain neurons").

For each held-out window (detection's set) one request shows the explanation and the window's
tokens, numbered, and the judge writes `k: d` for every token k in order, d a digit 0-9
(`prompts/score_simulation_all.md`). The simulated activation of token k is the *expected* digit
under the judge's log-probabilities at that digit's position (sum of p(d) d over the digit
alternatives, renormalised), not the sampled digit; without log-probabilities it is the digit.
OpenAI used 0-10; 0-9 keeps every value a single token in any tokenizer (correlation is
scale-free). A window whose answer does not give exactly one value per token, in order, fails
(counted in n_failed; below score.min_valid_frac the latent is 'insufficient'). `corr` is the
Pearson correlation of simulated and true activations over all tokens of the valid windows, with
a bootstrap interval over windows. Cost: n_positive + n_negative calls per latent, each about
5 completion tokens per window token (160 for 32-token windows).
"""
from __future__ import annotations

import math
import random
import re
from typing import Any

from pydantic import Field

from interp.config_base import _Strict
from interp.llm.base import LLMResponse
from interp.llm.structured import AnswerError, digits_schema, keyed_schema, max_tokens_for, parse_json
from interp.mine.examples import Example
from interp.prompts import Prompt, load_prompt
from interp.scoring.base import Outcome, Prediction, ScoreContext
from interp.scoring.classifier import ALL, window_ids
from interp.scoring.llm_scorer import Ask, LLMScorer, Reply, errors_of
from interp.scoring.metrics import classification_metrics, pearson
from interp.scoring.stats import corr_interval, window_stats
from interp.scoring.windows import Item, detection_items

_DIGITS = frozenset("0123456789")  # str.isdigit also takes "²", which int() refuses
_PREFIX = re.compile(r"^\s*(\d+)\s*:\s*$")          # a line up to its value: "12: "
_LINE = re.compile(r"^\s*(\d+)\s*:\s*(\d)\s*$")


def _expected(alternatives: list[tuple[str, float]]) -> float:
    mass = {}
    for tok, lp in alternatives:
        t = tok.strip()
        if len(t) == 1 and t in _DIGITS:
            mass[int(t)] = mass.get(int(t), 0.0) + math.exp(lp)
    return sum(d * p for d, p in mass.items()) / sum(mass.values())


def expected_values(text: str, top: list[list[tuple[str, float]]] | None, n: int) -> list[float] | None:
    """One value per token 1..n from the answer, or None unless exactly those, in order.

    With log-probabilities the generated tokens are walked line by line: a digit token right
    after `k:` is token k's value, its expectation over the digit alternatives at that position.
    """
    found: list[tuple[int, float]] = []
    if top:
        line = ""
        for alternatives in top:
            tok = alternatives[0][0] if alternatives else ""
            m = _PREFIX.match(line)
            if m and len(tok.strip()) == 1 and tok.strip() in _DIGITS:
                found.append((int(m.group(1)), _expected(alternatives)))
            line = (line + tok).rsplit("\n", 1)[-1]
    else:
        body = text.split("[ACTIVATIONS]:", 1)[-1].strip()
        for raw in body.splitlines():
            m = _LINE.match(raw)
            if m is None:
                return None
            found.append((int(m.group(1)), float(m.group(2))))
    if [k for k, _ in found] != list(range(1, n + 1)):
        return None
    return [v for _, v in found]


def numbered_tokens(tokens: tuple[str, ...]) -> str:
    return "\n".join(f"{i} {t}".replace("\n", "\\n") for i, t in enumerate(tokens, 1))


class SimulationConfig(_Strict):
    """Simulation (OpenAI's all-at-once): the judge gives every token a 0-9 activation."""

    prompt: str = Field("score_simulation_all", description="Template of one window per request "
                        "($explanation, $tokens; score.batch_size 1 or k).")
    json_prompt: str = Field("score_simulation_json", description="Template of every window in "
                             "one request, answered as JSON (score.batch_size 'all').")
    logprobs: int = Field(10, ge=0, description="Top log-probabilities per answer token: the "
        "simulated value is the expected digit over them (0 = the digit as written).")


class Simulation(LLMScorer):
    name = "simulation"
    Config = SimulationConfig
    headline = "corr"

    def prompts(self, score: Any) -> tuple[str, ...]:
        sec = score.simulation
        return (sec.json_prompt if score.batch_size == ALL else sec.prompt,)

    def chance(self, score: Any) -> float | None:
        return 0.0

    def calls(self, score: Any) -> int | None:
        return 1 if score.batch_size == ALL else score.n_positive + score.n_negative

    def asks(self, ctx: ScoreContext, latent: int, explanation: str,
             examples: list[Example]) -> tuple[list[Ask], Prompt]:
        score = ctx.cfg.score
        prompt = load_prompt(self.prompts(score)[0])
        rng = random.Random(f"{score.seed}:{latent}:simulation")
        windows = list(windows_of(detection_items(examples, score.n_positive, score.n_negative,
                                                  rng), examples))
        if score.batch_size == ALL:
            return ([self._ask_all(prompt, explanation, windows, rng)] if windows else []), prompt
        return [Ask(prompt.messages(explanation=explanation, tokens=numbered_tokens(ex.tokens)),
                    6 * len(ex.tokens) + 8, [it], logprobs=score.simulation.logprobs or None,
                    extra={"n": len(ex.tokens), "true": [true]})
                for it, ex, true in windows], prompt  # one request per window, in order

    @staticmethod
    def _ask_all(prompt: Prompt, explanation: str, windows, rng: random.Random) -> Ask:
        """Every window in one request, named by an id; the answer one digit per token of each,
        as a JSON object (constrained where the server can)."""
        ids = window_ids(len(windows), rng)
        texts = "\n".join(f"Text {i}: " + " | ".join(t.replace("\n", "\\n").strip() or "_"
                                                     for t in ex.tokens)
                           for i, (_, ex, _) in zip(ids, windows))
        schema = keyed_schema("activations", {i: digits_schema(len(ex.tokens))
                                              for i, (_, ex, _) in zip(ids, windows)})
        return Ask(prompt.messages(explanation=explanation, texts=texts, n=len(windows)),
                   max_tokens_for(schema), [it for it, _, _ in windows], schema=schema,
                   extra={"ids": ids, "true": [true for _, _, true in windows]})

    def parse(self, ctx: ScoreContext, ask: Ask, response: LLMResponse) -> list | None:
        """Simulated activations per window of the ask (the request fails as a whole)."""
        if "ids" in ask.extra:
            try:
                answer = parse_json(response.text, ask.schema, truncated=response.truncated)
            except AnswerError:
                return None
            return [[float(d) for d in answer["activations"][str(i)]] for i in ask.extra["ids"]]
        values = expected_values(response.text, response.top_logprobs, ask.extra["n"])
        return None if values is None else [values]

    def outcome(self, ctx: ScoreContext, latent: int, asks: list[Ask], replies: list[Reply],
                prompt: Prompt) -> Outcome:
        return simulation_outcome(ctx, latent, self.name, prompt, asks, replies, top=9,
                                  positive=lambda sim: max(sim, default=0.0) / 9 >= 0.5)


def windows_of(items: list[Item], examples: list[Example]):
    """(item, its window, its true activations / the latent's max) per item."""
    by_pos = {(e.seq_id, e.start): e for e in examples}
    scale = max((e.max_act for e in examples), default=0.0) or 1.0
    for it in items:
        ex = by_pos[(it.seq_id, it.start)]
        yield it, ex, [a / scale for a in ex.acts]


def simulation_outcome(ctx: ScoreContext, latent: int, name: str, prompt: Prompt, asks: list[Ask],
                       replies: list[Reply], *, top: float, positive) -> Outcome:
    """A simulator's Outcome from its answers (per ask, simulated values per window or None):
    the correlation with the true normalised activations over all tokens of the answered windows
    (unanswered ones are counted failed, never zeros), its interval over windows, and a
    classification view (P = max simulated value / `top`, prediction = `positive(sim)`)."""
    items = [it for a in asks for it in a.items]
    judged = [(it, sim, true) for a, r in zip(asks, replies)
              for it, sim, true in zip(a.items, r.value or [None] * len(a.items), a.extra["true"])]
    preds, probs, sim_all, true_all, windows, kinds = [], [], [], [], [], []
    for it, sim, true in judged:
        if sim is None:
            preds.append(None)
            probs.append(None)
            continue
        sim_all += sim
        true_all += true
        windows.append(window_stats(sim, true))
        kinds.append(it.label)
        probs.append(max(sim, default=0.0) / top)
        preds.append(int(positive(sim)))
    metrics = classification_metrics([it.label for it in items], preds, probs)
    metrics["corr"] = pearson(sim_all, true_all)
    ci = corr_interval(windows, kinds)
    metrics["ci_low"], metrics["ci_high"] = ci if ci else (None, None)
    return Outcome([Prediction(it.seq_id, it.start, it.quantile, it.label, p, q)
                    for it, p, q in zip(items, preds, probs)], metrics,
                   ctx.cfg.llm.model, prompt.sha, errors_of(replies))
