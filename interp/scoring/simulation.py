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

from interp.config import RunConfig
from interp.mine.examples import Example
from interp.llm import LLMError
from interp.prompts import load_prompt
from interp.scoring.base import Outcome, Prediction, ScoreContext
from interp.scoring.classify import detection_items
from interp.scoring.metrics import classification_metrics, pearson
from interp.scoring.stats import correlation_interval, window_stats

_PREFIX = re.compile(r"^\s*(\d+)\s*:\s*$")          # a line up to its value: "12: "
_LINE = re.compile(r"^\s*(\d+)\s*:\s*(\d)\s*$")


def _expected(alternatives: list[tuple[str, float]]) -> float:
    mass = {}
    for tok, lp in alternatives:
        t = tok.strip()
        if len(t) == 1 and t.isdigit():
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
            if m and len(tok.strip()) == 1 and tok.strip().isdigit():
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


class SimulationScorer:
    uses_subject_model = False
    needs = ("positives", "negatives")
    headline = "corr"

    def prompts(self, cfg: RunConfig) -> tuple[str, ...]:
        return (cfg.score.simulation.prompt,)

    async def _one(self, ctx: ScoreContext, prompt, explanation: str, ex: Example, latent: int):
        cfg = ctx.cfg.score.simulation
        messages = prompt.messages(explanation=explanation, tokens=numbered_tokens(ex.tokens))
        try:
            r = await ctx.llm.generate(messages, max_tokens=6 * len(ex.tokens) + 8, temperature=0.0,
                                       logprobs=cfg.logprobs or None, stage="score", latent=latent)
        except LLMError as err:
            return None, f"llm: {err.reason}"
        values = expected_values(r.text, r.top_logprobs, len(ex.tokens))
        return values, None if values is not None else f"unparseable answer: {r.text[:80]!r}"

    async def run(self, ctx: ScoreContext, latent: int, explanation: str,
                  examples: list[Example]) -> Outcome:
        cfg = ctx.cfg.score
        prompt = load_prompt(self.prompts(ctx.cfg)[0])
        items = detection_items(examples, cfg.n_positive, cfg.n_negative,
                                random.Random(f"{cfg.seed}:{latent}:simulation"))
        by_pos = {(e.seq_id, e.start): e for e in examples}
        answers = []
        for it in items:  # one after another: the instructions + explanation prefix stays cached
            answers.append(await self._one(ctx, prompt, explanation, by_pos[(it.seq_id, it.start)],
                                           latent))
        return simulation_outcome(ctx, latent, "simulation", prompt, items, examples, answers,
                                  top=9, positive=lambda sim: max(sim, default=0.0) / 9 >= 0.5)


def simulation_outcome(ctx: ScoreContext, latent: int, name: str, prompt, items, examples,
                       answers, *, top: float, positive) -> Outcome:
    """A simulator's Outcome from its per-window answers ((simulated values or None, error)):
    the correlation with the true normalised activations over all tokens of the answered windows
    (unanswered ones are counted failed, never zeros), its window-bootstrap interval, and a
    classification view (P = max simulated value / `top`, prediction = `positive(sim)`)."""
    cfg = ctx.cfg.score
    by_pos = {(e.seq_id, e.start): e for e in examples}
    scale = max((e.max_act for e in examples), default=0.0) or 1.0
    preds, probs, errors, sim_all, true_all, windows, kinds = [], [], [], [], [], [], []
    for it, (sim, err) in zip(items, answers):
        if sim is None:
            preds.append(None)
            probs.append(None)
            errors.append(err)
            continue
        true = [a / scale for a in by_pos[(it.seq_id, it.start)].acts]
        sim_all += sim
        true_all += true
        windows.append(window_stats(sim, true))
        kinds.append(it.label)
        probs.append(max(sim, default=0.0) / top)
        preds.append(int(positive(sim)))
    metrics = classification_metrics([it.label for it in items], preds, probs)
    metrics["corr"] = pearson(sim_all, true_all)
    ci = correlation_interval(windows, kinds, seed=(cfg.seed, latent, name), n_boot=cfg.n_bootstrap)
    metrics["ci_low"], metrics["ci_high"] = ci if ci else (None, None)
    return Outcome([Prediction(it.seq_id, it.start, it.quantile, it.label, p, q)
                    for it, p, q in zip(items, preds, probs)], metrics,
                   ctx.cfg.llm.model, prompt.sha, list(dict.fromkeys(errors)))
