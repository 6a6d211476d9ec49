"""The one skeleton of every LLM scorer: ask -> parse -> outcome (like delphi's classifier base).

A scorer says which requests it makes for a latent (`asks`: messages, budget, the items each
request judges), how one answer is read (`parse`: one value per item, or None when the answer is
unusable), and how the answers become the latent's outcome (`outcome`). The skeleton sends the
requests, one after another (a latent's requests share the instructions + explanation prefix,
which stays cached in one server slot; the stage's last latents fan out, interp/resumable.py),
and turns failures into counted reasons: a request the server refused for good is `llm: ...`, an
answer that does not parse is `unparseable answer: ...`; neither is ever scored as a 0. An outage
(LLMUnavailable) is not caught here: the latent stays pending for the next run.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from interp.llm.base import LLMError, LLMResponse
from interp.mine.examples import Example
from interp.prompts import Prompt
from interp.resumable import in_order
from interp.scoring.base import Outcome, ScoreContext, Scorer

# The answer marker of text answers: "[RESULT]: ..." (the templates prefill it).
RESULT = re.compile(r"\[?\s*RESULT\s*\]?\s*:(.*)", re.IGNORECASE | re.DOTALL)


def answer_body(raw: str) -> str | None:
    """The first paragraph after the [RESULT]: marker, or None without a marker."""
    m = RESULT.search(raw)
    return m.group(1).split("\n\n")[0].strip() if m else None


@dataclass(frozen=True)
class Ask:
    """One request: its messages and completion budget, the items it judges (windows, rounds),
    and whether it wants log-probabilities (P(1) of a 0/1 answer, expected simulated digits)."""

    messages: list[dict[str, str]]
    max_tokens: int
    items: list[Any]
    logprobs: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # what `parse` needs besides the items


@dataclass(frozen=True)
class Reply:
    """What came back for one Ask: the parsed value (None when unusable) and why not."""

    value: Any
    error: str | None


class LLMScorer(Scorer):
    """A scorer whose judge is the LLM: subclasses define `asks`, `parse` and `outcome`."""

    def asks(self, ctx: ScoreContext, latent: int, explanation: str,
             examples: list[Example]) -> tuple[list[Ask], Prompt]:
        """The requests for this latent (possibly none) and the template they were filled from."""
        raise NotImplementedError

    def parse(self, ctx: ScoreContext, ask: Ask, response: LLMResponse) -> Any | None:
        """The answer's value, or None when it does not parse (a failure, counted)."""
        raise NotImplementedError

    def outcome(self, ctx: ScoreContext, latent: int, asks: list[Ask], replies: list[Reply],
                prompt: Prompt) -> Outcome:
        raise NotImplementedError

    async def ask(self, ctx: ScoreContext, latent: int, ask: Ask) -> Reply:
        try:
            r = await ctx.llm.generate(ask.messages, max_tokens=ask.max_tokens, temperature=0.0,
                                       logprobs=ask.logprobs, stage="score", latent=latent)
        except LLMError as err:
            return Reply(None, f"llm: {err.reason}")
        value = self.parse(ctx, ask, r)
        return Reply(value, None if value is not None else f"unparseable answer: {r.text[:80]!r}")

    async def run(self, ctx: ScoreContext, latent: int, explanation: str,
                  examples: list[Example]) -> Outcome:
        asks, prompt = self.asks(ctx, latent, explanation, examples)
        return await self.ask_all(ctx, latent, asks, prompt)

    async def ask_all(self, ctx: ScoreContext, latent: int, asks: list[Ask], prompt: Prompt) -> Outcome:
        """Send the asks in order and make the outcome of their replies."""
        replies = await in_order([functools.partial(self.ask, ctx, latent, a) for a in asks])
        return self.outcome(ctx, latent, asks, replies, prompt)


def errors_of(replies: list[Reply]) -> list[str]:
    """The distinct failure reasons of the replies, in order."""
    return list(dict.fromkeys(r.error for r in replies if r.error))
