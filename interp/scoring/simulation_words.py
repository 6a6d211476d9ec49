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

import asyncio
import random
import re

from interp.config import RunConfig
from interp.mine.examples import Example
from interp.llm import LLMError
from interp.prompts import load_prompt
from interp.scoring.base import Outcome, ScoreContext
from interp.scoring.classify import detection_items
from interp.scoring.simulation import simulation_outcome

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


class WordListSimulationScorer:
    uses_subject_model = False
    needs = ("positives", "negatives")
    headline = "corr"

    def prompts(self, cfg: RunConfig) -> tuple[str, ...]:
        return (cfg.score.simulation_words.prompt,)

    async def _one(self, ctx: ScoreContext, prompt, explanation: str, item_text: str, latent: int):
        try:
            r = await ctx.llm.generate(prompt.messages(explanation=explanation, text=item_text),
                                       max_tokens=ctx.cfg.score.simulation_words.max_tokens,
                                       temperature=0.0, stage="score", latent=latent)
        except LLMError as err:
            return None, f"llm: {err.reason}"
        words = parse_simulation(r.text)
        return words, None if words is not None else f"unparseable answer: {r.text[:80]!r}"

    async def run(self, ctx: ScoreContext, latent: int, explanation: str,
                  examples: list[Example]) -> Outcome:
        cfg = ctx.cfg.score
        prompt = load_prompt(self.prompts(ctx.cfg)[0])
        items = detection_items(examples, cfg.n_positive, cfg.n_negative,
                                random.Random(f"{cfg.seed}:{latent}:simulation"))
        by_pos = {(e.seq_id, e.start): e for e in examples}
        answers = await asyncio.gather(*(self._one(ctx, prompt, explanation, it.text, latent)
                                         for it in items))  # the client bounds concurrency
        sims = [(None if words is None else simulate(by_pos[(it.seq_id, it.start)].tokens, words),
                 err) for it, (words, err) in zip(items, answers)]
        return simulation_outcome(ctx, latent, "simulation_words", prompt, items, examples, sims,
                                  top=10, positive=lambda sim: max(sim, default=0) > 0)
