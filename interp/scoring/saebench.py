"""SAEBench's autointerp scorer: the judge picks the activating windows out of a shuffled set.

Following sae_bench/evals/autointerp/main.py (its scoring phase): one judge call per latent shows
the explanation and, shuffled and numbered without marks, the held-out strong windows (kind
'top', split test), held-out importance-weighted windows (kind 'iw') and random non-activating
windows (SAEBench: 2 + 2 + 10 = 14). The judge answers the numbers of the windows in which the
latent fires, or "None". The score is the fraction of windows classified correctly, positives
and negatives alike (SAEBench's `score_predictions`), i.e. `accuracy` over the shown windows.

The answer's parser is strict: after the [RESULT]: marker, exactly "None" or distinct numbers in
1..n separated by commas/spaces (an optional trailing period). Anything else is a parse failure:
every window's prediction is None and the latent is counted as failed, never scored (SAEBench
drops such latents from its mean too). Cost: 1 call per latent.
"""
from __future__ import annotations

import random
import re
from typing import Any

from pydantic import Field

from interp.config_base import _Strict
from interp.llm.base import LLMResponse
from interp.llm.structured import AnswerError, labels_schema, max_tokens_for
from interp.llm.structured import parse_labels as parse_json_labels
from interp.mine.examples import Example
from interp.prompts import Prompt, load_prompt
from interp.scoring.base import Outcome, Prediction, ScoreContext
from interp.scoring.llm_scorer import Ask, LLMScorer, Reply, answer_body, errors_of
from interp.scoring.metrics import classification_metrics
from interp.scoring.windows import Item, plain

_NUMBERS = re.compile(r"\d+(?:\s*,\s*\d+|\s+\d+)*")


def parse_indices(raw: str, n: int) -> set[int] | None:
    """The 1-based window numbers after the [RESULT]: marker; an empty set for "None"; None when
    the answer is anything else (prose, out-of-range or repeated numbers, no marker)."""
    body = answer_body(raw)
    if body is None:
        return None
    body = body.strip('"').rstrip(".").strip()
    if body.lower() == "none":
        return set()
    if not _NUMBERS.fullmatch(body):
        return None
    nums = [int(x) for x in re.findall(r"\d+", body)]
    if len(set(nums)) != len(nums) or not all(1 <= x <= n for x in nums):
        return None
    return set(nums)


def scoring_items(examples: list[Example], n_top: int, n_iw: int, n_random: int,
                  rng: random.Random) -> list[Item]:
    """The shuffled windows of one latent: held-out top and iw ones (label 1), random ones (0)."""
    test = [e for e in examples if e.split == "test"]
    top = sorted((e for e in test if e.kind == "top" and e.active), key=lambda e: e.rank)[:n_top]
    iw = sorted((e for e in test if e.kind == "iw" and e.active), key=lambda e: e.rank)[:n_iw]
    neg = sorted((e for e in test if e.kind == "random" and not e.active),
                 key=lambda e: e.rank)[:n_random]
    if not (top or iw) or not neg:
        return []
    items = [Item(plain(e), 1, e.seq_id, e.start, -1) for e in top + iw] + \
            [Item(plain(e), 0, e.seq_id, e.start, -1) for e in neg]
    rng.shuffle(items)
    return items


class SAEBenchScorerConfig(_Strict):
    """SAEBench's autointerp scoring: the judge lists which of a shuffled set of held-out strong,
    importance-weighted and random windows the latent fires on (one call per latent)."""

    prompt: str = Field("score_saebench", description="Template ($explanation, $examples, $n, "
                        "$example: a sample answer): SAEBench's, answered by a list of numbers.")
    json_prompt: str = Field("score_saebench_all", description="Template where the server "
                             "constrains answers to JSON: a 0/1 label per text (the same "
                             "information as SAEBench's list, in a form a grammar can hold).")
    n_top: int = Field(2, gt=0, description="Held-out strong windows shown (mine.n_top_test).")
    n_iw: int = Field(2, ge=0, description="Held-out importance-weighted windows shown "
                      "(mine.n_iw_test).")
    n_random: int = Field(10, gt=0, description="Random non-activating windows shown (the test "
                          "half of mine.n_random).")
    max_tokens: int | None = Field(None, gt=0, description="Completion budget; None = 2 per "
                                   "window + 5 (SAEBench's).")


class SAEBench(LLMScorer):
    name = "saebench"
    Config = SAEBenchScorerConfig
    needs = ("negatives",)   # its positives are top/iw windows, checked in scoring_items
    headline = "accuracy"

    def prompts(self, score: Any) -> tuple[str, ...]:
        return (score.saebench.prompt, score.saebench.json_prompt)

    def chance(self, score: Any) -> float | None:
        """Answering "None" always: the share of random windows among those shown."""
        sec = score.saebench
        return sec.n_random / (sec.n_top + sec.n_iw + sec.n_random)

    def calls(self, score: Any) -> int | None:
        return 1

    def asks(self, ctx: ScoreContext, latent: int, explanation: str,
             examples: list[Example]) -> tuple[list[Ask], Prompt]:
        sec = ctx.cfg.score.saebench
        prompt = load_prompt(sec.json_prompt if ctx.structured else sec.prompt)
        rng = random.Random(f"{ctx.cfg.score.seed}:{latent}:saebench")
        items = scoring_items(examples, sec.n_top, sec.n_iw, sec.n_random, rng)
        if not items:
            return [], prompt
        # SAEBench's example answer: as many sorted random numbers as there are positives.
        n_pos = sum(it.label for it in items)
        example = ", ".join(map(str, sorted(rng.sample(range(1, len(items) + 1), n_pos))))
        body = "\n".join(f"{i}. {it.text}" for i, it in enumerate(items, 1))
        if ctx.structured:
            schema = labels_schema(range(1, len(items) + 1))
            return [Ask(prompt.messages(explanation=explanation, examples=body, n=len(items)),
                        max_tokens_for(schema), items, schema=schema)], prompt
        messages = prompt.messages(explanation=explanation, examples=body, n=len(items),
                                   example=example)
        return [Ask(messages, sec.max_tokens or 2 * len(items) + 5, items)], prompt

    def parse(self, ctx: ScoreContext, ask: Ask, response: LLMResponse) -> set[int] | None:
        """The numbers of the texts the judge says the latent fires in."""
        if ask.schema is not None:
            try:
                labels = parse_json_labels(response.text, range(1, len(ask.items) + 1),
                                           truncated=response.truncated)
            except AnswerError:
                return None
            return {i for i, label in labels.items() if label}
        return parse_indices(response.text, len(ask.items))

    def outcome(self, ctx: ScoreContext, latent: int, asks: list[Ask], replies: list[Reply],
                prompt: Prompt) -> Outcome:
        if not asks:
            return Outcome([], classification_metrics([], []), ctx.cfg.llm.model, prompt.sha,
                           ["no held-out top/iw windows or no random ones (see mine.n_top_test, "
                            "mine.n_iw_test)"])
        items, chosen = asks[0].items, replies[0].value
        preds = [None if chosen is None else int(i in chosen) for i in range(1, len(items) + 1)]
        return Outcome([Prediction(it.seq_id, it.start, it.quantile, it.label, p, None)
                        for it, p in zip(items, preds)],
                       classification_metrics([it.label for it in items], preds),
                       ctx.cfg.llm.model, prompt.sha, errors_of(replies))
