"""Word-list simulation scorer (`simulation_words`): a cheap stand-in for OpenAI's simulator that
small judges can follow. `simulation` is the paper's all-at-once simulator.

For each held-out window (detection's set: activating windows over all quantiles, non-activating
ones) the LLM reads the explanation and the plain window and lists the words it expects the latent
to fire on, each with a strength 1-10 (`prompts/score_simulation.md`); unlisted tokens are 0. A
token gets a listed word's strength only when it is that whole word (or one whole word of a
listed phrase): "the" never fires inside "weather". One request per window and a short answer.
The per-latent `corr` is the Pearson correlation of the simulated and the true activations
(normalised by the latent's max) over every token of the windows whose answer parsed (failed
windows are counted in n_failed; below score.min_valid_frac the latent is 'insufficient');
window-level metrics use max simulated activation > 0 as prediction.
"""
from __future__ import annotations

import random
import re
from typing import Any

from pydantic import Field

from interp.config_base import _Strict
from interp.llm.base import LLMResponse
from interp.mine.examples import Example
from interp.prompts import Prompt, load_prompt
from interp.scoring.base import Outcome, ScoreContext
from interp.scoring.llm_scorer import Ask, Reply
from interp.scoring.simulation import Simulation, simulation_outcome, windows_of
from interp.scoring.windows import detection_items

_MARKER = re.compile(r"\[?\s*ACTIVATIONS\s*\]?\s*:(.*)", re.IGNORECASE | re.DOTALL)
_ENTRY = re.compile(r"^(.*?)(?:\s*[:=(]\s*|\s+-\s*|\s+)(\d{1,2})\)?$")
_PUNCT = " \t\"'`*.,;!?()[]{}<>«»"


def _norm(s: str) -> str:
    return s.strip().strip(_PUNCT).lower()


def parse_simulation(raw: str) -> dict[str, int] | None:
    """{word: strength 0-10} after the [ACTIVATIONS]: marker; {} for 'none'; None if unusable.

    Entries are comma/semicolon/newline separated `word: 7`, `word (7)`, `word=7` or `word 7`; a
    bare word counts as 10 (the judge named it without a strength).
    """
    m = _MARKER.search(raw)
    body = (m.group(1) if m else raw).split("\n\n")[0].strip()
    if not body:
        return None
    if _norm(body) in {"none", "nothing", "no words", "0"}:
        return {}
    out: dict[str, int] = {}
    for part in re.split(r"[,;\n]", body):
        part = part.strip().lstrip("-*• ").strip()
        if not part:
            continue
        e = _ENTRY.match(part)
        word, value = (e.group(1), min(10, int(e.group(2)))) if e else (part, 10)
        word = _norm(word)
        if word and word not in {"none"} and len(word) <= 40:
            out[word] = max(value, out.get(word, 0))
    return out or None


def simulate(tokens: tuple[str, ...], words: dict[str, int]) -> list[float]:
    """Per-token simulated activation: the strength of the listed word (or word of a listed
    phrase) that the token is as a whole, else 0. Sub-word pieces never match."""
    strength: dict[str, int] = {}
    for w, v in words.items():
        for part in w.split():
            strength[part] = max(v, strength.get(part, 0))
    return [float(strength.get(_norm(tok), 0)) if _norm(tok) else 0.0 for tok in tokens]


class SimulationWordsConfig(_Strict):
    """Word-list simulation: the LLM lists the words it expects the latent to fire on."""

    prompt: str = Field("score_simulation", description="Template.")
    max_tokens: int = Field(48, gt=0, description="Completion budget of an answer (the listed "
                            "words with strengths).")


class SimulationWords(Simulation):
    """Simulation's windows, counts and outcome; a word list for an answer."""

    name = "simulation_words"
    Config = SimulationWordsConfig

    def prompts(self, score: Any) -> tuple[str, ...]:
        return (score.simulation_words.prompt,)

    def asks(self, ctx: ScoreContext, latent: int, explanation: str,
             examples: list[Example]) -> tuple[list[Ask], Prompt]:
        score = ctx.cfg.score
        prompt = load_prompt(score.simulation_words.prompt)
        items = detection_items(examples, score.n_positive, score.n_negative,
                                random.Random(f"{score.seed}:{latent}:simulation"))
        return [Ask(prompt.messages(explanation=explanation, text=it.text),
                    score.simulation_words.max_tokens, [it],
                    extra={"tokens": ex.tokens, "true": true})
                for it, ex, true in windows_of(items, examples)], prompt

    def parse(self, ctx: ScoreContext, ask: Ask, response: LLMResponse) -> list[float] | None:
        words = parse_simulation(response.text)
        return None if words is None else simulate(ask.extra["tokens"], words)

    def outcome(self, ctx: ScoreContext, latent: int, asks: list[Ask], replies: list[Reply],
                prompt: Prompt) -> Outcome:
        return simulation_outcome(ctx, latent, self.name, prompt, asks, replies, top=10,
                                  positive=lambda sim: max(sim, default=0) > 0)
