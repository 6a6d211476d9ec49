"""The window judge that detection and fuzzing share (delphi's classifier): the judge reads the
explanation and held-out windows and answers 0/1 for each.

score.batch_size 'all' (the default) asks once per latent: every held-out window named by a
random id, the answer a JSON object with one 0/1 per id, constrained to that schema where the
server can (interp/llm/structured.py) and P(1) read at each label from the log-probabilities.
With batch_size 1 each window is its own request and the answer's log-probabilities give P(1)
(an AUC, even from a judge that always answers 1); with k > 1, one request judges k windows and
the answer is parsed as a list (delphi's protocol, the paper preset). An answer that does not
give exactly one 0/1 per window fails that request's windows (predictions None): counted,
never scored as 0.
"""
from __future__ import annotations

import math
import random
import re
from typing import Any, ClassVar

from interp.llm.base import LLMResponse
from interp.llm.structured import AnswerError, labels_max_tokens, labels_schema
from interp.llm.structured import parse_labels as parse_json_labels
from interp.mine.examples import Example
from interp.prompts import Prompt, load_prompt
from interp.scoring.base import Outcome, Prediction, ScoreContext
from interp.scoring.llm_scorer import Ask, LLMScorer, Reply, answer_body, errors_of
from interp.scoring.metrics import classification_metrics
from interp.scoring.windows import Item, format_items

_ANSWER = {"1": 1, "0": 0, "yes": 1, "no": 0}
# One numbered answer: "1) 1", "2. no", "Example 3: 0", "#4 - yes". The number is captured so it
# can be checked against the item's position: a label is never taken from an item number.
_NUMBERED = re.compile(r"(?:example\s*)?#?(\d+)\s*[).:\-=]\s*(1|0|yes|no)\b", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s,;.\[\]]*")


def parse_labels(raw: str, n: int) -> list[int] | None:
    """Exactly n 0/1 (or yes/no) answers after the [RESULT]: marker, in item order; else None.

    Accepted bodies (up to the first blank line): a bare list ("1, 0, 1", "[1 0 1]", one per
    line) of exactly n answers, or exactly n numbered answers "1) 1", "Example 2: 0", "3. yes"
    numbered 1..n in order. Anything else in the body (extra answers, prose, item numbers
    without a clear answer) is a parse failure: a shifted label would be scored, a failure is
    only counted.
    """
    body = answer_body(raw)
    if body is None:
        return None
    numbered = list(_NUMBERED.finditer(body))
    if numbered:
        rest = _NUMBERED.sub(" ", body)
        if not _SEPARATORS.fullmatch(rest):
            return None
        if [int(x.group(1)) for x in numbered] != list(range(1, n + 1)):
            return None
        return [_ANSWER[x.group(2).lower()] for x in numbered]
    tokens = [t for t in re.split(r"[\s,;\[\]]+", body.rstrip(".")) if t]
    if len(tokens) != n or any(t.lower() not in _ANSWER for t in tokens):
        return None
    return [_ANSWER[t.lower()] for t in tokens]


_LABEL_WORDS = {"1": 1, "yes": 1, "0": 0, "no": 0}


def label_from_logprobs(top: list[list[tuple[str, float]]]) -> tuple[int, float] | None:
    """(prediction, P(1)) from the first generated position that answers 0/1 (or yes/no).

    P(1) is the probability mass of the "1" answers over that of all answers at that position;
    it gives an AUC even when a small judge always answers 1.
    """
    for alternatives in top:
        best = alternatives[0][0].strip().lower() if alternatives else ""
        if not best:
            continue  # a whitespace token: the answer comes next
        if best not in _LABEL_WORDS:
            return None
        mass = {0: 0.0, 1: 0.0}
        for tok, lp in alternatives:
            label = _LABEL_WORDS.get(tok.strip().lower())
            if label is not None:
                mass[label] += math.exp(lp)
        p1 = mass[1] / (mass[0] + mass[1])
        return int(p1 >= 0.5), p1
    return None


def classification_outcome(items: list[Item], preds, probs, model: str, prompt_hash: str | None,
                           errors: list[str]) -> Outcome:
    """Predictions and classification metrics of judged items (None where the answer failed)."""
    return Outcome([Prediction(it.seq_id, it.start, it.quantile, it.label, p, q)
                    for it, p, q in zip(items, preds, probs)],
                   classification_metrics([it.label for it in items], preds, probs),
                   model, prompt_hash, errors)


ALL = "all"  # score.batch_size: every held-out window of a latent in one request


_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def window_ids(n: int, rng: random.Random) -> list[str]:
    """n distinct ids, seeded: a window is named by its id, not its position, so an answer
    cannot shift a label onto its neighbour, and the ids say nothing about the order. One
    capital letter while n <= 26, else three digits: the answer repeats every id, and the
    tokenizers of small judges spell a number digit by digit but a letter in one token (with
    SmolLM2's, a 10-window answer is 44 tokens with letters, 54 with two-digit ids)."""
    if n <= len(_LETTERS):
        return rng.sample(_LETTERS, n)
    return [str(i) for i in rng.sample(range(100, 1000), n)]


def json_label_probs(top: list[list[tuple[str, float]]] | None, ids: list[str],
                     tokens: list[str] | None = None) -> dict[str, float]:
    """P(1) of each id's label from the log-probabilities of a `{"labels": {"<id>": 0|1}}`
    answer: at a generated 0/1 right after `"<id>":`, the mass of "1" over that of 0 and 1.
    `tokens`: the tokens generated, where the server says; under a constraint the generated
    token is often not the most likely alternative (SmolLM2's top pick after `{"` was `id`, not
    `labels`), so without them the answer's text would be rebuilt wrong. An id whose
    alternatives hold neither 0 nor 1 gets no probability."""
    out: dict[str, float] = {}
    text, wanted = "", {str(i): i for i in ids}
    for n, alternatives in enumerate(top or []):
        tok = tokens[n] if tokens is not None and n < len(tokens) else (
            alternatives[0][0] if alternatives else "")
        head = _KEY_BEFORE.search(text)
        if head and tok.strip() in ("0", "1") and head.group(1) in wanted:
            mass = {0: 0.0, 1: 0.0}
            for alt, lp in alternatives:
                if alt.strip() in ("0", "1"):
                    mass[int(alt.strip())] += math.exp(lp)
            if mass[0] + mass[1] > 0:
                out[wanted[head.group(1)]] = mass[1] / (mass[0] + mass[1])
        text += tok
    return out


_KEY_BEFORE = re.compile(r'"(\w+)"\s*:\s*$')


class WindowJudge(LLMScorer):
    """Detection or fuzzing: the items come from `items`; the rest is shared."""

    prompt_field: ClassVar[str] = "prompt"

    def items(self, score: Any, examples: list[Example], rng: random.Random) -> list[Item]:
        raise NotImplementedError

    def prompts(self, score: Any) -> tuple[str, ...]:
        base = getattr(score, self.name).prompt
        if score.batch_size == ALL:
            return (base + "_all",)
        return (base if score.batch_size == 1 else base + "_batch",)

    def calls(self, score: Any) -> int | None:
        if score.batch_size == ALL:
            return 1
        return -(-(score.n_positive + score.n_negative) // score.batch_size)

    def asks(self, ctx: ScoreContext, latent: int, explanation: str,
             examples: list[Example]) -> tuple[list[Ask], Prompt]:
        score = ctx.cfg.score
        prompt = load_prompt(self.prompts(score)[0])
        rng = random.Random(f"{score.seed}:{latent}:{self.name}")
        items = self.items(score, examples, rng)
        if score.batch_size == ALL:
            return ([self._ask_all(prompt, explanation, items, rng, score)] if items else []), prompt
        size = score.batch_size
        asks = []
        for b in range(0, len(items), size):
            batch = items[b:b + size]
            messages = prompt.messages(explanation=explanation, examples=format_items(batch),
                                       n=len(batch))
            asks.append(Ask(messages, score.max_tokens * len(batch), batch,
                            logprobs=score.logprobs or None))
        return asks, prompt

    @staticmethod
    def _ask_all(prompt: Prompt, explanation: str, items: list[Item], rng: random.Random,
                 score: Any) -> Ask:
        """All of a latent's windows in one request, each named by an id; the answer a JSON
        object with one 0/1 per id (constrained to that schema where the server can)."""
        ids = window_ids(len(items), rng)
        body = "\n".join(f"Example {i}: {it.text}" for i, it in zip(ids, items))
        schema = labels_schema(ids)
        return Ask(prompt.messages(explanation=explanation, examples=body, n=len(items)),
                   labels_max_tokens(ids), items, logprobs=score.logprobs or None,
                   schema=schema, extra={"ids": ids})

    def parse(self, ctx: ScoreContext, ask: Ask, response: LLMResponse):
        """[(label, P(1) or None)] per item; P(1) from the log-probabilities when judged one by
        one, or at each label of a one-call JSON answer."""
        if "ids" in ask.extra:
            ids = ask.extra["ids"]
            try:
                labels = parse_json_labels(response.text, ids, truncated=response.truncated)
            except AnswerError:
                return None
            probs = json_label_probs(response.top_logprobs, ids, response.tokens)
            return [(labels[i], probs.get(i)) for i in ids]
        if ctx.cfg.score.batch_size == 1 and response.top_logprobs:
            judged = label_from_logprobs(response.top_logprobs)
            if judged is not None:
                return [judged]
        labels = parse_labels(response.text, len(ask.items))
        return None if labels is None else [(label, None) for label in labels]

    def outcome(self, ctx: ScoreContext, latent: int, asks: list[Ask], replies: list[Reply],
                prompt: Prompt) -> Outcome:
        items, preds, probs = [], [], []
        for ask, reply in zip(asks, replies):
            items += ask.items
            got = reply.value or [(None, None)] * len(ask.items)
            preds += [p for p, _ in got]
            probs += [q for _, q in got]
        return classification_outcome(items, preds, probs, ctx.cfg.llm.model, prompt.sha,
                                      errors_of(replies))
